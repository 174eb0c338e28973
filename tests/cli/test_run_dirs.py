"""Run directories carry a marker: `--resume` needs a resumable run, `--overwrite` touches only bamrec runs
and removes only what bamrec wrote; without either flag a non-empty directory is refused."""

from __future__ import annotations

import json

import pytest

from bamrec.cli import main
from bamrec.rundir import layout as ckpt

FLAGS = ["--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
         "--num-negatives", "10", "--eval-every", "20", "--max-iters", "20", "--no-progress"]


def train(data_dir, out, *extra):
    return main(["train", "--data", str(data_dir), "--out", str(out), *FLAGS, *extra])


def snapshot(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def user_dir(tmp_path):
    path = tmp_path / "mine"
    path.mkdir()
    (path / "notes.txt").write_text("my notes\n")
    (path / "config.json").write_text('{"mine": true}\n')  # a file name bamrec also uses
    (path / "train.log").write_text("my log\n")
    return path


def test_a_new_run_carries_the_marker(data_dir, tmp_path):
    assert train(data_dir, tmp_path / "run") == 0
    marker = json.loads((tmp_path / "run" / ckpt.MARKER_FILE).read_text())
    assert marker["format"] == ckpt.RUN_FORMAT


def test_existing_empty_directory_is_fine_non_empty_is_refused(data_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train(data_dir, tmp_path / "empty") == 0
    capsys.readouterr()
    mine = user_dir(tmp_path)
    before = snapshot(mine)
    assert train(data_dir, mine) == 2
    one_line_error(capsys, "already exists", "--overwrite")
    assert snapshot(mine) == before


def test_resume_needs_a_resumable_run(data_dir, tmp_path, capsys):
    assert train(data_dir, tmp_path / "missing", "--resume") == 2
    one_line_error(capsys, "cannot resume", "does not exist")
    assert not (tmp_path / "missing").exists()

    mine = user_dir(tmp_path)
    before = snapshot(mine)
    assert train(data_dir, mine, "--resume") == 2
    one_line_error(capsys, "cannot resume", "not a bamrec run")
    assert snapshot(mine) == before

    run = tmp_path / "run"
    assert train(data_dir, run) == 0
    (run / ckpt.RESUME_FILE).unlink()  # e.g. a run stopped before its first check, or imported
    capsys.readouterr()
    before = snapshot(run)
    assert train(data_dir, run, "--resume") == 2
    one_line_error(capsys, "cannot resume", ckpt.RESUME_FILE, "--overwrite")
    assert snapshot(run) == before


def test_resume_and_overwrite_exclude_each_other(data_dir, tmp_path, capsys):
    assert train(data_dir, tmp_path / "run", "--resume", "--overwrite") == 2
    one_line_error(capsys, "--resume", "--overwrite")


def test_overwrite_refuses_a_directory_that_is_not_a_bamrec_run(data_dir, tmp_path, capsys):
    mine = user_dir(tmp_path)
    before = snapshot(mine)
    assert train(data_dir, mine, "--overwrite") == 2
    one_line_error(capsys, "not a bamrec run")
    assert snapshot(mine) == before


def test_overwrite_removes_only_what_bamrec_wrote(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(data_dir, run) == 0
    (run / "notes.txt").write_text("kept\n")
    (run / "plots").mkdir()
    (run / "plots" / "mine.png").write_bytes(b"png")
    old_metrics = (run / ckpt.METRICS_FILE).read_text()
    assert train(data_dir, run, "--overwrite", "--max-iters", "40") == 0
    assert (run / "notes.txt").read_text() == "kept\n" and (run / "plots" / "mine.png").read_bytes() == b"png"
    assert (run / ckpt.METRICS_FILE).read_text() != old_metrics  # a fresh run, not appended to the old one
    assert [r["iter"] for r in ckpt.read_jsonl(run / ckpt.METRICS_FILE)] == [20, 40]


def test_overwrite_accepts_a_run_written_before_the_marker(data_dir, tmp_path):
    run = tmp_path / "run"
    assert train(data_dir, run) == 0
    (run / ckpt.MARKER_FILE).unlink()  # config.json with the run format still says it is a bamrec run
    assert train(data_dir, run, "--overwrite") == 0
    assert (run / ckpt.MARKER_FILE).is_file()
