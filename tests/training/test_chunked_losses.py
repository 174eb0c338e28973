"""The memory-bounded paths for large catalogues equal the plain ones: chunked full softmax (values and
gradients) and per-example negatives drawn a few rows at a time."""

from __future__ import annotations

import pytest
import torch

from bamrec.config import ModelConfig, TrainConfig
from bamrec.models import build_backbone
from bamrec.training import Objective, losses
from bamrec.training import objective as objective_module


def _leaves(*shapes: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_() for shape in shapes]


@pytest.mark.order_sensitive
@pytest.mark.parametrize("num_interests, chunk", [(1, 7), (3, 5), (3, 1), (2, 1000)])
def test_chunked_full_softmax_equals_materialised_scores(num_interests, chunk):
    batch, num_items, dim = 6, 23, 4
    queries, table = _leaves((batch, num_interests, dim), (num_items + 1, dim))
    target = torch.tensor([1, 5, 23, 7, 7, 12])
    items = table[1:]
    scores = torch.matmul(queries, items.T).logsumexp(1)  # [B, N]: BaM's multi score (K = 1: plain)
    plain = losses.full_softmax_loss(scores, target)
    weights = torch.linspace(0.5, 2.0, batch, dtype=torch.float64)  # a non-uniform upstream gradient
    plain_grads = torch.autograd.grad((plain * weights).sum(), (queries, table))
    chunked = losses.chunked_full_softmax_loss(queries, items, target, chunk)
    chunked_grads = torch.autograd.grad((chunked * weights).sum(), (queries, table))
    torch.testing.assert_close(chunked, plain)
    for got, want in zip(chunked_grads, plain_grads):
        torch.testing.assert_close(got, want)
    assert chunked_grads[1][0].abs().sum() == 0  # padding never scored


@pytest.mark.order_sensitive
@pytest.mark.parametrize("multi_loss", [False, True])
def test_objective_full_loss_chunks_only_past_the_budget_and_gives_the_same_step(monkeypatch, multi_loss):
    num_items, dim = 40, 8
    backbone = build_backbone(ModelConfig(model="comirec-sa", num_interests=3, hidden_size=dim, seq_len=5),
                              num_items, seed=0)
    obj = Objective(backbone, TrainConfig(loss="full", multi_loss=multi_loss, selection="bam-p"), num_items).double()
    g = torch.Generator().manual_seed(0)
    history = torch.randint(1, num_items + 1, (8, 5), generator=g)
    mask = torch.ones(8, 5, dtype=torch.bool)
    target = torch.randint(1, num_items + 1, (8,), generator=g)
    calls = []
    original = losses.chunked_full_softmax_loss
    monkeypatch.setattr(losses, "chunked_full_softmax_loss", lambda *a: calls.append(a[3]) or original(*a))

    def step():
        obj.zero_grad()
        out = obj(history, mask, target, generator=torch.Generator().manual_seed(1))
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() for p in obj.parameters() if p.grad is not None]

    plain_loss, plain_grads = step()
    assert calls == []  # 8 x 3 x 40 scores are far below the budget
    monkeypatch.setattr(objective_module, "FULL_SOFTMAX_CHUNK_ELEMENTS", 8 * 3 * 7)
    chunked_loss, chunked_grads = step()
    assert calls == [21, 7] if multi_loss else calls == [21]
    torch.testing.assert_close(chunked_loss, plain_loss)
    for got, want in zip(chunked_grads, plain_grads):
        torch.testing.assert_close(got, want)


def test_per_example_negatives_drawn_in_row_chunks_are_the_same_draws(monkeypatch):
    def draw():
        return losses.sample_negatives(50, 12, "per-example", 9, torch.Generator().manual_seed(4))

    plain = draw()
    monkeypatch.setattr(losses, "KEY_CHUNK_ELEMENTS", 2 * 51)  # 2 rows of keys at a time
    chunked = draw()
    assert chunked.shape == (9, 12)
    torch.testing.assert_close(chunked, plain)
    assert all(len(set(row.tolist())) == 12 for row in chunked)  # without replacement per row
