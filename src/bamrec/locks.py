"""Advisory locks on the directories bamrec writes: one writer per run, dataset or export directory.

A writer (``bamrec train``, ``--resume``, ``--overwrite``, an experiment and its cells, ``data prepare``,
``export``, ...) holds ``DIR/.lock`` with :func:`write_lock`: an ``flock`` on that file, which records
the writer's PID and command. A second writer is refused with :class:`DirectoryBusyError` before it
changes anything (``--overwrite`` deletes nothing). The kernel drops an ``flock`` when its process
dies, ``kill -9`` included, so a crash never leaves a stale lock: at worst a ``.lock`` file that the
next writer takes over (the PID in it is only read while the lock is held).

Readers (``evaluate``, ``recommend``, ``export`` of a run, ``serve``) never block: :func:`writer_of`
tells them whether a live process writes the directory, and they say so in one line; every file a
writer replaces is replaced atomically (``bamrec.files``), so they read the last complete version.

The lock is re-entrant inside one process (an experiment cell holds its run directory and calls the
trainer, which takes it again) and held only by rank 0 of a DDP run, the one process that writes.
A clean release removes ``.lock`` (and the directory, when the lock created it and nothing else was
written). Where ``fcntl`` is missing (Windows), or the file system has no ``flock`` (some network
mounts), nothing is locked. On a full disk the lock holds without its record (``another process``).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bamrec import files
from bamrec.errors import BamrecError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, no locking
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
# A reader's probe holds a shared lock for microseconds; a writer retries this long before it says busy.
_RETRY_S = 0.3
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}  # network file systems without locks


class DirectoryBusyError(BamrecError):
    """Another live process writes the directory; nothing was changed."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h): the same command works once the other writer is done


@dataclass(frozen=True)
class Holder:
    """Who holds a directory's lock, as the lock file says."""

    pid: int | None
    command: str
    host: str | None = None

    def describe(self) -> str:
        """``process 1234 (bamrec train)``; ``on HOST`` when it runs elsewhere (a shared file system)."""
        who = f"process {self.pid}" if self.pid is not None else "another process"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"{who}{where} ({self.command})" if self.command else who + where


@dataclass
class _Held:
    fd: int
    depth: int
    created: bool


_held: dict[str, _Held] = {}
_registry = threading.Lock()


def lock_file(directory: str | Path) -> Path:
    return Path(directory) / LOCK_FILE


def contents(directory: str | Path) -> list[Path]:
    """The entries of ``directory`` other than its lock file (what "empty" means to a writer)."""
    return [child for child in Path(directory).iterdir() if child.name != LOCK_FILE]


@contextmanager
def write_lock(directory: str | Path, command: str, flag: str = "--out") -> Iterator[Path]:
    """Hold ``directory``'s write lock for the block (creating the directory if needed).

    ``command`` is what a refused second writer is told (``bamrec train``); ``flag`` is the option
    that named the directory, for the refusal's advice. Raises :class:`DirectoryBusyError` when
    another live process holds it.
    """
    path = Path(directory)
    key = str(path.resolve())
    with _registry:
        held = _held.get(key)
        if held is not None:
            held.depth += 1
    if held is not None or fcntl is None:
        try:
            yield path
        finally:
            if held is not None:
                with _registry:
                    held.depth -= 1
        return
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BamrecError(f"{path} exists and is not a directory") from None
    except OSError as exc:
        raise BamrecError(f"cannot create {path}: {exc.strerror}") from None
    fd = _acquire(path, command, flag)
    if fd is None:  # a file system without flock (some network mounts): nothing to hold
        yield path
        return
    with _registry:
        _held[key] = _Held(fd, 1, created)
    try:
        yield path
    finally:
        with _registry:
            del _held[key]
        _release(path, fd, created)


def _acquire(path: Path, command: str, flag: str) -> int | None:
    """Open and ``flock`` ``path/.lock``; returns its descriptor with this process's record written,
    or None where the file system has no ``flock``."""
    file = lock_file(path)
    deadline = time.monotonic() + _RETRY_S
    while True:
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise files.disk_full(file) from None
            raise BamrecError(f"cannot write {path}: {exc.strerror} (creating its lock file {file.name})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if not isinstance(exc, BlockingIOError):
                os.close(fd)
                if exc.errno in _NO_FLOCK:
                    file.unlink(missing_ok=True)
                    return None
                raise BamrecError(f"cannot lock {file}: {exc.strerror}") from None
            holder = _read_holder(fd)
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            raise DirectoryBusyError(f"{path} is being written by {holder.describe()}; wait for it to finish "
                                     f"or choose another {flag}") from None
        if _same_file(fd, file):
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: take the new one
    record = json.dumps({"pid": os.getpid(), "command": command, "host": socket.gethostname(),
                         "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode() + b"\n"
    try:  # in place, not atomic (the inode is the lock): a reader that sees half says "another process"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
    except OSError:
        pass  # a full disk: the lock holds all the same; a refused writer is told "another process"
    return fd


def _same_file(fd: int, file: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(file).st_ino
    except FileNotFoundError:
        return False


def _release(path: Path, fd: int, created: bool) -> None:
    """Remove the lock file while still holding it (so no one locks a file about to vanish), then unlock."""
    try:
        lock_file(path).unlink(missing_ok=True)
    except OSError:
        pass
    os.close(fd)
    if created:
        try:
            path.rmdir()  # only when empty: nothing was written after all (a refused or failed start)
        except OSError:
            pass


def writer_of(directory: str | Path) -> Holder | None:
    """The live process that holds ``directory``'s write lock, or None (never blocks, changes nothing)."""
    path = Path(directory)
    if fcntl is None:
        return None
    with _registry:
        if str(path.resolve()) in _held:
            return None  # this process is the writer
    try:
        fd = os.open(lock_file(path), os.O_RDONLY)
    except OSError:
        return None  # no lock file (no writer), or not a directory we can read
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        except OSError:
            return None  # no flock on this file system: no writer can hold one either
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> Holder:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return Holder(pid=int(record["pid"]), command=str(record.get("command") or ""), host=record.get("host"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Holder(pid=None, command="")  # being written this very moment


def being_written_warning(directory: str | Path) -> str | None:
    """A reader's one-line note when a live process writes ``directory``, else None."""
    holder = writer_of(directory)
    if holder is None:
        return None
    return (f"{directory} is being written by {holder.describe()}; reading its last complete files "
            "(they change while it runs)")
