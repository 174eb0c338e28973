"""`--select-metric`: the early-stopping metric, always computed, validated when the config is read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bamrec.cli import main
from bamrec.rundir import layout as ckpt

FLAGS = ["--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
         "--num-negatives", "10", "--eval-every", "20", "--max-iters", "60", "--no-progress"]


def test_cutoffs_without_10_train_and_keep_a_checkpoint(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data_dir), "--out", str(run), *FLAGS, "--cutoffs", "20,50"]) == 0
    assert (run / ckpt.WEIGHTS_FILE).is_file()
    records = ckpt.read_jsonl(run / ckpt.METRICS_FILE)
    assert all("recall@10" in r["valid"] and "recall@20" in r["valid"] for r in records)
    summary = json.loads((run / ckpt.SUMMARY_FILE).read_text())
    assert {k for k in summary["test"] if "@" in k} == {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (20, 50)}


def test_select_metric_picks_the_best_check_by_that_metric(data_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data_dir), "--out", str(run), *FLAGS, "--cutoffs", "10",
                 "--select-metric", "mrr@5"]) == 0
    records = ckpt.read_jsonl(run / ckpt.METRICS_FILE)
    scores = [r["valid"]["mrr@5"] for r in records]
    best = records[int(np.argmax(scores))]["iter"]  # argmax: the first of equal maxima, as early stopping keeps
    summary = json.loads((run / ckpt.SUMMARY_FILE).read_text())
    assert summary["best_iter"] == best
    assert json.loads((run / ckpt.CONFIG_FILE).read_text())["config"]["train"]["select_metric"] == "mrr@5"


@pytest.mark.parametrize("bad", ["hit@10", "recall", "recall@0", "ndcg@x", "recall@-1", "Recall@10"])
def test_bad_select_metric_is_one_line_error(data_dir, tmp_path, capsys, bad):
    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "r"), *FLAGS,
                 "--select-metric", bad]) == 2
    err = capsys.readouterr().err
    assert "select_metric" in err and "recall@K" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_bad_select_metric_in_a_config_file_is_refused_when_read(data_dir, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[train]\nselect_metric = "auc@10"\n')
    assert main(["train", "--config", str(cfg), "--data", str(data_dir), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "invalid select_metric 'auc@10'" in err and "recall@K" in err
