"""The fidelity grids (docs/fidelity.md) are experiment files the runner reads, and the doc's tables are
generated from their committed cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from bamrec.experiments import load_experiment
from bamrec.experiments.aggregate import aggregate
from bamrec.experiments.runner import finished_cells

from scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
FIDELITY = ROOT / "experiments" / "fidelity"


def _table_script():
    return load_script(FIDELITY / "table.py", "fidelity_table")


@pytest.mark.parametrize("grid, cells", [("ml-100k", 66), ("ml-1m", 24)])
def test_every_committed_cell_is_a_finished_cell_of_its_experiment_file(grid, cells):
    experiment = load_experiment(FIDELITY / f"{grid}.toml")
    committed = sorted((FIDELITY / grid / "cells").glob("*.json"))
    assert len(experiment.cells) == cells and len(committed) == cells
    assert len(finished_cells(experiment, FIDELITY / grid / "cells")) == cells  # nothing would rerun


def test_the_ml_100k_cells_aggregate_with_one_baseline_per_variant():
    experiment = load_experiment(FIDELITY / "ml-100k.toml")
    result = aggregate(experiment, FIDELITY / "ml-100k" / "cells")
    labels = {g["key"]: g["label"] for g in result["configurations"]}
    pairs = {(c["configuration"], c["baseline"]) for c in result["comparisons"]}
    # every variant is compared with our defaults of the same model and scheme
    assert ("ml-100k / mind / hard / +negatives", "ml-100k / mind / hard / bamrec") in pairs
    assert ("ml-100k / comirec-sa / bamp-multi / original", "ml-100k / comirec-sa / bamp-multi / bamrec") in pairs
    assert len(pairs) == len(labels) - 4  # 4 baselines: {mind, comirec-sa} x {hard, bamp-multi}


def test_docs_fidelity_holds_the_tables_generated_from_the_committed_cells():
    script = _table_script()
    blocks = script.tables("ml-100k")
    blocks.update(script.runner_tables(__import__("json").loads((FIDELITY / "ml-1m" / "results.json").read_text()),
                                       "ml-1m"))
    doc = (ROOT / "docs" / "fidelity.md").read_text()
    for name, body in blocks.items():
        assert f"<!-- table {name} -->\n{body}\n<!-- end {name} -->" in doc, f"rerun experiments/fidelity/table.py --write ({name})"
