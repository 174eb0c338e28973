"""Opt-in ``torch.compile`` of the training step's forward pass (``--compile``), falling back to eager.

The compiled forward computes the same loss as the eager one (up to float rounding: the compiler
fuses elementwise passes and may reorder reductions); the backward pass is compiled with it
(AOTAutograd). On CPU the inductor backend writes and builds C++ kernels at the first steps, which
takes minutes (docs/PERFORMANCE.md has the cost and the gain), and recompiles as batch shapes change (ComiRec-SA's valid-position count is one on CPU; dynamo makes
such dimensions dynamic after the first recompile). A failure to compile (no C++ compiler, an
unsupported operation) must not lose the run: it is reported in one line and training goes on
eagerly.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

COMPILE_BACKEND = "inductor"


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause (dynamo wraps a backend's error in its own)."""
    while True:
        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if not isinstance(inner, BaseException) or inner is exc:
            break
        exc = inner
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class CompiledOrEager:
    """Calls ``torch.compile(module)``; after its first failure calls ``module`` itself.

    Stands where the trainer calls its model (``model(...)``, ``model.train()``); the parameters,
    state dict and optimiser stay those of ``module``. A failed compiled call may have drawn random
    numbers before failing, so a fallen-back run is not bit-identical to an eager run of the same seed.
    """

    def __init__(self, module: nn.Module, warn: Callable[[str], None],
                 backend: str | Callable[..., Any] = COMPILE_BACKEND) -> None:
        self.module = module
        self.warn = warn
        self.compiled: Callable[..., Any] | None = None
        try:
            self.compiled = torch.compile(module, backend=backend)
        except Exception as exc:  # noqa: BLE001 - e.g. a backend name this torch does not have
            self._fall_back(exc)

    def _fall_back(self, exc: BaseException) -> None:
        self.compiled = None
        self.warn(f"warning: torch.compile failed ({_first_line(exc)}); training continues without it")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - compilation runs inside the first calls
                self._fall_back(exc)
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> "CompiledOrEager":
        self.module.train(mode)
        return self

    def eval(self) -> "CompiledOrEager":
        return self.train(False)
