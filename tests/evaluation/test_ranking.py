"""Full-catalogue ranking under both protocols, against rankings computed by hand.

The hand-worked catalogue (D = 2, N = 6, K = 2 interests m_0 = (1, 0), m_1 = (0, 1)), so an item's
score is max(x, y) of its embedding:

    item   0 (pad)  1       2       3        4       5         6
    e_i    (2.5,0)  (3,0)   (0,2)   (2,-1)   (1,1)   (-1,-2)   (-2,4)
    score  2.5      3       2       2        1       -1        4
    argmax 0        0       1       0        0       0         1

Users (test split: target = last item, history = the items before it):
    1: [1, 4, 2 | 3]   2: [6, 5 | 6] (repeat)   3: [4, 5 | 2]   4: [4, 5 | 3]   5: [2, 4 | 5]
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import LeaveOneOut
from bamrec.errors import BamrecError, ConfigError, DataError
from bamrec.data.csr import Csr
from bamrec.evaluation import evaluate, rank_targets
from numerics import assert_ranks_close, near_tied_targets

EMB = torch.tensor([[2.5, 0], [3, 0], [0, 2], [2, -1], [1, 1], [-1, -2], [-2, 4]], dtype=torch.float32)
INTERESTS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # [K, D]
SEQUENCES = [[1, 4, 2, 3], [6, 5, 6], [4, 5, 2], [4, 5, 3], [2, 4, 5]]

# Expected 0-based ranks, worked out by hand from the table above.
STANDARD = [1, 0, 2, 3, 3]  # whole history removed, 0 never ranked, user 2's target stays rankable
REFERENCE = {
    2: [3, 6, 3, 4, 6],  # windows unpadded (user 1: [4, 2]; item 1 outside the window keeps 3)
    3: [2, 6, 2, 3, 6],  # users 2-5 padded: item 0 is scored 0 and drops below the targets at 2
    4: [1, 6, 2, 3, 6],  # user 1 padded too: only item 6 stays ahead of its target
}
TARGET_INTEREST = [0, 1, 1, 0, 0]


class ConstantInterests:
    """Every user gets m_0 = (1, 0), m_1 = (0, 1); remembers the windows it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls.append((history.clone(), mask.clone()))
        return INTERESTS.expand(len(history), -1, -1)  # [B, K, D]


@pytest.fixture
def toy():
    dataset = SequenceDataset.from_sequences(SEQUENCES)
    return dataset, LeaveOneOut(dataset).view("test")


def test_standard_protocol_hand_ranks(toy):
    dataset, view = toy
    result = evaluate(ConstantInterests(), EMB, dataset, view, seq_len=2, cutoffs=(1, 3))
    np.testing.assert_array_equal(result.ranks, STANDARD)
    np.testing.assert_array_equal(result.target_interest, TARGET_INTEREST)
    np.testing.assert_array_equal(result.users, [1, 2, 3, 4, 5])
    assert result.ranks.dtype == np.int64 and result.target_interest.dtype == np.int64
    metrics = result.metrics()
    assert metrics["recall@1"] == pytest.approx(0.2)
    assert metrics["recall@3"] == pytest.approx(0.6)
    assert metrics["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 + 0.5) / 5)
    assert metrics["mrr@3"] == pytest.approx((0.5 + 1 + 1 / 3) / 5)
    assert metrics["users"] == 5 and metrics["protocol"] == "standard"
    np.testing.assert_allclose(result.per_user("ndcg@3"), [1 / math.log2(3), 1, 0.5, 0, 0])


def test_standard_does_not_depend_on_seq_len(toy):
    dataset, view = toy
    for seq_len in (1, 2, 5):
        result = evaluate(ConstantInterests(), EMB, dataset, view, seq_len=seq_len)
        np.testing.assert_array_equal(result.ranks, STANDARD)


@pytest.mark.parametrize("seq_len", sorted(REFERENCE))
def test_reference_protocol_hand_ranks(toy, seq_len):
    dataset, view = toy
    result = evaluate(ConstantInterests(), EMB, dataset, view, seq_len=seq_len, protocol="reference")
    np.testing.assert_array_equal(result.ranks, REFERENCE[seq_len])
    np.testing.assert_array_equal(result.target_interest, TARGET_INTEREST)
    assert result.metrics()["protocol"] == "reference"


def test_interest_fn_sees_left_aligned_zero_padded_windows(toy):
    dataset, view = toy
    fn = ConstantInterests()
    evaluate(fn, EMB, dataset, view, seq_len=3, user_batch_size=2)
    history = torch.cat([h for h, _ in fn.calls])
    mask = torch.cat([m for _, m in fn.calls])
    assert [len(h) for h, _ in fn.calls] == [2, 2, 1]
    assert history.tolist() == [[1, 4, 2], [6, 5, 0], [4, 5, 0], [4, 5, 0], [2, 4, 0]]
    assert mask.tolist() == [[True] * 3] + [[True, True, False]] * 4


def test_rank_targets_reference_tie_rule():
    # Window items scored exactly 0 tie with each other and with a target scored 0 by the window;
    # ties go to the lower id. Target 3 in the window, items 1, 2 (window) and 5 (window) at 0.
    emb = torch.tensor([[0.0, 0.0], [1, 0], [2, 0], [3, 0], [-1, 0], [4, 0]])
    interests = torch.tensor([[[1.0, 0.0]]])  # [1, 1, 2]
    window = Csr(torch.tensor([0, 3]), torch.tensor([2, 3, 5]))
    ranks, _ = rank_targets(interests, emb, torch.tensor([3]), window, "reference")
    # scores: 0:0 1:1 2:0 3:0(target) 4:-1 5:0 -> ahead: item 1 (1 > 0), items 0 and 2 (tie, lower id).
    assert ranks.tolist() == [3]
    ranks, _ = rank_targets(interests, emb, torch.tensor([4]), window, "reference")
    assert ranks.tolist() == [5]  # a target below 0 ranks below every zeroed item (and item 0)
    ranks, _ = rank_targets(interests, emb, torch.tensor([3]), window, "standard")
    # standard: 2 and 5 removed, 3 stays (repeat consumption), 0 never ranked: nothing beats 3.
    assert ranks.tolist() == [0]


def test_max_over_interests_and_argmax():
    emb = torch.tensor([[0.0, 0.0], [1, 0], [0, 1], [0.6, 0.6]])
    interests = torch.tensor([[[1.0, 0.0], [0.0, 0.5]], [[0.0, 2.0], [0.0, 0.0]]])  # [2, 2, 2]
    ranks, chosen = rank_targets(interests, emb, torch.tensor([2, 3]))
    # user 0 scores: 1:1.0 (k0) 2:0.5 (k1) 3:max(0.6, 0.3)=0.6 -> item 2 ranks after 1 and 3.
    # user 1 scores: 1:0 2:2 3:1.2 -> item 3 ranks after 2; its best interest is k0.
    assert ranks.tolist() == [2, 1]
    assert chosen.tolist() == [1, 0]


@pytest.mark.order_sensitive
def test_invariance_to_batch_and_chunk_sizes():
    generator = torch.Generator().manual_seed(0)
    num_items, num_users = 53, 37
    lengths = torch.randint(3, 15, (num_users,), generator=generator)
    sequences = [torch.randint(1, num_items + 1, (int(n),), generator=generator).tolist() for n in lengths]
    sequences[0][-1] = num_items  # make sure the catalogue has all num_items ids
    dataset = SequenceDataset.from_sequences(sequences)
    view = LeaveOneOut(dataset).view("valid")
    emb = torch.randn(num_items + 1, 8, generator=generator)
    table = torch.randn(num_items + 1, 3, 8, generator=generator)

    seen = []

    def interest_fn(history, mask):
        interests = (table[history] * mask[:, :, None, None]).sum(1)  # [B, K, D]
        seen.append(interests)
        return interests

    for protocol in ("standard", "reference"):
        seen.clear()
        base = evaluate(interest_fn, emb, dataset, view, seq_len=6, protocol=protocol)
        # Scores at other batch and chunk sizes round differently: ranks and retrieving interests are
        # exact except for a target tied with a rival (or between two interests) within rounding.
        tied = near_tied_targets(torch.cat(seen).numpy(), emb.numpy(), view.targets)
        assert tied.sum() < len(tied) // 4  # the comparison still covers most users
        for users, chunk in ((37, 1), (1, 54), (5, 7), (16, 53), (100, 54), (3, 1000)):
            other = evaluate(
                interest_fn, emb, dataset, view, seq_len=6, protocol=protocol,
                user_batch_size=users, item_chunk_size=chunk,
            )
            assert_ranks_close(other.ranks, base.ranks, tied)
            assert_ranks_close(other.target_interest, base.target_interest, tied)


def _naive_ranks(interests, emb, targets, excluded, protocol):
    """Dense reference: score every item, apply the protocol, stable-sort, find the target."""
    ranks = []
    for b in range(len(targets)):
        scores = (interests[b].double() @ emb.double().T).max(0).values.numpy()  # [N + 1]
        ids = np.arange(len(scores))
        target = int(targets[b])
        if protocol == "reference":
            scores[list(excluded[b])] = 0.0
            keep = ids >= 0
        else:
            keep = ids != 0
            keep[[i for i in excluded[b] if i != target]] = False
        order = ids[keep][np.argsort(-scores[keep], kind="stable")]
        ranks.append(int(np.flatnonzero(order == target)[0]))
    return ranks


@pytest.mark.parametrize("protocol", ["standard", "reference"])
def test_randomized_against_dense_ranking(protocol):
    # Small integer embeddings: every product is exact in float32, and ties are everywhere.
    generator = torch.Generator().manual_seed(1)
    batch, num_rows, k, dim = 40, 30, 3, 3
    interests = torch.randint(-2, 3, (batch, k, dim), generator=generator).float()
    emb = torch.randint(-2, 3, (num_rows, dim), generator=generator).float()
    targets = torch.randint(1, num_rows, (batch,), generator=generator)
    counts = torch.randint(0, 8, (batch,), generator=generator)
    excluded = [torch.randint(0, num_rows, (int(n),), generator=generator).tolist() for n in counts]
    excluded[0] = excluded[0] + [int(targets[0])]  # a listed target: kept (standard), zeroed (reference)
    offsets = torch.tensor([0] + np.cumsum([len(e) for e in excluded]).tolist())
    exclusion = Csr(offsets, torch.tensor([i for e in excluded for i in e], dtype=torch.int64))
    expected = _naive_ranks(interests, emb, targets, excluded, protocol)
    for chunk in (1, 4, 30):
        ranks, chosen = rank_targets(interests, emb, targets, exclusion, protocol, chunk)
        assert ranks.tolist() == expected
    target_scores = torch.einsum("bkd,bd->bk", interests, emb[targets])
    assert chosen.tolist() == target_scores.argmax(1).tolist()


def test_errors(toy):
    dataset, view = toy
    fn = ConstantInterests()
    with pytest.raises(ConfigError, match="protocol"):
        evaluate(fn, EMB, dataset, view, seq_len=2, protocol="sampled")
    with pytest.raises(DataError, match="6 items"):
        evaluate(fn, EMB[:5], dataset, view, seq_len=2)
    with pytest.raises(DataError, match="no users"):
        evaluate(fn, EMB, dataset, view.subset(np.zeros(0, dtype=np.int64)), seq_len=2)
    with pytest.raises(ConfigError, match="user_batch_size"):
        evaluate(fn, EMB, dataset, view, seq_len=2, user_batch_size=0)
    with pytest.raises(BamrecError, match="NaN"):
        evaluate(lambda h, m: torch.full((len(h), 2, 2), float("nan")), EMB, dataset, view, seq_len=2)
    with pytest.raises(BamrecError, match="interests"):
        evaluate(lambda h, m: torch.zeros(len(h), 2), EMB, dataset, view, seq_len=2)
    with pytest.raises(DataError, match="targets"):
        rank_targets(INTERESTS[None], EMB, torch.tensor([7]))
    with pytest.raises(DataError, match="exclusion ids"):
        rank_targets(INTERESTS[None], EMB, torch.tensor([1]), Csr(torch.tensor([0, 1]), torch.tensor([9])))


def test_evaluation_keeps_nothing_alive_per_batch():
    # Small long-lived tensors kept across batches land in the space the batch's large buffers
    # freed, so the heap and the resident size would grow with the number of users: the number of
    # tensors made during the evaluation and still alive when a batch starts is the same at every batch.
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode

    generator = torch.Generator().manual_seed(2)
    num_items = 40
    sequences = [torch.randint(1, num_items + 1, (int(n),), generator=generator).tolist()
                 for n in torch.randint(3, 12, (60,), generator=generator)]
    sequences[0][-1] = num_items
    dataset = SequenceDataset.from_sequences(sequences)
    view = LeaveOneOut(dataset).view("test")
    emb = torch.randn(num_items + 1, 4, generator=generator)
    made: list[weakref.ref] = []

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for value in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(value, torch.Tensor):
                    made.append(weakref.ref(value))
            return out

    alive_at_batch: list[int] = []

    def interest_fn(history, mask):
        alive_at_batch.append(sum(ref() is not None for ref in made))
        return (emb[history] * mask[..., None]).reshape(len(history), -1, 2, 4).sum(1)  # [B, 2, 4]

    for protocol in ("standard", "reference"):
        made.clear(), alive_at_batch.clear()
        with Track():
            evaluate(interest_fn, emb, dataset, view, seq_len=6, protocol=protocol, user_batch_size=5)
        assert len(alive_at_batch) == 12
        assert len(set(alive_at_batch[1:])) == 1, alive_at_batch
