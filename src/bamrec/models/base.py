"""The backbone contract shared by every multi-interest extractor.

A backbone maps a batch of histories to K interest vectors and owns the item embedding table,
which is shared with the output layer (scores are inner products with ``item_embeddings()``).
Nothing about losses, interest selection or sampling lives in a model file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class MultiInterestBackbone(nn.Module, ABC):
    """Base class: ``forward(items[B, L], mask[B, L]) -> interests[B, K, D]``.

    Attributes set by subclasses: ``num_items`` (N, excluding padding), ``hidden_size`` (D),
    ``num_interests`` (K), ``seq_len`` (L, the longest history the model accepts) and
    ``embeddings`` (an ``nn.Embedding(N + 1, D)``; row 0 is padding).
    """

    num_items: int
    hidden_size: int
    num_interests: int
    seq_len: int
    embeddings: nn.Embedding
    # What ``forward_with_weights`` returns as weights: "attention", "routing", "mean"; None: none.
    weights_kind: str | None = None

    def __init__(self, num_items: int, hidden_size: int, num_interests: int, seq_len: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.num_interests = num_interests
        self.seq_len = seq_len
        self.embeddings = nn.Embedding(num_items + 1, hidden_size)

    @abstractmethod
    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Interests ``[B, K, D]`` of histories ``items`` (int64 ``[B, L]``, 0 = padding) under ``mask`` (bool ``[B, L]``)."""

    def forward_with_weights(self, items: torch.Tensor, mask: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Interests ``[B, K, D]`` and the weight ``[B, K, L]`` each interest puts on each history
        position (padding 0), for showing what an interest is made of; None for a model whose
        interests are no weighted sum over the history (``weights_kind`` says which weights)."""
        return self(items, mask), None

    def item_embeddings(self) -> torch.Tensor:
        """The item table ``[N + 1, D]`` used for scoring; row 0 is padding."""
        return self.embeddings.weight
