"""MIND: multi-interest extraction by capsule dynamic routing, as the BaM code has it.

C. Li, Z. Liu, M. Wu, Y. Xu, H. Zhao, P. Huang, G. Kang, Q. Chen, W. Li, D. L. Lee.
*Multi-Interest Network with Dynamic Routing for Recommendation at Tmall.* CIKM 2019.

The variant used by BaM (J. Lee, J. Yun, U Kang, IEEE BigData 2024): one bilinear map ``W``
shared by all interests, ``Ê = W · E_hist``; ``routing_iters`` (3) rounds of dynamic routing with
squash; routing logits ``b [B, K, L]`` drawn from a standard normal at every training forward pass;
coupling weights ``softmax_over_L(b)`` in the BaM code (``routing_norm``, below: bamrec's default
normalises over interests instead); the first ``routing_iters - 1`` rounds read a
gradient-stopped ``Ê`` (only the last weighted sum carries gradient); no ReLU layer. MIND's
label-aware attention and per-user interest count are not part of it.

The routing itself (``dynamic_routing``, ``squash``) is in ``bamrec.models.layers``, shared with ComiRec-DR.

Routing options (``ModelConfig``; ``docs/models.md``):

- ``routing_norm="interests"`` (default; the MIND paper's B2I routing, Li et al. 2019, Eq. 5):
  the coupling softmax runs over the K interests of each position, as in CapsNet; padded
  positions get weight 0. The default: the best of the three in the measurements of
  docs/fidelity.md.
- ``routing_norm="valid"``: the coupling softmax over positions runs over the valid positions
  only, so each interest's weights sum to one.
- ``routing_norm="padded"`` (the original BaM code): the softmax runs over all ``seq_len``
  positions, padding included (with its random logits), and the padded weights are then zeroed
  without renormalising, so the weights of a short history sum to much less than one and its
  interests shrink towards zero after the squash.
- ``routing_eval="fixed"`` (default) or ``"random"`` (the original): see the first deviation.

Deviations (defaults; each has its original counterpart as an option above):
- Evaluation is deterministic: in ``eval()`` mode the routing logits are a fixed buffer
  ``eval_routing_logits [K, seq_len]`` drawn once from a seeded standard normal at construction
  (and saved with the model). The original draws fresh logits at every forward pass, so its
  evaluation is random (``routing_eval="random"``: drawn from the ``generator`` passed to
  ``forward``, else the global torch RNG). Zeros would not do: with a shared map all K capsules
  would be identical.
- Training draws use the ``generator`` passed to ``forward`` (the objective passes its own), or
  the global torch RNG when none is given.
- The coupling softmax runs over interests (B2I, as the MIND paper has it) rather than over the
  positions as the BaM code does (``routing_norm``).
- The padding row 0 of the embedding table is kept and trainable (see ``comirec_sa``); histories
  never read it because embeddings are multiplied by the mask.
"""

from __future__ import annotations

import torch
from torch import nn

from bamrec.models.base import MultiInterestBackbone
from bamrec.models.layers import ROUTING_OVER, init_parameters, routing


class MIND(MultiInterestBackbone):
    """Capsule-routing multi-interest extractor (Li et al., CIKM 2019), BaM's variant."""

    weights_kind = "routing"
    stochastic = True  # forward accepts a ``generator`` for its training-time routing logits

    def __init__(
        self,
        num_items: int,
        hidden_size: int = 64,
        num_interests: int = 4,
        seq_len: int = 50,
        routing_iters: int = 3,
        seed: int = 0,
        routing_norm: str = "interests",
        routing_eval: str = "fixed",
    ) -> None:
        super().__init__(num_items, hidden_size, num_interests, seq_len)
        if routing_norm not in ROUTING_OVER:
            raise ValueError(f"routing_norm must be one of {', '.join(ROUTING_OVER)}, got {routing_norm!r}")
        if routing_eval not in ("fixed", "random"):
            raise ValueError(f"routing_eval must be 'fixed' or 'random', got {routing_eval!r}")
        self.routing_iters = routing_iters
        self.routing_norm = routing_norm
        self.routing_eval = routing_eval
        self.linear = nn.Linear(hidden_size, hidden_size, bias=False)  # shared bilinear map W
        generator = torch.Generator().manual_seed(seed)
        init_parameters(self, generator)
        self.register_buffer("eval_routing_logits", torch.randn(num_interests, seq_len, generator=generator))

    def initial_logits(self, batch: int, length: int, generator: torch.Generator | None) -> torch.Tensor:
        """Routing logits ``[B, K, L]``: fresh N(0, 1) draws in training (and in eval under
        ``routing_eval="random"``), else the fixed buffer."""
        weight = self.embeddings.weight
        if not self.training and self.routing_eval == "fixed":
            return self.eval_routing_logits[:, :length].to(weight.dtype).expand(batch, -1, -1)  # [B, K, L]
        shape = (batch, self.num_interests, length)
        return torch.randn(shape, generator=generator, device=weight.device, dtype=weight.dtype)  # [B, K, L]

    def forward(
        self, items: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Interests ``[B, K, D]``; ``generator`` drives the training-time routing logits."""
        return self.forward_with_weights(items, mask, generator)[0]

    def forward_with_weights(self, items: torch.Tensor, mask: torch.Tensor,
                             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Interests ``[B, K, D]`` and the last routing round's coupling weights ``[B, K, L]``."""
        batch, length = items.shape
        if length > self.seq_len:
            raise ValueError(f"history length {length} exceeds the model's seq_len {self.seq_len}")
        emb = self.embeddings(items) * mask.unsqueeze(-1).to(self.embeddings.weight.dtype)  # [B, L, D]
        item_hat = self.linear(emb).unsqueeze(1)  # [B, 1, L, D]
        logits = self.initial_logits(batch, length, generator)  # [B, K, L]
        over = ROUTING_OVER[self.routing_norm]
        return routing(item_hat, logits, mask, self.routing_iters, over=over)  # [B, K, D], [B, K, L]
