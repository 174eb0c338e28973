"""How many CPU threads bamrec uses: set by the ``bamrec`` entry point, or by ``bamrec.set_threads``.

PyTorch's CPU kernels run on an OpenMP thread pool, one thread per core by default, whose idle
threads spin-wait for work. Next to another busy process that oversubscribes the cores, a step waits
at every barrier for a thread the scheduler has parked, and training slows down many times over
(measured in docs/PERFORMANCE.md, "Threads"). The entry point therefore sets, before the first
``import torch`` of the process:

- the thread count: ``--threads N``, else ``$OMP_NUM_THREADS`` when the user set it, else one per
  CPU this process may run on (``default_threads()``, what torch would pick itself);
- ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep instead of spinning), unless the user set a policy.

The library itself never touches threading at import; ``bamrec.cli.main`` calls
``configure_threads``, and a Python program calls it as ``bamrec.set_threads(n)`` (before anything
imports torch, so that the wait policy takes effect too). Under ``torchrun`` every worker goes
through the same entry point (``python -m bamrec.cli``), and torchrun's own ``OMP_NUM_THREADS=1``
is respected.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

from bamrec.devices import available_cpus
from bamrec.errors import ConfigError

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads() -> int:
    """One thread per CPU this process may run on (its affinity mask, so a ``taskset`` or cpuset counts).

    With the passive wait policy this was the fastest setting measured, alone and beside busy
    processes (docs/PERFORMANCE.md, "Threads"); the spinning wait policy is what collapsed.
    """
    return available_cpus()


def resolve_threads(requested: int | None, environ: Mapping[str, str] = os.environ) -> int:
    """The thread count a command uses: the flag, else a valid ``$OMP_NUM_THREADS``, else the default."""
    if requested is not None:
        return requested
    text = environ.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return default_threads()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"OMP_NUM_THREADS must be a positive integer, got {text!r}")
    return value


def configure_threads(requested: int | None) -> int:
    """Set the process's threading before torch loads; returns the thread count.

    Called by the CLI entry point, and by a Python program as ``bamrec.set_threads(n)``; bamrec
    never calls it on import (a library must not change the threading of the program that imports
    it). When torch is loaded already, its pool has read its settings: only an explicit thread count
    is applied then (``torch.set_num_threads``), and the wait policy stays as it was.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        if requested is not None:
            torch.set_num_threads(requested)
        return torch.get_num_threads()
    threads = resolve_threads(requested)
    for name in _THREAD_VARS:
        os.environ[name] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return threads


def set_threads(threads: int | None = None) -> int:
    """Set how many CPU threads torch uses in this Python process, as ``bamrec ... --threads N`` does.

    Call it first, before anything imports torch: then it also sets ``OMP_WAIT_POLICY=PASSIVE`` (idle
    threads sleep instead of spinning) unless the environment chose a policy, and with ``threads``
    None it picks ``$OMP_NUM_THREADS`` or one thread per available CPU. Called after torch is loaded,
    it applies ``threads`` with ``torch.set_num_threads`` and nothing else. Returns the thread count.

        import bamrec
        bamrec.set_threads(2)
        result = bamrec.train({...}, out="runs/x")
    """
    return configure_threads(threads)
