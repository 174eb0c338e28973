"""``--compile``: the compiled training step equals the eager one, and a failing compiler falls back."""

from __future__ import annotations

import os

import pytest
import torch

from bamrec.training.compiled import CompiledOrEager

from .test_objective import clustered_batch, objective


def _steps(call, obj, steps: int = 2) -> list[tuple[float, list[torch.Tensor]]]:
    """Loss and gradients of ``steps`` Adam steps through ``call`` (the same draws every time)."""
    opt = torch.optim.Adam(obj.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = call(*clustered_batch(16, g), generator=g).loss
        loss.backward()
        out.append((loss.item(), [p.grad.clone() for p in obj.parameters() if p.grad is not None]))
        opt.step()
    return out


def _assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (loss_a, grads_a), (loss_b, grads_b) in zip(a, b):
        assert loss_a == pytest.approx(loss_b, rel=1e-5, abs=1e-6)
        assert len(grads_a) == len(grads_b)
        for x, y in zip(grads_a, grads_b):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


# aot_eager traces the step through dynamo and AOTAutograd (what inductor compiles) without building
# C++ kernels, which takes minutes on a small CPU; BAMREC_TEST_INDUCTOR=1 adds the real backend.
BACKENDS = ["aot_eager"] + (["inductor"] if os.environ.get("BAMREC_TEST_INDUCTOR") == "1" else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_step_equals_eager(backend: str) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    obj_e = objective(multi_loss=True, selection="bam-p")
    eager = _steps(obj_e, obj_e)
    torch.manual_seed(0)
    obj_c = objective(multi_loss=True, selection="bam-p")
    warnings: list[str] = []
    compiled = CompiledOrEager(obj_c, warnings.append, backend=backend)
    _assert_same(_steps(compiled, obj_c), eager)
    assert warnings == [] and compiled.compiled is not None  # it did not fall back


def test_a_failing_compiler_falls_back_to_eager_with_one_line() -> None:
    def broken(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler here\nsecond line")

    torch._dynamo.reset()
    torch.manual_seed(0)
    obj_e = objective()
    eager = _steps(obj_e, obj_e)
    torch.manual_seed(0)
    obj_c = objective()
    warnings: list[str] = []
    compiled = CompiledOrEager(obj_c, warnings.append, backend=broken)
    _assert_same(_steps(compiled, obj_c), eager)
    assert compiled.compiled is None
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("warning: torch.compile failed") and "no C++ compiler here" in warnings[0]
    compiled.eval()
    assert not obj_c.training
