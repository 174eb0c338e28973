"""Writing files so that a full disk, a crash or a kill leaves either the old file or the new one.

- :func:`atomic_write` gives a handle on ``NAME.tmp`` beside the target; when the block ends the data
  is flushed to disk and ``os.replace`` puts it in place (atomic on POSIX). Any failure, Ctrl-C
  included, removes the temporary file, so the previous version stays as it was.
- :func:`append_line` appends one line, or on failure cuts the file back to where it was: a
  ``metrics.jsonl`` never ends in half a record.
- A write that fails because the disk (or quota) is full becomes :class:`DiskFullError`, one line
  naming the file. Libraries report it in their own words (torch: ``unexpected pos 576 vs 534``,
  numpy: ``200000 requested and 32752 written``), so the handle records the ``OSError`` its own
  ``write`` saw, and an error without one counts as "disk full" when the file system has (almost)
  no free space left at that moment.

``kill -9`` runs no handler: it can leave a ``NAME.tmp``, never a damaged ``NAME``; nothing reads a
``NAME.tmp``. Writers that hold the directory's lock (``bamrec.locks``) remove such leftovers with
:func:`remove_stale_temporaries` (``--resume`` does).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bamrec.errors import BamrecError

TMP_SUFFIX = ".tmp"
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_WORDS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122", "StorageFull")
_NEARLY_FULL = 1 << 20  # bytes: below this, a write error without an errno is taken for a full disk
# Tests only (tests/cli/test_kill.py): "NAME:COUNT:before" or "NAME:COUNT:after" stalls the process for
# good at the COUNT-th atomic write of a file called NAME, before or after its rename, so that a
# SIGKILL lands exactly there. Unset, it costs one dictionary look-up per file written.
STALL_ENV = "BAMREC_TEST_STALL_WRITE"
_stall_counts: dict[str, int] = {}


class DiskFullError(BamrecError):
    """A file could not be written because its file system is full; nothing half-written was left."""

    exit_code = 74  # EX_IOERR (sysexits.h): not a user mistake (2), the machine ran out of room


class _Handle:
    """A binary file that remembers the OSError its ``write`` raised (libraries hide its errno)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.raw.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:  # flush, tell, seek, fileno, ... of the real file
        return getattr(self.raw, name)


def temporary_of(path: Path) -> Path:
    return path.with_name(path.name + TMP_SUFFIX)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Any]:
    """A binary file handle whose content replaces ``path`` when the block ends without an error."""
    path = Path(path)
    tmp = temporary_of(path)
    handle: _Handle | None = None
    try:
        with open(tmp, "wb") as raw:
            handle = _Handle(raw)
            yield handle
            raw.flush()
            os.fsync(raw.fileno())  # on disk before it replaces the old file: a power cut keeps one of them
        _test_stall(path, "before")
        os.replace(tmp, path)
    except BaseException as exc:
        full = is_disk_full(exc, tmp, handle.error if handle is not None else None)
        tmp.unlink(missing_ok=True)
        if full:
            raise disk_full(path) from None
        raise
    _sync_directory(path.parent)
    _test_stall(path, "after")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` and a newline to ``path``; on failure the file is cut back to its old length."""
    path = Path(path)
    with open(path, "ab") as raw:
        start = raw.tell()
        try:
            raw.write(line.encode("utf-8") + b"\n")
            raw.flush()
        except BaseException as exc:
            try:
                raw.truncate(start)
            except OSError:
                pass
            if is_disk_full(exc, path, exc if isinstance(exc, OSError) else None):
                raise disk_full(path) from None
            raise


@contextmanager
def disk_full_as_one_line(path: str | Path) -> Iterator[None]:
    """Turn a full-disk failure of a block writing ``path`` by itself (a library that takes a file
    name) into :class:`DiskFullError`; the block cleans up its own files."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc, Path(path), exc if isinstance(exc, OSError) else None):
            raise disk_full(Path(path)) from None
        raise


def is_disk_full(exc: BaseException, path: Path, seen: OSError | None) -> bool:
    """Whether ``exc`` (raised while writing ``path``) means the file system is full."""
    for error in (seen, exc):
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return True
    if not isinstance(exc, Exception) or isinstance(exc, BamrecError):
        return False  # Ctrl-C, SystemExit, or our own message
    if any(word in str(exc) for word in _FULL_WORDS):
        return True
    return free_bytes(path.parent) < _NEARLY_FULL


def free_bytes(directory: Path) -> int:
    try:
        stats = os.statvfs(directory)
    except OSError:
        return 1 << 62
    return stats.f_bavail * stats.f_frsize


def disk_full(path: Path) -> DiskFullError:
    return DiskFullError(f"cannot write {path}: no space left on device; free some space (or write elsewhere) "
                         "and run the command again")


def remove_stale_temporaries(directory: str | Path, names: Any) -> list[Path]:
    """Remove ``NAME.tmp`` of each of ``names`` in ``directory`` (left by a killed writer); the caller
    must hold the directory's lock, so no live writer owns them. Returns what was removed."""
    removed = []
    for name in names:
        tmp = Path(directory) / (name + TMP_SUFFIX)
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp)
    return removed


def _test_stall(path: Path, moment: str) -> None:
    spec = os.environ.get(STALL_ENV)
    if not spec:
        return
    name, count, when = spec.split(":")
    if path.name != name:
        return
    if moment == "before":
        _stall_counts[name] = _stall_counts.get(name, 0) + 1
    if when == moment and _stall_counts.get(name) == int(count):
        print(f"{STALL_ENV}: stalled {moment} renaming {path}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


def _sync_directory(directory: Path) -> None:
    """Flush the rename itself to disk (best effort: some file systems refuse a directory fsync)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
