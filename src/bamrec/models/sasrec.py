"""SASRec: self-attentive sequential recommendation, the single-interest baseline (K = 1).

W.-C. Kang, J. McAuley. *Self-Attentive Sequential Recommendation.* ICDM 2018. Trained in bamrec
on every position with full-softmax cross entropy (``--loss full``), the strong variant of A. Klenitskiy, A. Vasilev,
*Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?* RecSys 2023, or with the
sampled softmax (``--loss sampled``):

    H_0 = sqrt(D) · E_hist + P                 (learned position embedding P, [L, D]; dropout)
    for each of ``num_blocks`` blocks:
        H = H + Dropout(CausalAttention(LN(H)))   (position l attends to valid positions <= l)
        H = H + Dropout(W_2 ReLU(W_1 LN(H)))      (point-wise feed-forward, D -> D -> D)
        H = H · mask                              (padded positions stay zero)
    u = LN(H)[last valid position]             the single user vector [B, 1, D]

Items are scored by ``u · e_i`` with the shared embedding table, like every bamrec backbone, so the
evaluation and the split are the same as for the multi-interest models.

Deviations:
- bamrec's histories are left-aligned and padded at the end (``data.sampling``), the original's are
  right-aligned; so position 0 is the oldest item of the window here, and the user vector is read at
  the last *valid* position (``mask.sum() - 1``), not at the last column. With the causal mask,
  padding after the last valid item cannot reach it.
- Trained as in the paper, with a next-item loss at every position of the window (``targets="all"``,
  the preset for ``sasrec``; ``training.objective``), but with a softmax (full, or sampled with
  shared negatives) instead of the paper's binary cross entropy with one negative: the full softmax
  is Klenitskiy & Vasilev's SASRec+. ``targets="one"`` trains it like the multi-interest models
  instead (one target after a sampled prefix per example).
- Pre-LayerNorm blocks as in the paper's released code (the paper's equations put the LayerNorm
  after the residual); a final LayerNorm on the output, as there.
- Weights start like the other backbones (Kaiming-normal matrices, zero vectors), LayerNorms at the
  identity.
- A history with no valid position gives a zero user vector.

Speed (CPU): dropout masks are drawn as ``rand_like(x) >= p`` (``inverted_dropout`` below) rather than with
``F.dropout``, and training-time attention with dropout is written out (``attention_with_dropout``)
rather than left to ``scaled_dot_product_attention``: ATen's CPU ``bernoulli_`` draws element by element
where MKL's generator is not used (AMD CPUs), about 3x slower than ``rand_like`` for the same
distribution, and SDPA with dropout falls back to its unfused path anyway. One training step on
ML-1M (batch 128, L = 200, full softmax, 2 threads) takes 10-16% less time (two paired runs). Same distribution, another
random stream: a SASRec cell trained before this (commit recorded in each cell) does not replay
bit for bit on later code. On other devices (CUDA) both are the fused torch kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bamrec.models.base import MultiInterestBackbone
from bamrec.models.layers import init_parameters


def inverted_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1 / (1 - p)``.

    On CPU the mask is ``rand_like(x) >= p`` (see the module docstring: faster than ``F.dropout``'s
    Bernoulli draws there); elsewhere ``F.dropout``."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    keep = torch.rand_like(x) >= p  # [same as x] bool, P(keep) = 1 - p
    return x * keep * (1.0 / (1.0 - p))


class Dropout(nn.Module):
    """``nn.Dropout`` with the CPU mask of :func:`inverted_dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return inverted_dropout(x, self.p, self.training)


def attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
                           p: float) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d), masked to allowed)`` with :func:`inverted_dropout` on the weights, times ``v``:
    ``scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)`` written out for CPU
    training. ``q, k, v [B, heads, L, d]``, ``allowed [B, 1, L, L]`` (every row has a True) -> ``[B, heads, L, d]``."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # [B, heads, L, L]
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)  # [B, heads, L, L]
    return torch.matmul(inverted_dropout(weights, p, True), v)  # [B, heads, L, d]


class CausalSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention where position l sees the valid positions <= l."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x [B, L, D]``, ``allowed [B, 1, L, L]`` (query row, key column) -> ``[B, L, D]``."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        # q, k, v: [B, heads, L, D / heads]; softmax(q k^T / sqrt(d) masked) v: one fused kernel, except in
        # CPU training with dropout, where SDPA is unfused anyway and the written-out form draws faster masks
        if self.training and self.dropout > 0 and x.device.type == "cpu":
            y = attention_with_dropout(q, k, v, allowed, self.dropout)  # [B, heads, L, D / heads]
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                               dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, dim))  # [B, L, D]


class Block(nn.Module):
    """One pre-LayerNorm transformer block: causal attention, then the point-wise feed-forward."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.attention = CausalSelfAttention(hidden_size, num_heads, dropout)
        self.ffn_norm = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), Dropout(dropout),
                                 nn.Linear(hidden_size, hidden_size))
        self.dropout = Dropout(dropout)

    def forward(self, h: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = h + self.dropout(self.attention(self.attention_norm(h), allowed))  # [B, L, D]
        h = h + self.dropout(self.ffn(self.ffn_norm(h)))  # [B, L, D]
        return h * keep  # [B, L, D], padded positions back to zero


class SASRec(MultiInterestBackbone):
    """Self-attentive sequential recommender (Kang & McAuley, ICDM 2018): interests ``[B, 1, D]``."""

    def __init__(self, num_items: int, hidden_size: int = 64, seq_len: int = 50, num_blocks: int = 2,
                 num_heads: int = 1, dropout: float = 0.2, seed: int = 0) -> None:
        super().__init__(num_items, hidden_size, 1, seq_len)
        self.position_embedding = nn.Parameter(torch.empty(seq_len, hidden_size))
        self.input_dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden_size, num_heads, dropout) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(hidden_size)
        init_parameters(self, torch.Generator().manual_seed(seed))
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def sequence_states(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The output at every position ``[B, L, D]`` (position l has seen only positions <= l)."""
        length = items.shape[1]
        if length > self.seq_len:
            raise ValueError(f"history length {length} exceeds the model's seq_len {self.seq_len}")
        keep = mask.unsqueeze(-1).to(self.embeddings.weight.dtype)  # [B, L, 1]
        h = self.embeddings(items) * math.sqrt(self.hidden_size) + self.position_embedding[:length]  # [B, L, D]
        h = self.input_dropout(h) * keep  # [B, L, D]
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()  # [L, L]
        # Valid keys at or before the query; the diagonal always, so a padded query row is never empty.
        # (A float eye cast to bool: onnxruntime has no boolean EyeLike, and the ONNX export must run.)
        diagonal = torch.eye(length, device=items.device).bool()  # [L, L]
        allowed = (causal & mask[:, None, :]) | diagonal  # [B, L, L]
        allowed = allowed.unsqueeze(1)  # [B, 1, L, L]
        for block in self.blocks:
            h = block(h, allowed, keep)
        return self.final_norm(h) * keep  # [B, L, D]

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The user vector ``[B, 1, D]``: the output at the last valid position of each history."""
        states = self.sequence_states(items, mask)  # [B, L, D]
        last = (mask.sum(dim=1) - 1).clamp_min(0)  # [B]
        # A gather rather than indexing with arange(B): the traced ONNX graph keeps B dynamic.
        user = states.gather(1, last[:, None, None].expand(-1, 1, states.shape[-1]))  # [B, 1, D]
        return user  # [B, 1, D] (zero for an empty history: its states are masked)
