"""`bamrec report RUN [RUN ...]`: compare training runs in a markdown table and PNG plots."""

from __future__ import annotations

import argparse

from bamrec.cli import POSITIVE_INT


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    parser = subparsers.add_parser(
        "report",
        help="compare training runs: markdown table and plots",
        description="Compare run directories written by `bamrec train`: markdown tables, one per dataset "
        "(written to DIR/report.md; a short summary is printed) and PNG plots (validation curves, interest-selection balance, "
        "recall by method). Missing pieces (a run still training, no diagnostics) leave blank cells.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories, or folders holding run directories")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: report/ beside the runs)")
    parser.add_argument("--cutoff", type=POSITIVE_INT, default=20,
                        help="cutoff of the test metrics shown (default: 20)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="write the table only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the report; print a short summary per dataset and where the files went."""
    from bamrec.reports import write_report
    from bamrec.reports.tables import dataset_groups

    report = write_report(args.runs, args.out, overwrite=args.overwrite, cutoff=args.cutoff, plots=args.plots)
    metric = f"recall@{args.cutoff}"
    groups = dataset_groups(report.runs)
    print(f"compared {len(report.runs)} run{'s' if len(report.runs) != 1 else ''} on {len(groups)} dataset"
          f"{'s' if len(groups) != 1 else ''}")
    for label, runs in groups.items():
        scored = [(r.test_metric(metric), r.name) for r in runs if r.test_metric(metric) is not None]
        best = max(scored) if scored else None
        line = f"  {label}: {len(runs)} run{'' if len(runs) == 1 else 's'}"
        if best is not None:
            line += f", best test {metric} {best[0]:.4f} ({best[1]})"
        print(line)
    print(f"wrote {report.path}" + (f" and {len(report.plots)} plots" if report.plots else ""))
    return 0
