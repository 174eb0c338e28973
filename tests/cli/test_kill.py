"""kill -9 (issue 19): a training killed by SIGKILL, which runs no handler, resumes with --resume from its
last checkpoint and ends as the same run never killed would (the resume promise: every stream restored,
same shapes, one thread, one machine). Also a kill inside a checkpoint write (before or after its
rename, held there by the test hook of bamrec.files): the previous checkpoint is intact, the stale
``.tmp`` is never read and is removed, and the lock the killed process held blocks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bamrec import files, locks
from bamrec.cli import main
from bamrec.rundir import layout as ckpt
from bamrec.rundir import resume as resume_state
from locking import env

FLAGS = ["--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
         "--num-negatives", "10", "--eval-every", "20", "--max-iters", "80", "--no-progress", "--threads", "1"]


def train_argv(data_dir, out, *extra):
    return ["train", "--data", str(data_dir), "--out", str(out), *FLAGS, *extra]


def start(data_dir, out, tmp_path, stall=None):
    """`bamrec train` in a child process (stderr to a file); ``stall``: bamrec.files' test hook."""
    extra = {files.STALL_ENV: stall} if stall else {}
    err = open(tmp_path / "child.err", "w")
    process = subprocess.Popen([sys.executable, "-m", "bamrec.cli", *train_argv(data_dir, out)],
                               stdout=subprocess.DEVNULL, stderr=err, env={**env(), **extra})
    err.close()
    return process


def wait_for(process, tmp_path, ready, what):
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, (tmp_path / "child.err").read_text()
        assert time.monotonic() < deadline, f"no {what} within 120 s"
        time.sleep(0.005)


def sigkill(process):
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def checks(run):
    return [(line["iter"], line["loss"], line["valid"], line["selection_shares"])
            for line in ckpt.read_jsonl(run / ckpt.METRICS_FILE)]


@pytest.fixture(scope="module")
def straight(tiny_data, tmp_path_factory):
    """The run never killed."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert main(train_argv(tiny_data, run)) == 0
    return run


def resumes_as_if_never_killed(data_dir, run, straight):
    assert locks.writer_of(run) is None  # the kernel dropped the dead process's lock
    assert main(train_argv(data_dir, run, "--resume")) == 0
    # Bit-equal on purpose: the resume promise (restored streams, same shapes, one thread, one machine).
    assert checks(run) == checks(straight)
    assert ckpt.read_json(run / ckpt.SUMMARY_FILE)["test"] == ckpt.read_json(straight / ckpt.SUMMARY_FILE)["test"]
    assert not [p.name for p in run.iterdir() if p.name.endswith(files.TMP_SUFFIX) or p.name == locks.LOCK_FILE]


def test_a_run_killed_by_sigkill_resumes_as_if_never_killed(tiny_data, tmp_path, straight):
    run = tmp_path / "run"
    process = start(tiny_data, run, tmp_path)
    try:
        wait_for(process, tmp_path, lambda: (run / ckpt.RESUME_FILE).is_file(), "checkpoint")
        sigkill(process)  # wherever it is: a step, a check, a write
    finally:
        if process.poll() is None:
            process.kill()
    assert not (run / ckpt.SUMMARY_FILE).exists(), "the run finished before the kill: nothing was tested"
    resumes_as_if_never_killed(tiny_data, run, straight)


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_kill_inside_a_checkpoint_write_keeps_a_resumable_run(tiny_data, tmp_path, straight, moment, capsys):
    """Killed at the second check's resume state, before its rename (the new state only in ``last.ckpt.tmp``)
    or after it (the metrics line and the state both written)."""
    run = tmp_path / "run"
    process = start(tiny_data, run, tmp_path, stall=f"{ckpt.RESUME_FILE}:2:{moment}")
    try:
        wait_for(process, tmp_path, lambda: "stalled" in (tmp_path / "child.err").read_text(), "stall")
        # A live writer: a second one is refused (naming it), a reader warns and reads the last complete files.
        assert main(train_argv(tiny_data, run, "--overwrite")) == 75
        assert f"being written by process {process.pid} (bamrec train)" in capsys.readouterr().err
        assert main(["evaluate", str(run), "--threads", "1"]) == 0
        assert f"being written by process {process.pid}" in capsys.readouterr().err
        sigkill(process)
    finally:
        if process.poll() is None:
            process.kill()
    tmp = files.temporary_of(run / ckpt.RESUME_FILE)
    assert resume_state.load(run).iteration == (20 if moment == "before" else 40)  # intact, loadable
    assert tmp.is_file() == (moment == "before")  # the new state the kill stopped short of renaming
    if moment == "before":
        tmp.write_bytes(b"damaged")  # never read: a resume that did would fail here
    resumes_as_if_never_killed(tiny_data, run, straight)
