"""Importing the original BaM implementation's ComiRec-SA checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bamrec.compat import load_reference_checkpoint, reference_state_to_backbone
from bamrec.errors import ConfigError, RunDirError
from bamrec.models import ComiRecSA
from bamrec.training import BaMSelector


def original_state(n: int = 9, d: int = 4, k: int = 2, length: int = 5, bam_l: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {
        "embeddings.weight": torch.randn(n + 1, d, generator=g),
        "position_embedding": torch.randn(1, length, d, generator=g),
        "linear1.0.weight": torch.randn(4 * d, d, generator=g),
        "linear2.weight": torch.randn(k, 4 * d, generator=g),
        "sample_loss.logprob_noise": torch.full((n + 1,), -2.0),
    }
    if bam_l:
        state.update({
            "l1.weight": torch.randn(3, d, generator=g), "l1.bias": torch.randn(3, generator=g),
            "l2.weight": torch.randn(3, d, generator=g), "l2.bias": torch.randn(3, generator=g),
        })
    return state


def forward_by_hand(state: dict[str, torch.Tensor], items: np.ndarray) -> np.ndarray:
    """The original's ComiRec-SA on one unpadded history ``items [n]``."""
    emb = state["embeddings.weight"].numpy()[items]
    hidden = emb + state["position_embedding"].numpy()[0, : len(items)]
    scores = state["linear2.weight"].numpy() @ np.tanh(state["linear1.0.weight"].numpy() @ hidden.T)  # [K, n]
    att = np.exp(scores - scores.max(1, keepdims=True))
    return (att / att.sum(1, keepdims=True)) @ emb


@pytest.mark.order_sensitive
def test_synthetic_checkpoint_maps_one_to_one() -> None:
    state = original_state(bam_l=True)
    model, selector_state = reference_state_to_backbone(state)
    assert isinstance(model, ComiRecSA) and not model.training
    assert (model.num_items, model.hidden_size, model.num_interests, model.seq_len) == (9, 4, 2, 5)
    items = torch.tensor([[3, 1, 9, 2, 5]])
    out = model(items, torch.ones(1, 5, dtype=torch.bool))[0].detach().numpy()
    np.testing.assert_allclose(out, forward_by_hand(state, items[0].numpy()), rtol=1e-5, atol=1e-6)
    selector = BaMSelector("bam-l", hidden_size=4, bam_l_dim=3)
    selector.load_state_dict(selector_state)
    assert torch.equal(selector.interest_proj.weight, state["l1.weight"])  # l1: interests (W_a)
    assert torch.equal(selector.target_proj.bias, state["l2.bias"])  # l2: positive item (W_b)


def test_bam_p_checkpoint_has_no_selector_state() -> None:
    assert reference_state_to_backbone(original_state())[1] is None


def test_missing_key_is_named() -> None:
    state = original_state()
    del state["linear2.weight"]
    with pytest.raises(RunDirError, match="lacks key 'linear2.weight'"):
        reference_state_to_backbone(state)


def test_mismatched_shape_is_named() -> None:
    state = original_state()
    state["linear1.0.weight"] = torch.zeros(8, 4)
    with pytest.raises(RunDirError, match=r"'linear1.0.weight' has shape \[8, 4\], expected \[16, 4\]"):
        reference_state_to_backbone(state)


def test_unknown_and_partial_selector_keys() -> None:
    state = original_state()
    state["capsule_network.linear.weight"] = torch.zeros(4, 4)
    with pytest.raises(RunDirError, match="capsule_network.linear.weight"):
        reference_state_to_backbone(state)
    state = original_state(bam_l=True)
    del state["l2.bias"]
    with pytest.raises(RunDirError, match="l2.bias"):
        reference_state_to_backbone(state)


def test_seq_len_must_match_and_a_comirec_checkpoint_is_not_mind() -> None:
    with pytest.raises(ConfigError, match="seq_len=7.*use seq_len=5"):
        reference_state_to_backbone(original_state(), seq_len=7)
    with pytest.raises(RunDirError, match="looks like a ComiRec-SA checkpoint"):
        reference_state_to_backbone(original_state(), backbone="mind", seq_len=5)


def mind_state(n: int = 9, d: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "embeddings.weight": torch.randn(n + 1, d, generator=g),
        "capsule_network.linear.weight": torch.randn(d, d, generator=g),
        "capsule_network.relu.0.weight": torch.randn(d, d, generator=g),
        "sample_loss.logprob_noise": torch.full((n + 1,), -2.0),
    }


@pytest.mark.order_sensitive
def test_mind_checkpoint_maps_and_routes_as_the_original() -> None:
    from bamrec.models import MIND

    state = mind_state()
    model, selector_state = reference_state_to_backbone(state, backbone="mind", seq_len=6, num_interests=3)
    assert isinstance(model, MIND) and not model.training and selector_state is None
    assert (model.num_items, model.hidden_size, model.num_interests, model.seq_len) == (9, 4, 3, 6)
    assert (model.routing_norm, model.routing_eval) == ("padded", "fixed")
    assert torch.equal(model.linear.weight, state["capsule_network.linear.weight"])
    assert torch.equal(model.embeddings.weight, state["embeddings.weight"])


def test_mind_import_needs_seq_len_and_names_bad_keys() -> None:
    with pytest.raises(ConfigError, match="give seq_len"):
        reference_state_to_backbone(mind_state(), backbone="mind")
    state = mind_state()
    state["capsule_network.extra"] = torch.zeros(2)
    with pytest.raises(RunDirError, match="capsule_network.extra"):
        reference_state_to_backbone(state, backbone="mind", seq_len=6)
    state = mind_state()
    state["capsule_network.linear.weight"] = torch.zeros(4, 5)
    with pytest.raises(RunDirError, match="capsule_network.linear.weight"):
        reference_state_to_backbone(state, backbone="mind", seq_len=6)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(RunDirError, match="not found"):
        load_reference_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="cannot read"):
        load_reference_checkpoint(bad)


@pytest.mark.parametrize("name", ["BaM_p_T1", "BaM_l_T1"])
def test_real_checkpoint(shared_data, name: str) -> None:
    state = load_reference_checkpoint(shared_data / "bam-reference" / "ml1m" / name / "model.pt")
    model, selector_state = reference_state_to_backbone(state, seq_len=200)
    assert model.embeddings.weight.shape == (3707, 64) and model.seq_len == 200
    items = torch.randint(1, 3707, (3, 200), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 200, dtype=torch.bool)
    mask[1, 50:] = False
    out = model(items * mask, mask)
    assert out.shape == (3, 4, 64)
    np.testing.assert_allclose(
        out[1].detach().numpy(), forward_by_hand(state, items[1, :50].numpy()), rtol=1e-4, atol=1e-5
    )
    if name == "BaM_l_T1":
        selector = BaMSelector("bam-l", hidden_size=64, bam_l_dim=16)
        selector.load_state_dict(selector_state)
        assert torch.equal(selector.interest_proj.weight, state["l1.weight"])
    else:
        assert selector_state is None
