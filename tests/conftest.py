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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run trained for a few steps on 40 users / 30 items (K = 2, d = 8, L = 8); read-only for tests."""
    import numpy as np

    from bamrec.api import train
    from bamrec.data.sequences import SequenceDataset

    root = tmp_path_factory.mktemp("tiny-run")
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 31, size=rng.integers(5, 15)).tolist() for _ in range(40)]
    sequences[0] = list(range(1, 31))  # a user who has every item
    SequenceDataset.from_sequences(sequences).save(root / "data")
    train({"data": str(root / "data"), "model": "comirec-sa", "seq_len": 8, "hidden_size": 8, "num_interests": 2,
           "batch_size": 16, "num_negatives": 10, "eval_every": 20, "max_iters": 40, "progress": False},
          out=root / "run", verbose=False)
    return root / "run"
