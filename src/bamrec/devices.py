"""Device names (``--device``): one place that checks them and turns them into ``torch.device``.

Accepted: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` and ``mps``. A
device that this machine does not have is a ``ConfigError`` naming what is there, never a raw
``RuntimeError`` from torch or a silent fall-back to the CPU.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from bamrec.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_FORM = "auto, cpu, cuda, cuda:N or mps"
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: object, option: str = "--device") -> str:
    """Return ``name`` if it has an accepted form (whether or not this machine has the device)."""
    if not isinstance(name, str) or not _DEVICE_RE.match(name):
        raise ConfigError(f"{option} must be one of {DEVICE_FORM}, got {name!r}")
    return name


def resolve_device(name: str, option: str = "--device") -> "torch.device":
    """The ``torch.device`` for ``name``; refused with the reason when this machine lacks it."""
    import torch  # here, not at the top: `bamrec data ...` never needs torch, and it is slow to import

    check_device_name(name, option)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option} {name} requested but CUDA is not available here; use {option} cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{option} {name}: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option} mps requested but MPS (Apple GPU) is not available here; use {option} cpu")
    return device


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask (a ``taskset`` or cpuset counts), else the CPU count."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)
