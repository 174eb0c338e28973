"""The rank-memory benchmark's reading of /proc: a memory-mapped dataset shows as the dataset's resident
pages, shared between processes that map it, and not as private memory."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from bamrec.data.sequences import SequenceDataset

from scripts import load_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")


def _module():
    return load_script(BENCHMARKS / "rank_memory.py")


def _touch_and_wait(path: str, ready, release) -> None:
    items = SequenceDataset.load(path).items
    int(items.sum())  # read every page
    ready.set()
    release.wait(30)


def test_a_memory_mapped_dataset_is_counted_as_the_datasets_shared_pages(tmp_path):
    rank_memory = _module()
    rng = np.random.default_rng(0)
    dataset = SequenceDataset.from_sequences([list(rng.integers(1, 1000, 5_000)) for _ in range(200)])
    dataset.save(tmp_path / "data")
    items_bytes = (tmp_path / "data" / "items.npy").stat().st_size  # 4 MB
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    other = context.Process(target=_touch_and_wait, args=(str(tmp_path / "data"), ready, release))
    other.start()
    try:
        assert ready.wait(60)
        loaded = SequenceDataset.load(tmp_path / "data")
        int(loaded.items.sum())
        mine = rank_memory._rollup(os.getpid(), (tmp_path / "data").resolve())
        theirs = rank_memory._rollup(other.pid, (tmp_path / "data").resolve())
    finally:
        release.set()
        other.join(30)
    for seen in (mine, theirs):
        assert seen["dataset_rss"] >= 0.9 * items_bytes  # every page of items.npy is resident...
        assert seen["dataset_pss"] <= 0.6 * seen["dataset_rss"]  # ...and shared by the two processes
        assert seen["rss"] >= seen["dataset_rss"] and seen["pss"] <= seen["rss"]
