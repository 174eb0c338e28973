"""Per-example negatives scored against the whole table give the same loss and gradients as the
gather-and-bmm path (the two are exact rewrites of each other)."""

from __future__ import annotations

import pytest
import torch

from bamrec.config import TrainConfig
from bamrec.models.comirec_sa import ComiRecSA
from bamrec.training import objective as objective_module
from bamrec.training.objective import Objective


def loss_and_grads(monkeypatch, ratio: int, **train):
    monkeypatch.setattr(objective_module, "TABLE_SCORING_MAX_RATIO", ratio)
    torch.manual_seed(0)
    backbone = ComiRecSA(num_items=30, hidden_size=8, num_interests=3, seq_len=6, seed=1)
    objective = Objective(backbone, TrainConfig(negatives="per-example", num_negatives=12, **train), 30, seed=2)
    history = torch.randint(1, 31, (5, 6))
    mask = torch.arange(6).unsqueeze(0) < torch.tensor([[6], [3], [1], [5], [2]])
    target = torch.randint(1, 31, (5,))
    out = objective(history, mask, target, torch.Generator().manual_seed(3))
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("train", [
    dict(selection="hard"),
    dict(selection="bam-p", multi_loss=True),
    dict(selection="bam-p", multi_loss=True, remi_beta=0.5, remove_accidental_hits=True),
    dict(selection="bam-l", multi_loss=True),
])
@pytest.mark.order_sensitive
def test_table_scoring_matches_gathered_embeddings(monkeypatch, train):
    loss_table, grads_table = loss_and_grads(monkeypatch, 1000, **train)
    loss_gather, grads_gather = loss_and_grads(monkeypatch, 0, **train)
    torch.testing.assert_close(loss_table, loss_gather, rtol=1e-5, atol=1e-6)
    assert grads_table.keys() == grads_gather.keys()
    for name in grads_table:
        torch.testing.assert_close(grads_table[name], grads_gather[name], rtol=1e-4, atol=1e-6)


def test_softmax_cross_entropy_matches_autograd_logsumexp():
    from bamrec.training.losses import _SoftmaxCrossEntropy

    torch.manual_seed(0)
    pos = torch.randn(4, dtype=torch.float64, requires_grad=True)
    neg = torch.randn(4, 3, 5, dtype=torch.float64)
    neg[1, 0, 2] = float("-inf")  # a removed negative contributes nothing
    neg.requires_grad_(True)
    assert torch.autograd.gradcheck(_SoftmaxCrossEntropy.apply, (pos, neg))
    expected = torch.logsumexp(torch.cat([pos.unsqueeze(1), neg.flatten(1)], 1), 1) - pos
    torch.testing.assert_close(_SoftmaxCrossEntropy.apply(pos, neg), expected)
