"""Two processes, one directory (issue 19): while a process writes a run, dataset, export or experiment
directory, a second writer is refused with one line naming it, before it changes anything; readers
(evaluate, recommend, export, serve) say that what they read is being written, and still work."""

from __future__ import annotations

import shutil

import pytest

from bamrec.cli import main
from bamrec.locks import LOCK_FILE
from locking import held_by_another_process

FLAGS = ["--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
         "--num-negatives", "10", "--eval-every", "20", "--max-iters", "20", "--no-progress", "--threads", "1"]
BUSY = 75  # EX_TEMPFAIL


def snapshot(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def refused(capsys, pid, flag="--out"):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"is being written by process {pid} (" in err and f"choose another {flag}" in err, err
    return err


@pytest.fixture
def run(tiny_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(tiny_run, path)
    return path


@pytest.mark.parametrize("extra", [["--overwrite"], ["--resume"], []], ids=["overwrite", "resume", "plain"])
def test_a_second_train_into_a_run_being_written_is_refused_before_it_deletes(capsys, data_dir, run, extra):
    before = snapshot(run)
    with held_by_another_process(run, "bamrec train") as holder:
        assert main(["train", "--data", str(data_dir), "--out", str(run), *FLAGS, *extra]) == BUSY
        err = refused(capsys, holder.pid)
        assert f"bamrec: error: {run} is being written by process {holder.pid} (bamrec train)" in err
    assert snapshot(run) == before  # --overwrite removed nothing


def test_a_second_train_logging_to_the_same_tensorboard_directory_is_refused(capsys, data_dir, tmp_path):
    board = tmp_path / "board"
    board.mkdir()
    (board / "events.out.tfevents.1.host").write_bytes(b"the first training's curves")
    with held_by_another_process(board, "bamrec train") as holder:
        assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), *FLAGS,
                     "--tensorboard", str(board)]) == BUSY
        refused(capsys, holder.pid, "--tensorboard")
    assert (board / "events.out.tfevents.1.host").read_bytes() == b"the first training's curves"  # not cleared


def test_readers_warn_about_a_run_being_written_and_still_work(capsys, run, tmp_path):
    with held_by_another_process(run, "bamrec train") as holder:
        for argv in (["evaluate", str(run)], ["recommend", str(run), "--items", "1", "2", "-k", "3"],
                     ["export", str(run), "--out", str(tmp_path / "export")]):
            assert main([*argv, "--threads", "1"]) == 0, argv
            err = capsys.readouterr().err
            assert (f"bamrec: warning: {run} is being written by process {holder.pid} (bamrec train); reading "
                    "its last complete files") in err, argv
    assert main(["evaluate", str(tmp_path / "export"), "--threads", "1"]) == 0, capsys.readouterr().err
    assert "warning" not in capsys.readouterr().err  # no writer, no warning


def test_serve_warns_about_a_run_being_written(capsys, run, monkeypatch):
    from bamrec.serve import app

    served = []
    monkeypatch.setattr(app, "serve", lambda application, sock, log_level=None: served.append(sock.close()))
    with held_by_another_process(run, "bamrec train") as holder:
        assert main(["serve", str(run), "--port", "0", "--threads", "1"]) == 0 and served
    assert f"{run} is being written by process {holder.pid} (bamrec train)" in capsys.readouterr().err


def test_a_second_export_into_an_export_being_written_is_refused(capsys, run, tmp_path):
    export = tmp_path / "export"
    assert main(["export", str(run), "--out", str(export), "--threads", "1"]) == 0
    capsys.readouterr()
    before = snapshot(export)
    with held_by_another_process(export, "bamrec export") as holder:
        assert main(["export", str(run), "--out", str(export), "--overwrite", "--threads", "1"]) == BUSY
        refused(capsys, holder.pid)
    assert snapshot(export) == before


def test_a_second_prepare_into_a_dataset_being_written_is_refused(capsys, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user,item,time\n" + "".join(f"{u},{i},{t}\n" for u in range(1, 6) for t, i in enumerate(range(1, 7))))
    out = tmp_path / "data"
    prepare = ["data", "prepare", str(log), "--user-col", "user", "--item-col", "item", "--time-col", "time",
               "--out", str(out)]
    assert main(prepare) == 0
    capsys.readouterr()
    before = snapshot(out)
    with held_by_another_process(out, "bamrec data prepare") as holder:
        assert main([*prepare, "--overwrite"]) == BUSY
        refused(capsys, holder.pid)
    assert snapshot(out) == before
    with held_by_another_process(tmp_path / "new", "bamrec data prepare") as holder:
        assert main([*prepare[:-1], str(tmp_path / "new")]) == BUSY  # an empty --out being written, too
        refused(capsys, holder.pid)


def _experiment_file(tmp_path, data_dir):
    file = tmp_path / "tiny.toml"
    file.write_text(f'name = "tiny"\n[grid]\ndata = ["{data_dir}"]\nmodel = ["comirec-sa"]\nselection = ["hard"]\n'
                    "seed = [1]\n[fixed]\nseq_len = 8\nhidden_size = 8\nnum_interests = 2\nbatch_size = 16\n"
                    "num_negatives = 10\neval_every = 20\nmax_iters = 20\n")
    return file


@pytest.mark.parametrize("held, flag", [("out", "--out"), ("runs", "--runs-dir")])
def test_a_second_experiment_on_the_same_directories_is_refused(capsys, data_dir, tmp_path, held, flag):
    file = _experiment_file(tmp_path, data_dir)
    out, runs = tmp_path / "exp", tmp_path / "runs"
    with held_by_another_process(out if held == "out" else runs / "tiny", "bamrec experiment") as holder:
        assert main(["experiment", str(file), "--out", str(out), "--runs-dir", str(runs), "--threads", "1"]) == BUSY
        refused(capsys, holder.pid, flag)
    assert not list(out.glob("cells/*")) and not list(runs.glob("tiny/*"))  # no cell was started


def test_an_experiment_cell_never_trains_into_a_run_being_written(data_dir, tmp_path, run):
    from bamrec.experiments.cell import run_cell
    from bamrec.locks import DirectoryBusyError

    before = snapshot(run)
    job = {"experiment": "tiny", "cell": "c1", "axes": {}, "config_key": "k", "run_dir": str(run),
           "cells_dir": str(tmp_path / "cells"), "threads": 1, "device": None,
           "options": {"data": str(data_dir), "seq_len": 8, "hidden_size": 16, "num_interests": 2,
                       "eval_every": 20, "max_iters": 20}}  # another config: the cell would --overwrite
    with held_by_another_process(run, "bamrec train") as holder:
        with pytest.raises(DirectoryBusyError, match=f"process {holder.pid} \\(bamrec train\\).*--runs-dir"):
            run_cell(job)
    assert snapshot(run) == before
