"""The `bamrec` command line: sub-commands parse arguments and call library functions.

Each sub-command group lives in its own module with a ``register(subparsers)`` function.
User mistakes (``BamrecError``) become one line on stderr and exit code 2, never a traceback.
``main`` sets the process's threading (``--threads``, ``OMP_WAIT_POLICY=PASSIVE``; see
``bamrec.cli.threads``) before a sub-command imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from bamrec.cli.threads import configure_threads
from bamrec.errors import BamrecError

# Modules under bamrec.cli that add sub-commands, in the order they appear in --help.
_COMMAND_MODULES = ("data", "train", "experiment", "serve", "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    from bamrec import __version__

    parser = argparse.ArgumentParser(
        prog="bamrec",
        description="Multi-interest sequential recommendation with BaM (balanced interest learning).",
    )
    parser.add_argument("--version", action="version", version=f"bamrec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"bamrec.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bamrec.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Before any torch import: the OpenMP pool reads its settings once, when torch loads.
        configure_threads(getattr(args, "threads", None))
        result = args.handler(args)
    except BamrecError as exc:
        print(f"bamrec: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 2, or e.g. 128 + signal for training interrupted early
    except KeyboardInterrupt:
        print("bamrec: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
