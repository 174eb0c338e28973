"""The package's layers (docs/architecture.md, "Layers"): no module imports a package above its own.

Read from the source with ``ast`` by benchmarks/import_graph.py (every ``import bamrec.X`` counted,
also those inside functions), which also prints the graph: ``python benchmarks/import_graph.py``.
"""

from __future__ import annotations

from pathlib import Path

from scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top; a unit may import its own layer and those below.
LAYERS = (
    ("errors", "devices", "threads", "files", "locks"),
    ("config", "recipes", "presets"),
    ("data",),
    ("models",),
    ("rundir",),
    ("evaluation",),
    ("training",),
    ("retrieval", "reports", "compat"),
    ("api", "experiments", "demo"),
    ("serve", "cli", "bamrec"),  # bamrec: the package's __init__ (lazy names for the API)
)


def _script():
    return load_script(ROOT / "benchmarks" / "import_graph.py")


def test_no_import_goes_up_a_layer():
    script = _script()
    graph = script.import_graph(script.read_sources(None))
    level = {unit for layer in LAYERS for unit in layer}
    assert set(graph) <= level, f"place these in LAYERS: {sorted(set(graph) - level)}"
    assert script.upward(graph) == []


def test_the_graph_has_no_cycle_and_cycles_are_found():
    script = _script()
    assert script.cycles(script.import_graph(script.read_sources(None))) == []
    assert script.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_script_reads_a_commit_as_the_working_tree():
    script = _script()
    sources = script.read_sources("HEAD")
    assert "src/bamrec/training/trainer.py" in sources and script.model_lines(sources)["comirec_sa.py"] > 0


def test_the_training_method_does_not_import_the_loop():
    # selection, losses and the objective are the method (docs/method.md); the loop (trainer, callbacks,
    # validation, early stopping, distributed) drives them and may import them, never the reverse
    script = _script()
    imports = script.module_imports(script.read_sources(None))
    method = {f"bamrec.training.{name}" for name in ("selection", "losses", "objective")}
    for module in method:
        inside = {t for t in imports[module] if t.startswith("bamrec.training")}
        assert inside <= method | {"bamrec.training"}, f"{module} imports {sorted(inside - method)}"
