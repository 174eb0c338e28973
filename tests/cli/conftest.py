"""Fixtures of the CLI tests: a tiny prepared dataset (40 users, 30 items)."""

from __future__ import annotations

import numpy as np
import pytest

from bamrec.data.sequences import SequenceDataset

def make_tiny_dataset(path):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 31, size=rng.integers(5, 15)).tolist() for _ in range(40)]
    sequences[0] = list(range(1, 31))  # every item occurs
    SequenceDataset.from_sequences(sequences).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The tiny dataset, once per test module (read-only for the tests)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")
