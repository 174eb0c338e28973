"""Interest selection during training: hard (argmax), BaM_p and BaM_l.

J. Lee, J. Yun, U Kang. *Towards True Multi-interest Recommendation: Enhanced Scheme for Balanced
Interest Training.* IEEE BigData 2024 (BaM).

During training the positive item ``e+`` is scored against one interest ``m_v`` of the user's K
interests. The correlation of interest k with the positive is

- ``c_k = m_k · e+`` for ``hard`` and ``bam-p`` (BaM Eq. 8);
- ``c_k = (W_a m_k + b_a) · (W_b e+ + b_b)`` for ``bam-l`` (BaM Eq. 9), ``W_a, W_b: D -> d'``.

``hard`` picks ``v = argmax_k c_k`` (MIND, Li et al. CIKM 2019; ComiRec, Cen et al. KDD 2020), which
lets a few interests take all the training signal. BaM draws ``v ~ Categorical(softmax(T · c))``
(Eq. 7), where the temperature ``T`` multiplies the logits (smaller T = softer).

Gradients: the selected vector always carries the gradient of the loss back to the backbone; the
choice itself does not (``hard``, ``bam-p`` and ``bam-l`` with ``bam_l_grad="none"``, as in the
original, where ``W_a, W_b`` therefore never train; here they are frozen with
``requires_grad=False``, so optimisers and DistributedDataParallel expect no gradient for them).
With ``bam_l_grad="straight-through"`` (the default) the selected vector is
``sum_k (onehot_k + p_k - stopgrad(p_k)) m_k``: its value is exactly the sampled interest, and
``W_a, b_a, W_b, b_b`` receive the gradient of the loss through ``p``. Only the projections learn
through that path: ``m`` and ``e+`` enter the correlation detached, so the backbone's gradient is
the same as in the original.

Parameter names and the original checkpoint (``bamrec.compat.reference``): the original applies
``l1`` to the interests and ``l2`` to the positive item, the order of Eq. 9, so
``l1.weight/l1.bias -> interest_proj.weight/bias`` (W_a, b_a) and
``l2.weight/l2.bias -> target_proj.weight/bias`` (W_b, b_b).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bamrec.config import BAM_L_GRADS, SELECTIONS
from bamrec.errors import ConfigError


class Selection(NamedTuple):
    """The outcome of selecting one interest per example."""

    selected: torch.Tensor  # [B, D] the interest scored against the positive
    probs: torch.Tensor  # [B, K] selection probabilities, detached (one-hot for hard)
    index: torch.Tensor  # [B] int64 the selected interest


class BaMSelector(nn.Module):
    """Selects one interest per training example (hard, ``bam-p`` or ``bam-l``)."""

    def __init__(
        self,
        mode: str = "hard",
        hidden_size: int = 64,
        temperature: float = 1.0,
        bam_l_dim: int = 16,
        bam_l_grad: str = "straight-through",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if mode not in SELECTIONS:
            raise ConfigError(f"invalid selection {mode!r}: choose one of {', '.join(SELECTIONS)}")
        if bam_l_grad not in BAM_L_GRADS:
            raise ConfigError(f"invalid bam_l_grad {bam_l_grad!r}: choose one of {', '.join(BAM_L_GRADS)}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.mode = mode
        self.temperature = float(temperature)
        self.bam_l_grad = bam_l_grad
        if mode == "bam-l":
            self.interest_proj = nn.Linear(hidden_size, bam_l_dim)  # W_a, b_a (original: l1)
            self.target_proj = nn.Linear(hidden_size, bam_l_dim)  # W_b, b_b (original: l2)
            generator = torch.Generator().manual_seed(seed)
            for proj in (self.interest_proj, self.target_proj):  # the original's initialisation
                nn.init.kaiming_normal_(proj.weight, generator=generator)
                nn.init.zeros_(proj.bias)
                # Never trained in "none" mode: frozen, so optimisers and DDP need not expect a gradient.
                proj.requires_grad_(bam_l_grad == "straight-through")

    @property
    def straight_through(self) -> bool:
        """True when BaM_l's projections are trained through a straight-through estimator."""
        return self.mode == "bam-l" and self.bam_l_grad == "straight-through"

    def correlation(self, interests: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
        """Correlations ``c [B, K]`` of interests ``[B, K, D]`` with positives ``[B, D]`` (Eq. 8 / 9).

        Inputs are detached: only BaM_l's projections may receive gradient through ``c``.
        """
        interests, target_emb = interests.detach(), target_emb.detach()
        if self.mode == "bam-l":
            query = self.interest_proj(interests)  # [B, K, d']
            key = self.target_proj(target_emb)  # [B, d']
            return torch.einsum("bkd,bd->bk", query, key)  # [B, K]
        return torch.einsum("bkd,bd->bk", interests, target_emb)  # [B, K]

    def select(
        self,
        interests: torch.Tensor,
        target_emb: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> Selection:
        """One interest per example: ``(selected [B, D], probs [B, K], index [B])``.

        Draws use ``generator`` (on the tensors' device) so that a seed fixes them.
        """
        if self.mode == "hard":
            with torch.no_grad():
                index = self.correlation(interests, target_emb).argmax(dim=-1)  # [B]
            probs = F.one_hot(index, interests.shape[1]).to(interests.dtype)  # [B, K]
            return Selection(_gather(interests, index), probs, index)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.straight_through):
            probs = torch.softmax(self.temperature * self.correlation(interests, target_emb), dim=-1)  # [B, K]
        index = torch.multinomial(probs.detach(), 1, generator=generator).squeeze(1)  # [B]
        if not self.straight_through:
            return Selection(_gather(interests, index), probs, index)
        one_hot = F.one_hot(index, interests.shape[1]).to(probs.dtype)  # [B, K]
        weights = one_hot + probs - probs.detach()  # [B, K] value: one-hot, gradient: d p
        selected = torch.einsum("bk,bkd->bd", weights, interests)  # [B, D]
        return Selection(selected, probs.detach(), index)

    def forward(
        self,
        interests: torch.Tensor,
        target_emb: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> Selection:
        """Same as ``select``."""
        return self.select(interests, target_emb, generator)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, temperature={self.temperature}, bam_l_grad={self.bam_l_grad!r}"


def _gather(interests: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``interests[b, index[b]]`` for every b: ``[B, K, D]``, ``[B]`` -> ``[B, D]``."""
    picked = index.view(-1, 1, 1).expand(-1, 1, interests.shape[-1])  # [B, 1, D]
    return interests.gather(1, picked).squeeze(1)  # [B, D]
