"""The layout shows the design: a pure registry at the centre, packages that never import each
other back, and commands (``__main__``) as the only places that compose several of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "syncstream"
PHASES = {"write", "export", "purge", "backfill"}


def imports_of(path: Path) -> set[str]:
    """Every syncstream module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("syncstream"):
            found.add(node.module)
            if node.module == "syncstream":
                found.update(f"syncstream.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("syncstream"))
    return found


def package_of(module: str) -> str | None:
    """The subpackage a module belongs to (``write`` for ``syncstream.write.writer``), or None
    for a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def library_edges() -> dict[tuple[str, str], list[str]]:
    """(package, package it imports) -> the importing files, for every module but the commands."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        source = package_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for module in imports_of(path):
            target = package_of(module)
            if source is not None and target is not None and target != source:
                edges.setdefault((source, target), []).append(str(path.relative_to(PACKAGE.parent)))
    return edges


def test_the_registry_imports_only_itself_and_the_errors() -> None:
    for path in sorted((PACKAGE / "registry").glob("*.py")):
        outside = {m for m in imports_of(path) if not m.startswith("syncstream.registry")} - {
            "syncstream.errors"
        }
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_the_store_builds_on_the_registry_only() -> None:
    """The state store is a shared layer under the phases: it knows the registry's population
    and the errors, nothing of the commands that use it."""
    for path in sorted((PACKAGE / "store").glob("*.py")):
        outside = {m for m in imports_of(path) if not m.startswith("syncstream.store")}
        assert outside <= {"syncstream.errors", "syncstream.registry.population"}, (
            f"{path.name}: {sorted(outside)}"
        )


def test_the_registry_loads_no_sqlite_arrow_or_returns() -> None:
    """Every registry module imported in a fresh interpreter: a helper process or a library
    caller that only routes pays for none of the I/O layers."""
    modules = sorted(f"syncstream.registry.{path.stem}" for path in (PACKAGE / "registry").glob("[!_]*.py"))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(' '.join(sorted(m for m in ('sqlite3', 'pyarrow', 'returns', 'atproto', 'deltalake') if m in sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def test_no_two_packages_import_each_other() -> None:
    edges = library_edges()
    both_ways = sorted((a, b, edges[a, b], edges[b, a]) for a, b in edges if (b, a) in edges and a < b)
    assert not both_ways


def test_phase_packages_compose_only_in_their_commands() -> None:
    """A phase's library modules build on the shared layers; where a phase uses another, it is
    one way (the writer runs backfill jobs beside the stream, the export applies pending
    purges), never back. Top-level modules import no phase (the package's ``__init__``, the
    public names resolved on first use, is the library's facade over all of them)."""
    edges = library_edges()
    between_phases = sorted((a, b) for a, b in edges if a in PHASES and b in PHASES)
    assert between_phases == [("export", "purge"), ("write", "backfill")]
    for path in sorted(PACKAGE.glob("[!_]*.py")):
        phases = PHASES & {package_of(m) for m in imports_of(path)}
        assert not phases, f"{path.name} imports the {sorted(phases)} package"
