"""Atomic writes (bamrec.files): a failure leaves the old file and no temporary; a full disk is one line.

The real full disk (a tmpfs) is in tests/cli/test_disk_full.py; here the failures are raised inside
the write, which is where a library meets ENOSPC.
"""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from bamrec import files
from bamrec.files import DiskFullError


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    files.write_text(path, '{"good": 1}\n')
    with pytest.raises(RuntimeError, match="serialiser broke"):
        with files.atomic_write(path) as handle:
            handle.write(b'{"half": ')
            raise RuntimeError("serialiser broke")  # plenty of free space: not taken for a full disk
    assert json.loads(path.read_text()) == {"good": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_enospc_inside_a_library_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "last.ckpt"
    files.write_bytes(path, b"old")

    class FullDisk:
        """The real file, except that its writes fail as on a full disk."""

        def __init__(self, real):
            self.real = real

        def write(self, data):
            self.real.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError) as caught:
        with files.atomic_write(path) as handle:
            handle.raw = FullDisk(handle.raw)
            try:
                handle.write(b"y" * 1000)
            except OSError:  # what torch makes of it: no errno left
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from None
    assert str(caught.value) == (f"cannot write {path}: no space left on device; free some space (or write "
                                 "elsewhere) and run the command again")
    assert caught.value.exit_code == 74
    assert path.read_bytes() == b"old" and not files.temporary_of(path).exists()


def test_library_writers_go_through_the_handle(tmp_path):
    """torch.save, np.save and np.savez write through the handle (so its write sees their errors)."""
    seen = []
    original = files._Handle.write

    def counting(self, data):
        seen.append(len(data))
        return original(self, data)

    files._Handle.write = counting
    try:
        with files.atomic_write(tmp_path / "a.pt") as handle:
            torch.save({"w": torch.arange(4)}, handle)
        with files.atomic_write(tmp_path / "b.npy") as handle:
            np.save(handle, np.arange(5))
        with files.atomic_write(tmp_path / "c.npz") as handle:
            np.savez_compressed(handle, x=np.arange(3))
    finally:
        files._Handle.write = original
    assert seen and torch.load(tmp_path / "a.pt")["w"].tolist() == [0, 1, 2, 3]
    assert np.load(tmp_path / "b.npy").tolist() == [0, 1, 2, 3, 4] and np.load(tmp_path / "c.npz")["x"].tolist() == [0, 1, 2]


def test_append_line_is_whole_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    files.append_line(path, '{"iter": 1}')
    files.append_line(path, '{"iter": 2}')
    assert path.read_text() == '{"iter": 1}\n{"iter": 2}\n'


def test_recommend_all_users_interrupted_leaves_the_old_file(tiny_run, tmp_path, monkeypatch):
    """`recommend --all-users --out F` stopped half way (a full disk, Ctrl-C) used to leave F.tmp."""
    from bamrec.api import load_run
    from bamrec.retrieval.batch import write_all_users

    candidates = load_run(tiny_run).candidates()
    out = tmp_path / "recs.parquet"
    write_all_users(candidates, out, 5, user_batch_size=8)
    before = out.read_bytes()
    calls = {"n": 0}
    search = type(candidates).search_users

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return search(self, *args, **kwargs)

    monkeypatch.setattr(type(candidates), "search_users", failing)
    with pytest.raises(KeyboardInterrupt):
        write_all_users(candidates, out, 5, user_batch_size=8, overwrite=True)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recs.parquet"]
