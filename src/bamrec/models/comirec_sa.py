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
        super().__init__()
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.num_interests = num_interests
        self.seq_len = seq_len
        self.embeddings = nn.Embedding(num_items + 1, hidden_size)
        self.position_embedding = nn.Parameter(torch.empty(1, seq_len, hidden_size))
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
        if items.device.type == "cpu":
            logits = self._packed_logits(hidden, mask)  # [B, K, L]
        else:
            logits = masked_logits(self.linear2(self.linear1(hidden)).transpose(1, 2), mask)  # [B, K, L]
        attention = torch.softmax(logits, dim=-1)  # [B, K, L]
        self.last_attention = attention
        return torch.matmul(attention, emb)  # [B, K, D]

    def _packed_logits(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention logits computed on the valid positions only, padded ones at the mask value.

        Same numbers as the dense path, but training windows are mostly padding (about 2/3 on ML-1M at
        L = 200), and the position-wise MLP is most of the step's work. On CPU the index lists cost
        nothing; on a GPU ``nonzero`` would synchronise, so the dense path is used there.
        """
        batch, length, dim = hidden.shape
        # Flat positions with index_select / index_copy: their backward passes are cheaper than
        # those of advanced indexing.
        positions = mask.reshape(-1).nonzero().squeeze(1)  # [P]
        valid_logits = self.linear2(self.linear1(hidden.reshape(-1, dim).index_select(0, positions)))  # [P, K]
        fill = torch.finfo(hidden.dtype).min
        logits = hidden.new_full((batch * length, self.num_interests), fill)  # [B * L, K]
        logits = logits.index_copy(0, positions, valid_logits)  # [B * L, K]
        return logits.view(batch, length, -1).transpose(1, 2)  # [B, K, L]
