"""The parts the training loop is made of: early stopping, the resume state, validation steps, callbacks."""

from __future__ import annotations

import math

import pytest
import torch

import bamrec
from bamrec.config import CHOICES
from bamrec.rundir import layout as ckpt
from bamrec.rundir import resume
from bamrec.training.callbacks import Check
from bamrec.training.early_stopping import EarlyStopping
from bamrec.training.validation import VALIDATIONS

from .test_trainer import config, data_dir  # noqa: F401  (fixture)


def test_early_stopping_keeps_the_best_and_counts_bad_checks():
    stopper = EarlyStopping("recall@10", patience=2)
    assert stopper.update(10, {"recall@10": 0.2})
    assert not stopper.update(20, {"recall@10": 0.2})  # equal is not better
    assert not stopper.should_stop
    assert not stopper.update(30, {"recall@10": 0.1})
    assert stopper.should_stop and stopper.best_iter == 10 and stopper.best_metric == 0.2
    assert stopper.update(40, {"recall@10": 0.3}) and stopper.bad_checks == 0
    again = EarlyStopping("recall@10", patience=5)
    again.load_state_dict(stopper.state_dict())
    assert (again.best_iter, again.best_metric, again.bad_checks, again.patience) == (40, 0.3, 0, 5)
    with pytest.raises(KeyError, match="ndcg@50"):
        EarlyStopping("ndcg@50", 1).update(1, {"recall@10": 0.1})


def test_every_validation_protocol_choice_has_a_step():
    assert set(CHOICES["valid_protocol"]) == set(VALIDATIONS)


def test_resume_state_round_trips_and_reads_the_flat_layout(tmp_path):
    generator = torch.Generator()
    generator.manual_seed(3)
    rank = resume.RankState(sampler={"generator": generator.get_state()}, selection_generator=generator.get_state(),
                            torch_rng=torch.get_rng_state(), device_type="cpu")
    state = resume.ResumeState(iteration=7, elapsed_s=1.5, early_stopping=EarlyStopping("recall@10", 3).state_dict(),
                               objective={"w": torch.ones(2)}, optimizer={"state": {}}, ranks=[rank])
    resume.save(tmp_path, state)
    loaded = resume.load(tmp_path)
    assert loaded.iteration == 7 and loaded.rank_state(0) is loaded.ranks[0]
    assert loaded.rank_state(3) is None  # a rank the file has no streams for starts fresh ones, never rank 0's
    assert torch.equal(loaded.ranks[0].selection_generator, generator.get_state())
    flat = {"iteration": 5, "elapsed_s": 2.0, "objective": {}, "optimizer": {}, "sampler": rank.sampler,
            "selection_generator": rank.selection_generator, "torch_rng": rank.torch_rng, "best_metric": 0.1,
            "best_iter": 5, "best_valid": {"recall@10": 0.1}, "bad_checks": 0}
    old = resume.ResumeState.from_payload(flat)
    assert old.iteration == 5 and old.early_stopping["best_iter"] == 5 and old.ranks[0].device_type == "cpu"


class Recorder:
    def __init__(self):
        self.checks: list[Check] = []
        self.closed = 0

    def on_check(self, check: Check) -> None:
        self.checks.append(check)

    def close(self) -> None:
        self.closed += 1


def test_callbacks_see_every_check_after_it_is_saved(data_dir, tmp_path):  # noqa: F811
    seen = []

    class SeesTheRunDir(Recorder):
        def on_check(self, check):
            super().on_check(check)
            seen.append(len(ckpt.read_jsonl(tmp_path / "run" / ckpt.METRICS_FILE)))
            assert (tmp_path / "run" / ckpt.RESUME_FILE).is_file()

    recorder = SeesTheRunDir()
    result = bamrec.train(config(data_dir), tmp_path / "run", verbose=False, callbacks=[recorder])
    assert [c.iteration for c in recorder.checks] == [20, 40] and seen == [1, 2]
    assert recorder.closed == 1
    best = max(recorder.checks, key=lambda c: c.valid["recall@10"])
    assert result.best_iter == recorder.checks[-1].best_iter == best.iteration
    assert all(c.metric == "recall@10" and math.isfinite(c.loss) for c in recorder.checks)
