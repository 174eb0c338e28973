"""What training prints: only metrics that were computed, and the progress bar up to date at each check."""

from __future__ import annotations

import io
import re

import bamrec
from bamrec.rundir import layout as ckpt
from bamrec.training.callbacks import Check, ProgressBar

from .test_trainer import config, data_dir  # noqa: F401  (fixture)


def check_lines(run_dir):
    return [line for line in (run_dir / ckpt.LOG_FILE).read_text().splitlines() if re.search(r"\] iter \d+:", line)]


def test_log_prints_only_computed_metrics(data_dir, tmp_path):  # noqa: F811
    run = bamrec.train(config(data_dir, cutoffs=(10,)), tmp_path / "a", verbose=False).run_dir
    lines = check_lines(run)
    assert len(lines) == 2
    assert all("recall@10" in line and "recall@20" not in line and "nan" not in line for line in lines)


def test_log_names_the_select_metric(data_dir, tmp_path):  # noqa: F811
    run = bamrec.train(config(data_dir, cutoffs=(20, 50), select_metric="ndcg@20"), tmp_path / "b",
                       verbose=False).run_dir
    lines = check_lines(run)
    assert len(lines) == 2
    assert all("ndcg@20" in line and "recall@20" in line and "recall@50" in line for line in lines)
    assert all("recall@10" not in line and "nan" not in line for line in lines)


def _check(iteration: int, value: float) -> Check:
    return Check(iteration=iteration, elapsed_s=1.0, loss=2.0, valid={"ndcg@20": value}, selection_shares=[1.0],
                 metric="ndcg@20", improved=True, best_metric=value, best_iter=iteration)


def test_progress_bar_shows_the_check_it_just_made():
    out = io.StringIO()
    bar = ProgressBar(total=40, initial=0, enabled=True, file=out)
    for _ in range(20):
        bar.update()
    bar.set_loss(2.5)
    bar.on_check(_check(20, 0.125))
    assert "ndcg@20=0.1250" in bar.bar.postfix and "loss=2.5000" in bar.bar.postfix
    bar.on_check(_check(40, 0.25))
    bar.close()
    assert "ndcg@20=0.2500" in out.getvalue().splitlines()[-1] or "ndcg@20=0.2500" in out.getvalue()[-200:]


def test_a_stop_before_the_first_check_does_not_claim_a_kept_checkpoint(data_dir, tmp_path, monkeypatch):  # noqa: F811
    import pytest

    from bamrec.training import objective as objective_module
    from bamrec.training.trainer import TrainingError

    original_forward = objective_module.Objective.forward

    def poisoned(self, *args, **kwargs):
        out = original_forward(self, *args, **kwargs)
        return out._replace(loss=out.loss * float("nan"))

    monkeypatch.setattr(objective_module.Objective, "forward", poisoned)
    with pytest.raises(TrainingError, match="before the first validation check"):
        bamrec.train(config(data_dir, eval_every=100, max_iters=200), tmp_path / "run", verbose=False)
    log = (tmp_path / "run" / ckpt.LOG_FILE).read_text()
    assert "loss became nan at iteration 1:" in log  # the first step is read (divergence reference)
    assert "(iteration 0)" not in log and "no checkpoint yet" in log


def test_a_diverging_loss_is_warned_about_once(data_dir, tmp_path, capsys):  # noqa: F811
    """--lr 1000: the loss stays finite but grows to millions; say so (once), and train on."""
    result = bamrec.train(config(data_dir, lr=1000.0, max_iters=200, eval_every=50), tmp_path / "hot", verbose=True)
    log = (result.run_dir / ckpt.LOG_FILE).read_text()
    warnings = re.findall(r"warning: the training loss grew from ([0-9.e+]+) at iteration 1 to ([0-9.e+]+) at "
                          r"iteration (\d+) \(more than 100x its start\): training is diverging; lower --lr "
                          r"\(now 1000\)", log)
    assert len(warnings) == 1, log
    start, end, _ = warnings[0]
    assert float(end) > 100 * float(start)
    assert "training is diverging" in capsys.readouterr().err
    assert result.stopped == "max_iters"
    calm = bamrec.train(config(data_dir, max_iters=200, eval_every=50), tmp_path / "calm", verbose=False)
    assert "diverging" not in (calm.run_dir / ckpt.LOG_FILE).read_text()


def test_divergence_watch_measures_from_the_first_read_out():
    from bamrec.training.divergence import DivergenceWatch

    watch = DivergenceWatch(lr=0.5)
    assert watch.needs_reference and watch.observe(1, 6.9) is None and not watch.needs_reference
    assert watch.observe(50, 690.0) is None  # exactly 100x: not yet
    assert "grew from 6.9 at iteration 1 to 691 at iteration 100" in watch.observe(100, 691.0)
    assert watch.observe(150, 1e9) is None  # once
    small = DivergenceWatch(lr=0.5)
    small.observe(1, 0.01)
    assert small.observe(50, 2.0) is None and small.observe(100, 101.0) is not None  # reference floored at 1
