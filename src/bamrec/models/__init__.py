"""Backbones (history -> K interests) and the presets that name training schemes.

``build_backbone`` turns a ``ModelConfig`` into a module; ``resolve_presets`` fills in what a model
name implies (``"remi"``: ComiRec-SA trained with REMI's interest-aware hard negatives and routing
regularisation, Xie et al. RecSys 2023; ``"single"`` and ``"sasrec"``: one interest). Call ``resolve_presets`` once
on the user's config before training and save the resolved config.
"""

from __future__ import annotations

import dataclasses

from bamrec.config import MODELS, ModelConfig, RunConfig, TrainConfig
from bamrec.errors import ConfigError
from bamrec.models.base import MultiInterestBackbone
from bamrec.models.comirec_dr import ComiRecDR
from bamrec.models.comirec_sa import ComiRecSA
from bamrec.models.mind import MIND
from bamrec.models.sasrec import SASRec
from bamrec.models.single import SingleInterest

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

REMI_BETA = 0.01  # IHN sharpness BaM's code uses for its REMI runs
REMI_LAMBDA = 100.0  # routing-regularisation weight BaM's code uses for REMI under hard selection
ATTENTION_MODELS = ("comirec-sa", "remi")  # backbones with an attention map (routing regularisation)
SINGLE_INTEREST_MODELS = ("single", "sasrec")  # K = 1 by construction
SEQUENCE_MODELS = ("sasrec",)  # an output at every position (``sequence_states``): can train on all targets


def _check_model(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


def build_backbone(config: ModelConfig, num_items: int, seed: int = 0) -> MultiInterestBackbone:
    """The backbone named by ``config.model`` for ``num_items`` items (ids 1..N, 0 = padding).

    ``seed`` fixes the initial weights (and MIND's evaluation routing logits).
    """
    _check_model(config.model)
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


def _check_all_positions(model: str, train: TrainConfig) -> None:
    """``targets="all"`` trains the output at every position: a sequence model, one interest, no
    multi-interest terms (they have no per-position form)."""
    if model not in SEQUENCE_MODELS:
        raise ConfigError(f"targets 'all' (a loss at every position) needs a sequence model "
                          f"({', '.join(SEQUENCE_MODELS)}); model {model!r} has one output per history: "
                          "use targets 'one'")
    extras = [name for name, on in (("multi_loss", train.multi_loss), ("remi_beta", train.remi_beta > 0),
                                    ("remi_lambda", train.remi_lambda > 0)) if on]
    if extras:
        raise ConfigError(f"targets 'all' trains one interest at every position; {', '.join(extras)} "
                          "has no per-position form: turn it off or use targets 'one'")


def resolve_presets(config: RunConfig) -> RunConfig:
    """Apply what the model name implies, leaving fields the user changed from their defaults alone.

    - ``remi_beta`` / ``remi_lambda`` left at None ("the preset"): for ``"remi"`` ``remi_beta = 0.01``,
      and ``remi_lambda = 100`` only under ``selection="hard"`` (as BaM's code runs REMI); 0 (off)
      otherwise. A value the user gave, 0 included, is kept.
    - ``"single"``, ``"sasrec"``: ``num_interests = 1``.
    - ``targets="auto"``: ``"all"`` (a next-item loss at every position) for ``"sasrec"``, as SASRec is
      trained in its paper and in the strong baselines (Kang & McAuley 2018; Klenitskiy & Vasilev
      2023), unless a multi-interest term (multi_loss, REMI) is on; ``"one"`` for the others. An
      explicit ``"all"`` needs a sequence model and no multi-interest terms (else a ConfigError).
    - Routing regularisation on a backbone without attention is a ConfigError.
    The result is idempotent: resolving a resolved config changes nothing.
    """
    _check_model(config.model.model)
    model, train = config.model, config.train
    remi = model.model == "remi"
    updates = {}
    if train.remi_beta is None:
        updates["remi_beta"] = REMI_BETA if remi else 0.0
    if train.remi_lambda is None:
        updates["remi_lambda"] = REMI_LAMBDA if remi and train.selection == "hard" else 0.0
    train = dataclasses.replace(train, **updates)
    if train.targets == "auto":
        # The multi-interest terms have no per-position form; with one of them on, one target.
        extras = train.multi_loss or train.remi_beta > 0 or train.remi_lambda > 0
        train = dataclasses.replace(train, targets="all" if model.model in SEQUENCE_MODELS and not extras else "one")
    if train.targets == "all":
        _check_all_positions(model.model, train)
    if model.model in SINGLE_INTEREST_MODELS and model.num_interests != 1:
        model = dataclasses.replace(model, num_interests=1)
    routing_defaults = (ModelConfig.routing_norm, ModelConfig.routing_eval)
    if model.model != "mind" and (model.routing_norm, model.routing_eval) != routing_defaults \
            and config.train.recipe == "bamrec":
        raise ConfigError(
            f"routing_norm / routing_eval are options of MIND; model {model.model!r} does not use them: "
            f"leave them at their defaults ({', '.join(routing_defaults)})"
        )
    if train.remi_lambda > 0 and model.model not in ATTENTION_MODELS:
        raise ConfigError(
            f"remi_lambda (REMI routing regularisation) needs an attention backbone "
            f"({', '.join(ATTENTION_MODELS)}); model {model.model!r} has none: set remi_lambda to 0"
        )
    return dataclasses.replace(config, model=model, train=train)
