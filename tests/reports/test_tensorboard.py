"""`bamrec train --tensorboard`: live scalars per validation check, equal to metrics.jsonl."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from bamrec.cli import main  # noqa: E402
from bamrec.data.sequences import SequenceDataset  # noqa: E402
from bamrec.reports.tensorboard import export_metrics  # noqa: E402


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_tensorboard_matches_metrics_jsonl(tmp_path):
    rng = np.random.default_rng(0)
    SequenceDataset.from_sequences([rng.integers(1, 31, size=10).tolist() for _ in range(30)]).save(tmp_path / "d")
    run, tb = tmp_path / "run", tmp_path / "tb"
    assert main(["train", "--data", str(tmp_path / "d"), "--out", str(run), "--tensorboard", str(tb),
                 "--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
                 "--num-negatives", "10", "--eval-every", "10", "--max-iters", "30", "--no-progress"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    live = _scalars(tb)
    expected = [(r["iter"], r["valid"]["recall@10"]) for r in records]
    assert [(s, pytest.approx(v, abs=1e-6)) for s, v in live["valid/recall@10"]] == expected
    assert [s for s, _ in live["train/loss"]] == [10, 20, 30]
    replay = _scalars(export_metrics(run, tmp_path / "replay"))
    assert replay["valid/recall@10"] == live["valid/recall@10"]  # the same numbers copied, no arithmetic
