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

On CPU the attention MLP runs on the valid positions only (the same formula, packed: training
windows are mostly padding); on a GPU, where finding them would synchronise with the host, on all.
Faster inference forms of the same formula are in ``comirec_sa_fast``, selected explicitly by
evaluation and retrieval (``bamrec.models.inference``).

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
from bamrec.models.layers import init_parameters, masked_logits


class ComiRecSA(MultiInterestBackbone):
    """Self-attentive multi-interest extractor (Cen et al., KDD 2020)."""

    weights_kind = "attention"

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
        # A Sequential so that the weights are named ``linear1.0.weight`` as in the original's checkpoints.
        self.linear1 = nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size, bias=False), nn.Tanh())
        self.linear2 = nn.Linear(4 * hidden_size, num_interests, bias=False)
        self.last_attention: torch.Tensor | None = None
        init_parameters(self, torch.Generator().manual_seed(seed))

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Interests ``[B, K, D]``; also stores the attention ``[B, K, L]`` in ``last_attention``."""
        length = items.shape[1]
        if length > self.seq_len:
            raise ValueError(f"history length {length} exceeds the model's seq_len {self.seq_len}")
        emb = self.embeddings(items) * mask.unsqueeze(-1).to(self.embeddings.weight.dtype)  # [B, L, D]
        hidden = emb + self.position_embedding[:, :length]  # [B, L, D]
        positions = self.valid_positions(mask)  # [P] or None
        if positions is not None:
            hidden = hidden.reshape(-1, self.hidden_size).index_select(0, positions)  # [P, D]
        logits = self.linear2(self.linear1(hidden))  # [P, K] or [B, L, K]
        attention = torch.softmax(scatter_logits(logits, positions, mask, self.num_interests), dim=-1)  # [B, K, L]
        self.last_attention = attention
        return torch.matmul(attention, emb)  # [B, K, D]

    def forward_with_weights(self, items: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interests ``[B, K, D]`` and their attention over the history ``[B, K, L]``."""
        interests = self(items, mask)  # [B, K, D]
        return interests, self.last_attention * mask[:, None, :].to(interests.dtype)  # [B, K, L]

    @staticmethod
    def valid_positions(mask: torch.Tensor) -> torch.Tensor | None:
        """Flat indices ``[P]`` of the valid positions of ``mask [B, L]`` on CPU; None elsewhere (all positions)."""
        return mask.reshape(-1).nonzero().squeeze(1) if mask.device.type == "cpu" else None


def scatter_logits(logits: torch.Tensor, positions: torch.Tensor | None, mask: torch.Tensor,
                   num_interests: int) -> torch.Tensor:
    """Attention logits ``[B, K, L]`` with padded positions at the dtype's minimum.

    ``logits`` are ``[P, K]`` for the valid positions ``positions`` (flat indices into ``B * L``)
    or dense ``[B, L, K]`` when ``positions`` is None. index_copy rather than advanced indexing:
    its backward is a cheap index_select.
    """
    if positions is None:
        return masked_logits(logits.transpose(1, 2), mask)  # [B, K, L]
    batch, length = mask.shape
    full = logits.new_full((batch * length, num_interests), torch.finfo(logits.dtype).min)  # [B * L, K]
    full = full.index_copy(0, positions, logits)  # [B * L, K]
    return full.view(batch, length, -1).transpose(1, 2)  # [B, K, L]
