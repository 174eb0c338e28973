"""ComiRec-DR: multi-interest extraction by dynamic routing with per-interest bilinear maps.

Y. Cen, J. Zhang, X. Zou, C. Zhou, H. Yang, J. Tang. *Controllable Multi-Interest Framework for
Recommendation.* KDD 2020 (the "DR" variant). Not part of the BaM code; provided as a further
backbone for BaM's selection and losses (J. Lee, J. Yun, U Kang, IEEE BigData 2024).

Each interest k has its own map ``W_k [D, D]``: ``ê_{k|l} = W_k e_l``. Routing as in
``bamrec.models.layers.dynamic_routing``: ``routing_iters`` rounds with squash, all rounds but the last
on gradient-stopped predictions. The coupling weights of a position are a softmax over the K
interests (CapsNet, Sabour et al. 2017; ComiRec's code), and the routing logits start at zero.

Why zeros: the per-interest maps already make the K capsules differ, so no random start is needed
to break symmetry, and zeros make training and evaluation deterministic (MIND, with one shared map,
needs random logits).

Deviations:
- One map per interest, shared over positions (``W: [K, D, D]``). The paper writes ``W_ij`` for
  history position i and interest j, i.e. a separate map per position as well; sharing over
  positions divides the parameter count by ``seq_len`` and makes the model independent of the
  window length.
- The padding row 0 of the embedding table is kept and trainable (see ``comirec_sa``); histories
  never read it because embeddings are multiplied by the mask.
"""

from __future__ import annotations

import torch
from torch import nn

from bamrec.models.base import MultiInterestBackbone
from bamrec.models.layers import init_parameters, routing


class ComiRecDR(MultiInterestBackbone):
    """Dynamic-routing multi-interest extractor with per-interest maps (Cen et al., KDD 2020)."""

    weights_kind = "routing"

    def __init__(
        self,
        num_items: int,
        hidden_size: int = 64,
        num_interests: int = 4,
        seq_len: int = 50,
        routing_iters: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(num_items, hidden_size, num_interests, seq_len)
        self.routing_iters = routing_iters
        self.bilinear = nn.Parameter(torch.empty(num_interests, hidden_size, hidden_size))  # W_k: [K, D_out, D_in]
        generator = torch.Generator().manual_seed(seed)
        init_parameters(self, generator)
        # Initialise each W_k like a D -> D linear layer (fan-in D), not as one [K, D, D] tensor.
        nn.init.kaiming_normal_(self.bilinear.data.view(-1, hidden_size), generator=generator)

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Interests ``[B, K, D]`` of histories ``items [B, L]`` under ``mask [B, L]``."""
        return self.forward_with_weights(items, mask)[0]

    def forward_with_weights(self, items: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interests ``[B, K, D]`` and the last routing round's coupling weights ``[B, K, L]``."""
        batch, length = items.shape
        if length > self.seq_len:
            raise ValueError(f"history length {length} exceeds the model's seq_len {self.seq_len}")
        emb = self.embeddings(items) * mask.unsqueeze(-1).to(self.embeddings.weight.dtype)  # [B, L, D]
        item_hat = torch.einsum("bld,ked->bkle", emb, self.bilinear)  # [B, K, L, D]
        logits = emb.new_zeros(batch, self.num_interests, length)  # [B, K, L]
        return routing(item_hat, logits, mask, self.routing_iters, over="interests")  # [B, K, D], [B, K, L]
