"""Time to quality: the time to a cell's best check from its curve, and the ratio against the original
only for cells that reach the target and ran beside the reference cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripts import load_script

from bamrec.experiments.cell import cell_file

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _module():
    return load_script(BENCHMARKS / "time_to_quality.py")


def _cell(name: str, test: float, best: int, iters: int, train_s: float) -> dict:
    checks = list(range(1000, iters + 1, 1000))
    return {"cell": name, "seed": 1, "axes": {"model": name, "scheme": "s", "seed": "1"},
            "test": {"reference": {"recall@20": test}}, "best_iter": best, "iters": iters,
            "train_time_s": train_s, "stopped": "patience", "machine": {"threads": 1},
            "curve": {"iter": checks, "time_s": [train_s * i / iters for i in checks]}}


SIDE_BY_SIDE = {"training": [{"model": "remi", "scheme": "hard", "shared": {"ratio": 99.0}},
                             {"model": "remi", "scheme": "bam-p+multi-loss", "shared": {"ratio": 5.0}}]}


def test_ratio_from_iterations_and_side_by_side_speed():
    module = _module()
    remi = _cell("remi", 0.33, 30_000, 35_000, 3_500.0)   # 0.1 s/it
    fast = _cell("fast", 0.34, 10_000, 15_000, 3_000.0)   # 0.2 s/it: 2,000 s to its best check
    low = _cell("low", 0.30, 5_000, 10_000, 500.0)
    other = _cell("other", 0.40, 2_000, 3_000, 300.0)     # reaches it, but ran on another machine
    ratio = module.original_to_bamrec_ratio(SIDE_BY_SIDE)
    assert ratio == 5.0
    table, original_s = module.rows([remi, fast, low, other], "remi", {"fast", "low"}, ratio, 34_000, 0.329)
    # 34,000 iterations at the REMI cell's 0.1 s/it, times the original's 5x slower iteration.
    assert original_s == pytest.approx(17_000.0)
    by = {r["cell"]: r for r in table}
    assert by["fast"]["minutes_to_best"] == pytest.approx(2_000 / 60)
    assert by["fast"]["speedup"] == pytest.approx(17_000 / 2_000)
    assert by["remi"]["speedup"] == pytest.approx(17_000 / 3_000)
    assert by["low"]["reaches"] is False and by["low"]["speedup"] is None
    assert by["other"]["reaches"] is True and by["other"]["speedup"] is None
    text = module.markdown(table, original_s, 34_000, 0.329, ratio)
    assert "not reached" in text and "8.5x faster" in text


EXPERIMENT = """name = "tiny"
[fixed]
data = "prepared/x"
max_iters = 100
[[grid]]
model = ["comirec-sa"]
scheme = [{ label = "hard", selection = "hard" }, { label = "bam", selection = "bam-p" }]
seed = [1, 2]
"""


def _study(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A two-configuration study file and its cells folder; the summaries' ids and options are the study's."""
    from bamrec.experiments.spec import load_experiment

    experiment = tmp_path / "tiny.toml"
    experiment.write_text(EXPERIMENT)
    cells_dir = tmp_path / "cells"
    cells_dir.mkdir()
    return experiment, cells_dir, {c.id: c for c in load_experiment(experiment).cells}


def _write(cells_dir: Path, cell, record: dict) -> None:
    record = dict(record, cell=cell.id, seed=cell.options["seed"], options=cell.options)
    cell_file(cells_dir, cell.id).write_text(json.dumps(record))


def test_cells_are_read_as_the_report_reads_them(tmp_path, capsys):
    module = _module()
    experiment, cells_dir, cells = _study(tmp_path)
    hard1, bam1, hard2 = (next(c for i, c in cells.items() if i.startswith(p))
                          for p in ("comirec-sa_hard_s1", "comirec-sa_bam_s1", "comirec-sa_hard_s2"))
    _write(cells_dir, hard1, _cell("x", 0.33, 2_000, 3_000, 300.0))
    _write(cells_dir, hard2, _cell("x", 0.34, 2_000, 3_000, 300.0))  # seed 2: not asked for
    stale = dict(_cell("x", 0.40, 2_000, 3_000, 300.0), cell=bam1.id, seed=1,
                 options=dict(bam1.options, lr=0.5))  # its options are no longer the study's
    cell_file(cells_dir, bam1.id).write_text(json.dumps(stale))
    (cells_dir / "notes.json").write_text(json.dumps(_cell("foreign", 0.5, 1_000, 1_000, 10.0)))
    loaded = module.load_cells(experiment, cells_dir, 1)
    assert [c["cell"] for c in loaded] == [hard1.id]
    assert module.main(["--experiment", str(experiment), "--cells", str(cells_dir)]) == 0
    out = capsys.readouterr().out
    assert "| 0.330 |" in out and "0.400" not in out and "0.500" not in out and "0.340" not in out


def test_a_curve_without_the_best_check_is_an_error(tmp_path, capsys):
    module = _module()
    experiment, cells_dir, cells = _study(tmp_path)
    _write(cells_dir, next(iter(cells.values())), _cell("remi", 0.33, 30_500, 35_000, 3_500.0))
    assert module.main(["--experiment", str(experiment), "--cells", str(cells_dir)]) == 2
    assert "no check at its best iteration 30500" in capsys.readouterr().err


def test_a_study_without_finished_cells_of_the_seed_is_one_line(tmp_path, capsys):
    module = _module()
    experiment, cells_dir, _ = _study(tmp_path)
    assert module.main(["--experiment", str(experiment), "--cells", str(cells_dir), "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("time_to_quality: no cells of seed 3 of") and err.count("\n") == 1
