"""The process tree under a benchmark's child, read from ``/proc`` (Linux): its processes and their RSS."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's list; empty once it is gone)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, depth first."""
    found, stack = [], children(pid)
    while stack:
        child = stack.pop()
        found.append(child)
        stack += children(child)
    return found


def rss_bytes(pid: int) -> int:
    """Bytes resident in ``pid`` now (``VmRSS``; 0 for a process that is gone or a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(root: int) -> int:
    """Bytes resident in ``root`` and all its descendants now."""
    return sum(rss_bytes(pid) for pid in [root, *descendants(root)])
