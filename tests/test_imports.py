"""The Python tree imports as it reads (STYLE.md habit 15).

Every module of the package imports on its own, in a fresh interpreter, so none
depends on another having been imported first; and the graph of the package's
own imports, taken from the source with ast (imports inside functions included),
has no cycle, so no import hides inside a function to dodge one.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The package's folders: the root is bindings/alexnet_replay, the rest are top-level.
FOLDERS = {
    "alexnet_replay": REPO / "bindings" / "alexnet_replay",
    "alexnet_replay.original": REPO / "original",
    "alexnet_replay.harness": REPO / "harness",
    "alexnet_replay.modernize": REPO / "modernize",
}
# The package's own imports inside functions, each with its reason; strict both
# ways, so a new one fails until it is listed here, and a listed one that goes
# away fails until its entry goes. The CLI loads each subcommand's modules when
# that subcommand runs (so `alexnet-replay verify` needs no torch), and is exempt.
LAZY = {
    ("alexnet_replay", "build_info"): "`import alexnet_replay` stays light: the compiled engine loads on first use",
    ("alexnet_replay", "load"): "`import alexnet_replay` stays light: the compiled engine loads on first use",
    ("alexnet_replay.harness.demo", "run_demo"): "the demo's parity check needs torch, an optional extra",
    ("alexnet_replay.harness.demo", "_figures"): "the demo's curves and filters need matplotlib, an optional extra",
    ("alexnet_replay.harness.backends", "_port"): "train --backend port needs torch, an optional extra",
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def test_the_folders_are_the_package():
    """Each source file is the module its path says, wherever the package is installed
    (an editable install runs the folders themselves, a wheel copies them): the module
    alexnet_replay.harness.providers.cifar is harness/providers/cifar.py, and so on."""
    assert len(MODULES) > 40
    for module, path in MODULES.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        package_path = Path(*module.split(".")[1:]) if module != "alexnet_replay" else Path()
        suffix = Path("alexnet_replay") / (package_path / "__init__.py" if path.name == "__init__.py"
                                           else package_path.with_suffix(".py"))
        origin = Path(spec.origin).resolve()
        if origin != path.resolve():  # a wheel: the same file under site-packages/alexnet_replay
            assert origin.as_posix().endswith(suffix.as_posix()), (module, spec.origin)
            assert origin.read_bytes() == path.read_bytes(), f"{module}: {spec.origin} differs from {path}"


# __main__ runs the CLI when imported; test_cli runs it as `python -m alexnet_replay`.
@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_imports_alone_in_a_fresh_interpreter(module):
    run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:` (annotations only, never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _edges() -> dict[str, set[str]]:
    """module -> the package modules it imports when it runs, at any depth in the file."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_blocks(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path, node)
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            targets |= {n for n in names if n in MODULES and n != module}
        graph[module] = targets
    return graph


def test_the_package_imports_have_no_cycle():
    graph = _edges()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            # A package's __init__ re-exporting its submodules is not a cycle with them.
            if t.startswith(m + ".") or m.startswith(t + "."):
                continue
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_package_import_hides_inside_a_function():
    """Outside the CLI and the LAZY list, the package's modules import each other at the
    top of the file."""
    found: dict[tuple[str, str], str] = {}
    for module, path in MODULES.items():
        if module == "alexnet_replay.cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if not isinstance(node, ast.ImportFrom):
                    continue
                if node.level or (node.module or "").startswith("alexnet_replay"):
                    found[(module, func.name)] = (f"{path.relative_to(REPO)}:{node.lineno} imports "
                                                  f"{'.' * node.level}{node.module or ''} inside {func.name}()")
    unlisted = [where for key, where in found.items() if key not in LAZY]
    assert not unlisted, "\n".join(unlisted)
    assert set(LAZY) <= set(found), f"LAZY lists imports that are gone: {sorted(set(LAZY) - set(found))}"
