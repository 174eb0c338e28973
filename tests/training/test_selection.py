"""Interest selection: hard, BaM_p, BaM_l (straight-through and none)."""

from __future__ import annotations

import math

import pytest
import torch

from bamrec.errors import ConfigError
from bamrec.training import BaMSelector

# Two examples, K = 3 interests, D = 2.
INTERESTS = torch.tensor([
    [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
    [[2.0, 0.0], [0.0, -1.0], [0.5, 0.5]],
])
TARGET = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
# c_k = m_k . e+  ->  [[1, 0, 1], [0, 1, -0.5]]
CORR = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -0.5]])


def test_hard_selection_is_argmax() -> None:
    sel = BaMSelector("hard", hidden_size=2)
    torch.testing.assert_close(sel.correlation(INTERESTS, TARGET), CORR)
    out = sel(INTERESTS, TARGET)
    assert out.index.tolist() == [0, 1]  # ties go to the first interest
    assert out.index.dtype == torch.int64
    torch.testing.assert_close(out.selected, torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    torch.testing.assert_close(out.probs, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_bam_p_probabilities_are_softmax_of_scaled_correlation(temperature: float) -> None:
    sel = BaMSelector("bam-p", hidden_size=2, temperature=temperature)
    out = sel(INTERESTS, TARGET, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.probs, torch.softmax(temperature * CORR, dim=-1))
    # The selected vector is exactly the drawn interest.
    torch.testing.assert_close(out.selected, INTERESTS[torch.arange(2), out.index], rtol=0, atol=0)


def test_temperature_softens_or_sharpens() -> None:
    def entropy(t: float) -> float:
        p = BaMSelector("bam-p", hidden_size=2, temperature=t)(INTERESTS, TARGET).probs
        return float(-(p * p.log()).sum())

    assert entropy(0.1) > entropy(1.0) > entropy(10.0)
    assert abs(entropy(1e-6) - 2 * math.log(3)) < 1e-4  # near-uniform


def test_bam_p_frequencies_follow_softmax() -> None:
    draws = 20_000
    interests = INTERESTS[1:].expand(draws, -1, -1)
    target = TARGET[1:].expand(draws, -1)
    out = BaMSelector("bam-p", hidden_size=2)(interests, target, torch.Generator().manual_seed(1))
    expected = torch.softmax(CORR[1], dim=0)  # [0.2312, 0.6285, 0.1402] roughly
    freq = torch.bincount(out.index, minlength=3).double() / draws
    std = torch.sqrt(expected.double() * (1 - expected.double()) / draws)
    assert ((freq - expected.double()).abs() < 4 * std).all(), (freq, expected)


def test_draws_are_reproducible_with_a_generator() -> None:
    interests = INTERESTS.repeat(200, 1, 1)
    target = TARGET.repeat(200, 1)
    sel = BaMSelector("bam-p", hidden_size=2)
    a = sel(interests, target, torch.Generator().manual_seed(5)).index
    b = sel(interests, target, torch.Generator().manual_seed(5)).index
    c = sel(interests, target, torch.Generator().manual_seed(6)).index
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bam_l_correlation_formula() -> None:
    sel = BaMSelector("bam-l", hidden_size=2, bam_l_dim=3, seed=2)
    wa, ba = sel.interest_proj.weight, sel.interest_proj.bias
    with torch.no_grad():
        sel.interest_proj.bias.fill_(0.3)
        sel.target_proj.bias.fill_(-0.2)
    wb, bb = sel.target_proj.weight, sel.target_proj.bias
    expected = torch.empty(2, 3)
    for b in range(2):
        for k in range(3):
            expected[b, k] = (wa @ INTERESTS[b, k] + ba) @ (wb @ TARGET[b] + bb)
    torch.testing.assert_close(sel.correlation(INTERESTS, TARGET), expected)
    assert sel.interest_proj.weight.shape == (3, 2)
    # The original's initialisation: zero biases (as in the released checkpoint).
    fresh = BaMSelector("bam-l", hidden_size=2, bam_l_dim=3)
    assert torch.equal(fresh.interest_proj.bias, torch.zeros(3))


def _backward(mode: str, grad_mode: str = "straight-through"):
    sel = BaMSelector(mode, hidden_size=2, bam_l_dim=3, bam_l_grad=grad_mode, seed=1)
    interests = INTERESTS.clone().requires_grad_(True)
    target = TARGET.clone().requires_grad_(True)
    upstream = torch.tensor([[0.7, -1.2], [0.4, 2.0]])
    out = sel(interests, target, torch.Generator().manual_seed(3))
    (out.selected * upstream).sum().backward()
    return sel, interests, target, out, upstream


def test_straight_through_value_and_projection_gradient() -> None:
    sel, interests, target, out, upstream = _backward("bam-l", "straight-through")
    # Forward value: exactly the sampled interest.
    torch.testing.assert_close(out.selected.detach(), INTERESTS[torch.arange(2), out.index], rtol=0, atol=0)
    assert not out.probs.requires_grad
    # The projections get the gradient of the surrogate sum_k p_k (m_k . g).
    reference = BaMSelector("bam-l", hidden_size=2, bam_l_dim=3, seed=1)
    p = torch.softmax(reference.correlation(INTERESTS, TARGET), dim=-1)
    (p * torch.einsum("bkd,bd->bk", INTERESTS, upstream)).sum().backward()
    for name in ("interest_proj.weight", "interest_proj.bias", "target_proj.weight", "target_proj.bias"):
        got = sel.get_parameter(name).grad
        assert got is not None and got.abs().sum() > 0, name
        torch.testing.assert_close(got, reference.get_parameter(name).grad)
    # Interests get the plain value gradient only (the selected one), the target none from selection.
    expected = torch.zeros(2, 3, 2)
    expected[torch.arange(2), out.index] = upstream
    torch.testing.assert_close(interests.grad, expected)
    assert target.grad is None


@pytest.mark.parametrize("mode, grad_mode", [("bam-l", "none"), ("bam-p", "none"), ("hard", "none")])
def test_no_gradient_through_the_choice(mode: str, grad_mode: str) -> None:
    sel, interests, target, out, upstream = _backward(mode, grad_mode)
    for name, param in sel.named_parameters():
        assert param.grad is None and not param.requires_grad, name
    expected = torch.zeros(2, 3, 2)
    expected[torch.arange(2), out.index] = upstream
    torch.testing.assert_close(interests.grad, expected)
    assert target.grad is None


def test_parameters_exist_only_for_bam_l() -> None:
    assert list(BaMSelector("bam-p", hidden_size=4).state_dict()) == []
    assert sorted(BaMSelector("bam-l", hidden_size=4).state_dict()) == [
        "interest_proj.bias", "interest_proj.weight", "target_proj.bias", "target_proj.weight"
    ]


def test_invalid_options() -> None:
    with pytest.raises(ConfigError, match="selection"):
        BaMSelector("soft")
    with pytest.raises(ConfigError, match="bam_l_grad"):
        BaMSelector("bam-l", bam_l_grad="gumbel")
    with pytest.raises(ConfigError, match="temperature"):
        BaMSelector("bam-p", temperature=0.0)
