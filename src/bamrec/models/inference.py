"""Which function computes a backbone's interests at inference: chosen here, explicitly.

Evaluation (``bamrec.evaluation.model_eval``, the trainer's validation, the diagnostics) and
retrieval (``bamrec.retrieval.service``: recommend, exports, the service) call ``inference_fn``;
training and ONNX export call the model itself, its plain formula.
"""

from __future__ import annotations

from typing import Callable

import torch

InterestFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def inference_fn(model: torch.nn.Module) -> InterestFn:
    """``interests = fn(items [B, L], mask [B, L])`` for ``model`` at inference.

    ComiRec-SA gets its faster form (``comirec_sa_fast.ComiRecSAInference``, tested equal to the
    formula); every other model is its own inference function. The faster form snapshots the
    weights at its first call: ask for a new function after the weights change.
    """
    from bamrec.models.comirec_sa import ComiRecSA
    from bamrec.models.comirec_sa_fast import ComiRecSAInference

    if type(model) is ComiRecSA:  # a subclass may change the formula, which the fast form would not follow
        return ComiRecSAInference(model)
    return model
