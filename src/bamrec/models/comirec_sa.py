"""ComiRec-SA: multi-interest extraction by self-attention.

Y. Cen, J. Zhang, X. Zou, C. Zhou, H. Yang, J. Tang. *Controllable Multi-Interest Framework for
Recommendation.* KDD 2020. As used by BaM (J. Lee, J. Yun, U Kang, IEEE BigData 2024) and REMI
(Y. Xie et al., RecSys 2023):

    H = E_hist + P                       (learned position embedding P, [L, D])
    A = softmax_over_L(W2 · tanh(W1 · H)) (W1: D -> 4D, W2: 4D -> K, no biases; padding masked out)
    M = A · E_hist                        (the attention reads E + P, the sum uses E without P)

Parameter names follow the original BaM/REMI PyTorch code so that its checkpoints load through
``bamrec.compat.reference``: ``embeddings.weight [N+1, D]``, ``position_embedding [1, L, D]``,
``linear1.0.weight [4D, D]`` (followed by tanh) and ``linear2.weight [K, 4D]``.

The attention of the last forward pass is kept in ``last_attention`` ``[B, K, L]`` so that REMI's
routing regularisation (``bamrec.training.losses.routing_regularization``) can read it; no loss is
computed here.

Deviations:
- The padding row 0 of the embedding table is an ordinary trainable row (as in the original, which
  re-initialises it and trains it through the output layer). It never influences the interests:
  history embeddings are multiplied by the mask before use. Whether it is ever trained depends on
  the loss (only ``negatives="per-example"`` can draw it), whether it is ranked on the evaluation
  protocol.
- Histories shorter than ``seq_len`` are accepted (the first ``L`` position embeddings are used);
  the original always pads to ``seq_len``, which gives the same result because padded positions
  are masked.
- A history with no valid position gives all-zero interests (uniform attention over zeroed
  embeddings), as the original's finite mask value does; no NaN.
"""

from __future__ import annotations

import torch
from torch import nn

from bamrec.models.base import MultiInterestBackbone

# Valid positions per chunk of the streamed inference path (``_valid_logits_streamed``): a
# [1024, 4D] float32 work buffer is 1 MB at D = 64, the size of one core's L2 cache here.
POSITION_CHUNK = 1024
# Largest (N + 1) x L x K of the per-pair logits table (``_logits_from_pair_table``): 64 MB of float32.
PAIR_TABLE_MAX_ELEMENTS = 1 << 24


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``logits [B, K, L]`` with padded positions (``mask [B, L]`` False) set to the dtype's minimum.

    A finite minimum rather than -inf keeps a fully padded row finite (softmax becomes uniform).
    """
    return logits.masked_fill(~mask[:, None, :], torch.finfo(logits.dtype).min)  # [B, K, L]


def init_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Kaiming-normal for every parameter with two or more dimensions, zeros for the rest.

    The original BaM code initialises all weights this way (including the embedding table).
    """
    for param in module.parameters():
        if param.dim() > 1:
            nn.init.kaiming_normal_(param, generator=generator)
        else:
            nn.init.zeros_(param)


class ComiRecSA(MultiInterestBackbone):
    """Self-attentive multi-interest extractor (Cen et al., KDD 2020)."""

    def __init__(
        self,
        num_items: int,
        hidden_size: int = 64,
        num_interests: int = 4,
        seq_len: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__(num_items, hidden_size, num_interests, seq_len)
        self.position_embedding = nn.Parameter(torch.empty(1, seq_len, hidden_size))
        # A Sequential only so the weight is named ``linear1.0.weight`` like the original's checkpoints;
        # forward applies the tanh itself (in place at inference).
        self.linear1 = nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size, bias=False), nn.Tanh())
        self.linear2 = nn.Linear(4 * hidden_size, num_interests, bias=False)
        self.last_attention: torch.Tensor | None = None
        self._table_cache: tuple | None = None
        self._streamed_cache: tuple | None = None
        self._pair_cache: tuple | None = None
        init_parameters(self, torch.Generator().manual_seed(seed))

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Interests ``[B, K, D]``; also stores the attention ``[B, K, L]`` in ``last_attention``."""
        length = items.shape[1]
        if length > self.seq_len:
            raise ValueError(f"history length {length} exceeds the model's seq_len {self.seq_len}")
        emb = self.embeddings(items) * mask.unsqueeze(-1).to(self.embeddings.weight.dtype)  # [B, L, D]
        # On CPU only the valid positions go through the attention MLP: windows are mostly padding
        # (about 2/3 of a training batch on ML-1M at L = 200). On a GPU ``nonzero`` would synchronise
        # with the host, so the dense path is used there.
        positions = self._valid_positions(mask)  # [P] or None
        # The item-table shortcut only without autograd: its table is cached and detached from the graph,
        # so a forward that needs gradients (even in eval mode) takes the plain formula below.
        inference = not (self.training or torch.is_grad_enabled())
        use_table = inference and self.embeddings.num_embeddings < items.numel()
        if use_table and positions is not None:
            valid_logits = self._valid_logits_streamed(items, positions)  # [P, K]
            return self._read_out(self._scatter_logits(valid_logits, positions, mask), emb)
        if use_table:
            pre_activation = self._projected_from_item_table(items)  # [B, L, 4D]
        else:
            hidden = emb + self.position_embedding[:, :length]  # [B, L, D]
            if positions is not None:
                hidden = hidden.reshape(-1, self.hidden_size).index_select(0, positions)  # [P, D]
            pre_activation = self.linear1[0](hidden)  # [P, 4D] or [B, L, 4D]
        # In place when nothing needs the pre-activation for a backward pass (halves inference memory).
        activation = pre_activation.tanh_() if inference else torch.tanh(pre_activation)
        valid_logits = self.linear2(activation)  # [P, K] or [B, L, K]
        return self._read_out(self._scatter_logits(valid_logits, positions, mask), emb)

    def _read_out(self, logits: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Interests ``A · E_hist`` ``[B, K, D]`` from the masked logits ``[B, K, L]``; keeps ``A`` in ``last_attention``."""
        attention = torch.softmax(logits, dim=-1)  # [B, K, L]
        self.last_attention = attention
        return torch.matmul(attention, emb)  # [B, K, D]

    @staticmethod
    def _valid_positions(mask: torch.Tensor) -> torch.Tensor | None:
        """Flat indices ``[P]`` of the valid positions of ``mask [B, L]`` on CPU; None elsewhere (dense path)."""
        return mask.reshape(-1).nonzero().squeeze(1) if mask.device.type == "cpu" else None

    def _projected_from_item_table(self, items: torch.Tensor) -> torch.Tensor:
        """``W1 (E + P)`` ``[B, L, 4D]`` at inference on the dense path (GPU) as ``W1 E`` gathered from
        the cached item table plus ``W1 P``.

        With fewer catalogue rows than history positions (ML-1M: 3,707 rows for 200 positions of
        each of 1,024 users) this replaces most of the forward's FLOPs by a gather. Exact up to float
        rounding. Not used in training: there the gather's backward costs more than it saves.
        """
        return self._item_table()[items] + self._position_projection(items.shape[1])  # [B, L, 4D]

    def _position_projection(self, length: int) -> torch.Tensor:
        """``P[:length] W1^T`` ``[L, 4D]``: the position half of ``W1 (E + P)``."""
        return self.position_embedding[0, :length] @ self.linear1[0].weight.T

    def _valid_logits_streamed(self, items: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Attention logits of the valid positions ``[P, K]`` at inference on CPU, shifted by a
        constant per interest: ``W2 tanh(W1 E + W1 P) + W2 1``, whose softmax over the positions is
        the plain formula's.

        ``tanh(h) = 2 sigmoid(2h) - 1``, so ``W2 tanh(h) + W2 1 = (2 W2) sigmoid(2 W1 E + 2 W1 P)``:
        one cached table ``[N + 1 + L, 4D]`` holds ``2 W1 E`` (each item) and ``2 W1 P`` (each
        position), and an ``embedding_bag`` sums an item's row and its position's row in one pass.
        Why: torch's CPU ``tanh`` measured 3.3 ns per float32 element here, ``sigmoid`` 1.0 ns, and
        the gather, add and activation are each a full pass over the activations. These run
        ``POSITION_CHUNK`` positions at a time: the whole ``[P, 4D]`` activation of a batch (13 MB at
        64 users x 200 positions) would go through main memory at every pass, and its size changes
        with every batch (allocator retention, page faults); a chunk stays in cache and has the same
        size at every call. The doubling is exact in floating point; the dropped ``W2 1`` moves no
        softmax.
        """
        length = items.shape[1]
        flat_items = items.reshape(-1).index_select(0, positions)  # [P]
        slots = positions % length  # [P] position of each entry in its window
        if self.embeddings.num_embeddings * length * self.num_interests <= PAIR_TABLE_MAX_ELEMENTS:
            return self._logits_from_pair_table(flat_items, slots, length)
        return self._logits_of_pairs(flat_items, slots, length)

    def _logits_of_pairs(self, item_ids: torch.Tensor, slots: torch.Tensor, length: int) -> torch.Tensor:
        """The shifted logits ``[M, K]`` of ``M`` (item, position) pairs, ``POSITION_CHUNK`` at a time."""
        table = self._streamed_table(length)  # [N + 1 + L, 4D]
        rows = torch.stack((item_ids, slots + self.embeddings.num_embeddings), 1)  # [M, 2] item row, position row
        weight2 = 2.0 * self.linear2.weight.T  # [4D, K]
        total = len(rows)
        logits = table.new_empty(total, self.num_interests)  # [M, K]
        chunk = max(1, min(POSITION_CHUNK, total))
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            doubled = nn.functional.embedding_bag(rows[lo:hi], table, mode="sum")  # [C, 4D] 2 (W1 E + W1 P)
            torch.mm(doubled.sigmoid_(), weight2, out=logits[lo:hi])  # [C, K]
        return logits

    def _logits_from_pair_table(self, item_ids: torch.Tensor, slots: torch.Tensor, length: int) -> torch.Tensor:
        """``_logits_of_pairs`` through a table of every (item, position) pair's logits ``[(N + 1) L, K]``,
        each pair computed the first time a window holds it, kept until a weight changes.

        Why: an item's logits depend only on the item and its position in the window, and windows
        repeat pairs: the 6,040 ML-1M test windows hold 656,566 valid positions but 278,708 distinct
        pairs. Used while the table stays small (``PAIR_TABLE_MAX_ELEMENTS``: ML-1M at L = 200 and
        K = 4 needs 3M floats); its size is fixed, so memory does not grow with the users either.
        """
        logits, filled = self._pair_table(length)  # [(N + 1) L, K], [(N + 1) L] bool
        keys = item_ids * length + slots  # [P]
        missing = keys[~filled.index_select(0, keys)]  # [P_new] with repeats
        if len(missing):
            new = torch.unique(missing)  # [M]
            logits[new] = self._logits_of_pairs(new // length, new % length, length)
            filled[new] = True  # after the values: a concurrent reader never sees an unwritten row
        return logits.index_select(0, keys)  # [P, K]

    def _pair_table(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (empty at first) pair-logits table and its filled flags for ``_logits_from_pair_table``."""
        key = (self._table_key(self.embeddings.weight, self.linear1[0].weight, self.position_embedding,
                               self.linear2.weight), length)
        if self._pair_cache is None or self._pair_cache[0] != key:
            rows = self.embeddings.num_embeddings * length
            weight = self.embeddings.weight
            self._pair_cache = (key, weight.new_empty(rows, self.num_interests),
                                torch.zeros(rows, dtype=torch.bool, device=weight.device))
        return self._pair_cache[1], self._pair_cache[2]

    def _streamed_table(self, length: int) -> torch.Tensor:
        """``[2 E W1^T; 2 P[:length] W1^T]`` ``[N + 1 + length, 4D]`` for ``_valid_logits_streamed``,
        cached like the item table (same key, plus the position weights and ``length``)."""
        key = (self._table_key(self.embeddings.weight, self.linear1[0].weight, self.position_embedding), length)
        if self._streamed_cache is None or self._streamed_cache[0] != key:
            position = self._position_projection(length)  # [L, 4D]
            self._streamed_cache = (key, (2.0 * torch.cat((self._item_table(), position))).detach())
        return self._streamed_cache[1]

    @staticmethod
    def _table_key(*weights: torch.Tensor) -> tuple:
        """What a cached table depends on: each weight's storage, version counter, device and dtype,
        and whether inference mode is on (its tensors may not be used outside it)."""
        return (torch.is_inference_mode_enabled(),
                *((w.data_ptr(), w._version, w.device, w.dtype) for w in weights))

    def _item_table(self) -> torch.Tensor:
        """``E W1^T`` ``[N + 1, 4D]``, cached across inference calls until either weight changes.

        Only called without autograd (no_grad / inference_mode; see ``forward``). The key holds the
        parameters' version counters, which move on every in-place update (optimiser steps,
        ``load_state_dict``), and whether inference mode was on (its tensors may not be used
        elsewhere); ``train()`` drops the cache too, so even writes through ``.data`` (which bypass
        the counters) are never served stale once training has run.
        """
        weights = (self.embeddings.weight, self.linear1[0].weight)
        key = self._table_key(*weights)
        if self._table_cache is None or self._table_cache[0] != key:
            self._table_cache = (key, (weights[0] @ weights[1].T).detach())
        return self._table_cache[1]

    def train(self, mode: bool = True) -> "ComiRecSA":
        self._table_cache = self._streamed_cache = self._pair_cache = None
        return super().train(mode)

    def _scatter_logits(self, logits: torch.Tensor, positions: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """Attention logits ``[B, K, L]`` with padded positions at the dtype's minimum.

        ``logits`` are ``[P, K]`` for the valid positions ``positions`` (flat indices into ``B * L``)
        or dense ``[B, L, K]`` when ``positions`` is None. index_copy rather than advanced indexing:
        its backward is a cheap index_select.
        """
        if positions is None:
            return masked_logits(logits.transpose(1, 2), mask)  # [B, K, L]
        batch, length = mask.shape
        fill = torch.finfo(logits.dtype).min
        full = logits.new_full((batch * length, self.num_interests), fill)  # [B * L, K]
        full = full.index_copy(0, positions, logits)  # [B * L, K]
        return full.view(batch, length, -1).transpose(1, 2)  # [B, K, L]
