"""Backbones (history -> K interests): ``build_backbone`` turns a ``ModelConfig`` into a module.

What a model name implies for the rest of the configuration (``"remi"``'s REMI terms, one interest for
``"single"`` and ``"sasrec"``) is :mod:`bamrec.presets` (``resolve_presets``, re-exported here).
"""

from __future__ import annotations

from bamrec.config import ModelConfig
from bamrec.errors import ConfigError
from bamrec.models.base import MultiInterestBackbone
from bamrec.models.comirec_dr import ComiRecDR
from bamrec.models.comirec_sa import ComiRecSA
from bamrec.models.mind import MIND
from bamrec.models.sasrec import SASRec
from bamrec.models.single import SingleInterest
from bamrec.presets import ATTENTION_MODELS, REMI_BETA, REMI_LAMBDA, check_model, resolve_presets

__all__ = [
    "MultiInterestBackbone",
    "ComiRecSA",
    "ComiRecDR",
    "MIND",
    "SingleInterest",
    "SASRec",
    "build_backbone",
    "resolve_presets",
    "ATTENTION_MODELS",
    "REMI_BETA",
    "REMI_LAMBDA",
]


def build_backbone(config: ModelConfig, num_items: int, seed: int = 0) -> MultiInterestBackbone:
    """The backbone named by ``config.model`` for ``num_items`` items (ids 1..N, 0 = padding).

    ``seed`` fixes the initial weights (and MIND's evaluation routing logits).
    """
    check_model(config.model)
    if num_items <= 0:
        raise ConfigError(f"num_items must be positive, got {num_items}")
    common = dict(num_items=num_items, hidden_size=config.hidden_size, seq_len=config.seq_len, seed=seed)
    if config.model in ("comirec-sa", "remi"):
        return ComiRecSA(num_interests=config.num_interests, **common)
    if config.model == "mind":
        return MIND(num_interests=config.num_interests, routing_iters=config.routing_iters,
                    routing_norm=config.routing_norm, routing_eval=config.routing_eval, **common)
    if config.model == "comirec-dr":
        return ComiRecDR(num_interests=config.num_interests, routing_iters=config.routing_iters, **common)
    if config.model == "sasrec":
        return SASRec(num_blocks=config.num_blocks, num_heads=config.num_heads, dropout=config.dropout, **common)
    return SingleInterest(**common)
