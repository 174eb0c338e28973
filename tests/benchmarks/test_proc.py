"""benchmarks/_proc.py: the process tree and its resident memory, on a real child and grandchild."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from scripts import load_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _proc():
    return load_script(BENCHMARKS / "_proc.py")


def test_descendants_and_tree_rss_cover_children_and_grandchildren():
    proc = _proc()
    # A child that starts a grandchild holding 50 MB, then both wait to be stopped.
    grandchild = "import time; b = bytearray(50_000_000); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"
    child = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(proc.descendants(parent.pid)) < 1 or proc.tree_rss_bytes(parent.pid) < 60_000_000:
            assert time.monotonic() < deadline, "the grandchild never appeared with its 50 MB"
            time.sleep(0.05)
        [grand] = proc.descendants(parent.pid)
        assert proc.children(parent.pid) == [grand]
        # The tree holds the parent's own pages on top of the grandchild's 50 MB (both are asleep).
        assert proc.tree_rss_bytes(parent.pid) > proc.rss_bytes(grand) > 50_000_000
    finally:
        os.killpg(parent.pid, 9)
        parent.wait()
    assert proc.rss_bytes(parent.pid) == 0 and proc.descendants(parent.pid) == []
