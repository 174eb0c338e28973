"""A second process that holds a directory's write lock (bamrec.locks), for tests of what other writers
and readers see; it imports only bamrec.locks, so it starts in a fraction of a second."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SRC = Path(__file__).resolve().parents[1] / "src"
_HOLD = """
import sys
from bamrec import locks
with locks.write_lock(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def env() -> dict[str, str]:
    """This checkout's bamrec first on the path, one thread: for any bamrec child process of a test."""
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1"}


@contextmanager
def held_by_another_process(directory: Path, command: str = "bamrec train") -> Iterator[subprocess.Popen]:
    """Another live process holds ``directory``'s lock for the block (its end releases it cleanly)."""
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(directory), command], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        if process.poll() is None:
            process.stdin.close()
            process.wait(timeout=30)
