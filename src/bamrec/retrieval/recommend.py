"""Exact top-k retrieval over the whole catalogue for multi-interest users.

An item's score is ``max_k m_k . e_i`` (MIND, Li et al. CIKM 2019; ComiRec, Cen et al. KDD 2020;
used unchanged by REMI, Xie et al. RecSys 2023, and BaM, Lee et al. BigData 2024), which equals
merging the per-interest top-k lists by score. Items are scored chunk by chunk and a running top-k
is merged, so memory stays at ``[B, C]`` scores per chunk. Padding item 0 is never returned; ties
are broken by item id ascending (the order of a stable sort by descending score).

When a user's exclusions leave fewer than ``k`` items, the missing places hold item id -1, score
-inf and interest -1; ``k`` larger than the catalogue is an error.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import gather_windows
from bamrec.errors import ConfigError, DataError
from bamrec.data.csr import Csr, csr_pairs, history_csr
from bamrec.evaluation.ranking import InterestFn, check_finite, check_positive, check_shapes, pairs_in_chunk, score_chunk

Exclude = Csr | tuple | Sequence | None
_KEY_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def as_csr(exclude: Exclude, batch: int, device: torch.device | str = "cpu") -> Csr | None:
    """Normalise an exclusion argument to a Csr on ``device``.

    Accepts None, a ``Csr`` or plain ``tuple`` ``(offsets [B + 1], ids [nnz])`` (tensors or arrays),
    or any other sequence (a list) of ``batch`` per-user id arrays.
    """
    if exclude is None:
        return None
    if isinstance(exclude, tuple):
        if len(exclude) != 2:
            raise DataError("an exclusion tuple must be (offsets, ids); pass per-user id arrays as a list")
        offsets, ids = (torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x) for x in exclude)
        return Csr(offsets.to(device=device, dtype=torch.int64), ids.to(device=device, dtype=torch.int64))
    if len(exclude) != batch:
        raise DataError(f"exclude has {len(exclude)} per-user id lists but there are {batch} users")
    per_user = [np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.int64).reshape(-1) for x in exclude]
    lengths = np.array([len(x) for x in per_user], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate(per_user) if per_user else np.zeros(0, dtype=np.int64)
    return Csr(torch.from_numpy(offsets).to(device), torch.from_numpy(ids).to(device))


def order_keys(scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """int64 keys whose descending order is (score descending, id ascending), for float32 scores.

    The score's IEEE bits are mapped to an order-preserving integer in the high 32 bits and the
    complemented id fills the low 32 bits, so one ``topk`` on the keys breaks ties by id exactly
    (``torch.topk`` alone makes no promise about which of equal values it returns).
    """
    bits = (scores.float() + 0.0).view(torch.int32).long()  # + 0.0 turns -0.0 into +0.0: they tie
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: larger magnitude, smaller key
    return ordered * (1 << 32) + ((1 << 32) - 1 - ids)


def _best_positions(scores: torch.Tensor, ids: torch.Tensor, take: int) -> torch.Tensor:
    """Positions ``[B, take]`` of the best entries by (score desc, id asc).

    ``ids`` must be ascending among equal scores in each row (true for a chunk's columns and for the
    concatenation of an earlier top-k with a later chunk's), which the stable-sort path relies on.
    """
    if scores.dtype in _KEY_DTYPES:
        return order_keys(scores, ids).topk(take, dim=1).indices
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :take]


@torch.inference_mode()
def topk_items(
    interests: torch.Tensor,
    item_embeddings: torch.Tensor,
    k: int,
    exclude: Exclude = None,
    item_chunk_size: int = 16384,
    check_items: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best items per user under ``max_k m_k . e_i``, best first.

    ``interests [B, K, D]``, ``item_embeddings [N + 1, D]`` (row 0 = padding, never returned),
    ``exclude``: None, a Csr ``(offsets [B + 1], ids [nnz])`` or a list of ``B`` per-user id arrays of
    items never to return. Returns ``(item_ids [B, k] int64, scores [B, k], interest_index [B, k]
    int64)``; ``interest_index`` is the interest giving the score (lowest k on ties). Places beyond a
    user's rankable items hold id -1, score -inf, interest -1. ``check_items=False`` skips the
    finiteness check of the item table (a pass over all of it) for a caller that checked it once,
    as a long-lived searcher does.
    """
    check_shapes(interests, item_embeddings)
    chunk = check_positive("item_chunk_size", item_chunk_size)
    batch, num_rows, device = interests.shape[0], item_embeddings.shape[0], item_embeddings.device
    k = check_positive("k", k)
    if k > num_rows - 1:
        raise ConfigError(f"k={k} is larger than the catalogue ({num_rows - 1} items); ask for at most {num_rows - 1}")
    interests = interests.to(device=device, dtype=item_embeddings.dtype)
    check_finite("interests", interests)
    if check_items:
        check_finite("item embeddings", item_embeddings)
    csr = as_csr(exclude, batch, device)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    rows, ids = csr_pairs(csr, batch, num_rows) if csr is not None else (empty, empty)

    per_interest = interests.transpose(0, 1).contiguous()  # [K, B, D]
    best: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # ids, scores, interest [B, <=k]
    for start in range(0, num_rows, chunk):
        stop = min(start + chunk, num_rows)
        scores, index = score_chunk(per_interest, item_embeddings[start:stop], with_index=True)  # [B, C]
        chunk_rows, chunk_cols = pairs_in_chunk(rows, ids, start, stop, num_rows)
        scores[chunk_rows, chunk_cols] = float("-inf")
        if start == 0:
            scores[:, 0] = float("-inf")
        columns = torch.arange(start, stop, device=device).expand(batch, -1)  # [B, C]
        candidate = (columns, scores, index)
        if best is not None:  # earlier chunks first: their ids are lower, as _best_positions needs
            candidate = tuple(torch.cat(pair, dim=1) for pair in zip(best, candidate))
        keep = _best_positions(candidate[1], candidate[0], min(k, candidate[1].shape[1]))  # [B, <=k]
        best = tuple(part.gather(1, keep) for part in candidate)
    item_ids, scores, index = best
    missing = torch.isneginf(scores)  # [B, k] excluded or padding: fewer rankable items than k
    item_ids = item_ids.masked_fill(missing, -1)
    index = index.masked_fill(missing, -1)
    return item_ids, scores, index


def recommend(
    interest_fn: InterestFn,
    item_embeddings: torch.Tensor,
    dataset: SequenceDataset,
    users: np.ndarray,
    k: int,
    *,
    seq_len: int,
    exclude_history: bool = True,
    user_batch_size: int = 128,
    item_chunk_size: int = 16384,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` next items for internal ``users`` (1-based) from their whole known sequences.

    The model sees the last ``seq_len`` items of each sequence; with ``exclude_history`` every item
    the user already has is left out. Returns numpy ``(item_ids [U, k] int64 internal ids, scores
    [U, k], interest_index [U, k] int64)``; map ids to original ones with ``dataset.item_ids[id - 1]``.
    """
    batch_size = check_positive("user_batch_size", user_batch_size)
    check_positive("seq_len", seq_len)
    check_positive("k", k)
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    if len(users) and (users.min() < 1 or users.max() > dataset.num_users):
        raise DataError(f"user ids must be internal ids in [1, {dataset.num_users}]")
    if item_embeddings.ndim != 2 or item_embeddings.shape[0] != dataset.num_items + 1:
        raise DataError(
            f"item embeddings have shape {tuple(item_embeddings.shape)} but the dataset has {dataset.num_items} "
            f"items (expected [{dataset.num_items + 1}, D])"
        )
    device = torch.device(device) if device is not None else item_embeddings.device
    embeddings = item_embeddings.detach().to(device)
    items = torch.from_numpy(dataset.items).to(device)  # int32 [nnz]
    starts = torch.from_numpy(dataset.offsets[users - 1]).to(device)  # [U]
    ends = torch.from_numpy(dataset.offsets[users]).to(device)  # [U]
    parts = []
    with torch.inference_mode():
        for lo in range(0, len(users), batch_size):
            hi = min(lo + batch_size, len(users))
            history, mask = gather_windows(items, starts[lo:hi], ends[lo:hi], seq_len)  # [B, L]
            interests = interest_fn(history, mask)  # [B, K, D]
            exclude = history_csr(items, starts[lo:hi], ends[lo:hi]) if exclude_history else None
            parts.append([t.cpu() for t in topk_items(interests, embeddings, k, exclude, item_chunk_size)])
    if not parts:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return tuple(torch.cat(column).numpy() for column in zip(*parts))  # type: ignore[return-value]
