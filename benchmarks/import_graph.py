#!/usr/bin/env python3
"""bamrec's import graph between its packages, read from the source with ``ast`` (nothing is imported).

    python benchmarks/import_graph.py                 # the working tree
    python benchmarks/import_graph.py --rev f5b66be   # any commit (read with git, no checkout)
    python benchmarks/import_graph.py --rev A --against B   # and the modules added, removed, moved

A unit is a top-level module or subpackage of ``bamrec`` (``data``, ``training``, ``config``; ``bamrec``
is the package's ``__init__``). Every ``import bamrec.X`` counts, also those inside functions. Printed:
each unit's imports, the arrows that go up a layer (the layers of tests/test_layers.py, which fails
on any), the import cycles between units, and the line count of each model file.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "src/bamrec"


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bamrec"


def module_name(path: str) -> str:
    """``src/bamrec/data/csr.py`` -> ``bamrec.data.csr``."""
    return ".".join(Path(path).relative_to("src").with_suffix("").parts).removesuffix(".__init__")


def read_sources(rev: str | None) -> dict[str, str]:
    """path (``src/bamrec/...py``) -> source text, of the working tree or of commit ``rev``."""
    if rev is None:
        return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
                for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", rev, PACKAGE],
                            check=True, capture_output=True, text=True).stdout.split()
    return {path: subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                                 capture_output=True, text=True).stdout
            for path in listed if path.endswith(".py")}


def module_imports(sources: dict[str, str]) -> dict[str, set[str]]:
    """module -> the bamrec modules it imports (``bamrec.training.objective`` -> ``bamrec.training.losses``, ...)."""
    imports: dict[str, set[str]] = {}
    modules = {module_name(path) for path in sources}
    for path, text in sources.items():
        found = imports.setdefault(module_name(path), set())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.startswith("bamrec."))
            elif isinstance(node, ast.ImportFrom) and node.module == "bamrec" and node.level == 0:
                # ``from bamrec import files`` imports a module; ``from bamrec import __version__`` only
                # the package's __init__, which every ``bamrec.*`` import loads anyway: not an arrow
                found.update(f"bamrec.{alias.name}" for alias in node.names if f"bamrec.{alias.name}" in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.startswith("bamrec."):
                found.add(node.module)
    return imports


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """unit -> the units it imports."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in module_imports(sources).items():
        source = unit_of(module)
        edges[source].update(unit_of(t) for t in targets if unit_of(t) != source)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        for target in graph.get(unit, ()):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == unit:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for unit in sorted(graph):
        if unit not in index:
            visit(unit)
    return sorted(found)


def layers() -> tuple[tuple[str, ...], ...]:
    """The layers tests/test_layers.py enforces (bottom first)."""
    spec = importlib.util.spec_from_file_location("test_layers", ROOT / "tests" / "test_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LAYERS


def upward(graph: dict[str, set[str]]) -> list[str]:
    level = {unit: i for i, layer in enumerate(layers()) for unit in layer}
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if a in level and b in level and level[b] > level[a])


def model_lines(sources: dict[str, str]) -> dict[str, int]:
    return {Path(path).name: len(text.splitlines()) for path, text in sorted(sources.items())
            if path.startswith(f"{PACKAGE}/models/") and not path.endswith("__init__.py")}


def moves(rev: str | None, against: str) -> list[str]:
    """Modules added (A), removed (D) and moved (R, with git's rename similarity) from ``against`` to
    ``rev`` (the working tree when None)."""
    command = ["git", "-C", str(ROOT), "diff", "--name-status", "-M50%", against] + ([rev] if rev else [])
    out = subprocess.run(command + ["--", PACKAGE], check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        status, *paths = line.split("\t")
        if status[0] in "ADR" and all(p.endswith(".py") for p in paths):
            rows.append(f"{status[0]} " + " -> ".join(module_name(p) for p in paths))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="a commit to read instead of the working tree")
    parser.add_argument("--against", help="also list the modules added, removed and moved since this commit")
    args = parser.parse_args(argv)
    sources = read_sources(args.rev)
    graph = import_graph(sources)
    print(f"import graph of {args.rev or 'the working tree'} ({len(sources)} modules, {len(graph)} units)")
    for unit, targets in sorted(graph.items()):
        print(f"  {unit:12} -> {', '.join(sorted(targets)) or '-'}")
    up = upward(graph)
    print(f"arrows up a layer (tests/test_layers.py): {len(up)}" + "".join(f"\n  {edge}" for edge in up))
    found = cycles(graph)
    print(f"cycles: {len(found)}" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    print("model files (lines): " + ", ".join(f"{name} {n}" for name, n in model_lines(sources).items()))
    if args.against:
        rows = moves(args.rev, args.against)
        print(f"modules added / removed / moved since {args.against}: {len(rows)}" + "".join(f"\n  {r}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
