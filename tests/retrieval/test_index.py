"""faiss indexes: flat equals the exact top-k (ties rule included), merge/de-duplication across
interests, exclusions with over-fetch growth, save/load, approximate recall, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bamrec.errors import ConfigError, DataError, RunDirError
from bamrec.retrieval.index import (
    IndexParams,
    ItemIndex,
    build_index,
    exact_search,
    index_params,
    overlap_recall,
)

pytest.importorskip("faiss")

from numerics import assert_ranking_close  # noqa: E402

# The catalogue of tests/retrieval/test_recommend.py: with interests (1, 0) and (0, 1) an item
# scores max(x, y): 1: 3, 2: 2, 3: 2, 4: 1, 5: -1, 6: 4 (row 0 = padding, never returned).
EMB = np.array([[2.5, 0], [3, 0], [0, 2], [2, -1], [1, 1], [-1, -2], [-2, 4]], dtype=np.float32)
INTERESTS = np.array([[[1.0, 0.0], [0.0, 1.0]]] * 2, dtype=np.float32)  # [2, K, D]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_hand_computed_flat_search_merges_and_breaks_ties_by_row():
    rows, scores, interest = build_index(EMB, "flat").search(INTERESTS, 4)
    # Items 2 and 3 tie at 2: lower row first; item 4 (1, 1) is found by both interests, once.
    assert rows.tolist() == [[6, 1, 2, 3]] * 2
    assert scores.tolist() == [[4.0, 3.0, 2.0, 2.0]] * 2
    assert interest.tolist() == [[1, 0, 1, 0]] * 2
    rows, _, interest = build_index(EMB, "flat").search(INTERESTS, 6)
    assert rows[0].tolist() == [6, 1, 2, 3, 4, 5]  # no duplicates although every list holds every item
    assert interest[0, 4] == 0  # item 4 scores 1 under both interests: the lower interest index


def test_exclusion_and_shortfall_match_exact():
    exclude = [np.array([1]), np.array([1, 2, 3, 4])]
    expected = exact_search(EMB, INTERESTS, 3, exclude)
    found = build_index(EMB, "flat").search(INTERESTS, 3, exclude)
    assert _same(found, expected)
    assert found[0].tolist() == [[6, 2, 3], [6, 5, -1]]
    assert found[1][1, 2] == -math.inf and found[2][1, 2] == -1


@pytest.mark.order_sensitive
@pytest.mark.parametrize("values", ["integers", "floats"])
def test_flat_equals_exact_topk_randomized(values):
    generator = torch.Generator().manual_seed(5)
    num_rows, dim, batch, num_interests = 300, 4, 40, 3
    if values == "integers":  # exactly representable scores: ties everywhere, the ties rule decides
        emb = torch.randint(-2, 3, (num_rows, dim), generator=generator).float()
        interests = torch.randint(-2, 3, (batch, num_interests, dim), generator=generator).float()
    else:
        emb = torch.randn(num_rows, dim, generator=generator)
        interests = torch.randn(batch, num_interests, dim, generator=generator)
    counts = torch.randint(0, 250, (batch,), generator=generator)
    exclude = [torch.randint(0, num_rows, (int(n),), generator=generator).numpy() for n in counts]
    exclude[0] = np.arange(1, num_rows - 4)  # 4 rankable items left
    index = build_index(emb, "flat")
    for k in (1, 7, 30):
        for found, expected in ((index.search(interests, k, exclude), exact_search(emb, interests, k, exclude)),
                                (index.search(interests, k), exact_search(emb, interests, k)),
                                (index.search(interests, k, exclude, fetch=1), exact_search(emb, interests, k, exclude))):
            if values == "integers":
                # Products and sums of small integers are exact in float32 whatever the order, so
                # faiss and torch agree bit for bit on any CPU, and the ties rule decides every tie.
                assert _same(found, expected)
                continue
            # faiss's own products: scores equal to float rounding, items and interests exactly
            # where the scores are not tied within it.
            for user in range(batch):
                assert_ranking_close(found[0][user].tolist(), found[1][user], expected[0][user].tolist(),
                                     expected[1][user], extra_a=found[2][user].tolist(),
                                     extra_b=expected[2][user].tolist())


def _clustered(num_items=3000, dim=16, clusters=30, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    emb = centres[rng.integers(0, clusters, num_items + 1)] + 0.3 * rng.normal(size=(num_items + 1, dim))
    interests = centres[rng.integers(0, clusters, (50, 4))] + 0.3 * rng.normal(size=(50, 4, dim))
    return emb.astype(np.float32), interests.astype(np.float32)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_recall_and_heavy_exclusion(kind):
    emb, interests = _clustered()
    index = build_index(emb, kind, nprobe=8)
    exact = exact_search(emb, interests, 20)
    rows, scores, _ = index.search(interests, 20)
    assert overlap_recall(rows, exact[0]) > 0.9
    assert bool((np.diff(scores, axis=1) <= 0).all())  # best first
    # Exclude all but 25 items: the over-fetch has to grow (and IVF's nprobe) to find 20.
    keep = np.arange(len(emb) - 25, len(emb))
    exclude = [np.arange(1, len(emb) - 25)] * len(interests)
    rows, _, interest = index.search(interests, 20, exclude)
    assert bool((rows >= 0).all()) and bool(np.isin(rows, keep).all())
    assert all(len(set(r)) == 20 for r in rows.tolist())
    assert bool((interest >= 0).all() & (interest < 4).all())


def test_approximate_index_that_cannot_reach_items_falls_back_to_exact():
    emb, interests = _clustered(num_items=2000)
    index = build_index(emb, "ivf", nlist=40, nprobe=1)
    exclude = [np.arange(1, len(emb) - 3)] * len(interests)  # 3 rankable items for k = 5
    rows, _, _ = index.search(interests, 5, exclude)
    assert sorted(rows[0, :3].tolist()) == list(range(len(emb) - 3, len(emb)))
    assert bool((rows[:, 3:] == -1).all())


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip_records_parameters(tmp_path, kind):
    emb, interests = _clustered(num_items=1000)
    index = build_index(emb, kind, hnsw_m=16, nprobe=4)
    record = index.save(tmp_path / "idx")
    saved = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["params"]["kind"] == kind and saved["params"]["hnsw_m"] == 16 and saved["num_items"] == 1000
    if kind == "ivf":
        assert saved["nlist"] == IndexParams(kind="ivf").resolved_nlist(1000)
    loaded = ItemIndex.load(tmp_path / "idx", emb)
    assert loaded.params == index.params
    # The same index read back, searched with the same queries in one process: bit-equal.
    assert _same(loaded.search(interests, 10), index.search(interests, 10))
    with pytest.raises(RunDirError, match="another model"):
        ItemIndex.load(tmp_path / "idx", emb[:500])
    with pytest.raises(RunDirError, match="no faiss index"):
        ItemIndex.load(tmp_path / "missing", emb)


def test_bad_input():
    index = build_index(EMB, "flat")
    with pytest.raises(ConfigError, match="catalogue"):
        index.search(INTERESTS, 7)
    with pytest.raises(ConfigError, match="k must be"):
        index.search(INTERESTS, 0)
    with pytest.raises(DataError, match=r"\[B, K, 2\]"):
        index.search(INTERESTS[:, :, :1], 2)
    with pytest.raises(DataError, match="exclusion ids"):
        index.search(INTERESTS, 2, [[1], [9]])
    with pytest.raises(ConfigError, match="unknown index kind"):
        index_params("lsh")
    with pytest.raises(ConfigError, match="unknown index parameter"):
        index_params("hnsw", ef=3)
    with pytest.raises(ConfigError, match="positive"):
        index_params("hnsw", hnsw_m=0)


def test_overlap_recall_hand_computed():
    exact = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    found = np.array([[4, 3, 9, 8], [6, 7, 5, -1]])
    assert overlap_recall(found, exact) == pytest.approx((0.5 + 1.0) / 2)
