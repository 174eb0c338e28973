"""The validation step of the training loop, chosen by ``TrainConfig.valid_protocol``.

A validation step is any callable ``validate(backbone) -> metrics`` (:class:`Validation`), built once
per run by :func:`build_validation` from the registry :data:`VALIDATIONS` (name -> factory). The loop
calls it at every check, in eval mode restored afterwards, and hands the metrics to early stopping and to
the per-check callbacks (:mod:`bamrec.training.callbacks`). Under DDP a step whose ``sharded``
attribute is true is called on every rank, each ranking its share of the users
(``Communicator.sharded_evaluation`` in :mod:`bamrec.training.distributed`); any other step runs on
rank 0 alone.

Every step must compute the metric early stopping follows: :func:`validation_cutoffs` is the set of
cutoffs to evaluate.

Adding a protocol: write a factory ``(ValidationContext) -> Validation``, register it in
:data:`VALIDATIONS` and add its name to ``config.CHOICES["valid_protocol"]`` (a test checks that the two
agree). A step that draws users at random must take its generator from ``context.seed`` so that a seed
fixes the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from bamrec.config import RunConfig, check_metric_name
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import EvalView, LeaveOneOut
from bamrec.errors import ConfigError
from bamrec.evaluation.model_eval import evaluate_model, evaluate_model_result
from bamrec.training.distributed import Communicator


class Validation(Protocol):
    """One validation check: the metrics of ``backbone`` (a dict like ``evaluate_model`` returns)."""

    def __call__(self, backbone: torch.nn.Module) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ValidationContext:
    """What a validation factory may use."""

    config: RunConfig
    dataset: SequenceDataset
    split: LeaveOneOut
    device: torch.device
    cutoffs: tuple[int, ...]  # validation_cutoffs(config)
    seed: int  # for protocols that draw users
    distributed: Communicator | None = None  # DDP: the step runs on every rank, users split (None: one process)


def validation_cutoffs(config: RunConfig) -> tuple[int, ...]:
    """The evaluation cutoffs of ``config`` plus the early-stopping metric's cutoff when it is missing
    (``--cutoffs 20,50`` still selects by the default recall@10)."""
    _, cutoff = check_metric_name(config.train.select_metric, "select_metric")
    cutoffs = tuple(config.eval.cutoffs)
    return cutoffs if cutoff in cutoffs else tuple(sorted((*cutoffs, cutoff)))


def validation_view(split: LeaveOneOut, num_users: int, seed: int) -> EvalView:
    """The fixed validation set: all users, or a seeded subset of ``num_users`` of them."""
    view = split.view("valid")
    if num_users <= 0 or num_users >= len(view):
        return view
    rng = np.random.default_rng(seed)
    return view.subset(np.sort(rng.choice(len(view), size=num_users, replace=False)))


class FixedValidation:
    """The standard step: one fixed set of validation users (all, or ``valid_users`` of them drawn once),
    full-catalogue ranking under the standard protocol."""

    sharded = True  # under DDP every rank ranks its share of the users

    def __init__(self, context: ValidationContext) -> None:
        self.context = context
        self.view = validation_view(context.split, context.config.train.valid_users, context.seed)

    def __call__(self, backbone: torch.nn.Module) -> dict[str, Any]:
        c = self.context
        communicator = c.distributed or Communicator(c.device)
        return communicator.sharded_evaluation(
            lambda view: evaluate_model_result(backbone, c.dataset, view, c.config, protocol="standard",
                                               device=c.device, cutoffs=c.cutoffs),
            self.view,
        ).metrics()


REFERENCE_DRAWS = 1000  # users per check in the original (its DataIterator stops after index 1000)


class ReferenceValidation:
    """``draws`` validation users drawn with replacement at every call, reference protocol.

    The original BaM code (``utils.py``: ``DataIterator`` with ``valid_flag=1``, and ``evaluate``;
    ``main.py``'s loop) validates at every check on 1,000 users drawn uniformly *with replacement*,
    fresh at each check, and scores them as its evaluator does (the ``reference`` protocol: window
    items at 0, padding ranked); recall@10 on that draw decides early stopping and the kept
    checkpoint. So the selection carries sampling noise, about ``sqrt(r (1 - r) / 1000)``, and two
    checks of the same weights can disagree. This step does the same. A repeated user counts once
    per draw, as in the original. The draws come from torch's global generator, which the trainer
    seeds with the run's seed and saves in the resume state, so a seed fixes them and ``--resume``
    continues the same sequence of draws.
    """

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


def reference_validation(context: ValidationContext) -> Validation:
    """The original BaM code's step (``ReferenceValidation``): ``valid_users`` users (0 = 1,000)
    drawn with replacement at every check, reference protocol."""
    c = context
    return ReferenceValidation(c.dataset, c.split, c.config, c.device, c.cutoffs,
                               draws=c.config.train.valid_users or REFERENCE_DRAWS)


VALIDATIONS: dict[str, Callable[[ValidationContext], Validation]] = {
    "standard": FixedValidation,
    "reference": reference_validation,
}


def build_validation(config: RunConfig, dataset: SequenceDataset, split: LeaveOneOut,
                     device: torch.device, distributed: Communicator | None = None) -> Validation:
    """The validation step ``config.train.valid_protocol`` names (under DDP, called on every rank)."""
    context = ValidationContext(config=config, dataset=dataset, split=split, device=device,
                                cutoffs=validation_cutoffs(config), seed=config.train.seed, distributed=distributed)
    return VALIDATIONS[config.train.valid_protocol](context)
