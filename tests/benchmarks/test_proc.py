"""benchmarks/_proc.py: the process tree and its resident memory, on a real child and grandchild."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

from scripts import load_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _proc():
    return load_script(BENCHMARKS / "_proc.py")


def test_descendants_and_tree_rss_cover_children_and_grandchildren():
    proc = _proc()
    # A child that starts a grandchild holding 50 MB, then both wait to be stopped. The grandchild says
    # "ready" (on the stdout it shares with the child) once every page of its 50 MB is written.
    grandchild = ("import time; b = bytearray(50_000_000); b[::4096] = b'x' * len(b[::4096]); "
                  "print('ready', flush=True); time.sleep(60)")
    child = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        ready, _, _ = select.select([parent.stdout], [], [], 30)
        assert ready and parent.stdout.readline().strip() == "ready", "the grandchild never filled its 50 MB"
        [grand] = proc.descendants(parent.pid)
        assert proc.children(parent.pid) == [grand]
        # The tree holds the parent's own pages on top of the grandchild's 50 MB (both are asleep).
        assert proc.tree_rss_bytes(parent.pid) > proc.rss_bytes(grand) > 50_000_000
    finally:
        os.killpg(parent.pid, 9)
        parent.wait()
    assert proc.rss_bytes(parent.pid) == 0 and proc.descendants(parent.pid) == []
