"""Shared helpers for the benchmark scripts: timing, peak memory, output."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch



def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates wall time per named phase; synchronises the device around each phase."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}
        self._start = 0.0

    def start(self) -> None:
        sync(self.device)
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        sync(self.device)
        now = time.perf_counter()
        self.totals[name] = self.totals.get(name, 0.0) + now - self._start
        self._start = now


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def matmul_gflops(m: int, k: int, n: int, device: torch.device, repeats: int = 20) -> float:
    """GFLOP/s of a float32 ``[m, k] x [k, n]`` matmul measured here, now."""
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this benchmark script in a fresh process (clean peak-memory figure) and parse its JSON line."""
    out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True)
    last = [line for line in out.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last)


def write_json(path: str | Path | None, value: Any) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            if abs(value) < 1:
                return f"{value:.4f}"
            return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
