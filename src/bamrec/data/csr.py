"""Per-user id lists in CSR form (offsets + ids) on torch tensors: slices of a dataset's item array,
a batch's input windows, and the (row, id) pairs of an exclusion list.

Evaluation (which items a protocol removes from the ranking) and retrieval (``exclude_history``)
both build and read these; the dataset itself stores its sequences in the same form
(``bamrec.data.sequences``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from bamrec.errors import DataError


class Csr(NamedTuple):
    """Per-user item-id lists in CSR form: user ``b`` owns ``ids[offsets[b]:offsets[b + 1]]``."""

    offsets: torch.Tensor  # int64 [B + 1]
    ids: torch.Tensor  # int64 [nnz]


def history_csr(items: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> Csr:
    """The whole CSR slices ``items[start:end]`` of a batch, as a Csr (one gather, no Python loop)."""
    lengths = ends - starts  # [B]
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64, device=items.device)
    torch.cumsum(lengths, 0, out=offsets[1:])
    total = int(offsets[-1])
    # Entry j of row b sits at items[starts[b] + (j - offsets[b])].
    shift = torch.repeat_interleave(starts - offsets[:-1], lengths, output_size=total)  # [nnz]
    positions = shift + torch.arange(total, device=items.device)  # [nnz]
    return Csr(offsets, items[positions].long())


def window_csr(history: torch.Tensor) -> Csr:
    """Every id of the model's input windows ``history [B, L]`` (padding zeros included) as a Csr."""
    batch, length = history.shape
    offsets = torch.arange(batch + 1, device=history.device, dtype=torch.int64) * length  # [B + 1]
    return Csr(offsets, history.reshape(-1).long())


def csr_pairs(exclusion: Csr, batch: int, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a Csr over ``batch`` users and ``num_rows`` item rows; return ``(rows, ids)`` [nnz] each."""
    offsets, ids = exclusion.offsets.long(), exclusion.ids.long()
    if offsets.ndim != 1 or len(offsets) != batch + 1:
        raise DataError(
            f"exclusion offsets must have {batch + 1} entries (users + 1), got shape {tuple(offsets.shape)}"
        )
    if int(offsets[0]) != 0 or int(offsets[-1]) != len(ids) or bool((offsets[1:] < offsets[:-1]).any()):
        raise DataError("exclusion offsets must start at 0, never decrease and end at the number of ids")
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= num_rows):
        raise DataError(f"exclusion ids must lie in [0, {num_rows - 1}] (the item table's rows)")
    return csr_rows(offsets, len(ids)), ids


def csr_rows(offsets: torch.Tensor, nnz: int) -> torch.Tensor:
    """The owning row of every CSR entry, int64 [nnz]."""
    batch = len(offsets) - 1
    return torch.repeat_interleave(torch.arange(batch, device=offsets.device), torch.diff(offsets), output_size=nnz)
