"""What the README states about setting up and the quick start, checked against the project."""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest

from bamrec.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_stated_python_version_is_the_packages_and_holds_here():
    # Before: the README said 3.10+, but pyproject requires 3.11 (tomllib, the pinned numpy).
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", required)
    assert minimum, required
    stated = re.findall(r"Python (\d+)\.(\d+)\+", README)
    assert stated and set(stated) == {minimum.groups()}, (stated, required)
    assert sys.version_info[:2] >= tuple(map(int, minimum.groups()))


def _quick_start_commands() -> list[list[str]]:
    section = README.split("## Quick start on real data", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]  # the first code block
    text = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.startswith("bamrec ")]


def test_quick_start_commands_parse():
    commands = _quick_start_commands()
    assert len(commands) >= 6
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv[1:])  # exits on an unknown flag or a bad value
        assert callable(args.handler)
    train = next(argv for argv in commands if argv[1] == "train")
    assert "--max-iters" in train  # the quick start is bounded (the default is 1,000,000 iterations)
    outs = [argv[argv.index("--out") + 1] for argv in commands if "--out" in argv]
    assert len(outs) == len(set(outs))


def test_python_snippet_does_not_collide_with_the_cli_run():
    section = README.split("## Quick start on real data", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    cli_outs = {argv[argv.index("--out") + 1] for argv in _quick_start_commands() if "--out" in argv}
    python_outs = set(re.findall(r'out="([^"]+)"', snippet))
    assert python_outs and not python_outs & cli_outs
    assert "max_iters" in snippet


@pytest.mark.parametrize("line", ["source .venv/bin/activate", ".venv/bin/bamrec"])
def test_readme_says_where_bamrec_is(line):
    assert line in README
