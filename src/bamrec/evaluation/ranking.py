"""Exact, batched full-catalogue ranking of each user's held-out target, under two protocols.

A user's score for item ``i`` is the best match over the K interests, ``s(u, i) = max_k m_k . e_i``:
the multi-interest retrieval rule of MIND (Li et al., CIKM 2019) and ComiRec (Cen et al., KDD 2020),
which BaM (Lee et al., BigData 2024) and REMI (Xie et al., RecSys 2023) evaluate with. Ranking is
over the whole catalogue, never a sample. The two protocols (``docs/evaluation.md``,
docs/method.md, "Evaluation"):

- ``standard``: the user's whole known history is removed (never ranked), except the target itself
  when the user consumed it before (repeat consumption); padding item 0 is never ranked.
- ``reference``: reproduces the original BaM evaluator: the ids in the model's input window (the
  last ``seq_len`` history items, and 0 when the window is padded) get score exactly 0.0 and stay
  ranked; item 0 is ranked like any other item.

Ties are broken by item id ascending, so the 0-based rank of target ``t`` with score ``s_t`` is
``#{i ranked: s_i > s_t} + #{i ranked: s_i == s_t and i < t}``. Counting this per item chunk is exact
and cheaper than a top-k; memory is bounded by chunking users (``user_batch_size``) and items
(``item_chunk_size``): a chunk holds at most ``[B, C]`` scores, never ``[U, N]``.

Scores are compared as computed, in the embeddings' dtype. The target's own score is an elementwise
product-sum, the other items' come from a matrix product; the two can differ in the last bit, which
could only move a rank when another item's score is within rounding of the target's (never for the
exact zeros of the ``reference`` protocol). The target's own column is never counted against it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from bamrec.config import PROTOCOLS
from bamrec.data.csr import Csr, csr_pairs, csr_rows, history_csr, window_csr
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import EvalView, gather_windows
from bamrec.errors import BamrecError, ConfigError, DataError
from bamrec.evaluation.metrics import DEFAULT_CUTOFFS, EvalResult, check_cutoffs

InterestFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is one of ``PROTOCOLS``, else a ConfigError naming the valid ones."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    return protocol


def check_positive(name: str, value: int) -> int:
    """``value`` if it is a positive int, else a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# glibc's malloc hands freed memory at the top of the heap back to the OS once more than its trim
# threshold is free, a threshold that follows the largest block freed so far (twice it). Evaluation
# frees several MB of per-batch buffers after every batch, so the heap was trimmed and its pages
# faulted in again at every batch: about 150,000 page faults and a fifth of the CPU time of an
# ML-1M evaluation (docs/PERFORMANCE.md). Keeping the freed space for reuse is safe because every
# batch allocates the same buffers again and nothing long-lived is allocated in between (results
# go into arrays allocated up front), so the resident size stays flat in the number of users. The
# values are those glibc's dynamic rule reaches at its ceiling; ``release_freed_memory`` returns
# the space once the evaluation is done.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def _libc():
    """glibc through ctypes, or None where there is none (macOS, musl without these entry points)."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            _LIBC = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else False
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC or None


_LIBC = None


def hold_freed_memory() -> None:
    """Let glibc keep freed heap memory for reuse (thresholds above); a no-op without glibc."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def release_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def check_shapes(interests: torch.Tensor, item_embeddings: torch.Tensor) -> None:
    """Interests must be ``[B, K, D]`` and the item table ``[N + 1, D]`` with the same D."""
    if interests.ndim != 3:
        raise DataError(f"interests must be [B, K, D], got shape {tuple(interests.shape)}")
    if item_embeddings.ndim != 2 or item_embeddings.shape[1] != interests.shape[2]:
        raise DataError(
            f"item embeddings must be [N + 1, {interests.shape[2]}] to match the interests, "
            f"got {tuple(item_embeddings.shape)}"
        )
    if item_embeddings.shape[0] < 2:
        raise DataError("the item table needs the padding row and at least one item")


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Non-finite scores would rank silently wrong (NaN compares false), so refuse them."""
    if not bool(torch.isfinite(tensor).all()):
        raise BamrecError(f"{name} contain NaN or infinite values; the model is broken (check training for divergence)")


def score_chunk(
    per_interest: torch.Tensor, item_chunk: torch.Tensor, with_index: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Max over interests of ``m_k . e_i`` for one item chunk.

    ``per_interest`` is ``[K, B, D]`` (interest-major, contiguous), ``item_chunk`` ``[C, D]``.
    Returns ``(scores [B, C], index [B, C] int64 or None)``; ``index`` is the argmax interest, the
    lowest k on ties. One ``[B, C]`` product per interest keeps the working set at ``[B, C]``,
    which measured faster on CPU than materialising ``[B, K, C]`` and reducing it.
    """
    weights = item_chunk.t()  # [D, C]
    best = per_interest[0] @ weights  # [B, C]
    index = torch.zeros(best.shape, dtype=torch.int64, device=best.device) if with_index else None
    scores = torch.empty_like(best)  # [B, C] reused by every interest
    for k in range(1, per_interest.shape[0]):
        torch.matmul(per_interest[k], weights, out=scores)  # [B, C]
        if index is not None:
            index.masked_fill_(scores > best, k)
        torch.maximum(best, scores, out=best)
    return best, index


def pairs_in_chunk(
    rows: torch.Tensor, ids: torch.Tensor, start: int, stop: int, num_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(row, column)`` pairs of ids falling in item chunk ``[start, stop)``; columns chunk-relative."""
    if start == 0 and stop == num_rows:
        return rows, ids
    inside = (ids >= start) & (ids < stop)  # [nnz]
    return rows[inside], ids[inside] - start


def _count_ahead(scores: torch.Tensor, target_score: torch.Tensor, targets: torch.Tensor, start: int) -> torch.Tensor:
    """Per user, how many items of this chunk rank before the target: higher score, or equal and lower id."""
    threshold = target_score.unsqueeze(1)  # [B, 1]
    ahead = (scores > threshold).sum(1)  # [B]
    ties = scores == threshold  # [B, C]
    if bool(ties.any()):
        columns = torch.arange(start, start + scores.shape[1], device=scores.device)  # [C]
        ahead += (ties & (columns.unsqueeze(0) < targets.unsqueeze(1))).sum(1)
    return ahead


@torch.inference_mode()
def rank_targets(
    interests: torch.Tensor,
    item_embeddings: torch.Tensor,
    targets: torch.Tensor,
    exclusion: Csr | tuple[torch.Tensor, torch.Tensor] | None = None,
    protocol: str = "standard",
    item_chunk_size: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact 0-based rank of each target over the whole catalogue, from precomputed interests.

    ``interests [B, K, D]``, ``item_embeddings [N + 1, D]`` (row 0 = padding), ``targets [B]`` ids in
    ``1..N``. ``exclusion`` is a Csr ``(offsets [B + 1], ids [nnz])`` whose meaning follows
    ``protocol``: under ``standard`` the ids are removed (a user's own target among them stays
    rankable) and item 0 is never ranked; under ``reference`` they are scored exactly 0.0 (the
    target too, if listed) and item 0 is ranked. Returns ``(ranks [B] int64, target_interest [B]
    int64)``, the latter the argmax over interests of ``m_k . e_target`` (lowest k on ties).
    """
    protocol = check_protocol(protocol)
    chunk = check_positive("item_chunk_size", item_chunk_size)
    check_shapes(interests, item_embeddings)
    batch, num_rows = interests.shape[0], item_embeddings.shape[0]
    interests = interests.to(device=item_embeddings.device, dtype=item_embeddings.dtype)
    targets = targets.to(item_embeddings.device).long()
    if batch == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=item_embeddings.device)
        return empty, empty.clone()
    if int(targets.min()) < 1 or int(targets.max()) >= num_rows:
        raise DataError(f"targets must be item ids in [1, {num_rows - 1}]")
    check_finite("interests", interests)
    check_finite("item embeddings", item_embeddings)
    rows, ids = _exclusion_pairs(exclusion, targets, batch, num_rows)
    return _rank_valid(interests, item_embeddings, targets, rows, ids, protocol, chunk)


def _rank_valid(
    interests: torch.Tensor,
    item_embeddings: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    ids: torch.Tensor,
    protocol: str,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ranking itself, on inputs already validated; exclusion given as ``(rows, ids)`` pairs."""
    batch, num_rows = interests.shape[0], item_embeddings.shape[0]
    per_interest = interests.transpose(0, 1).contiguous()  # [K, B, D]
    target_scores = (interests * item_embeddings[targets].unsqueeze(1)).sum(-1)  # [B, K]
    target_score = target_scores.amax(1)  # [B]
    target_interest = target_scores.argmax(1)  # [B] first maximum: lowest k on ties
    if protocol == "reference":
        listed = torch.zeros(batch, dtype=torch.bool, device=targets.device)
        listed[rows[ids == targets[rows]]] = True
        target_score = torch.where(listed, torch.zeros_like(target_score), target_score)
    fill = 0.0 if protocol == "reference" else float("-inf")

    ranks = torch.zeros(batch, dtype=torch.int64, device=targets.device)
    for start in range(0, num_rows, chunk):
        stop = min(start + chunk, num_rows)
        scores, _ = score_chunk(per_interest, item_embeddings[start:stop])  # [B, C]
        chunk_rows, chunk_cols = pairs_in_chunk(rows, ids, start, stop, num_rows)
        # Flat index_fill_: much cheaper than advanced-index assignment (windows repeat id 0 often).
        scores.view(-1).index_fill_(0, chunk_rows * (stop - start) + chunk_cols, fill)
        if protocol == "standard" and start == 0:
            scores[:, 0] = float("-inf")
        # The target never counts against itself: its score is target_score, computed apart. This also
        # keeps a target listed in a standard exclusion (repeat consumption) rankable.
        own = torch.nonzero((targets >= start) & (targets < stop)).squeeze(1)  # [B_c]
        scores[own, targets[own] - start] = float("-inf")
        ranks += _count_ahead(scores, target_score, targets, start)
    return ranks, target_interest


def _exclusion_pairs(
    exclusion: Csr | tuple[torch.Tensor, torch.Tensor] | None, targets: torch.Tensor, batch: int, num_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, ids)`` of the exclusion, validated, on the targets' device."""
    if exclusion is None:
        empty = torch.zeros(0, dtype=torch.int64, device=targets.device)
        return empty, empty.clone()
    offsets, ids = exclusion
    return csr_pairs(Csr(offsets.to(targets.device), ids.to(targets.device)), batch, num_rows)


def evaluate(
    interest_fn: InterestFn,
    item_embeddings: torch.Tensor,
    dataset: SequenceDataset,
    view: EvalView,
    *,
    seq_len: int,
    protocol: str = "standard",
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    user_batch_size: int = 64,
    item_chunk_size: int = 16384,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> EvalResult:
    """Rank every evaluated user's target over the whole catalogue and return the ranks.

    ``interest_fn(history [B, L] int64, mask [B, L] bool) -> interests [B, K, D]`` is any callable
    (a backbone in eval mode, an imported reference model); it is called under
    ``torch.inference_mode()`` on the last ``seq_len`` history items of each user (left-aligned,
    zero-padded). ``item_embeddings [N + 1, D]`` must have one row per dataset item plus padding.
    Everything runs on ``device`` (default: the embeddings' device). Results do not depend on
    ``user_batch_size`` or ``item_chunk_size``, which only bound memory.
    """
    protocol = check_protocol(protocol)
    cutoffs = check_cutoffs(cutoffs)
    batch_size = check_positive("user_batch_size", user_batch_size)
    chunk = check_positive("item_chunk_size", item_chunk_size)
    seq_len = check_positive("seq_len", seq_len)
    if item_embeddings.ndim != 2 or item_embeddings.shape[0] != dataset.num_items + 1:
        raise DataError(
            f"item embeddings have shape {tuple(item_embeddings.shape)} but the dataset has {dataset.num_items} "
            f"items (expected [{dataset.num_items + 1}, D]); evaluate the model on the dataset it was trained on"
        )
    if len(view) == 0:
        raise DataError("nothing to evaluate: the view has no users (a user needs at least 3 interactions)")
    if view.targets.min() < 1 or view.targets.max() > dataset.num_items:
        raise DataError(f"view targets must be item ids in [1, {dataset.num_items}]; is the view from this dataset?")
    device = torch.device(device) if device is not None else item_embeddings.device
    embeddings = item_embeddings.detach().to(device)
    check_finite("item embeddings", embeddings)
    items = torch.from_numpy(dataset.items).to(device)  # int32 [nnz]
    starts = torch.from_numpy(view.history_start).to(device)  # [U_e]
    ends = torch.from_numpy(view.history_end).to(device)  # [U_e]
    targets = torch.from_numpy(view.targets).to(device)  # [U_e]

    # Written in place, batch by batch: per-batch result tensors kept alive in a list would each
    # take a small block out of the space the previous batch's large buffers freed, so the large
    # buffers of later batches no longer fit there and the heap grows with the number of users.
    ranks = torch.empty(len(view), dtype=torch.int64)  # [U_e]
    chosen = torch.empty(len(view), dtype=torch.int64)  # [U_e]
    batches = range(0, len(view), batch_size)
    hold_freed_memory()
    with torch.inference_mode():
        for lo in tqdm(batches, desc=f"evaluate ({protocol})", unit="batch", disable=not progress):
            hi = min(lo + batch_size, len(view))
            history, mask = gather_windows(items, starts[lo:hi], ends[lo:hi], seq_len)  # [B, L] each
            interests = _call_interest_fn(interest_fn, history, mask, embeddings)  # [B, K, D]
            # Built from the dataset itself, so the ids are valid by construction: no re-checking.
            if protocol == "reference":
                exclusion = window_csr(history)
            else:
                exclusion = history_csr(items, starts[lo:hi], ends[lo:hi])
            rows = csr_rows(exclusion.offsets, len(exclusion.ids))  # [nnz]
            batch_ranks, batch_interest = _rank_valid(
                interests, embeddings, targets[lo:hi], rows, exclusion.ids, protocol, chunk
            )
            ranks[lo:hi] = batch_ranks
            chosen[lo:hi] = batch_interest
    release_freed_memory()
    return EvalResult(
        ranks=ranks.numpy(),
        target_interest=chosen.numpy(),
        users=np.asarray(view.users, dtype=np.int64).copy(),
        protocol=protocol,
        cutoffs=cutoffs,
    )


def _call_interest_fn(
    interest_fn: InterestFn, history: torch.Tensor, mask: torch.Tensor, embeddings: torch.Tensor
) -> torch.Tensor:
    interests = interest_fn(history, mask)
    if not isinstance(interests, torch.Tensor) or interests.ndim != 3 or interests.shape[0] != history.shape[0]:
        shape = tuple(interests.shape) if isinstance(interests, torch.Tensor) else type(interests).__name__
        raise BamrecError(f"interest_fn must return interests [B, K, D] with B = {history.shape[0]}, got {shape}")
    if interests.shape[2] != embeddings.shape[1]:
        raise BamrecError(
            f"interest size {interests.shape[2]} does not match the item embedding size {embeddings.shape[1]}"
        )
    interests = interests.to(device=embeddings.device, dtype=embeddings.dtype)
    check_finite("interests", interests)
    return interests
