"""A cell whose training was interrupted by a signal (summary ``stopped: "interrupted (SIGTERM)"``) is resumed,
not taken as finished."""

from __future__ import annotations

from bamrec.api import train
from bamrec.config import run_config_from_flat
from bamrec.experiments.cell import _finished_training
from bamrec.rundir import layout as ckpt


def test_signal_interrupted_training_is_not_finished(tmp_path, data_dir):
    options = {"data": str(data_dir), "seq_len": 8, "hidden_size": 8, "num_interests": 2, "batch_size": 16,
               "num_negatives": 10, "eval_every": 20, "max_iters": 20, "progress": False}
    run_dir = tmp_path / "run"
    train(options, run_dir, verbose=False)
    config = run_config_from_flat(options)
    assert _finished_training(run_dir, config)
    for stopped in ("interrupted (SIGTERM)", "interrupted (SIGINT)", "interrupted"):
        ckpt.write_json(run_dir / ckpt.SUMMARY_FILE, dict(ckpt.read_json(run_dir / ckpt.SUMMARY_FILE), stopped=stopped))
        assert not _finished_training(run_dir, config), stopped
