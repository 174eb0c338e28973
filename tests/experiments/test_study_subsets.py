"""A study file that runs part of another (e.g. the SASRec cells of ML-1M on a GPU) must name the very
same cells: same experiment name, same ids, same options, so that what it finishes is the other's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bamrec.experiments.spec import load_experiment

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SUBSETS = {"converged-ml-1m-sasrec.toml": "converged-ml-1m.toml"}


@pytest.mark.parametrize("subset, whole", sorted(SUBSETS.items()))
def test_a_subset_file_names_cells_of_its_whole(subset, whole):
    part, full = load_experiment(EXPERIMENTS / subset), load_experiment(EXPERIMENTS / whole)
    assert part.name == full.name  # the same --out default: experiments/<name>/cells
    cells = {cell.id: cell for cell in full.cells}
    assert part.cells
    for cell in part.cells:
        assert cell.id in cells, f"{subset}: {cell.id} is not a cell of {whole}"
        assert cell.options == cells[cell.id].options and cell.config_key == cells[cell.id].config_key
