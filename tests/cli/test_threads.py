"""`--threads` and OMP_WAIT_POLICY: set by the entry point before torch loads, and in effect in torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bamrec.threads import default_threads, resolve_threads
from bamrec.errors import ConfigError

SRC = Path(__file__).resolve().parents[2] / "src"
FLAGS = ["--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
         "--num-negatives", "10", "--eval-every", "10", "--max-iters", "10", "--no-progress"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _train(command: list[str], data_dir: Path, out: Path, env: dict[str, str], *flags: str) -> dict:
    done = subprocess.run([*command, "train", "--data", str(data_dir), "--out", str(out), *FLAGS, *flags],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "config.json").read_text())["runtime"]


@pytest.fixture(scope="module")
def run_dir(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("threads") / "run"
    runtime = _train([sys.executable, "-m", "bamrec.cli"], tiny_data, out, _env(), "--threads", "2")
    assert runtime == {"threads": 2, "omp_wait_policy": "PASSIVE"}  # `python -m bamrec.cli` (torchrun's path)
    return out


def test_default_and_user_environment(tiny_data, tmp_path):
    script = Path(sys.executable).with_name("bamrec")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "bamrec.cli"]  # the console script
    runtime = _train(command, tiny_data, tmp_path / "a", _env())
    assert runtime == {"threads": default_threads(), "omp_wait_policy": "PASSIVE"}
    # The user's own OMP_NUM_THREADS and wait policy win over the defaults (a flag wins over both).
    runtime = _train([sys.executable, "-m", "bamrec.cli"], tiny_data, tmp_path / "b",
                     _env(OMP_NUM_THREADS="2", OMP_WAIT_POLICY="ACTIVE"))
    assert runtime == {"threads": 2, "omp_wait_policy": "ACTIVE"}


def test_evaluate_threads_take_effect_in_torch(run_dir):
    # The parser must not import torch, or the OpenMP settings would come too late.
    probe = (
        "import sys, os, bamrec.cli as cli\n"
        "cli.build_parser()\n"
        "assert 'torch' not in sys.modules\n"
        f"assert cli.main(['evaluate', {str(run_dir)!r}, '--json', '--threads', '2']) == 0\n"
        "import torch\n"
        "print('PROBE', torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "PROBE 2 PASSIVE"


def test_resolve_threads():
    assert resolve_threads(3, {"OMP_NUM_THREADS": "2"}) == 3
    assert resolve_threads(None, {"OMP_NUM_THREADS": "2"}) == 2
    assert resolve_threads(None, {}) == default_threads()
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS"):
        resolve_threads(None, {"OMP_NUM_THREADS": "many"})


def test_bad_threads_is_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bamrec.cli", "evaluate", str(tmp_path), "--threads", "0"],
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--threads: must be a positive integer" in done.stderr
    done = subprocess.run([sys.executable, "-m", "bamrec.cli", "evaluate", str(tmp_path)],
                          env=_env(OMP_NUM_THREADS="x"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["bamrec: error: OMP_NUM_THREADS must be a positive integer, got 'x'"]
