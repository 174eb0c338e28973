"""Typed configuration: frozen dataclasses, one field per command-line flag.

Unknown keys and invalid values are errors (`ConfigError`), never silently ignored. A field's
allowed values, when it has a fixed set, live in ``CHOICES`` so the CLI and the validation agree.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from bamrec.errors import ConfigError

MODELS = ("comirec-sa", "comirec-dr", "mind", "remi", "single", "sasrec")
SELECTIONS = ("hard", "bam-p", "bam-l")
LOSSES = ("sampled", "full")
NEGATIVE_MODES = ("shared", "per-example")
# Training targets per example: "one" next item after a sampled prefix (the multi-interest papers' way),
# "all" the next item at every position of the window (SASRec's way), "auto" the model's preset.
TARGETS = ("auto", "one", "all")
BAM_L_GRADS = ("straight-through", "none")
PROTOCOLS = ("standard", "reference")
METRIC_KINDS = ("recall", "ndcg", "mrr")  # ranking metrics, named <kind>@<cutoff> (evaluation.metrics)
VALID_PROTOCOLS = ("standard", "reference")  # validation steps of training (bamrec.training.validation.VALIDATIONS)
RECIPES = ("bamrec", "original", "recommended")
ROUTING_NORMS = ("valid", "padded", "interests")
ROUTING_EVALS = ("fixed", "random")
RR_POSITIONS = ("valid", "all")


@dataclass(frozen=True)
class ModelConfig:
    """The backbone: what turns a history into K interest vectors."""

    model: str = "comirec-sa"  # backbone name, one of MODELS ("remi" is ComiRec-SA + REMI training)
    num_interests: int = 4  # K, interest vectors per user (forced to 1 for "single" and "sasrec")
    hidden_size: int = 64  # D, item embedding and interest size
    seq_len: int = 50  # L, history window fed to the model
    routing_iters: int = 3  # dynamic-routing rounds (MIND, ComiRec-DR)
    num_blocks: int = 2  # transformer blocks (SASRec)
    num_heads: int = 1  # attention heads (SASRec)
    dropout: float = 0.2  # dropout rate (SASRec)
    routing_norm: str = "interests"  # MIND coupling softmax: over "interests" (paper B2I; measured best), "valid" positions, or all L then zero padding ("padded", original)
    routing_eval: str = "fixed"  # MIND routing start at evaluation: a "fixed" seeded draw, or "random" at every forward (original)


@dataclass(frozen=True)
class TrainConfig:
    """The training scheme: selection, losses, optimiser and loop."""

    selection: str = "hard"  # interest selection, one of SELECTIONS
    temperature: float = 1.0  # T, multiplies the selection logits (smaller = softer)
    bam_l_dim: int = 16  # d', projection size of BaM_l
    bam_l_grad: str = "straight-through"  # how BaM_l's projections train; "none" = original (never trained)
    multi_loss: bool = False  # add the multi-interest (logsumexp over interests) loss
    loss: str = "sampled"  # "sampled" softmax with uniform negatives, or "full" softmax
    targets: str = "auto"  # one of TARGETS; "auto" = "all" for sasrec, "one" for the others (presets.resolve_presets)
    num_negatives: int = 1280  # S, uniform negatives for the sampled softmax
    negatives: str = "shared"  # "shared" per batch, or "per-example" (the original's way)
    remove_accidental_hits: bool = False  # mask sampled negatives equal to the positive
    # None = the model's preset (``presets.resolve_presets``): 0.01 / 100 for "remi" (lambda only
    # under hard selection), else 0 (off). An explicit 0 is kept: it turns the part off, also for remi.
    remi_beta: float | None = None  # REMI interest-aware hard negatives (0 = off)
    remi_lambda: float | None = None  # REMI routing regularisation weight (0 = off)
    rr_positions: str = "valid"  # routing regularisation centres/sums over "valid" positions or "all" L (original)
    ihn_detach: bool = True  # REMI hard-negative weights carry no gradient (False = original)
    batch_size: int = 128  # training examples per step
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam weight decay
    max_iters: int = 1_000_000  # hard cap on training steps
    eval_every: int = 1000  # steps between validation checks
    patience: int = 15  # validation checks without improvement before stopping
    select_metric: str = "recall@10"  # validation metric of early stopping / the best checkpoint (its cutoff is always evaluated)
    valid_users: int = 0  # standard: fixed users (0 = all, else a seeded subset); reference: users drawn per check (0 = 1000)
    valid_protocol: str = "standard"  # the validation step at each check, one of VALID_PROTOCOLS ("reference": the original's)
    recipe: str = "bamrec"  # preset filling every option not given: "bamrec" (our defaults), "original" or "recommended" (bamrec.recipes)
    seed: int = 2021  # seeds sampling, initialisation and the validation subset
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    progress: bool = True  # show a tqdm progress bar
    compile: bool = False  # torch.compile the training step (minutes of compiling first; eager if it fails)


@dataclass(frozen=True)
class EvalConfig:
    """How a model is evaluated."""

    protocol: str = "standard"  # "standard" (default) or "reference" (the original evaluator)
    cutoffs: tuple[int, ...] = (10, 20, 50)  # metric cutoffs
    user_batch_size: int = 64  # users per chunk (bounds the forward's memory)
    item_chunk_size: int = 16384  # items scored per chunk (bounds memory)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run."""

    data: str = ""  # prepared dataset directory
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "model": MODELS,
    "selection": SELECTIONS,
    "loss": LOSSES,
    "negatives": NEGATIVE_MODES,
    "targets": TARGETS,
    "bam_l_grad": BAM_L_GRADS,
    "protocol": PROTOCOLS,
    "valid_protocol": VALID_PROTOCOLS,
    "recipe": RECIPES,
    "routing_norm": ROUTING_NORMS,
    "routing_eval": ROUTING_EVALS,
    "rr_positions": RR_POSITIONS,
}


def check_choice(name: str, value: str, label: str | None = None) -> str:
    """Return ``value`` if it is valid for ``name``, else raise a ConfigError listing the valid ones."""
    valid = CHOICES.get(name)
    if valid is not None and value not in valid:
        raise ConfigError(f"invalid {label or name} {value!r}: choose one of {', '.join(valid)}")
    return value


_METRIC_NAME = re.compile(r"(?P<kind>[a-z]+)@(?P<cutoff>[0-9]+)")


def check_metric_name(name: str, option: str = "metric") -> tuple[str, int]:
    """``"ndcg@20"`` -> ``("ndcg", 20)``; anything else is a ConfigError naming ``option`` and the form."""
    match = _METRIC_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None or match["kind"] not in METRIC_KINDS or int(match["cutoff"]) <= 0:
        raise ConfigError(f"invalid {option} {name!r}: use {', '.join(k + '@K' for k in METRIC_KINDS)} "
                          "with K a positive integer, e.g. ndcg@20")
    return match["kind"], int(match["cutoff"])


def _validate_section(obj: Any) -> None:
    """Checks that involve more than one field's type and range (those are done by ``check_value``)."""
    if hasattr(obj, "select_metric"):
        check_metric_name(obj.select_metric, "select_metric")
    if hasattr(obj, "num_heads") and obj.hidden_size % obj.num_heads:
        raise ConfigError(f"hidden_size {obj.hidden_size} must be divisible by num_heads {obj.num_heads}")


# Allowed ranges of numeric options, for the CLI flags and the config files alike:
# ">0" positive, ">=0" non-negative, "[0,1)" a fraction below 1.
RANGES: dict[str, str] = {
    **{name: ">0" for name in ("num_interests", "hidden_size", "seq_len", "routing_iters", "num_blocks",
                               "num_heads", "bam_l_dim", "num_negatives", "batch_size", "max_iters",
                               "eval_every", "patience", "user_batch_size", "item_chunk_size", "lr",
                               "temperature", "cutoffs")},
    **{name: ">=0" for name in ("remi_beta", "remi_lambda", "weight_decay", "valid_users")},
    "dropout": "[0,1)",
}


def accepted_form(name: str, kind: Any) -> str:
    """What option ``name`` of type ``kind`` accepts, in words (``"a positive integer"``)."""
    if name in CHOICES:
        return "one of " + ", ".join(CHOICES[name])
    bound = RANGES.get(name)
    if kind == tuple[int, ...]:
        return "a list of positive integers like [10, 20, 50]"
    if kind is bool:
        return "true or false"
    if kind is int:
        return {">0": "a positive integer", ">=0": "an integer >= 0"}.get(bound or "", "an integer")
    if kind in (float, float | None):
        return {">0": "a positive number", ">=0": "a number >= 0", "[0,1)": "a number in [0, 1)"}.get(
            bound or "", "a number")
    return "a string"


def in_range(name: str, value: Any) -> bool:
    """Whether a number (or each number of a tuple) is inside ``RANGES[name]``; NaN never is."""
    bound = RANGES.get(name)
    values = value if isinstance(value, tuple) else (value,)
    if bound == ">0":
        return all(v > 0 for v in values)
    if bound == ">=0":
        return all(v >= 0 for v in values)
    if bound == "[0,1)":
        return all(0 <= v < 1 for v in values)
    return all(v == v for v in values)


def check_value(name: str, kind: Any, value: Any, label: str | None = None) -> Any:
    """``value`` as option ``name`` of type ``kind`` (from a type hint), or a ConfigError saying what
    is accepted. Strict: no ``int(2.7)``, no ``"true"`` for a bool, no ``"10,20"`` for a list."""
    label = label or name
    problem = ConfigError(f"{label} must be {accepted_form(name, kind)}, got {value!r}")
    if kind is bool:
        if not isinstance(value, bool):
            raise problem
        return value
    if kind is str:
        if not isinstance(value, str):
            raise problem
        if name in CHOICES:
            check_choice(name, value)
        return value
    if kind == tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or not value or not all(_is_int(v) for v in value):
            raise problem
        value = tuple(int(v) for v in value)
    elif kind is int:
        if not _is_int(value):
            raise problem
        value = int(value)
    elif kind in (float, float | None):
        if value is None and kind != float:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
                raise ConfigError(f"{label} must be {accepted_form(name, kind)}, got the string {value!r} "
                                  "(in YAML write numbers with a dot, e.g. 1.0e-3)")
            raise problem
        value = float(value)
    if not in_range(name, value):
        raise problem
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {where!r} must be a table of options, got {values!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {where} option(s): {', '.join(unknown)}; valid: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: check_value(name, hints[name], value, f"{where}.{name}") for name, value in values.items()}
    obj = cls(**kwargs)
    _validate_section(obj)
    if hasattr(obj, "device"):
        from bamrec.devices import check_device_name

        check_device_name(obj.device, f"{where}.device")
    return obj


def run_config_from_dict(values: Mapping[str, Any]) -> RunConfig:
    """Build a validated RunConfig from nested dicts (``{"model": {...}, "train": {...}}``)."""
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    # The recipe (bamrec.recipes, a plain table) fills the options it sets that are not given.
    from bamrec.recipes import apply_recipe

    values = apply_recipe(values)
    data = values.get("data", "")
    if not isinstance(data, (str, os.PathLike)):
        raise ConfigError(f"data must be the path of a prepared dataset, got {data!r}")
    return RunConfig(
        data=str(data),
        model=_build(ModelConfig, values.get("model", {}), "model"),
        train=_build(TrainConfig, values.get("train", {}), "train"),
        eval=_build(EvalConfig, values.get("eval", {}), "eval"),
    )


def flat_fields() -> dict[str, str]:
    """Map every leaf option name to its section (``{"seq_len": "model", "lr": "train", ...}``)."""
    out: dict[str, str] = {}
    for section, cls in (("model", ModelConfig), ("train", TrainConfig), ("eval", EvalConfig)):
        for f in fields(cls):
            out[f.name] = section
    return out


def run_config_from_flat(values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Apply flat ``option -> value`` pairs (CLI flags, a flat config file) on top of ``base``.

    Options given neither here nor in ``base`` come from the recipe (``recipe``, default "bamrec").
    A ``recipe`` given here on top of a ``base`` replaces the base's values of the options it sets.
    """
    nested: dict[str, Any] = to_dict(base) if base is not None else {"model": {}, "train": {}, "eval": {}}
    where = flat_fields()
    if base is not None and "recipe" in values:
        from bamrec.recipes import SECTION, recipe_values

        check_choice("recipe", str(values["recipe"]))
        for option, value in recipe_values(str(values["recipe"])).items():
            nested[SECTION[option]][option] = value
    for name, value in values.items():
        if name == "data":
            nested["data"] = value
            continue
        if name not in where:
            raise ConfigError(f"unknown option {name!r}; valid: data, {', '.join(where)}")
        nested[where[name]][name] = value
    return run_config_from_dict(nested)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML config file; sections (model/train/eval) or flat keys are both accepted."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    except ConfigError:
        raise
    except Exception as exc:  # parser errors carry line numbers; keep them
        raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("model", "train", "eval") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))
