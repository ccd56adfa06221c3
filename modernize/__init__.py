"""The PyTorch port of the release's networks and the parity suite (port issue)."""
