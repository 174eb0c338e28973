"""Single-interest baseline: one user vector from mean pooling (K = 1).

A reference point for the multi-interest backbones, in the spirit of YouTube DNN's averaged watch
history (P. Covington, J. Adams, E. Sargin, *Deep Neural Networks for YouTube Recommendations*,
RecSys 2016): ``u = W · mean_{valid l} e_l``, with ``W [D, D]`` (no bias) initialised to the
identity, so training starts from plain average pooling. With K = 1 every interest-selection mode
picks the only interest, and the multi-interest loss equals the selected one.

Deviations:
- No MLP tower, user features or position information: deliberately the simplest model that
  shares the item table with the output layer.
- The padding row 0 of the embedding table is kept and trainable (see ``comirec_sa``); it never
  enters the average.
"""

from __future__ import annotations

import torch
from torch import nn

from bamrec.models.base import MultiInterestBackbone
from bamrec.models.layers import init_parameters


class SingleInterest(MultiInterestBackbone):
    """Mean-pooling single-interest model: interests ``[B, 1, D]``."""

    weights_kind = "mean"

    def __init__(self, num_items: int, hidden_size: int = 64, seq_len: int = 50, seed: int = 0) -> None:
        super().__init__(num_items, hidden_size, 1, seq_len)
        self.linear = nn.Linear(hidden_size, hidden_size, bias=False)
        init_parameters(self, torch.Generator().manual_seed(seed))
        nn.init.eye_(self.linear.weight)

    def forward_with_weights(self, items: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The interest ``[B, 1, D]`` and its equal weights over the valid positions ``[B, 1, L]``."""
        weights = mask.to(self.embeddings.weight.dtype)  # [B, L]
        return self(items, mask), (weights / weights.sum(-1, keepdim=True).clamp_min(1.0)).unsqueeze(1)

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The single interest ``[B, 1, D]``: mapped mean of the valid history embeddings."""
        if items.shape[1] > self.seq_len:
            raise ValueError(f"history length {items.shape[1]} exceeds the model's seq_len {self.seq_len}")
        weights = mask.to(self.embeddings.weight.dtype)  # [B, L]
        counts = weights.sum(-1, keepdim=True).clamp_min(1.0)  # [B, 1]
        pooled = torch.einsum("bl,bld->bd", weights, self.embeddings(items)) / counts  # [B, D]
        return self.linear(pooled).unsqueeze(1)  # [B, 1, D]
