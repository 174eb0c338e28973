"""The trainer, run directories and the Python API, end to end on a tiny dataset."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import bamrec
from bamrec.api import load_run
from bamrec.config import run_config_from_flat
from bamrec.data.sequences import SequenceDataset
from bamrec.errors import BamrecError, RunDirError
from bamrec.rundir import layout as ckpt

TINY = dict(seq_len=8, hidden_size=8, num_interests=2, batch_size=16, num_negatives=10, eval_every=20,
            max_iters=40, patience=50, progress=False)


@pytest.fixture
def data_dir(tmp_path, make_tiny_dataset):
    """A little larger than the shared tiny dataset (60 users, 40 items, up to 19 items each)."""
    return make_tiny_dataset(tmp_path / "data", num_users=60, num_items=40, max_len=20)


def config(data_dir, **overrides):
    return run_config_from_flat({"data": str(data_dir), **TINY, **overrides})


def test_train_writes_a_complete_run_directory(data_dir, tmp_path):
    result = bamrec.train(config(data_dir), tmp_path / "run", verbose=False)
    run_dir = result.run_dir
    for name in ("config.json", "model.safetensors", "item_map.json", "metrics.jsonl", "summary.json",
                 "diagnostics.json", "train.log"):
        assert (run_dir / name).is_file(), name
    record = json.loads((run_dir / "config.json").read_text())
    assert record["seed"] == 2021
    assert record["dataset"]["checksum"] == SequenceDataset.load(data_dir).manifest["checksum"]
    assert set(record["versions"]) >= {"bamrec", "torch", "numpy", "python"}
    lines = ckpt.read_jsonl(run_dir / "metrics.jsonl")
    assert [line["iter"] for line in lines] == [20, 40]
    assert len(lines[0]["selection_shares"]) == 2 and abs(sum(lines[0]["selection_shares"]) - 1) < 1e-6
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iters"] == 40 and summary["stopped"] == "max_iters"
    assert {"recall@10", "ndcg@10", "recall@20", "users", "protocol"} <= set(summary["test"])


def test_same_seed_same_numbers(data_dir, tmp_path):
    a = bamrec.train(config(data_dir, selection="bam-p"), tmp_path / "a", verbose=False)
    b = bamrec.train(config(data_dir, selection="bam-p"), tmp_path / "b", verbose=False)
    # Bit-equal on purpose: the same seed at the same shapes in one process is the determinism promise.
    assert a.test == b.test
    wa, wb = load_file(str(a.run_dir / "model.safetensors")), load_file(str(b.run_dir / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_existing_run_is_never_overwritten_silently(data_dir, tmp_path):
    bamrec.train(config(data_dir), tmp_path / "run", verbose=False)
    with pytest.raises(RunDirError, match="--overwrite"):
        bamrec.train(config(data_dir), tmp_path / "run", verbose=False)
    bamrec.train(config(data_dir), tmp_path / "run", overwrite=True, verbose=False)


def test_resume_continues_exactly_where_it_stopped(data_dir, tmp_path):
    straight = bamrec.train(config(data_dir, selection="bam-p", max_iters=60), tmp_path / "straight", verbose=False)
    bamrec.train(config(data_dir, selection="bam-p", max_iters=40), tmp_path / "resumed", verbose=False)
    resumed = bamrec.train(config(data_dir, selection="bam-p", max_iters=60), tmp_path / "resumed", resume=True,
                           verbose=False)
    assert [r["iter"] for r in ckpt.read_jsonl(resumed.run_dir / "metrics.jsonl")] == [20, 40, 60]
    # Bit-equal on purpose: a resume continues exactly (same process, same shapes, restored streams).
    assert resumed.test == straight.test


def test_resume_refuses_changed_model(data_dir, tmp_path):
    bamrec.train(config(data_dir), tmp_path / "run", verbose=False)
    with pytest.raises(RunDirError, match="differ"):
        bamrec.train(config(data_dir, hidden_size=16), tmp_path / "run", resume=True, verbose=False)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_resume_of_a_damaged_resume_state_is_one_clear_error(data_dir, tmp_path, damage):
    bamrec.train(config(data_dir, max_iters=20), tmp_path / "run", verbose=False)
    state = tmp_path / "run" / "last.ckpt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2] if damage == "truncated" else b"")
    with pytest.raises(RunDirError, match=r"last\.ckpt is damaged or incomplete .*--overwrite"):
        bamrec.train(config(data_dir, max_iters=40), tmp_path / "run", resume=True, verbose=False)


def test_load_run_reproduces_the_summary_and_recommends(data_dir, tmp_path):
    result = bamrec.train(config(data_dir), tmp_path / "run", verbose=False)
    run = load_run(result.run_dir)
    # Bit-equal on purpose: the saved weights, evaluated at the run's own batch and chunk sizes in the
    # same process, give the summary's numbers exactly.
    assert run.evaluate(split="test") == result.test
    recs = run.recommend(user=3, k=5)
    assert [r.rank for r in recs] == [1, 2, 3, 4, 5]
    assert all(0 <= r.interest < 2 for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    history = set(SequenceDataset.load(data_dir).sequence(3).tolist())
    assert not {r.item for r in run.recommend(user=3, k=10, exclude_history=True)} & history
    assert len(run.recommend(items=[1, 2, 3], k=4)) == 4
    with pytest.raises(BamrecError, match="unknown item"):
        run.recommend(items=[9999])
    with pytest.raises(BamrecError, match="not in the run's dataset"):
        run.recommend(user=12345)


def test_run_refuses_another_dataset(data_dir, tmp_path, make_tiny_dataset):
    result = bamrec.train(config(data_dir), tmp_path / "run", verbose=False)
    other = make_tiny_dataset(tmp_path / "other", num_users=60, num_items=40, max_len=20, seed=1)
    with pytest.raises(RunDirError, match="not the one run"):
        load_run(result.run_dir).evaluate(data=other)


def test_weights_from_another_model_are_refused(data_dir, tmp_path):
    a = bamrec.train(config(data_dir), tmp_path / "a", verbose=False)
    b = bamrec.train(config(data_dir, hidden_size=16), tmp_path / "b", verbose=False)
    (a.run_dir / "model.safetensors").write_bytes((b.run_dir / "model.safetensors").read_bytes())
    with pytest.raises(RunDirError, match="shape"):
        load_run(a.run_dir)


def test_nan_loss_stops_and_keeps_the_best_checkpoint(data_dir, tmp_path, monkeypatch):
    from bamrec.training import objective as objective_module

    original_forward = objective_module.Objective.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = original_forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 25:  # after the first validation check at iteration 20
            return out._replace(loss=out.loss * float("nan"))
        return out

    monkeypatch.setattr(objective_module.Objective, "forward", poisoned)
    result = bamrec.train(config(data_dir, max_iters=200), tmp_path / "run", verbose=False)
    assert result.stopped == "nan"
    assert result.best_iter == 20
    assert json.loads((result.run_dir / "summary.json").read_text())["stopped"] == "nan"
    assert all(torch.isfinite(t).all() for t in load_file(str(result.run_dir / "model.safetensors")).values())


def test_patience_stops_training(data_dir, tmp_path):
    result = bamrec.train(config(data_dir, patience=1, max_iters=2000, lr=1e-9), tmp_path / "run", verbose=False)
    assert result.stopped == "patience"
    assert result.iters < 2000


def test_sigterm_finishes_the_run_with_its_best_checkpoint(data_dir, tmp_path, monkeypatch):
    import os
    import signal

    from bamrec.training import objective as objective_module

    original_forward = objective_module.Objective.forward
    calls = {"n": 0}

    def terminated(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:  # after the first validation check at iteration 20
            os.kill(os.getpid(), signal.SIGTERM)
        return original_forward(self, *args, **kwargs)

    monkeypatch.setattr(objective_module.Objective, "forward", terminated)
    result = bamrec.train(config(data_dir, max_iters=200), tmp_path / "run", verbose=False)
    assert result.stopped == "interrupted (SIGTERM)" and result.interrupt_signal == signal.SIGTERM
    assert result.best_iter == 20 and result.iters < 200
    assert json.loads((result.run_dir / "summary.json").read_text())["stopped"] == "interrupted (SIGTERM)"
