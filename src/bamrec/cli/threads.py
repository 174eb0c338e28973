"""``--threads N`` on the sub-commands that run torch; the settings themselves are ``bamrec.threads``."""

from __future__ import annotations

import argparse


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` on a sub-command that runs torch (train, evaluate, recommend, ...)."""
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help="CPU threads for torch (default: $OMP_NUM_THREADS if set, else one per available CPU)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value
