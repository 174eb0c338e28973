"""The package's layers (docs/architecture.md, "Layers"): no module imports a package above its own.

Read from the source with ``ast``, every ``import bamrec.X`` counted, also those inside functions.
``python tests/test_layers.py`` prints the package-level import graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "bamrec"
# Bottom to top; a unit may import its own layer and those below.
LAYERS = (
    ("errors", "devices", "threads", "files"),
    ("config", "recipes"),
    ("data",),
    ("models",),
    ("rundir",),
    ("evaluation",),
    ("training",),
    ("retrieval", "reports", "compat"),
    ("api", "experiments", "demo"),
    ("serve", "cli", "bamrec"),  # bamrec: the package's __init__ (lazy names for the API)
)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bamrec"


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """unit -> the units it imports (a unit is a top-level module or subpackage of bamrec)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for file in sorted(root.rglob("*.py")):
        relative = file.relative_to(root.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        source = _unit(module)
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith("bamrec.") and _unit(name) != source:
                    edges[source].add(_unit(name))
    return edges


def test_no_import_goes_up_a_layer():
    level = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    graph = import_graph()
    units = {_unit(".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"))
             for f in PACKAGE.rglob("*.py")}
    assert units <= set(level), f"place these in LAYERS: {sorted(units - set(level))}"
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if level[b] > level[a])
    assert upward == []


if __name__ == "__main__":
    for unit, targets in sorted(import_graph().items()):
        print(f"{unit:12} -> {', '.join(sorted(targets))}")
