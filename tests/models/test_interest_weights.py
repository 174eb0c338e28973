"""``forward_with_weights``: the weights each interest puts on the history are the ones its vector is
made from (ComiRec-SA's attention, MIND's and ComiRec-DR's last routing round, the single model's mean),
padding gets none, and the interests are exactly ``forward``'s."""

from __future__ import annotations

import pytest
import torch

from bamrec.models import MIND, SASRec, ComiRecDR, ComiRecSA, SingleInterest
from bamrec.models.layers import squash

N, D, K, L = 30, 8, 3, 6


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, N + 1, (4, L), generator=g)
    mask = torch.arange(L).unsqueeze(0) < torch.tensor([6, 1, 3, 4]).unsqueeze(1)
    return items * mask, mask


def _embedded(model: torch.nn.Module, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model.embeddings(items) * mask.unsqueeze(-1)  # [B, L, D]


@torch.no_grad()
def test_comirec_sa_interests_are_the_attention_weighted_history() -> None:
    model = ComiRecSA(N, D, K, L, seed=3).eval()
    items, mask = _batch()
    interests, weights = model.forward_with_weights(items, mask)
    assert model.weights_kind == "attention" and weights.shape == (4, K, L)
    torch.testing.assert_close(interests, model(items, mask), rtol=0, atol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, K))  # a softmax over the valid positions
    assert (weights[~mask[:, None, :].expand(-1, K, -1)] == 0).all()
    torch.testing.assert_close(weights @ _embedded(model, items, mask), interests, rtol=1e-5, atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("routing_norm", ["interests", "valid"])
def test_mind_interests_are_the_squashed_last_routing_round(routing_norm: str) -> None:
    model = MIND(N, D, K, L, routing_iters=3, seed=3, routing_norm=routing_norm).eval()
    items, mask = _batch()
    interests, weights = model.forward_with_weights(items, mask)
    assert model.weights_kind == "routing"
    torch.testing.assert_close(interests, model(items, mask), rtol=0, atol=0)
    valid = mask[:, None, :].expand(-1, K, -1)
    assert (weights[~valid] == 0).all() and (weights[valid] > 0).all()
    sums = weights.sum(1 if routing_norm == "interests" else -1)  # B2I: over interests; valid: over positions
    expected = mask.to(sums.dtype) if routing_norm == "interests" else torch.ones(4, K)
    torch.testing.assert_close(sums, expected)
    item_hat = model.linear(_embedded(model, items, mask))  # [B, L, D]
    torch.testing.assert_close(squash(weights @ item_hat), interests, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_comirec_dr_weights_read_each_interests_own_map() -> None:
    model = ComiRecDR(N, D, K, L, routing_iters=3, seed=3).eval()
    items, mask = _batch()
    interests, weights = model.forward_with_weights(items, mask)
    item_hat = torch.einsum("bld,ked->bkle", _embedded(model, items, mask), model.bilinear)  # [B, K, L, D]
    rebuilt = squash(torch.einsum("bkl,bkld->bkd", weights, item_hat))
    torch.testing.assert_close(rebuilt, interests, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_single_weights_are_the_mean_and_sasrec_has_none() -> None:
    items, mask = _batch()
    single = SingleInterest(N, D, L, seed=3).eval()
    _, weights = single.forward_with_weights(items, mask)
    assert single.weights_kind == "mean"
    torch.testing.assert_close(weights[:, 0], mask / mask.sum(-1, keepdim=True))
    sasrec = SASRec(N, D, L, num_blocks=1, num_heads=1, dropout=0.0, seed=3).eval()
    interests, weights = sasrec.forward_with_weights(items, mask)
    assert sasrec.weights_kind is None and weights is None
    torch.testing.assert_close(interests, sasrec(items, mask), rtol=0, atol=0)
