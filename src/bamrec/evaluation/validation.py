"""The original BaM code's validation, as a validation step of the training loop.

The original (``utils.py``: ``DataIterator`` with ``valid_flag=1``, and ``evaluate``; ``main.py``'s
loop) validates at every check on 1,000 users drawn uniformly *with replacement*, fresh at each
check, and scores them as its evaluator does (the ``reference`` protocol: window items at 0, padding
ranked); recall@10 on that draw decides early stopping and the kept checkpoint. So the selection
carries sampling noise, about ``sqrt(r (1 - r) / 1000)`` (0.009 at recall 0.1), and two checks of
the same weights can disagree.

``ReferenceValidation`` does the same (``valid_protocol="reference"``, registered in
``bamrec.training.validation``). A repeated user counts once per draw, as in the original. The draws
come from torch's global generator, which the trainer seeds with the run's seed and saves in the
resume state, so a seed fixes them and ``--resume`` continues the same sequence of draws.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from bamrec.config import RunConfig
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import EvalView, LeaveOneOut
from bamrec.errors import ConfigError
from bamrec.evaluation.model_eval import evaluate_model

REFERENCE_DRAWS = 1000  # users per check in the original (its DataIterator stops after index 1000)


class ReferenceValidation:
    """``draws`` validation users drawn with replacement at every call, reference protocol."""

    protocol = "reference"

    def __init__(self, dataset: SequenceDataset, split: LeaveOneOut, config: RunConfig, device: torch.device,
                 cutoffs: Sequence[int], draws: int = REFERENCE_DRAWS) -> None:
        if draws <= 0:
            raise ConfigError(f"reference validation needs a positive number of users per check, got {draws}")
        self.dataset, self.config, self.device, self.cutoffs = dataset, config, device, tuple(cutoffs)
        self.view = split.view("valid")
        self.draws = draws

    def next_view(self) -> EvalView:
        """A fresh draw of ``draws`` users (with replacement) from the validation view."""
        index = torch.randint(len(self.view), (self.draws,)).numpy()  # global generator: seeded, resumed
        return self.view.subset(index)

    def __call__(self, backbone: torch.nn.Module) -> dict[str, Any]:
        return evaluate_model(backbone, self.dataset, self.next_view(), self.config, protocol=self.protocol,
                              device=self.device, cutoffs=self.cutoffs)
