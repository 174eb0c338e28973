"""Ctrl-C / SIGTERM during `bamrec train`: the run is finished with its best checkpoint, but the command
exits 130 / 143 and says so, so `bamrec train ... && next-step` does not carry on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bamrec.rundir import layout as ckpt

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_run_and_exits_non_zero(data_dir, tmp_path, signum, code):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bamrec.cli", "train", "--data", str(data_dir), "--out", str(run), "--seq-len", "8",
         "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16", "--num-negatives", "10",
         "--eval-every", "20", "--max-iters", "1000000", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not ckpt.read_jsonl(run / ckpt.METRICS_FILE) if (run / ckpt.METRICS_FILE).is_file() else True:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no validation check within 120 s"
            time.sleep(0.05)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    name = signal.Signals(signum).name
    assert process.returncode == code, stderr
    summary = json.loads((run / ckpt.SUMMARY_FILE).read_text())
    assert summary["stopped"] == f"interrupted ({name})"
    assert summary["best_iter"] >= 20 and summary["test"]["users"] == 40
    assert f"interrupted ({name})" in stdout
    assert f"training was interrupted ({name})" in stderr and "Traceback" not in stderr
    assert f"interrupted by {name}" in (run / ckpt.LOG_FILE).read_text()


def test_a_signal_inside_a_checks_writes_waits_for_them():
    from bamrec.training.interrupts import Interrupts

    interrupts = Interrupts()
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.critical():
            interrupts.handle(signal.SIGTERM, None)  # what the installed handler does on a real SIGTERM
            done.append("weights")
            done.append("resume state")
    assert done == ["weights", "resume state"] and interrupts.name == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):
        Interrupts().handle(signal.SIGINT, None)  # outside a critical section: at once


def test_a_signal_before_the_first_check_exits_143_with_one_line(data_dir, tmp_path, monkeypatch, capsys):
    from bamrec.cli import main
    from bamrec.training import objective as objective_module

    original_forward = objective_module.Objective.forward
    calls = {"n": 0}

    def terminated(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_forward(self, *args, **kwargs)

    monkeypatch.setattr(objective_module.Objective, "forward", terminated)
    before = signal.getsignal(signal.SIGTERM)
    code = main(["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--seq-len", "8", "--hidden-size",
                 "8", "--num-interests", "2", "--batch-size", "16", "--num-negatives", "10", "--eval-every", "20",
                 "--max-iters", "100", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 143
    assert err[-1].startswith("bamrec: error: training was interrupted (SIGTERM) at iteration 5, before the first")
    assert not any("Traceback" in line for line in err)
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_a_signal_while_the_best_weights_are_saved_keeps_files_and_summary_in_agreement(data_dir, tmp_path,
                                                                                        monkeypatch):
    import bamrec
    from bamrec.api import load_run
    from bamrec.config import run_config_from_flat

    original_save = ckpt.save_weights
    calls = {"n": 0}

    def save_weights(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second improved check: the summary must then describe these weights
            os.kill(os.getpid(), signal.SIGTERM)
        return original_save(*args, **kwargs)

    monkeypatch.setattr(ckpt, "save_weights", save_weights)
    config = run_config_from_flat({"data": str(data_dir), "seq_len": 8, "hidden_size": 8, "num_interests": 2,
                                   "batch_size": 16, "num_negatives": 10, "eval_every": 10, "max_iters": 400,
                                   "patience": 100, "progress": False})
    result = bamrec.train(config, tmp_path / "run", verbose=False)
    assert calls["n"] == 2 and result.stopped == "interrupted (SIGTERM)"
    valid = load_run(result.run_dir).evaluate(split="valid", cutoffs=(10, 20, 50))
    # Bit-equal on purpose: the same weights, users and batch sizes in the same process as the check.
    assert valid["recall@10"] == result.best_valid["recall@10"] and valid["mrr@50"] == result.best_valid["mrr@50"]
