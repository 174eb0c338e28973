"""Evaluate a trained backbone with a run's configuration: the one entry point the trainer, the
Python API (``Run.evaluate``) and the CLI share.

It puts the backbone in eval mode for the duration (restoring its mode afterwards), takes the item
table once under ``inference_mode`` and hands its inference function (``bamrec.models.inference``)
and everything else to :func:`bamrec.evaluation.ranking.evaluate`
with the run's ``seq_len`` and evaluation chunk sizes.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from bamrec.config import RunConfig
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import EvalView
from bamrec.evaluation.metrics import EvalResult
from bamrec.evaluation.ranking import evaluate
from bamrec.models.inference import inference_fn


def evaluate_model_result(
    backbone: torch.nn.Module,
    dataset: SequenceDataset,
    view: EvalView,
    config: RunConfig,
    *,
    protocol: str,
    device: torch.device,
    cutoffs: Sequence[int] | None = None,
    progress: bool = False,
) -> EvalResult:
    """The full EvalResult (per-user ranks, retrieving interests) of ``backbone`` on ``view``."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.inference_mode():
            item_embeddings = backbone.item_embeddings().detach()  # [N + 1, D]
        return evaluate(
            inference_fn(backbone), item_embeddings, dataset, view,
            seq_len=config.model.seq_len, protocol=protocol,
            cutoffs=tuple(cutoffs) if cutoffs else config.eval.cutoffs,
            user_batch_size=config.eval.user_batch_size, item_chunk_size=config.eval.item_chunk_size,
            device=device, progress=progress,
        )
    finally:
        backbone.train(was_training)


def evaluate_model(
    backbone: torch.nn.Module,
    dataset: SequenceDataset,
    view: EvalView,
    config: RunConfig,
    *,
    protocol: str,
    device: torch.device,
    cutoffs: Sequence[int] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics of ``backbone`` on ``view`` (``{"recall@10": ..., "users": ..., "protocol": ...}``)."""
    return evaluate_model_result(backbone, dataset, view, config, protocol=protocol, device=device,
                                 cutoffs=cutoffs, progress=progress).metrics()
