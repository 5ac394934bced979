"""The shape of the code: no import cycle, no private name borrowed from a public module, and
nothing in the repository pointing at a file outside it (docs/design.md, "Code layout")."""

from __future__ import annotations

import ast
import importlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "kubealias"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> Iterator[tuple[str, str | None]]:
    """(module, imported name or None) for every import of a kubealias module, at any depth
    (a function-level import closes a cycle as surely as a top-level one once it runs)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kubealias":
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "kubealias":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:
                    yield submodule, None
                else:
                    yield source, alias.name


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split(".")[1:])


def test_no_import_cycle_in_the_package() -> None:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        # A module importing its own package's __init__ is how Python finds the module: not an
        # edge of the design. Cycles through a package __init__ are checked on its real imports.
        graph[name] = {m for m, _ in _imports(name, path) if m in MODULES and m != name}
        graph[name] -= {p for p in graph[name] if name.startswith(p + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_no_private_name_taken_from_another_public_module() -> None:
    borrowed = [
        f"{name} imports {imported} from {source}"
        for name, path in MODULES.items()
        for source, imported in _imports(name, path)
        if imported is not None
        and imported.startswith("_")
        and not imported.startswith("__")
        and not _is_private(source)
        and source != name
    ]
    assert borrowed == []


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False
    ).stdout.split(b"\0")
    files = [ROOT / p.decode() for p in listed if p]
    if not files:  # not a git checkout (an unpacked sdist): read the tree
        files = [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [p for p in files if p.suffix in {".py", ".md", ".toml", ".cfg", ".yml", ".yaml", ""}]


@pytest.mark.parametrize(
    "needle",
    # Spelled in pieces so that this file does not match itself.
    ["DESIGN" + ".md", "../" + "shared", "shared/" + "reference", "STYLE" + ".md"],
)
def test_nothing_points_outside_the_repository(needle: str) -> None:
    hits = [
        str(path.relative_to(ROOT))
        for path in _tracked_text_files()
        if path.is_file() and needle in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert hits == []


@pytest.mark.parametrize("facade", ["kubealias", "kubealias.testing"])
def test_all_is_exactly_the_public_names(facade: str) -> None:
    """As httpx's test_exported_members: nothing public left out of ``__all__``, nothing in
    it that the module does not define."""
    module = importlib.import_module(facade)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and name != "annotations"
        and not (isinstance(value, ModuleType) and name not in module.__all__)
    }
    assert sorted(module.__all__) == sorted(public)
