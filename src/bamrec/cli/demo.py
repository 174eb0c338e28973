"""`bamrec demo`: hard selection vs BaM on planted-interest data, with a table and plots."""

from __future__ import annotations

import argparse

from bamrec.cli.threads import add_threads_flag


def _demo(args: argparse.Namespace) -> int:
    from bamrec.demo import run_demo

    run_demo(args.out, quick=args.quick, overwrite=args.overwrite, progress=not args.no_progress)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="hard selection vs BaM on planted-interest data (a few minutes on CPU)",
        description="Generate planted-interest data (users with one dominant and three minor interests), train "
                    "ComiRec-SA with hard selection, BaM_p and BaM_p + the multi-interest loss for the same budget, "
                    "and write a comparison table, plots and the runs to --out.")
    p.add_argument("--out", default="bamrec-demo", help="output directory (default: bamrec-demo)")
    p.add_argument("--quick", action="store_true", help="smaller data and fewer iterations (a smoke run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo output")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_threads_flag(p)
    p.set_defaults(handler=_demo)
