"""Multi-process training through torchrun (DDP, gloo backend on CPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bamrec.data.sequences import SequenceDataset


@pytest.mark.slow
def test_torchrun_two_processes_write_one_run(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to this Python")
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 31, size=rng.integers(5, 15)).tolist() for _ in range(40)]
    sequences[0] = list(range(1, 31))
    SequenceDataset.from_sequences(sequences).save(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "bamrec.cli", "train",
         "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--seq-len", "8", "--hidden-size", "8",
         "--num-interests", "2", "--batch-size", "8", "--num-negatives", "10", "--eval-every", "10",
         "--max-iters", "20", "--no-progress", "--selection", "bam-l"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("run written to") == 1  # only rank 0 reports
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iter"] for line in lines] == [10, 20]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["iters"] == 20 and summary["test"]["users"] == 40
