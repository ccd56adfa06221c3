"""Replay of the original driver: options, data providers, schedules (harness issue)."""
