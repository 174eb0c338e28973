"""Pieces several backbones share: weight initialisation, masking, capsule routing and squash.

Each model file (``comirec_sa``, ``mind``, ``comirec_dr``, ``single``, ``sasrec``) holds its paper's
formula and takes these from here, so no model imports another.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


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


_SQUASH_EPS = 1e-9


def squash(capsules: torch.Tensor) -> torch.Tensor:
    """Capsule squash ``|s|^2 / (1 + |s|^2) * s / |s|`` over the last dimension (Sabour et al. 2017)."""
    norm2 = capsules.square().sum(-1, keepdim=True)  # [..., 1]
    return capsules * (norm2 / (1.0 + norm2) / torch.sqrt(norm2 + _SQUASH_EPS))


Over = Literal["positions", "positions-padded", "interests"]
ROUTING_OVER: dict[str, Over] = {"valid": "positions", "padded": "positions-padded", "interests": "interests"}


def coupling_weights(logits: torch.Tensor, mask: torch.Tensor, over: Over) -> torch.Tensor:
    """Routing weights ``[B, K, L]`` from ``logits [B, K, L]``; padded positions get weight 0.

    ``over="positions"``: softmax over the valid positions of each interest.
    ``over="positions-padded"``: softmax over all L positions, then padding zeroed without
    renormalising (the original BaM code's MIND).
    ``over="interests"``: softmax over the K interests of each position (MIND paper's B2I,
    ComiRec-DR, CapsNet).
    """
    valid = mask[:, None, :]  # [B, 1, L]
    if over == "positions":
        logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1)  # [B, K, L]
    elif over == "positions-padded":
        weights = torch.softmax(logits, dim=-1)  # [B, K, L]
    else:
        weights = torch.softmax(logits, dim=1)  # [B, K, L]
    return weights * valid.to(weights.dtype)  # [B, K, L]


def dynamic_routing(
    item_hat: torch.Tensor,
    logits: torch.Tensor,
    mask: torch.Tensor,
    iters: int,
    over: Over,
) -> torch.Tensor:
    """Capsule routing: interests ``[B, K, D]`` from predictions ``item_hat`` (see ``routing``)."""
    return routing(item_hat, logits, mask, iters, over)[0]


def routing(
    item_hat: torch.Tensor,
    logits: torch.Tensor,
    mask: torch.Tensor,
    iters: int,
    over: Over,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Capsule routing: interests ``[B, K, D]`` from predictions ``item_hat``, and the coupling weights
    ``[B, K, L]`` of the last round (what each interest drew from each history position).

    ``item_hat`` is ``[B, 1, L, D]`` (one map shared by all interests) or ``[B, K, L, D]`` (one map per
    interest); ``logits [B, K, L]`` are the initial routing logits (no gradient). All rounds but the
    last read ``item_hat.detach()``, so gradient reaches ``item_hat`` only through the final
    weighted sum, as in the original MIND/ComiRec code.
    """
    if iters < 1:
        raise ValueError(f"routing needs at least one round, got {iters}")
    shared = item_hat.shape[1] == 1
    if shared:
        # One map for all interests: plain bmm on [B, L, D] instead of broadcasting a K axis, which
        # would materialise K copies of item_hat in the forward and the backward pass.
        item_hat = item_hat.squeeze(1)  # [B, L, D]
    frozen = item_hat.detach()
    logits = logits.detach()
    for i in range(iters):
        last = i == iters - 1
        source = item_hat if last else frozen  # [B, L, D] shared, [B, K, L, D] per interest
        weights = coupling_weights(logits, mask, over)  # [B, K, L]
        if shared:
            capsules = squash(torch.bmm(weights, source))  # [B, K, D]
        else:
            capsules = squash(torch.matmul(weights.unsqueeze(2), source).squeeze(2))  # [B, K, D]
        if not last:
            if shared:
                agreement = torch.bmm(capsules, source.transpose(1, 2))  # [B, K, L]
            else:
                agreement = torch.matmul(source, capsules.unsqueeze(-1)).squeeze(-1)  # [B, K, L]
            logits = logits + agreement
    return capsules, weights  # [B, K, D], [B, K, L]
