"""Losses against hand computation: sampled/full softmax, logQ, accidental hits, multi, IHN, RR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bamrec.errors import ConfigError
from bamrec.training import losses


def ce(pos: float, negs: list[float]) -> float:
    """-log(exp(pos) / (exp(pos) + sum exp(negs)))."""
    return -pos + math.log(math.exp(pos) + sum(math.exp(n) for n in negs))


QUERY = torch.tensor([[1.0, 0.0], [0.5, -1.0]])  # [B=2, D=2]
TABLE = torch.tensor([[9.0, 9.0], [1.0, 2.0], [0.0, 1.0], [-1.0, 0.5], [2.0, -1.0]])  # [N+1=5, D]; row 0 padding
TARGET = torch.tensor([1, 4])
NEG = torch.tensor([2, 3, 4])  # shared negatives [S=3]


def test_sampled_softmax_with_fixed_negatives_equals_manual_cross_entropy() -> None:
    pos, neg = losses.single_scores(QUERY, TABLE[TARGET], TABLE[NEG])
    torch.testing.assert_close(pos, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(neg, torch.tensor([[0.0, -1.0, 2.0], [-1.0, -1.0, 2.0]]))
    got = losses.sampled_softmax_loss(pos, neg)
    torch.testing.assert_close(got, torch.tensor([ce(1.0, [0.0, -1.0, 2.0]), ce(2.0, [-1.0, -1.0, 2.0])]))


def test_per_example_scores_match_shared() -> None:
    shared = losses.single_scores(QUERY, TABLE[TARGET], TABLE[NEG])
    per_example = losses.single_scores(QUERY, TABLE[TARGET], TABLE[NEG.expand(2, -1)])
    torch.testing.assert_close(shared, per_example)
    interests = torch.stack([QUERY, QUERY.flip(1)], dim=1)  # [B, K=2, D]
    torch.testing.assert_close(
        losses.multi_scores(interests, TABLE[TARGET], TABLE[NEG]),
        losses.multi_scores(interests, TABLE[TARGET], TABLE[NEG.expand(2, -1)]),
    )


def test_log_q_constant_cancels_and_general_log_q_is_subtracted() -> None:
    pos, neg = losses.single_scores(QUERY, TABLE[TARGET], TABLE[NEG])
    plain = losses.sampled_softmax_loss(pos, neg)
    log_q = losses.uniform_noise_log_prob(4, "shared")
    torch.testing.assert_close(losses.sampled_softmax_loss(pos, neg, log_q[TARGET], log_q[NEG]), plain)
    # Non-uniform noise: every logit is s - log q.
    q = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4]).clamp_min(1e-10).log()
    got = losses.sampled_softmax_loss(pos, neg, q[TARGET], q[NEG])
    lq = q.tolist()
    expected = [
        ce(1.0 - lq[1], [0.0 - lq[2], -1.0 - lq[3], 2.0 - lq[4]]),
        ce(2.0 - lq[4], [-1.0 - lq[2], -1.0 - lq[3], 2.0 - lq[4]]),
    ]
    torch.testing.assert_close(got, torch.tensor(expected))


def test_uniform_noise_log_prob() -> None:
    shared = losses.uniform_noise_log_prob(4, "shared")
    torch.testing.assert_close(shared[1:], torch.full((4,), math.log(1 / 4)))
    assert shared[0] == pytest.approx(math.log(1e-10))
    torch.testing.assert_close(losses.uniform_noise_log_prob(4, "per-example"), torch.full((5,), math.log(1 / 5)))


def test_accidental_hits_are_masked() -> None:
    pos, neg = losses.single_scores(QUERY, TABLE[TARGET], TABLE[NEG])
    hits = losses.accidental_hits(NEG, TARGET)
    assert hits.tolist() == [[False, False, False], [False, False, True]]
    got = losses.sampled_softmax_loss(pos, neg, valid=~hits)
    torch.testing.assert_close(got, torch.tensor([ce(1.0, [0.0, -1.0, 2.0]), ce(2.0, [-1.0, -1.0])]))
    per_example = torch.tensor([[1, 1, 2], [4, 3, 4]])
    assert losses.accidental_hits(per_example, TARGET).tolist() == [[True, True, False], [True, False, True]]


def test_full_softmax_equals_cross_entropy_over_items() -> None:
    scores = QUERY @ TABLE[1:].T  # [B, N]
    got = losses.full_softmax_loss(scores, TARGET)
    torch.testing.assert_close(got, F.cross_entropy(scores, TARGET - 1, reduction="none"))
    # By hand, padding row (score 9) excluded: example 0 scores items 1..4 = [1, 0, -1, 2].
    assert got[0].item() == pytest.approx(ce(1.0, [0.0, -1.0, 2.0]), rel=1e-6)


def test_multi_interest_scores_are_logsumexp_over_interests() -> None:
    interests = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.5, -1.0], [1.0, 1.0]]])  # [B, K=2, D]
    pos, neg = losses.multi_scores(interests, TABLE[TARGET], TABLE[NEG])
    for b in range(2):
        per_interest = interests[b] @ TABLE.T  # [K, N+1]
        lse = torch.logsumexp(per_interest, dim=0)
        assert pos[b].item() == pytest.approx(lse[TARGET[b]].item(), rel=1e-6)
        torch.testing.assert_close(neg[b], lse[NEG])
    # e.g. example 0, item 1 = [1, 2]: log(e^1 + e^2)
    assert pos[0].item() == pytest.approx(math.log(math.e + math.e**2), rel=1e-6)


def test_ihn_beta_zero_is_the_plain_loss() -> None:
    pos, neg = losses.single_scores(QUERY, TABLE[TARGET], TABLE[NEG])
    log_w = losses.hard_negative_log_weights(neg, None, 0.0)
    torch.testing.assert_close(log_w, torch.zeros_like(log_w), rtol=0, atol=1e-6)
    log_w = losses.hard_negative_log_weights(neg, torch.tensor([[True, False, True], [True, True, True]]), 0.0)
    assert torch.isinf(log_w[0, 1]) and abs(log_w[0, 0]) < 1e-6
    plain = losses.sampled_softmax_loss(pos, neg)
    torch.testing.assert_close(losses.sampled_softmax_loss(pos, neg, beta=1e-12), plain, rtol=0, atol=1e-6)


def test_ihn_reweights_negatives_by_scaled_softmax() -> None:
    pos, neg = losses.single_scores(QUERY, TABLE[TARGET], TABLE[NEG])
    beta = 0.7
    got = losses.sampled_softmax_loss(pos, neg, beta=beta)
    for b in range(2):
        s = neg[b].numpy().astype(np.float64)
        w = 3 * np.exp(beta * s) / np.exp(beta * s).sum()
        expected = -pos[b].item() + math.log(math.exp(pos[b].item()) + float((w * np.exp(s)).sum()))
        assert got[b].item() == pytest.approx(expected, rel=1e-5)


def test_ihn_weights_are_detached() -> None:
    pos = torch.tensor([1.0], requires_grad=True)
    neg = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    losses.sampled_softmax_loss(pos, neg, beta=2.0).sum().backward()
    s = neg.detach()[0].double()
    w = 3 * torch.softmax(2.0 * s, 0)
    terms = torch.cat([torch.tensor([1.0], dtype=torch.float64).exp(), w * s.exp()])
    expected = (terms / terms.sum())[1:]  # d loss / d s_j with w held fixed
    torch.testing.assert_close(neg.grad[0].double(), expected, rtol=1e-5, atol=1e-7)


def test_full_softmax_with_ihn() -> None:
    scores = torch.tensor([[1.0, 0.0, -1.0, 2.0]])
    got = losses.full_softmax_loss(scores, torch.tensor([1]), beta=0.5)
    s = np.array([0.0, -1.0, 2.0])
    w = 3 * np.exp(0.5 * s) / np.exp(0.5 * s).sum()
    assert got.item() == pytest.approx(-1.0 + math.log(math.e + float((w * np.exp(s)).sum())), rel=1e-5)
    plain = losses.full_softmax_loss(scores, torch.tensor([1]))
    torch.testing.assert_close(losses.full_softmax_loss(scores, torch.tensor([1]), beta=1e-12), plain)


def test_routing_regularisation_hand_example() -> None:
    attention = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]]])  # [B=1, K=2, L=4]
    mask = torch.ones(1, 4, dtype=torch.bool)
    # Interest 0: mean 0.25, squared deviations 0.0225+0.0025+0.0025+0.0225 = 0.05, / D=2 -> 0.025, ^2.
    assert losses.routing_regularization(attention, mask, 2).item() == pytest.approx(0.025**2)
    # Only valid positions count: [0.5, 0.5 | pad, pad] is perfectly even.
    even = torch.tensor([[[0.5, 0.5, 0.0, 0.0]]])
    assert losses.routing_regularization(even, torch.tensor([[True, True, False, False]]), 2).item() == 0.0
    # [0.9, 0.1 | pad]: mean 0.5, deviations 0.16 + 0.16 = 0.32, / 2 = 0.16, ^2 = 0.0256.
    peaked = torch.tensor([[[0.9, 0.1, 0.0]]])
    assert losses.routing_regularization(peaked, torch.tensor([[True, True, False]]), 2).item() == pytest.approx(0.0256)


def test_routing_regularisation_equals_remi_formula_without_padding() -> None:
    attention = torch.softmax(torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    centred = attention - attention.mean(2, keepdim=True)
    cov = torch.bmm(centred, centred.transpose(1, 2)) / 8
    remi = (torch.diagonal(cov, dim1=-2, dim2=-1).norm(dim=1) ** 2).sum()
    got = losses.routing_regularization(attention, torch.ones(3, 5, dtype=torch.bool), 8)
    torch.testing.assert_close(got, remi)


def test_sample_negatives_shared() -> None:
    neg = losses.sample_negatives(4, 1000, "shared", 7, torch.Generator().manual_seed(0))
    assert neg.shape == (1000,) and neg.dtype == torch.int64
    assert neg.min() == 1 and neg.max() == 4  # padding never drawn
    again = losses.sample_negatives(4, 1000, "shared", 7, torch.Generator().manual_seed(0))
    assert torch.equal(neg, again)


def test_sample_negatives_per_example_like_the_original() -> None:
    neg = losses.sample_negatives(5, 4, "per-example", 2000, torch.Generator().manual_seed(0))
    assert neg.shape == (2000, 4)
    assert neg.min() == 0 and neg.max() == 5  # padding included, as the original does
    sorted_rows = neg.sort(1).values
    assert (sorted_rows[:, 1:] != sorted_rows[:, :-1]).all()  # without replacement within a row
    freq = torch.bincount(neg.flatten(), minlength=6).double() / neg.numel()
    assert (freq - 1 / 6).abs().max() < 0.01  # uniform over 0..N
    with pytest.raises(ConfigError, match="num_negatives=7"):
        losses.sample_negatives(5, 7, "per-example", 2)
    with pytest.raises(ConfigError, match="negatives"):
        losses.sample_negatives(5, 2, "batch", 2)


def test_softmax_cross_entropy_refuses_double_backward() -> None:
    # Its backward is hand-written and not itself differentiable: a second derivative must raise,
    # not come back silently wrong (before: autograd saw no path from the gradient back to the
    # scores and returned a second derivative of 0).
    pos = torch.randn(4, requires_grad=True)
    neg = torch.randn(4, 6, requires_grad=True)
    weight = torch.rand(4, requires_grad=True)  # a loss weight that itself trains: the gradient needs a graph
    loss = (losses._SoftmaxCrossEntropy.apply(pos, neg) * weight).sum()
    (grad_neg,) = torch.autograd.grad(loss, neg, create_graph=True)
    reference = torch.logsumexp(torch.cat([pos[:, None], neg], 1), 1) - pos
    (expected,) = torch.autograd.grad((reference * weight).sum(), neg)
    torch.testing.assert_close(grad_neg, expected)  # the first derivative is right
    with pytest.raises(RuntimeError, match="marked with @once_differentiable"):
        grad_neg.square().sum().backward()  # e.g. a gradient penalty
