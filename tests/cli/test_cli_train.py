"""`bamrec train / evaluate / recommend` through the command-line entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bamrec.cli import main

FLAGS = ["--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
         "--num-negatives", "10", "--eval-every", "20", "--max-iters", "40", "--no-progress"]


def test_train_evaluate_recommend(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data_dir), "--model", "comirec-sa", "--selection", "bam-p",
                 "--multi-loss", "--out", str(run), *FLAGS]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--cutoffs", "5,10"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"recall@5", "ndcg@5", "mrr@5", "recall@10", "ndcg@10", "mrr@10", "users", "protocol"}
    assert metrics["protocol"] == "standard"
    assert main(["evaluate", str(run), "--protocol", "reference", "--split", "valid"]) == 0
    out = capsys.readouterr().out
    assert "reference protocol" in out and "recall" in out
    assert main(["recommend", str(run), "--user", "2", "-k", "3", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in recs] == [1, 2, 3]
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["train"]["selection"] == "bam-p" and config["train"]["multi_loss"] is True


def test_config_file_with_flag_override(data_dir, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[model]\nmodel = "mind"\nhidden_size = 8\n[train]\nselection = "bam-l"\nlr = 0.01\n')
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--data", str(data_dir), "--out", str(run), *FLAGS,
                 "--lr", "0.002"]) == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["model"]["model"] == "mind"
    assert config["train"]["selection"] == "bam-l"
    assert config["train"]["lr"] == 0.002


def test_user_mistakes_are_one_line_errors(data_dir, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("lerning_rate: 0.1\n")
    assert main(["train", "--config", str(cfg), "--data", str(data_dir), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'lerning_rate'" in err and "Traceback" not in err
    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--selection", "soft"]) == 2
    err = capsys.readouterr().err
    assert "argument --selection: invalid choice" in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_item_ids_stay_as_written_through_a_run(tmp_path, capsys):
    # Ids stay as written: "007" and "7" are two items and "0123" comes back as "0123", not 123.
    raw = tmp_path / "log.txt"
    rng = np.random.default_rng(1)
    names = ["007", "7", "0123", "123"] + [str(i) for i in range(200, 226)]
    lines = [f"u{u} {names[i]}" for u in range(30) for i in rng.integers(0, len(names), size=8)]
    raw.write_text("\n".join(lines) + "\n")
    assert main(["data", "prepare", str(raw), "--format", "uid-iid", "--out", str(tmp_path / "data")]) == 0
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(run), *FLAGS]) == 0
    item_map = json.loads((run / "item_map.json").read_text())
    assert item_map["id_type"] == "str" and {"007", "7", "0123", "123"} <= set(item_map["rows"])
    assert len(set(item_map["rows"].values())) == len(item_map["rows"])
    capsys.readouterr()
    assert main(["recommend", str(run), "--items", "007", "0123", "-k", "30", "--json"]) == 0
    recommended = [r["item"] for r in json.loads(capsys.readouterr().out)]
    assert set(recommended) == set(item_map["rows"]) and all(isinstance(i, str) for i in recommended)
    assert main(["recommend", str(run), "--items", "0007"]) == 2  # not an item: ids compare as strings
