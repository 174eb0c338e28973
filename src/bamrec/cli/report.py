"""`bamrec report RUN [RUN ...]`: compare training runs in a markdown table and PNG plots."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    parser = subparsers.add_parser(
        "report",
        help="compare training runs: markdown table and plots",
        description="Compare run directories written by `bamrec train`: a markdown table (printed and "
        "written to DIR/report.md) and PNG plots (validation curves, interest-selection balance, "
        "recall by method). Missing pieces (a run still training, no diagnostics) leave blank cells.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories, or folders holding run directories")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: report/ beside the runs)")
    parser.add_argument("--cutoff", type=int, default=20, help="cutoff of the test metrics shown (default: 20)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="write the table only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the report, print the table and where the files went."""
    from bamrec.errors import ConfigError
    from bamrec.reports import write_report

    if args.cutoff <= 0:
        raise ConfigError(f"--cutoff must be positive, got {args.cutoff}")
    report = write_report(args.runs, args.out, overwrite=args.overwrite, cutoff=args.cutoff, plots=args.plots)
    print(report.markdown, end="")
    print(f"\nwrote {report.path}" + (f" and {len(report.plots)} plots" if report.plots else ""))
    return 0
