"""Interest-balance diagnostics: are all K interests trained, distinct and useful?

BaM (Lee et al., BigData 2024) argues that hard interest selection (MIND: Li et al., CIKM 2019;
ComiRec: Cen et al., KDD 2020; REMI: Xie et al., RecSys 2023) trains a few interests and starves
the rest. These pure functions measure that from arrays, so they work on any model and on runs
written by the trainer (``diagnostics.json`` is :func:`compute_diagnostics`'s output):

- :func:`selection_balance`: how often each interest slot was selected; entropy; dead slots.
- :func:`interest_similarity`: how alike a user's K interest vectors are (collapse shows as ~1).
- :func:`recall_by_interest`: which slot retrieves each test target, and recall within each slot.
- :func:`planted_diagnostics`: on planted-interest data (``bamrec.data.synthetic``), recall on
  targets from the user's dominant vs minor interests, and how many planted topics the K vectors cover.

Definitions are in ``docs/diagnostics.md``. Every result is a JSON-ready dict (floats, ints, lists,
None for undefined values such as a recall over zero targets).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from bamrec.data.synthetic import GroundTruth

DEAD_SHARE = 0.01  # a slot selected for less than this share of targets is "dead"
COVERAGE_TOP_N = 10  # items retrieved per interest when deciding which topic it is about
_USER_CHUNK = 512  # users scored at once for topic coverage (bounds a [B, K, N] score block)


def selection_balance(counts: np.ndarray, dead_share: float = DEAD_SHARE) -> dict[str, Any]:
    """Balance of interest selection from per-slot counts (or shares) ``[K]``.

    Returns ``shares`` (counts / total), ``entropy`` of the shares in nats, ``normalized_entropy``
    (entropy / log K: 1 = uniform, 0 = one slot only; None when K = 1), ``dead_interests`` (number of
    slots with share < ``dead_share``), ``dead_slots`` (their indices) and ``total``.
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)  # [K]
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError("selection counts must be finite and non-negative")
    total = float(counts.sum())
    k = len(counts)
    shares = counts / total if total > 0 else np.zeros(k)  # [K]
    nonzero = shares[shares > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum()) if total > 0 else None
    normalized = entropy / math.log(k) if entropy is not None and k > 1 else None
    dead = np.flatnonzero(shares < dead_share)
    return {
        "shares": shares.tolist(),
        "entropy": entropy,
        "normalized_entropy": normalized,
        "dead_interests": int(len(dead)),
        "dead_slots": dead.tolist(),
        "total": total,
    }


def interest_similarity(interests: torch.Tensor) -> dict[str, Any]:
    """Cosine similarity between each user's interest vectors ``[U, K, D]`` (off-diagonal pairs).

    Returns the mean over users of each user's mean pairwise cosine (``mean``), the distribution of
    that per-user value (``std``, ``min``, ``p25``, ``median``, ``p75``, ``max``) and ``pair_mean``,
    the ``[K, K]`` cosine per slot pair averaged over users. A zero vector has cosine 0 with anything.
    With K = 1 there are no pairs and the summary values are None.
    """
    vectors = torch.as_tensor(interests).detach().to("cpu", torch.float64)  # [U, K, D]
    users, k, _ = vectors.shape
    unit = torch.nn.functional.normalize(vectors, dim=-1)  # [U, K, D]
    cosine = unit @ unit.transpose(1, 2)  # [U, K, K]
    result: dict[str, Any] = {"users": int(users), "pair_mean": _rounded(cosine.mean(0)) if users else None}
    if k < 2 or users == 0:
        return result | dict.fromkeys(("mean", "std", "min", "p25", "median", "p75", "max"))
    off_diagonal = ~torch.eye(k, dtype=torch.bool)  # [K, K]
    per_user = cosine[:, off_diagonal].mean(dim=1).numpy()  # [U]
    return result | _summary(per_user)


def target_interest(interests: torch.Tensor, item_embeddings: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """The slot whose score ``m_k . e_target`` is highest for each user (the interest that ranks the
    target under max-over-interests scoring, and hard selection's choice), int64 ``[U]``."""
    interests = torch.as_tensor(interests).detach()
    target_index = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=interests.device)
    target_emb = item_embeddings.detach()[target_index].to(interests.dtype)  # [U, D]
    scores = torch.einsum("ukd,ud->uk", interests, target_emb)  # [U, K]
    return scores.argmax(dim=1).cpu().numpy().astype(np.int64)


def recall_by_interest(target_interest: np.ndarray, hits: np.ndarray, num_interests: int) -> dict[str, Any]:
    """Per slot: how many test targets it retrieves (``targets``, ``share``) and the recall among them.

    ``target_interest`` [U] is the slot that scores each target highest (:func:`target_interest`);
    ``hits`` [U] says whether the target was in the top-k. ``recall[k]`` is None for a slot with no
    targets. ``balance`` is :func:`selection_balance` of the per-slot target counts.
    """
    slots = np.asarray(target_interest, dtype=np.int64)
    hits = np.asarray(hits, dtype=bool)
    if slots.shape != hits.shape:
        raise ValueError(f"target_interest and hits must have the same shape, got {slots.shape} and {hits.shape}")
    if len(slots) and (slots.min() < 0 or slots.max() >= num_interests):
        raise ValueError(f"target_interest values must lie in [0, {num_interests})")
    targets = np.bincount(slots, minlength=num_interests)  # [K]
    hit_counts = np.bincount(slots, weights=hits, minlength=num_interests)  # [K]
    users = max(len(slots), 1)
    return {
        "targets": targets.tolist(),
        "share": (targets / users).tolist(),
        "hits": hit_counts.astype(np.int64).tolist(),
        "recall": [float(h / t) if t else None for h, t in zip(hit_counts, targets)],
        "balance": selection_balance(targets) if len(slots) else None,
    }


def planted_diagnostics(
    truth: GroundTruth,
    users: np.ndarray,
    targets: np.ndarray,
    hits: np.ndarray,
    interests: torch.Tensor,
    item_embeddings: torch.Tensor,
    top_n: int = COVERAGE_TOP_N,
) -> dict[str, Any]:
    """Recall split by the target's planted origin, and planted-topic coverage of the K interests.

    Origin: a target whose topic is the user's dominant planted topic counts as ``dominant``, one
    on another planted topic as ``minor``, one on no planted topic as ``unplanted`` (the generator's
    noise). ``recall`` holds the hit rate within each group (None if empty), ``recall_by_rank`` the
    hit rate per planted rank (0 = dominant).

    Coverage: an interest vector is *about* topic t when a strict majority of its ``top_n`` items
    (by inner product over the whole catalogue, padding excluded) belong to t; a user's planted
    topic is *covered* when at least one of the user's K interests is about it. See
    :func:`topic_coverage` for the fields.
    """
    users = np.asarray(users, dtype=np.int64)
    hits = np.asarray(hits, dtype=bool)
    rank = truth.target_rank(users, np.asarray(targets, dtype=np.int64))  # [U] -1 / 0 / 1..m-1
    groups = {"dominant": rank == 0, "minor": rank > 0, "unplanted": rank < 0}
    m = truth.interests_per_user
    by_rank = [rank == r for r in range(m)]
    return {
        "targets": {name: int(mask.sum()) for name, mask in groups.items()},
        "recall": {name: _mean_or_none(hits[mask]) for name, mask in groups.items()},
        "targets_by_rank": [int(mask.sum()) for mask in by_rank],
        "recall_by_rank": [_mean_or_none(hits[mask]) for mask in by_rank],
        "coverage": topic_coverage(truth, users, interests, item_embeddings, top_n),
    }


def topic_coverage(
    truth: GroundTruth,
    users: np.ndarray,
    interests: torch.Tensor,
    item_embeddings: torch.Tensor,
    top_n: int = COVERAGE_TOP_N,
) -> dict[str, Any]:
    """How many of each user's planted topics its interest vectors cover (definition in
    :func:`planted_diagnostics`).

    Fields: ``mean`` (share of all (user, planted topic) pairs covered), ``by_rank`` ([m] share of
    users whose rank-r topic is covered), ``dominant`` and ``minor`` (the same for rank 0 and ranks
    >= 1), ``histogram`` ([m + 1] share of users covering 0..m of their topics), ``all_covered``,
    ``distinct_topics_mean`` (distinct topics the K interests are about, per user),
    ``off_planted_interests`` (share of interests about a topic the user does not have) and
    ``unassigned_interests`` (share of interests with no majority topic).
    """
    interest_topics = interest_topic_labels(truth.item_topic, interests, item_embeddings, top_n)  # [U, K]
    planted = truth.user_topics[np.asarray(users, dtype=np.int64) - 1]  # [U, m]
    covered = (interest_topics[:, :, None] == planted[:, None, :]).any(axis=1)  # [U, m]
    m = planted.shape[1]
    on_planted = (interest_topics[:, :, None] == planted[:, None, :]).any(axis=2)  # [U, K]
    assigned = interest_topics >= 0  # [U, K]
    ordered = np.sort(interest_topics, axis=1)  # [U, K], unassigned (-1) first
    # distinct assigned topics: the first assigned entry, plus every change between assigned entries
    changes = (np.diff(ordered, axis=1) != 0) & (ordered[:, 1:] >= 0)  # [U, K - 1]
    distinct = (ordered[:, 0] >= 0).astype(np.int64) + changes.sum(axis=1)  # [U]
    count = covered.sum(axis=1)  # [U]
    return {
        "top_n": int(top_n),
        "mean": _mean_or_none(covered),
        "by_rank": [_mean_or_none(covered[:, r]) for r in range(m)],
        "dominant": _mean_or_none(covered[:, 0]),
        "minor": _mean_or_none(covered[:, 1:]) if m > 1 else None,
        "histogram": (np.bincount(count, minlength=m + 1) / max(len(count), 1)).tolist(),
        "all_covered": _mean_or_none(count == m),
        "distinct_topics_mean": _mean_or_none(distinct),
        "off_planted_interests": _mean_or_none(assigned & ~on_planted),
        "unassigned_interests": _mean_or_none(~assigned),
    }


def interest_topic_labels(
    item_topic: np.ndarray, interests: torch.Tensor, item_embeddings: torch.Tensor, top_n: int = COVERAGE_TOP_N
) -> np.ndarray:
    """The topic each interest is about (strict majority of its ``top_n`` items), or -1; int64 ``[U, K]``."""
    num_items = len(item_topic)
    if not 0 < top_n <= num_items:
        raise ValueError(f"top_n must be in [1, {num_items}], got {top_n}")
    interests = torch.as_tensor(interests).detach()
    items = item_embeddings.detach()[1:].to(interests.device, interests.dtype)  # [N, D] without padding
    topic = torch.as_tensor(np.asarray(item_topic, dtype=np.int64), device=interests.device)  # [N]
    num_topics = int(topic.max()) + 1
    labels = []
    for lo in range(0, interests.shape[0], _USER_CHUNK):
        block = interests[lo : lo + _USER_CHUNK]  # [B, K, D]
        top = (block @ items.T).topk(top_n, dim=-1).indices  # [B, K, n]
        votes = torch.zeros(*block.shape[:2], num_topics, device=block.device)  # [B, K, T]
        votes.scatter_add_(-1, topic[top], torch.ones(top.shape, device=block.device))
        best, best_topic = votes.max(dim=-1)  # [B, K]
        labels.append(torch.where(2 * best > top_n, best_topic, -1).cpu())
    if not labels:
        return np.zeros((0, interests.shape[1]), dtype=np.int64)
    return torch.cat(labels).numpy().astype(np.int64)


def selection_over_training(
    records: Sequence[Mapping[str, Any]], dead_share: float = DEAD_SHARE
) -> dict[str, Any] | None:
    """Selection balance from the trainer's ``metrics.jsonl`` records (each with ``selection_shares``,
    the shares since the previous check). ``overall`` is the balance of the shares averaged over all
    checks, ``final`` that of the last check, ``history`` one entry per check; None without shares."""
    rows = [r for r in records if r.get("selection_shares")]
    if not rows:
        return None
    shares = np.array([r["selection_shares"] for r in rows], dtype=np.float64)  # [C, K]
    history = []
    for row, share in zip(rows, shares):
        balance = selection_balance(share, dead_share)
        history.append({"iter": row.get("iter"), "entropy": balance["entropy"],
                        "normalized_entropy": balance["normalized_entropy"],
                        "dead_interests": balance["dead_interests"]})
    return {
        "overall": selection_balance(shares.mean(axis=0), dead_share),
        "final": selection_balance(shares[-1], dead_share),
        "history": history,
    }


def compute_diagnostics(
    interests: torch.Tensor,
    item_embeddings: torch.Tensor,
    targets: np.ndarray,
    hits: np.ndarray,
    *,
    users: np.ndarray | None = None,
    truth: GroundTruth | None = None,
    selection_records: Sequence[Mapping[str, Any]] = (),
    target_slots: np.ndarray | None = None,
    cutoff: int = 20,
    top_n: int = COVERAGE_TOP_N,
) -> dict[str, Any]:
    """All diagnostics of a trained model on the test users, as written to ``diagnostics.json``.

    ``interests`` [U, K, D] are the test-time interests of the evaluated users, ``item_embeddings``
    [N + 1, D] the item table, ``targets`` [U] the test items, ``hits`` [U] whether each target was in
    the top-``cutoff``, ``users`` [U] internal user ids (needed with ``truth``), ``truth`` the planted
    ground truth (None for real data) and ``selection_records`` the ``metrics.jsonl`` records.
    ``target_slots`` [U] (the interest scoring each target highest, as ``EvalResult.target_interest``
    has it) is computed from ``interests`` when not given.
    """
    num_interests = int(interests.shape[1])
    if target_slots is None:
        target_slots = target_interest(interests, item_embeddings, targets)  # [U]
    slots = np.asarray(target_slots, dtype=np.int64)
    planted = None
    if truth is not None:
        if users is None:
            raise ValueError("planted diagnostics need the internal user ids (users=...)")
        planted = planted_diagnostics(truth, users, targets, hits, interests, item_embeddings, top_n)
    return {
        "users": int(len(slots)),
        "num_interests": num_interests,
        "cutoff": int(cutoff),
        "selection": selection_over_training(selection_records),
        "similarity": interest_similarity(interests),
        "recall_by_interest": recall_by_interest(slots, hits, num_interests),
        "planted": planted,
    }


def _mean_or_none(values: np.ndarray) -> float | None:
    values = np.asarray(values)
    return float(values.mean()) if values.size else None


def _summary(values: np.ndarray) -> dict[str, float]:
    p25, median, p75 = np.percentile(values, [25, 50, 75])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "p25": float(p25),
        "median": float(median),
        "p75": float(p75),
        "max": float(values.max()),
    }


def _rounded(matrix: torch.Tensor) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in matrix.tolist()]
