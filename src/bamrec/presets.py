"""What a model name implies for the rest of the configuration: the model presets (``resolve_presets``).

``"remi"`` is ComiRec-SA trained with REMI's interest-aware hard negatives and routing regularisation
(Xie et al. RecSys 2023); ``"single"`` and ``"sasrec"`` have one interest; SASRec trains on every
position unless a multi-interest term is on. Call ``resolve_presets`` once on the user's config before
training and save the resolved config. Plain tables and dataclass arithmetic beside the configuration
(no torch), so that whatever compares configurations (the experiment runner) resolves them without the
models.
"""

from __future__ import annotations

import dataclasses

from bamrec.config import MODELS, ModelConfig, RunConfig, TrainConfig
from bamrec.errors import ConfigError

REMI_BETA = 0.01  # IHN sharpness BaM's code uses for its REMI runs
REMI_LAMBDA = 100.0  # routing-regularisation weight BaM's code uses for REMI under hard selection
ATTENTION_MODELS = ("comirec-sa", "remi")  # backbones with an attention map (routing regularisation)
SINGLE_INTEREST_MODELS = ("single", "sasrec")  # K = 1 by construction
SEQUENCE_MODELS = ("sasrec",)  # an output at every position (``sequence_states``): can train on all targets


def check_model(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


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
    check_model(config.model.model)
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
