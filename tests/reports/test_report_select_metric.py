"""A report's best iteration follows the run's own early-stopping metric (``select_metric``)."""

from __future__ import annotations

from bamrec.reports.tables import RunRecord


def test_best_iter_without_summary_uses_the_runs_select_metric(tmp_path):
    metrics = [{"iter": 10, "valid": {"recall@10": 0.5, "mrr@5": 0.1}},
               {"iter": 20, "valid": {"recall@10": 0.2, "mrr@5": 0.3}}]
    assert RunRecord(tmp_path, "a", config={"train": {}}, metrics=metrics).best_iter() == 10
    record = RunRecord(tmp_path, "b", config={"train": {"select_metric": "mrr@5"}}, metrics=metrics)
    assert record.best_iter() == 20
