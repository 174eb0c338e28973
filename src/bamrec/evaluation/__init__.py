"""Evaluation: exact full-catalogue ranking (standard and reference protocols) and ranking metrics."""

from bamrec.evaluation.metrics import EvalResult, metric_values, summarize
from bamrec.data.csr import Csr
from bamrec.evaluation.ranking import evaluate, rank_targets

__all__ = ["Csr", "EvalResult", "evaluate", "metric_values", "rank_targets", "summarize"]
