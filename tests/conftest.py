"""Shared test fixtures: paths to the read-only real datasets and tiny in-memory datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("BAMREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # Tests run on 2-core machines, often beside other work; keep torch from oversubscribing.
    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """The real datasets in ../shared/data; tests that need them are skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA
