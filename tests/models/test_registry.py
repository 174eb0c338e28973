"""build_backbone and resolve_presets."""

from __future__ import annotations

import dataclasses

import pytest

from bamrec.config import ModelConfig, RunConfig, TrainConfig
from bamrec.errors import ConfigError
from bamrec.models import MIND, SASRec, ComiRecDR, ComiRecSA, SingleInterest, build_backbone, resolve_presets


@pytest.mark.parametrize(
    "name, cls",
    [("comirec-sa", ComiRecSA), ("remi", ComiRecSA), ("mind", MIND), ("comirec-dr", ComiRecDR), ("single", SingleInterest),
     ("sasrec", SASRec)],
)
def test_build_backbone_types_and_sizes(name: str, cls: type) -> None:
    cfg = ModelConfig(model=name, num_interests=3, hidden_size=8, seq_len=5, routing_iters=2)
    model = build_backbone(cfg, num_items=11, seed=3)
    assert type(model) is cls
    assert (model.num_items, model.hidden_size, model.seq_len) == (11, 8, 5)
    assert model.num_interests == (1 if name in ("single", "sasrec") else 3)
    if name in ("mind", "comirec-dr"):
        assert model.routing_iters == 2


def test_build_backbone_unknown_model_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model 'bert4rec'.*comirec-sa.*mind"):
        build_backbone(ModelConfig(model="bert4rec"), 10)


def test_build_backbone_seed() -> None:
    a = build_backbone(ModelConfig(hidden_size=4, seq_len=3), 5, seed=1)
    b = build_backbone(ModelConfig(hidden_size=4, seq_len=3), 5, seed=1)
    assert (a.embeddings.weight == b.embeddings.weight).all()


def run(model: str = "comirec-sa", **train) -> RunConfig:
    return RunConfig(model=ModelConfig(model=model), train=TrainConfig(**train))


def test_remi_preset_under_hard_selection() -> None:
    out = resolve_presets(run("remi", selection="hard"))
    assert out.train.remi_beta == 0.01 and out.train.remi_lambda == 100.0
    assert out.model.model == "remi"
    assert resolve_presets(out) == out  # idempotent


def test_remi_preset_without_routing_regularisation_under_bam() -> None:
    for selection in ("bam-p", "bam-l"):
        out = resolve_presets(run("remi", selection=selection))
        assert out.train.remi_beta == 0.01 and out.train.remi_lambda == 0.0


def test_remi_preset_keeps_user_values() -> None:
    out = resolve_presets(run("remi", selection="hard", remi_beta=0.5, remi_lambda=3.0))
    assert out.train.remi_beta == 0.5 and out.train.remi_lambda == 3.0


def test_other_models_untouched() -> None:
    cfg = run("comirec-sa", selection="hard", remi_beta=0.0, remi_lambda=0.0, targets="one")
    assert resolve_presets(cfg) == cfg
    unset = resolve_presets(run("comirec-sa", selection="hard"))  # None: the preset, which is "off" here
    assert unset.train.remi_beta == 0.0 and unset.train.remi_lambda == 0.0


def test_remi_explicit_zero_is_kept() -> None:
    # 0 is a value (off), not "use the preset": --remi-beta 0 must not become 0.01.
    out = resolve_presets(run("remi", selection="hard", remi_beta=0.0, remi_lambda=0.0))
    assert out.train.remi_beta == 0.0 and out.train.remi_lambda == 0.0
    assert resolve_presets(out) == out


@pytest.mark.parametrize("name", ["single", "sasrec"])
def test_single_interest_models_force_one_interest(name: str) -> None:
    cfg = RunConfig(model=ModelConfig(model=name, num_interests=4))
    assert resolve_presets(cfg).model.num_interests == 1


def test_routing_regularisation_needs_attention() -> None:
    with pytest.raises(ConfigError, match="remi_lambda.*'mind'"):
        resolve_presets(run("mind", remi_lambda=1.0))
    resolve_presets(run("comirec-sa", remi_lambda=1.0))  # fine


def test_unknown_model_in_presets() -> None:
    cfg = dataclasses.replace(RunConfig(), model=ModelConfig(model="nope"))
    with pytest.raises(ConfigError, match="choose one of"):
        resolve_presets(cfg)
