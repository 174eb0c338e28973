"""The fidelity suite's switch: `make test` skips it without the original code and says so in its
summary; `make test-fidelity` refuses to run without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BAM_ORIGINAL_SRC", "BAMREC_REQUIRE_ORIGINAL")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **extra}


def _fidelity_suite(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/compat/test_fidelity.py"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_without_the_original_the_suite_is_skipped_and_the_summary_says_so():
    done = _fidelity_suite(_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fidelity suite skipped:" in done.stdout and "make test-fidelity" in done.stdout
    assert done.stdout.strip().splitlines()[-1].split()[1] == "skipped"  # the closing line stays pytest's


def test_required_but_missing_original_fails(tmp_path):
    done = _fidelity_suite(_env(BAMREC_REQUIRE_ORIGINAL="1", BAM_ORIGINAL_SRC=str(tmp_path)))
    assert done.returncode != 0 and "does not hold the original's" in done.stdout


def test_make_test_fidelity_refuses_without_the_original():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # The refusal comes before the set-up (a fresh clone's file times could otherwise send make into
    # `pip install` first); STAMP points at a file that does not exist, so any set-up would show.
    done = subprocess.run(["make", "-s", "test-fidelity", "BAM_ORIGINAL_SRC=", "STAMP=/nonexistent/.installed"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "set BAM_ORIGINAL_SRC" in done.stderr
