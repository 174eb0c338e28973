"""Write locks on directories (bamrec.locks): one writer at a time, refused with its PID; a lock dies
with its process, kill -9 included; readers see a live writer without blocking it."""

from __future__ import annotations

import os
import signal

import pytest

from bamrec import locks
from bamrec.locks import DirectoryBusyError
from locking import held_by_another_process


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    run = tmp_path / "run"
    with held_by_another_process(run, "bamrec train") as holder:
        with pytest.raises(DirectoryBusyError) as caught:
            with locks.write_lock(run, "bamrec train --overwrite"):
                pytest.fail("a second writer got the lock")
        assert str(caught.value) == (f"{run} is being written by process {holder.pid} (bamrec train); wait for "
                                     "it to finish or choose another --out")
        assert caught.value.exit_code == 75  # EX_TEMPFAIL: the same command works later
        with pytest.raises(DirectoryBusyError, match="choose another --runs-dir"):
            with locks.write_lock(run, "bamrec experiment", flag="--runs-dir"):
                pass
    with locks.write_lock(run, "bamrec train"):  # released when the holder ends
        assert locks.writer_of(run) is None  # this process is the writer: not "someone else"
    assert not (run / locks.LOCK_FILE).exists()


def test_a_lock_dies_with_its_process_even_on_kill_9(tmp_path):
    run = tmp_path / "run"
    with held_by_another_process(run) as holder:
        os.kill(holder.pid, signal.SIGKILL)  # no handler, no clean-up: the lock file stays
        holder.wait(timeout=30)
        assert (run / locks.LOCK_FILE).is_file()
        assert locks.writer_of(run) is None  # but no one holds it: the kernel dropped the flock
        with locks.write_lock(run, "bamrec train --resume"):
            assert str(os.getpid()) in (run / locks.LOCK_FILE).read_text()


def test_readers_see_a_live_writer_and_do_not_block_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert locks.writer_of(run) is None and locks.being_written_warning(run) is None
    with held_by_another_process(run, "bamrec train") as holder:
        for _ in range(20):  # a reader's probe never makes the writer's lock fail
            found = locks.writer_of(run)
            assert found is not None and found.pid == holder.pid and found.command == "bamrec train"
        assert locks.being_written_warning(run) == (
            f"{run} is being written by process {holder.pid} (bamrec train); reading its last complete files "
            "(they change while it runs)")
    assert locks.writer_of(run) is None


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    run = tmp_path / "run"
    with locks.write_lock(run, "bamrec experiment cell a"):
        with locks.write_lock(run, "bamrec train"):  # the trainer inside a cell takes it again
            pass
        assert "bamrec experiment cell a" in (run / locks.LOCK_FILE).read_text()  # still the outer holder's
    assert not (run / locks.LOCK_FILE).exists()


def test_a_directory_the_lock_made_goes_when_nothing_was_written(tmp_path):
    with pytest.raises(RuntimeError):
        with locks.write_lock(tmp_path / "new", "bamrec train"):
            raise RuntimeError("the dataset was missing")
    assert not (tmp_path / "new").exists()
    with locks.write_lock(tmp_path / "kept", "bamrec train"):
        (tmp_path / "kept" / "config.json").write_text("{}")
        assert locks.contents(tmp_path / "kept") == [tmp_path / "kept" / "config.json"]  # the lock is not content
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["config.json"]
