"""Evaluation through a retrieval index: what a served model would actually recall.

Each evaluated user's interests retrieve the top ``max(cutoffs)`` items under the ``standard``
protocol's exclusions (the whole history removed, the target itself kept when it was consumed
before; padding never ranked), from an ``ItemIndex`` (or the exact search). The target's rank is its
0-based place in that list, or ``num_items`` (beyond every cutoff) when it is not in it. With the
exact search or a flat index this gives the same recall / nDCG / MRR at every cutoff as
``bamrec.evaluation.ranking.evaluate`` (same score, same ties rule: score descending, item id
ascending); with HNSW or IVF it measures what the approximation loses.

The ``reference`` protocol (history scored 0 and kept ranked) has no retrieval form and is refused.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import EvalView, gather_windows
from bamrec.errors import ConfigError, DataError
from bamrec.evaluation.metrics import DEFAULT_CUTOFFS, EvalResult, check_cutoffs
from bamrec.data.csr import Csr, csr_rows, history_csr
from bamrec.evaluation.ranking import InterestFn, check_positive


def _exclusion_without_target(exclusion: Csr, targets: torch.Tensor) -> Csr:
    """``exclusion`` minus each user's own target (repeat consumption keeps the target rankable)."""
    rows = csr_rows(exclusion.offsets, len(exclusion.ids))  # [nnz]
    keep = exclusion.ids != targets[rows]  # [nnz]
    counts = torch.bincount(rows[keep], minlength=len(targets))  # [B]
    offsets = torch.zeros(len(targets) + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=offsets[1:])
    return Csr(offsets, exclusion.ids[keep])


def evaluate_with_search(
    interest_fn: InterestFn,
    searcher,
    item_embeddings: torch.Tensor,
    dataset: SequenceDataset,
    view: EvalView,
    *,
    seq_len: int,
    protocol: str = "standard",
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    user_batch_size: int = 256,
) -> EvalResult:
    """Ranks of ``view``'s targets in the lists ``searcher.search`` retrieves (see the module docstring).

    ``searcher`` is an ``ItemIndex`` or ``ExactSearch``; ``item_embeddings [N + 1, D]`` give each
    target's retrieving interest.
    """
    if protocol != "standard":
        raise ConfigError(f"retrieval through an index supports only the standard protocol, not {protocol!r}; "
                          "use --retrieval exact for the reference protocol")
    cutoffs = check_cutoffs(cutoffs)
    batch_size = check_positive("user_batch_size", user_batch_size)
    if len(view) == 0:
        raise DataError("nothing to evaluate: the view has no users (a user needs at least 3 interactions)")
    depth = min(max(cutoffs), dataset.num_items)
    items = torch.from_numpy(dataset.items)  # int32 [nnz]
    device = item_embeddings.device  # the model's: histories go there, interests come back to the CPU
    embeddings = item_embeddings.detach().cpu().float()  # [N + 1, D]
    ranks, chosen = [], []
    for lo in range(0, len(view), batch_size):
        hi = min(lo + batch_size, len(view))
        starts = torch.from_numpy(view.history_start[lo:hi])
        ends = torch.from_numpy(view.history_end[lo:hi])
        targets = torch.from_numpy(view.targets[lo:hi]).long()  # [B]
        history, mask = gather_windows(items, starts, ends, seq_len)  # [B, L]
        interests = interest_fn(history.to(device), mask.to(device)).detach().cpu().float()  # [B, K, D]
        exclusion = _exclusion_without_target(history_csr(items, starts, ends), targets)
        rows, _, _ = searcher.search(interests, depth, exclusion)  # [B, depth]
        hit = rows == targets.numpy()[:, None]  # [B, depth]
        found = hit.any(1)
        rank = np.where(found, hit.argmax(1), dataset.num_items)  # [B]
        # The interest that retrieves the target: argmax_k m_k . e_target, as the exact evaluation has it.
        target_scores = (interests * embeddings[targets].unsqueeze(1)).sum(-1)  # [B, K]
        ranks.append(rank.astype(np.int64))
        chosen.append(target_scores.argmax(1).numpy().astype(np.int64))
    return EvalResult(ranks=np.concatenate(ranks), target_interest=np.concatenate(chosen),
                      users=np.asarray(view.users, dtype=np.int64).copy(), protocol=protocol, cutoffs=cutoffs)
