"""Exact top-k retrieval: hand-computed lists, ties by id, exclusions, chunking, a dense reference.

Catalogue as in tests/evaluation/test_ranking.py: K = 2 interests (1, 0) and (0, 1), so an item's
score is max(x, y) of its embedding: 0 (pad): 2.5, 1: 3, 2: 2, 3: 2, 4: 1, 5: -1, 6: 4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bamrec.data.sequences import SequenceDataset
from bamrec.errors import ConfigError, DataError
from bamrec.data.csr import Csr
from bamrec.retrieval import recommend, topk_items
from bamrec.retrieval.recommend import as_csr, order_keys

EMB = torch.tensor([[2.5, 0], [3, 0], [0, 2], [2, -1], [1, 1], [-1, -2], [-2, 4]], dtype=torch.float32)
INTERESTS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # [K, D]


def _two_users() -> torch.Tensor:
    return INTERESTS.expand(2, -1, -1)  # [2, K, D]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
def test_hand_computed_topk(dtype, chunk):
    ids, scores, index = topk_items(_two_users().to(dtype), EMB.to(dtype), 4, item_chunk_size=chunk)
    # Padding (2.5) would be third; it is never returned. 2 and 3 tie at 2: lower id first.
    assert ids.tolist() == [[6, 1, 2, 3]] * 2
    assert scores.tolist() == [[4.0, 3.0, 2.0, 2.0]] * 2
    assert index.tolist() == [[1, 0, 1, 0]] * 2
    assert ids.dtype == torch.int64 and index.dtype == torch.int64 and scores.dtype == dtype


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_exclusion_formats_and_shortfall(chunk):
    per_user = [np.array([1]), [1, 2, 3, 4]]
    csr = Csr(torch.tensor([0, 1, 5]), torch.tensor([1, 1, 2, 3, 4]))
    plain = (np.array([0, 1, 5]), np.array([1, 1, 2, 3, 4]))
    for exclude in (per_user, csr, plain):
        ids, scores, index = topk_items(_two_users(), EMB, 3, exclude, item_chunk_size=chunk)
        assert ids.tolist() == [[6, 2, 3], [6, 5, -1]]
        assert scores[0].tolist() == [4.0, 2.0, 2.0]
        assert scores[1].tolist() == [4.0, -1.0, -math.inf]
        assert index.tolist() == [[1, 1, 0], [1, 0, -1]]


def test_k_limits():
    ids, _, _ = topk_items(_two_users(), EMB, 6)
    assert ids[0].tolist() == [6, 1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="catalogue"):
        topk_items(_two_users(), EMB, 7)
    with pytest.raises(ConfigError, match="k"):
        topk_items(_two_users(), EMB, 0)


def test_bad_exclusions():
    with pytest.raises(DataError, match="per-user"):
        topk_items(_two_users(), EMB, 2, [[1]])
    with pytest.raises(DataError, match="exclusion ids"):
        topk_items(_two_users(), EMB, 2, [[1], [7]])
    with pytest.raises(DataError, match="offsets"):
        topk_items(_two_users(), EMB, 2, (np.array([1, 2, 3]), np.array([1, 2])))


def test_order_keys_sort_like_stable_descending_sort():
    scores = torch.tensor([[-0.0, 0.0, -1.0, 1.0, -2.0, -1.5, 1e-30, -1e-30, float("-inf")]])
    ids = torch.arange(1, 10).unsqueeze(0)
    order = ids[0][order_keys(scores, ids).argsort(dim=1, descending=True)[0]].tolist()
    # -0.0 and 0.0 tie (lower id first); negatives by value; -inf last.
    assert order == [4, 7, 1, 2, 8, 3, 6, 5, 9]


def _naive_topk(interests, emb, k, excluded):
    out_ids, out_scores = [], []
    for b in range(len(interests)):
        scores = (interests[b].double() @ emb.double().T).max(0).values.numpy()  # [N + 1]
        keep = np.ones(len(scores), dtype=bool)
        keep[0] = False
        keep[list(excluded[b])] = False
        ids = np.flatnonzero(keep)
        order = ids[np.argsort(-scores[ids], kind="stable")][:k]
        out_ids.append(order.tolist() + [-1] * (k - len(order)))
        out_scores.append(scores[order].tolist() + [-math.inf] * (k - len(order)))
    return out_ids, out_scores


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_randomized_against_dense_topk(dtype):
    generator = torch.Generator().manual_seed(3)
    batch, num_rows, k_int, dim, k = 25, 40, 3, 3, 12
    interests = torch.randint(-2, 3, (batch, k_int, dim), generator=generator).to(dtype)
    emb = torch.randint(-2, 3, (num_rows, dim), generator=generator).to(dtype)
    counts = torch.randint(0, 35, (batch,), generator=generator)
    excluded = [torch.randint(0, num_rows, (int(n),), generator=generator).tolist() for n in counts]
    excluded[0] = list(range(1, num_rows - 3))  # only 3 rankable items left: a shortfall
    expected_ids, expected_scores = _naive_topk(interests, emb, k, excluded)
    for chunk in (1, 5, 13, 64):
        ids, scores, index = topk_items(interests, emb, k, excluded, item_chunk_size=chunk)
        assert ids.tolist() == expected_ids
        assert scores.double().tolist() == expected_scores
        valid = ids >= 0
        best = torch.einsum("bkd,bnd->bnk", interests, emb[ids.clamp(min=0)]).argmax(-1)  # [B, k]
        assert torch.equal(index[valid], best[valid])
        assert bool((index[~valid] == -1).all())


def test_as_csr_from_lists():
    csr = as_csr([[3, 1], [], np.array([2])], 3)
    assert csr.offsets.tolist() == [0, 2, 2, 3] and csr.ids.tolist() == [3, 1, 2]
    assert as_csr(None, 3) is None


def test_recommend_excludes_history_and_uses_window():
    dataset = SequenceDataset.from_sequences([[1, 4, 2], [6, 5, 6, 3]])
    seen = []

    def interest_fn(history, mask):
        seen.append(history.clone())
        return INTERESTS.expand(len(history), -1, -1)

    ids, scores, index = recommend(interest_fn, EMB, dataset, np.array([2, 1]), 2, seq_len=3)
    assert seen[0].tolist() == [[5, 6, 3], [1, 4, 2]]
    assert ids.tolist() == [[1, 2], [6, 3]]
    assert scores.tolist() == [[3.0, 2.0], [4.0, 2.0]]
    assert index.tolist() == [[0, 1], [1, 0]]
    ids, _, _ = recommend(interest_fn, EMB, dataset, np.array([1]), 2, seq_len=3, exclude_history=False)
    assert ids.tolist() == [[6, 1]]
    with pytest.raises(DataError, match="user ids"):
        recommend(interest_fn, EMB, dataset, np.array([3]), 2, seq_len=3)


def test_exact_searcher_checks_the_item_table_once_not_per_request(monkeypatch):
    import importlib

    from bamrec.errors import BamrecError
    from bamrec.retrieval.service import ExactSearch

    recommend_module = importlib.import_module("bamrec.retrieval.recommend")  # the module, not the function

    broken = EMB.clone()
    broken[3, 1] = float("nan")
    with pytest.raises(BamrecError, match="item embeddings contain NaN"):
        ExactSearch(broken)  # refused when the service is built
    searcher = ExactSearch(EMB, item_chunk_size=3)
    checked: list[str] = []
    real = recommend_module.check_finite
    monkeypatch.setattr(recommend_module, "check_finite", lambda name, t: (checked.append(name), real(name, t)))
    rows, scores, index = searcher.search(_two_users().numpy(), 4)
    assert rows.tolist() == [[6, 1, 2, 3]] * 2 and scores.tolist() == [[4.0, 3.0, 2.0, 2.0]] * 2
    assert checked == ["interests"]  # the request's queries, not the whole item table again
    with pytest.raises(BamrecError, match="interests contain NaN"):
        searcher.search(np.full((1, 2, 2), np.nan, dtype=np.float32), 2)
