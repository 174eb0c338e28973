"""Experiments: a grid of training runs over datasets, models, options and seeds, run resumably,
and aggregated with confidence intervals and paired tests (``docs/experiments.md``).

- ``spec``: the experiment file and its expansion into cells;
- ``cell``: one cell in its own process (train or resume, test in both protocols, summary);
- ``runner``: skip finished cells, run the others ``jobs`` at a time, progress;
- ``stats`` and ``aggregate``: mean / std / t-interval over seeds, paired t / Wilcoxon over seeds,
  per-user paired bootstrap, ``results.json``, ``results.md`` and plots.
"""

from bamrec.experiments.aggregate import aggregate, write_results
from bamrec.experiments.runner import run_experiment
from bamrec.experiments.spec import Cell, Experiment, load_experiment, parse_experiment

__all__ = ["Cell", "Experiment", "aggregate", "load_experiment", "parse_experiment", "run_experiment",
           "write_results"]
