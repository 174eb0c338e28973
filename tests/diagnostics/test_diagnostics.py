"""Interest-balance diagnostics on hand-made arrays with hand-computed answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bamrec.data.synthetic import GroundTruth
from bamrec.evaluation import diagnostics as diag


def test_selection_balance_uniform():
    out = diag.selection_balance(np.array([5, 5, 5, 5]))
    assert out["shares"] == [0.25] * 4
    assert out["entropy"] == pytest.approx(math.log(4))
    assert out["normalized_entropy"] == pytest.approx(1.0)
    assert out["dead_interests"] == 0 and out["dead_slots"] == [] and out["total"] == 20


def test_selection_balance_half_dead():
    out = diag.selection_balance(np.array([1, 1, 0, 0]))
    assert out["entropy"] == pytest.approx(math.log(2))
    assert out["normalized_entropy"] == pytest.approx(0.5)  # log 2 / log 4
    assert out["dead_slots"] == [2, 3] and out["dead_interests"] == 2


def test_selection_balance_dead_threshold_is_one_percent():
    # shares 0.989, 0.011, 0: slot 1 is alive (>= 1%), slot 2 dead; at 2% slot 1 dies too
    counts = np.array([989, 11, 0])
    assert diag.selection_balance(counts)["dead_slots"] == [2]
    assert diag.selection_balance(counts, dead_share=0.02)["dead_slots"] == [1, 2]


def test_selection_balance_degenerate():
    empty = diag.selection_balance(np.zeros(3))
    assert empty["entropy"] is None and empty["normalized_entropy"] is None and empty["dead_interests"] == 3
    single = diag.selection_balance(np.array([7]))
    assert single["entropy"] == 0.0 and single["normalized_entropy"] is None
    with pytest.raises(ValueError):
        diag.selection_balance(np.array([1, -1]))


def test_interest_similarity_identical_and_orthogonal():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])
    same = torch.stack([torch.stack([e1, 2 * e1])])  # [1, 2, 2]
    assert diag.interest_similarity(same)["mean"] == pytest.approx(1.0)
    interests = torch.stack([torch.stack([e1, e1]), torch.stack([e1, e2])])  # [2, 2, 2]: cosines 1 and 0
    out = diag.interest_similarity(interests)
    assert out["mean"] == pytest.approx(0.5) and out["min"] == pytest.approx(0.0) and out["max"] == pytest.approx(1.0)
    assert out["median"] == pytest.approx(0.5) and out["std"] == pytest.approx(0.5)
    np.testing.assert_allclose(out["pair_mean"], [[1.0, 0.5], [0.5, 1.0]])


def test_interest_similarity_three_interests_and_zero_vector():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    interests = torch.stack([torch.stack([e1, -e1, e2])])  # pairs: -1, 0, 0
    assert diag.interest_similarity(interests)["mean"] == pytest.approx(-1 / 3)
    with_zero = torch.stack([torch.stack([e1, torch.zeros(2)])])
    assert diag.interest_similarity(with_zero)["mean"] == pytest.approx(0.0)
    single = diag.interest_similarity(torch.ones(3, 1, 2))
    assert single["mean"] is None and single["users"] == 3


def test_target_interest_and_recall_by_interest():
    item_emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # padding, item 1, item 2
    interests = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]]])  # [2, 2, 2]
    assert diag.target_interest(interests, item_emb, np.array([1, 2])).tolist() == [0, 1]

    slots = np.array([0, 0, 1, 2, 2, 2])
    hits = np.array([True, False, True, False, False, True])
    out = diag.recall_by_interest(slots, hits, 4)
    assert out["targets"] == [2, 1, 3, 0] and out["hits"] == [1, 1, 1, 0]
    assert out["share"] == pytest.approx([1 / 3, 1 / 6, 1 / 2, 0])
    assert out["recall"][:3] == pytest.approx([0.5, 1.0, 1 / 3]) and out["recall"][3] is None
    assert out["balance"]["dead_slots"] == [3]
    with pytest.raises(ValueError):
        diag.recall_by_interest(np.array([4]), np.array([True]), 4)


def _planted_example():
    """6 items on 3 topics (two each), embeddings one-hot by topic; 3 users with K = 2, m = 2."""
    truth = GroundTruth(
        item_topic=np.array([0, 0, 1, 1, 2, 2]),
        user_topics=np.array([[0, 1], [2, 0], [1, 2]]),
        user_weights=np.full((3, 2), 0.5),
    )
    eye = torch.eye(3)
    item_emb = torch.cat([torch.zeros(1, 3), eye[[0, 0, 1, 1, 2, 2]]])  # [7, 3]
    interests = torch.stack([
        torch.stack([eye[0], eye[0]]),  # user 1: both about topic 0 -> covers dominant only
        torch.stack([eye[2], eye[1]]),  # user 2: topic 2 (dominant) and topic 1 (not planted)
        torch.stack([eye[1], eye[2]]),  # user 3: both planted topics
    ])  # [3, 2, 3]
    users = np.array([1, 2, 3])
    targets = np.array([3, 5, 1])  # topics 1 (minor of u1), 2 (dominant of u2), 0 (unplanted for u3)
    hits = np.array([False, True, True])
    return truth, users, targets, hits, interests, item_emb


def test_planted_recall_split():
    truth, users, targets, hits, interests, item_emb = _planted_example()
    out = diag.planted_diagnostics(truth, users, targets, hits, interests, item_emb, top_n=2)
    assert out["targets"] == {"dominant": 1, "minor": 1, "unplanted": 1}
    assert out["recall"] == {"dominant": 1.0, "minor": 0.0, "unplanted": 1.0}
    assert out["targets_by_rank"] == [1, 1] and out["recall_by_rank"] == [1.0, 0.0]


def test_planted_coverage():
    truth, users, _, _, interests, item_emb = _planted_example()
    cov = diag.topic_coverage(truth, users, interests, item_emb, top_n=2)
    assert cov["by_rank"] == pytest.approx([1.0, 1 / 3]) and cov["dominant"] == 1.0
    assert cov["minor"] == pytest.approx(1 / 3) and cov["mean"] == pytest.approx(4 / 6)
    assert cov["histogram"] == pytest.approx([0.0, 2 / 3, 1 / 3]) and cov["all_covered"] == pytest.approx(1 / 3)
    assert cov["distinct_topics_mean"] == pytest.approx(5 / 3)
    assert cov["off_planted_interests"] == pytest.approx(1 / 6) and cov["unassigned_interests"] == 0.0


def test_interest_topic_labels_need_strict_majority():
    item_topic = np.array([0, 0, 1, 1, 2, 2])
    eye = torch.eye(3)
    item_emb = torch.cat([torch.zeros(1, 3), eye[[0, 0, 1, 1, 2, 2]]])
    # top 4 of e0 + e1 are items 1-4: two from topic 0, two from topic 1 -> no majority
    interests = torch.stack([torch.stack([eye[0] + eye[1], eye[2]])])
    assert diag.interest_topic_labels(item_topic, interests, item_emb, top_n=4).tolist() == [[-1, -1]]
    assert diag.interest_topic_labels(item_topic, interests, item_emb, top_n=2).tolist() == [[-1, 2]]
    with pytest.raises(ValueError):
        diag.interest_topic_labels(item_topic, interests, item_emb, top_n=7)


@pytest.mark.order_sensitive
def test_interest_topic_labels_chunking(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    item_topic = np.arange(40) % 4
    item_emb = torch.randn(41, 8, generator=gen)
    interests = torch.randn(7, 3, 8, generator=gen)
    whole = diag.interest_topic_labels(item_topic, interests, item_emb, top_n=3)
    monkeypatch.setattr(diag, "_USER_CHUNK", 2)
    chunked = diag.interest_topic_labels(item_topic, interests, item_emb, top_n=3)
    # Chunks of 2 users score in products of another shape: an interest whose 3rd and 4th best items
    # tie within rounding may take either into its top 3. Every other label is the same.
    scores = (interests.double() @ item_emb[1:].double().T).sort(-1, descending=True).values  # [U, K, N]
    boundary = (scores[..., 2] - scores[..., 3]).abs() <= 1e-5 * scores.abs().amax(-1)  # [U, K]
    assert not bool(boundary.all())
    assert np.array_equal(chunked[~boundary.numpy()], whole[~boundary.numpy()])


def test_selection_over_training():
    records = [
        {"iter": 1000, "selection_shares": [1.0, 0.0]},
        {"iter": 2000, "selection_shares": [0.5, 0.5]},
        {"iter": 3000},  # a check without shares is skipped
    ]
    out = diag.selection_over_training(records)
    assert out["overall"]["shares"] == pytest.approx([0.75, 0.25])
    assert out["final"]["normalized_entropy"] == pytest.approx(1.0)
    assert [h["iter"] for h in out["history"]] == [1000, 2000]
    assert out["history"][0]["dead_interests"] == 1 and out["history"][0]["entropy"] == 0.0
    assert diag.selection_over_training([{"iter": 1}]) is None


def test_compute_diagnostics_is_json_ready():
    truth, users, targets, hits, interests, item_emb = _planted_example()
    out = diag.compute_diagnostics(
        interests, item_emb, targets, hits, users=users, truth=truth,
        selection_records=[{"iter": 10, "selection_shares": [0.9, 0.1]}], top_n=2,
    )
    assert json.loads(json.dumps(out)) == out
    assert out["users"] == 3 and out["num_interests"] == 2 and out["cutoff"] == 20
    # u2's target (topic 2) is scored by its slot 0 (e2); u1's and u3's targets score 0 on both
    # slots, and ties go to the first slot
    assert out["recall_by_interest"]["targets"] == [3, 0]
    assert out["recall_by_interest"]["recall"] == [pytest.approx(2 / 3), None]
    assert out["planted"]["recall"]["minor"] == 0.0
    assert out["selection"]["final"]["shares"] == pytest.approx([0.9, 0.1])
    plain = diag.compute_diagnostics(interests, item_emb, targets, hits, target_slots=np.array([1, 1, 0]))
    assert plain["planted"] is None and plain["selection"] is None
    assert plain["recall_by_interest"]["targets"] == [1, 2]
    with pytest.raises(ValueError, match="users"):
        diag.compute_diagnostics(interests, item_emb, targets, hits, truth=truth)
