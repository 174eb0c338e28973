"""The `bamrec` command line: sub-commands parse arguments and call library functions.

Each sub-command group lives in its own module with a ``register(subparsers)`` function.
User mistakes end in one line on stderr and a non-zero exit, never a traceback; this module is the
one place that does it:

- a flag that does not parse (``--cutoffs abc``, ``--seq-len 0``): ``bamrec train: error: argument
  --seq-len: must be a positive integer, got '0'``, exit 2 (:class:`OneLineParser`);
- a ``BamrecError`` from the library: ``bamrec: error: <message>``, exit 2;
- Ctrl-C: ``bamrec: interrupted``, exit 130;
- a full disk (``bamrec.files.DiskFullError``): ``bamrec: error: cannot write FILE: no space left on
  device; ...``, exit 74 (EX_IOERR);
- a closed stdout (``bamrec data stats DIR | head``): quiet exit 141 (128 + SIGPIPE), as Unix tools do.

``main`` sets the process's threading (``--threads``, ``OMP_WAIT_POLICY=PASSIVE``; see
``bamrec.threads``) before a sub-command imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable, NoReturn, Sequence

from bamrec.threads import configure_threads
from bamrec.errors import BamrecError

# Modules under bamrec.cli that add sub-commands, in the order they appear in --help.
_COMMAND_MODULES = ("data", "train", "experiment", "serve", "report", "demo")
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``PROG: error: MESSAGE``) rather than the usage
    block plus the message; ``PROG --help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_with(parse: Callable[[str], Any], form: str) -> Callable[[str], Any]:
    """An argparse ``type`` that calls ``parse`` and, when it fails (ValueError or BamrecError),
    says what the flag accepts: ``argument --cutoffs: expected comma-separated positive integers
    like 10,20,50, got 'abc'``."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, BamrecError):
            raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}") from None

    convert.__name__ = form  # argparse names the type in some messages
    return convert


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


POSITIVE_INT = parse_with(positive_int, "a positive integer")
NONNEGATIVE_INT = parse_with(nonnegative_int, "an integer >= 0")


def build_parser() -> argparse.ArgumentParser:
    from bamrec import __version__

    parser = OneLineParser(
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
    """Run ``bamrec`` with ``argv`` (default: the process's arguments); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line parse error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        # Before any torch import: the OpenMP pool reads its settings once, when torch loads.
        configure_threads(getattr(args, "threads", None))
        result = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler's protection
    except BamrecError as exc:
        print(f"bamrec: error: {one_line(str(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USAGE)  # 2, or e.g. 128 + signal for training interrupted early
    except KeyboardInterrupt:
        print("bamrec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return int(result or 0)


def one_line(message: str) -> str:
    """``message`` on one line: a library message that quotes a multi-line reason stays readable."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests): nothing to flush
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
