"""The ``original`` recipe and its separate switches (no original code needed)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import bamrec
from bamrec.recipes import ORIGINAL, SECTION, WHERE
from bamrec.config import CHOICES, ModelConfig, TrainConfig, run_config_from_dict, run_config_from_flat, to_dict
from bamrec.errors import ConfigError
from bamrec.models import MIND, build_backbone, resolve_presets
from bamrec.models.layers import coupling_weights
from bamrec.rundir import layout as ckpt
from bamrec.training import losses

TINY = dict(seq_len=8, hidden_size=8, num_interests=2, batch_size=16, num_negatives=10, eval_every=20,
            max_iters=40, patience=50, progress=False)


def tiny_config(data_dir, **overrides):
    return run_config_from_flat({"data": str(data_dir), **TINY, **overrides})


def resolved(config, option):
    return getattr(getattr(config, SECTION[option]), option)


def test_recipe_sets_every_listed_option_and_given_options_win() -> None:
    base = run_config_from_flat({})
    original = run_config_from_flat({"recipe": "original"})
    for option, value in ORIGINAL.items():
        assert resolved(original, option) == value, option
        assert resolved(base, option) != value, f"{option}: the default already equals the original's"
        assert option in WHERE  # every difference names where the original does it
    one_back = run_config_from_flat({"recipe": "original", "negatives": "shared", "routing_eval": "fixed"})
    assert one_back.train.negatives == "shared" and one_back.model.routing_eval == "fixed"
    assert one_back.model.routing_norm == "padded"  # the others stay the original's


def test_recipe_round_trips_through_config_json_and_nested_dicts() -> None:
    config = run_config_from_flat({"recipe": "original", "ihn_detach": True})
    again = run_config_from_dict(to_dict(config))
    assert again == config  # a saved config resolves to itself
    nested = run_config_from_dict({"train": {"recipe": "original"}})
    assert nested.train.valid_protocol == "reference" and nested.eval.protocol == "reference"
    assert run_config_from_flat({"recipe": "original"}, base=run_config_from_flat({})).train.negatives == "per-example"


def test_bad_recipe_and_option_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="recipe"):
        run_config_from_flat({"recipe": "paper"})
    for option in ("routing_norm", "routing_eval", "rr_positions", "valid_protocol"):
        with pytest.raises(ConfigError, match=option):
            run_config_from_flat({option: "nope"})
    assert "reference" in CHOICES["valid_protocol"]


def test_mind_routing_options_are_refused_on_other_backbones() -> None:
    with pytest.raises(ConfigError, match="routing_norm / routing_eval are options of MIND"):
        resolve_presets(run_config_from_flat({"model": "comirec-sa", "routing_norm": "padded"}))
    resolve_presets(run_config_from_flat({"model": "comirec-sa", "recipe": "original"}))  # unused, fine


def test_coupling_weights_three_ways() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=g)  # [B, K, L]
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    valid = coupling_weights(logits, mask, "positions")
    padded = coupling_weights(logits, mask, "positions-padded")
    interests = coupling_weights(logits, mask, "interests")
    torch.testing.assert_close(valid.sum(-1), torch.ones(2, 3))
    expected = torch.softmax(logits, -1) * mask[:, None, :]  # all L, then padding zeroed, not renormalised
    torch.testing.assert_close(padded, expected)
    assert bool((padded[0].sum(-1) < 1).all())
    torch.testing.assert_close(interests.sum(1), mask.float())  # per valid position over K
    torch.testing.assert_close(padded[1], valid[1])  # the same without padding


def test_mind_random_eval_routing_draws_each_call_and_fixed_does_not() -> None:
    items = torch.tensor([[1, 2, 3, 0]])
    mask = items > 0
    fixed = MIND(num_items=5, hidden_size=4, num_interests=2, seq_len=4).eval()
    random = MIND(num_items=5, hidden_size=4, num_interests=2, seq_len=4, routing_eval="random").eval()
    random.load_state_dict(fixed.state_dict())
    with torch.no_grad():
        assert torch.equal(fixed(items, mask), fixed(items, mask))
        assert not torch.equal(random(items, mask), random(items, mask))
    backbone = build_backbone(ModelConfig(model="mind", routing_norm="interests", routing_eval="random"), 5)
    assert (backbone.routing_norm, backbone.routing_eval) == ("interests", "random")


def test_routing_regularisation_over_all_positions() -> None:
    attention = torch.tensor([[[0.5, 0.5, 0.0, 0.0]]])  # [B=1, K=1, L=4], two valid positions
    mask = torch.tensor([[True, True, False, False]])
    assert float(losses.routing_regularization(attention, mask, 1, "valid")) == 0.0  # even over the valid ones
    # all L: mean 0.25, deviations 0.25 each, spread 4 * 0.0625 = 0.25, squared 0.0625
    assert math.isclose(float(losses.routing_regularization(attention, mask, 1, "all")), 0.0625, rel_tol=1e-6)


def test_ihn_weights_detached_or_not_same_loss_different_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    positive = torch.randn(3, generator=g)
    grads = []
    for detach in (True, False):
        negative = torch.randn(3, 7, generator=torch.Generator().manual_seed(2)).requires_grad_()
        loss = losses.sampled_softmax_loss(positive, negative, beta=0.5, ihn_detach=detach).sum()
        loss.backward()
        grads.append((float(loss.detach()), negative.grad.clone()))
    assert math.isclose(grads[0][0], grads[1][0], rel_tol=1e-6)
    assert not torch.allclose(grads[0][1], grads[1][1])


def test_reference_validation_draws_with_replacement_seeded_and_resumes(tmp_path, make_tiny_dataset) -> None:
    data = make_tiny_dataset(tmp_path / "data", num_users=30, num_items=40, max_len=20)
    cfg = tiny_config(data, valid_protocol="reference", valid_users=50, max_iters=60, selection="bam-p")
    straight = bamrec.train(cfg, tmp_path / "a", verbose=False)
    again = bamrec.train(cfg, tmp_path / "b", verbose=False)
    lines = ckpt.read_jsonl(straight.run_dir / "metrics.jsonl")
    assert all(line["valid"]["users"] == 50 for line in lines)  # 50 draws from 30 users: with replacement
    assert all(line["valid"]["protocol"] == "reference" for line in lines)
    # Bit-equal on purpose, here and after the resume: the same seed at the same shapes in one process.
    assert [line["valid"] for line in lines] == [line["valid"] for line in ckpt.read_jsonl(again.run_dir / "metrics.jsonl")]
    bamrec.train(tiny_config(data, valid_protocol="reference", valid_users=50, max_iters=40, selection="bam-p"),
                 tmp_path / "c", verbose=False)
    resumed = bamrec.train(cfg, tmp_path / "c", resume=True, verbose=False)
    resumed_lines = ckpt.read_jsonl(resumed.run_dir / "metrics.jsonl")
    assert [line["valid"] for line in resumed_lines] == [line["valid"] for line in lines]
    record = json.loads((straight.run_dir / "config.json").read_text())["config"]
    assert record["train"]["valid_protocol"] == "reference"


def test_original_recipe_trains_mind_end_to_end(tmp_path, make_tiny_dataset) -> None:
    data = make_tiny_dataset(tmp_path / "data", num_users=60, num_items=40, max_len=20)
    result = bamrec.train(tiny_config(data, model="mind", recipe="original", num_negatives=10, selection="bam-p",
                                      multi_loss=True), tmp_path / "run", verbose=False)
    config = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert config["train"]["recipe"] == "original"
    assert (config["model"]["routing_norm"], config["model"]["routing_eval"]) == ("padded", "random")
    assert result.test["protocol"] == "reference"
    assert TrainConfig().recipe == "bamrec"


def test_import_reference_writes_a_mind_run_that_loads_and_evaluates(tmp_path, make_tiny_dataset) -> None:
    from bamrec.compat.importer import import_reference

    data = make_tiny_dataset(tmp_path / "data", num_users=60, num_items=40, max_len=20)  # 40 items
    g = torch.Generator().manual_seed(0)
    state = {"embeddings.weight": torch.randn(41, 8, generator=g),
             "capsule_network.linear.weight": torch.randn(8, 8, generator=g),
             "capsule_network.relu.0.weight": torch.randn(8, 8, generator=g),
             "sample_loss.logprob_noise": torch.zeros(41)}
    torch.save(state, tmp_path / "model.pt")
    run_dir = import_reference(tmp_path / "model.pt", data=data, backbone="mind", seq_len=8, num_negatives=10,
                               out=tmp_path / "run")
    run = bamrec.load_run(run_dir)
    assert (run.config.model.model, run.config.model.seq_len, run.config.model.routing_norm) == ("mind", 8, "padded")
    assert run.config.model.routing_eval == "fixed" and run.config.train.remi_beta == 0.0
    assert torch.equal(run.model.linear.weight, state["capsule_network.linear.weight"])
    first = run.evaluate(protocol="reference")
    assert first == run.evaluate(protocol="reference")  # fixed routing start: deterministic (same shapes, bit-equal)


def test_recommended_recipe_sets_its_scheme_and_given_options_win(tmp_path, make_tiny_dataset) -> None:
    from bamrec.recipes import RECOMMENDED

    recommended = run_config_from_flat({"recipe": "recommended"})
    for option, value in RECOMMENDED.items():
        assert resolved(recommended, option) == value, option
    assert (recommended.train.selection, recommended.train.multi_loss, recommended.train.loss) == ("bam-p", True, "full")
    assert recommended.train.negatives == "shared" and recommended.eval.protocol == "standard"  # none of the original's
    assert run_config_from_flat({"recipe": "recommended", "loss": "sampled"}).train.loss == "sampled"
    data = make_tiny_dataset(tmp_path / "data", num_users=60, num_items=40, max_len=20)
    result = bamrec.train(tiny_config(data, recipe="recommended"), tmp_path / "run", verbose=False)
    config = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert config["train"]["recipe"] == "recommended" and config["train"]["loss"] == "full"
    assert config["train"]["lr"] == RECOMMENDED["lr"] != TrainConfig().lr
