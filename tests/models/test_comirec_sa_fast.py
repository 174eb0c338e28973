"""ComiRec-SA's inference form (models/comirec_sa_fast.py) against its formula (models/comirec_sa.py),
on every path the fast form can take, and the explicit choice of it (models/inference.py)."""

from __future__ import annotations

import pytest
import torch

import bamrec.models.comirec_sa_fast as fast_module
from bamrec.models import MIND, ComiRecSA
from bamrec.models.comirec_sa_fast import ComiRecSAInference
from bamrec.models.inference import inference_fn


def _long_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """12 windows of 16 positions over 25 items, one fully padded, lengths 0-16 (192 positions > 26 rows)."""
    generator = torch.Generator().manual_seed(5)
    items = torch.randint(1, 26, (12, 16), generator=generator)
    lengths = torch.tensor([16, 0, 1, 7, 16, 3, 9, 16, 12, 5, 2, 16])
    mask = torch.arange(16).unsqueeze(0) < lengths.unsqueeze(1)
    return items * mask, mask


def _model() -> ComiRecSA:
    return ComiRecSA(25, hidden_size=8, num_interests=3, seq_len=16, seed=2).eval()


def _formula(model: ComiRecSA, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(items, mask)


@pytest.mark.order_sensitive
@pytest.mark.parametrize("pair_table", [True, False])
@pytest.mark.parametrize("chunk", [1, 5, 1024])
def test_pair_path_equals_the_formula(monkeypatch, chunk: int, pair_table: bool) -> None:
    # Position chunks of any size, tanh as 2 sigmoid(2x) - 1, logits shifted by a constant per
    # interest, with and without the table of pair logits.
    monkeypatch.setattr(fast_module, "POSITION_CHUNK", chunk)
    monkeypatch.setattr(fast_module, "PAIR_TABLE_MAX_ELEMENTS", 1 << 24 if pair_table else 0)
    items, mask = _long_batch()
    model = _model()
    fast = ComiRecSAInference(model)
    fast(items[:5], mask[:5])  # fills part of the pair table: the next call mixes kept and new pairs
    got = fast(items, mask)
    assert (fast._pair_logits is not None) == pair_table
    torch.testing.assert_close(got, _formula(model, items, mask), rtol=1e-5, atol=1e-6)
    assert bool((got[1] == 0).all())  # the fully padded window: zero interests


@pytest.mark.order_sensitive
def test_gather_path_off_cpu_equals_the_formula(monkeypatch) -> None:
    # Where valid positions are not packed (a GPU), the fast form gathers the item table at every
    # position; the formula then runs dense too. Both equal the packed CPU formula.
    items, mask = _long_batch()
    model = _model()
    packed = _formula(model, items, mask)
    monkeypatch.setattr(ComiRecSA, "valid_positions", staticmethod(lambda mask: None))
    torch.testing.assert_close(_formula(model, items, mask), packed, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ComiRecSAInference(model)(items, mask), packed, rtol=1e-5, atol=1e-6)


@pytest.mark.order_sensitive
def test_a_batch_smaller_than_the_catalogue_runs_the_formula() -> None:
    items, mask = _long_batch()
    model = ComiRecSA(500, hidden_size=8, num_interests=3, seq_len=16, seed=2).eval()  # 501 rows > 192 positions
    fast = ComiRecSAInference(model)
    torch.testing.assert_close(fast(items, mask), _formula(model, items, mask))
    assert fast._item_table is None and fast._pair_logits is None


def test_no_tensor_larger_than_the_tables_or_the_history(monkeypatch) -> None:
    # The pair path never holds the [P, 4D] activation of a whole batch, whose size would change
    # with every batch (allocator retention, page faults).
    from torch.utils._python_dispatch import TorchDispatchMode

    monkeypatch.setattr(fast_module, "POSITION_CHUNK", 8)
    monkeypatch.setattr(fast_module, "PAIR_TABLE_MAX_ELEMENTS", 0)  # every call computes its pairs
    items = torch.randint(1, 26, (12, 16), generator=torch.Generator().manual_seed(6))
    mask = torch.ones(12, 16, dtype=torch.bool)  # P = 192 valid positions
    fast = ComiRecSAInference(_model())
    fast(items, mask)  # builds the [N + 1 + L, 4D] rows once

    class Largest(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for value in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(value, torch.Tensor):
                    Largest.largest = max(Largest.largest, value.numel())
            return out

    with Largest():
        fast(items, mask)
    bound = max(12 * 16 * 8, (25 + 1 + 16) * 4 * 8)  # [B, L, D] and the [N + 1 + L, 4D] rows
    assert 0 < Largest.largest <= bound < 12 * 16 * 4 * 8  # the whole activation would be [P, 4D]


def test_the_formula_keeps_no_state_between_calls() -> None:
    # No cache in the model: after the weights change, the model computes with the new weights,
    # and gradients after an evaluation are a fresh model's.
    items, mask = _long_batch()
    model, fresh = _model(), _model()
    with torch.inference_mode():
        inference_fn(model)(items, mask)
        model(items, mask)
    model(items, mask).square().sum().backward()
    fresh(items, mask).square().sum().backward()
    for (name, a), b in zip(model.named_parameters(), fresh.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    with torch.no_grad():
        model.linear2.weight.mul_(-3.0)
    copy = _model()
    copy.load_state_dict(model.state_dict())
    torch.testing.assert_close(inference_fn(model)(items, mask), _formula(copy, items, mask), rtol=1e-5, atol=1e-6)


def test_inference_fn_chooses_the_fast_form_for_comirec_sa_only() -> None:
    assert isinstance(inference_fn(_model()), ComiRecSAInference)
    mind = MIND(25, 8, 3, 16)
    assert inference_fn(mind) is mind

    class Changed(ComiRecSA):  # a subclass may change the formula: it is not given the fast form
        pass

    changed = Changed(25, 8, 3, 16)
    assert inference_fn(changed) is changed
    with pytest.raises(TypeError):
        ComiRecSAInference(mind)


def test_evaluation_and_retrieval_use_the_fast_form(monkeypatch, tiny_run) -> None:
    from bamrec.api import load_run

    calls = []
    original = ComiRecSAInference.__call__
    monkeypatch.setattr(ComiRecSAInference, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    run = load_run(tiny_run)
    run.evaluate(cutoffs=(5,))
    evaluated = len(calls)
    run.recommend(user=2, k=3)
    assert evaluated > 0 and len(calls) > evaluated
