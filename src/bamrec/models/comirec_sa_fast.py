"""ComiRec-SA's interests at inference, computed faster than the formula and equal to it.

``ComiRecSAInference(model)`` is selected explicitly, by ``bamrec.models.inference.inference_fn``
(which evaluation, the trainer's validation, retrieval and serving call); ``ComiRecSA.forward`` in
``comirec_sa`` stays the plain formula and is what training and ONNX export run. The tests
(``tests/models/test_comirec_sa_fast.py``) hold every path here equal to that formula.

An object of this class is a snapshot: its tables are built from the weights at the first call and
never refreshed, so it is made anew for each evaluation or service (``inference_fn`` does) and
must not outlive a change of the weights. Everything runs under ``torch.inference_mode()``.

Two exact rewrites of the attention logits ``W2 tanh(W1 (e_i + p_l))`` make it faster:

- **Gather instead of multiply.** ``W1 (e_i + p_l) = (E W1^T)[i] + (P W1^T)[l]``: with fewer
  catalogue rows than history positions in a batch (ML-1M: 3,707 rows against 200 positions of
  each of 64 users), gathering rows of the item table ``E W1^T [N + 1, 4D]`` replaces most of the
  forward's arithmetic. On GPU (no valid-position packing, which would synchronise with the host)
  this gather over all positions is the whole speed-up.
- **Logits per (item, position) pair, on CPU.** ``tanh(h) = 2 sigmoid(2h) - 1``, so
  ``W2 tanh(h) + W2 1 = (2 W2) sigmoid(2h)``: one table ``[N + 1 + L, 4D]`` holds ``2 W1 E`` and
  ``2 W1 P``, and an ``embedding_bag`` sums an item's row and its position's row in one pass; the
  constant ``W2 1`` per interest moves no softmax over positions. The doubling is exact in floating
  point. The pairs go ``POSITION_CHUNK`` at a time, so the work buffer stays in cache and has the
  same size at every call. While ``(N + 1) L K`` floats stay under ``PAIR_TABLE_MAX_ELEMENTS``, each
  pair's logits are computed the first time a window holds it and then read back: windows repeat
  pairs a lot, and the table's size is fixed, so memory does not grow with the users.

How much each saves is measured in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import torch
from torch import nn

from bamrec.models.comirec_sa import ComiRecSA, scatter_logits

# Valid positions per chunk of the pair path: a [1024, 4D] float32 work buffer is 1 MB at D = 64.
POSITION_CHUNK = 1024
# Largest (N + 1) x L x K of the pair-logits table: 64 MB of float32.
PAIR_TABLE_MAX_ELEMENTS = 1 << 24


class ComiRecSAInference:
    """``interests = fast(items [B, L], mask [B, L])``, equal to ``model(items, mask)`` up to float rounding."""

    def __init__(self, model: ComiRecSA) -> None:
        if not isinstance(model, ComiRecSA):
            raise TypeError(f"ComiRecSAInference needs a ComiRecSA, got {type(model).__name__}")
        self.model = model
        self._item_table: torch.Tensor | None = None  # [N + 1, 4D] E W1^T
        self._pair_rows: torch.Tensor | None = None  # [N + 1 + L, 4D] 2 E W1^T; 2 P W1^T
        self._pair_logits: torch.Tensor | None = None  # [(N + 1) L, K], filled on demand
        self._pair_filled: torch.Tensor | None = None  # [(N + 1) L] bool

    def __call__(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        model = self.model
        with torch.inference_mode():
            if model.embeddings.num_embeddings >= items.numel():
                return model(items, mask)  # a batch smaller than the catalogue: the formula is cheaper
            length = items.shape[1]
            if length > model.seq_len:
                raise ValueError(f"history length {length} exceeds the model's seq_len {model.seq_len}")
            emb = model.embeddings(items) * mask.unsqueeze(-1).to(model.embeddings.weight.dtype)  # [B, L, D]
            positions = model.valid_positions(mask)  # [P] on CPU, None elsewhere
            if positions is None:
                projected = self.item_table()[items] + self._position_projection()[:length]  # [B, L, 4D]
                logits = model.linear2(projected.tanh_())  # [B, L, K]
            else:
                flat_items = items.reshape(-1).index_select(0, positions)  # [P]
                logits = self._pair_logits_of(flat_items, positions % length)  # [P, K]
            attention = torch.softmax(scatter_logits(logits, positions, mask, model.num_interests), dim=-1)  # [B, K, L]
            return torch.matmul(attention, emb)  # [B, K, D]

    def item_table(self) -> torch.Tensor:
        """``E W1^T`` ``[N + 1, 4D]``."""
        if self._item_table is None:
            self._item_table = self.model.embeddings.weight @ self.model.linear1[0].weight.T
        return self._item_table

    def _position_projection(self) -> torch.Tensor:
        """``P W1^T`` ``[L, 4D]``: the position half of ``W1 (E + P)``."""
        return self.model.position_embedding[0] @ self.model.linear1[0].weight.T

    def _pair_logits_of(self, item_ids: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Logits ``[P, K]`` (shifted by ``W2 1``) of (item, position) pairs, through the pair table when it fits."""
        model = self.model
        rows = model.embeddings.num_embeddings * model.seq_len
        if rows * model.num_interests > PAIR_TABLE_MAX_ELEMENTS:
            return self._logits_of_pairs(item_ids, slots)
        if self._pair_logits is None:
            self._pair_logits = model.embeddings.weight.new_empty(rows, model.num_interests)
            self._pair_filled = torch.zeros(rows, dtype=torch.bool, device=model.embeddings.weight.device)
        keys = item_ids * model.seq_len + slots  # [P]
        missing = keys[~self._pair_filled.index_select(0, keys)]  # [P_new] with repeats
        if len(missing):
            new = torch.unique(missing)  # [M]
            self._pair_logits[new] = self._logits_of_pairs(new // model.seq_len, new % model.seq_len)
            self._pair_filled[new] = True
        return self._pair_logits.index_select(0, keys)  # [P, K]

    def _logits_of_pairs(self, item_ids: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """``(2 W2) sigmoid(2 W1 e_i + 2 W1 p_l)`` ``[M, K]`` of ``M`` pairs, ``POSITION_CHUNK`` at a time."""
        model = self.model
        if self._pair_rows is None:
            self._pair_rows = 2.0 * torch.cat((self.item_table(), self._position_projection()))  # [N + 1 + L, 4D]
        rows = torch.stack((item_ids, slots + model.embeddings.num_embeddings), 1)  # [M, 2] item row, position row
        weight2 = 2.0 * model.linear2.weight.T  # [4D, K]
        total = len(rows)
        logits = self._pair_rows.new_empty(total, model.num_interests)  # [M, K]
        chunk = max(1, min(POSITION_CHUNK, total))
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            doubled = nn.functional.embedding_bag(rows[lo:hi], self._pair_rows, mode="sum")  # [C, 4D]
            torch.mm(doubled.sigmoid_(), weight2, out=logits[lo:hi])  # [C, K]
        return logits
