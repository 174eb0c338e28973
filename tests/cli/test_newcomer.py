"""What a newcomer meets first: --help that says what each option does and its default, a missing
run directory named as missing, which search ranked the items, how to raise max_k, and threads set
from Python."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bamrec.cli import build_parser, main

SRC = Path(__file__).resolve().parents[2] / "src"


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def _option_help(command: str, flag: str) -> str:
    action = next(a for a in _subparser(command)._actions if flag in a.option_strings)
    return action.help or ""


@pytest.mark.parametrize("command, flags", [
    ("evaluate", ["--split", "--protocol", "--cutoffs"]),
    ("serve", ["--host", "--port", "--max-k", "--max-history", "--max-batch", "--log-level"]),
    ("export", ["--hnsw-m", "--ef-construction", "--ef-search", "--nlist", "--nprobe"]),
    ("recommend", ["--max-k"]),
])
def test_options_say_what_they_do_and_their_default(command, flags):
    for flag in flags:
        text = _option_help(command, flag)
        assert "default" in text and len(text.split()) >= 4, (command, flag, text)


def test_demo_help_has_a_description(capsys):
    assert "planted-interest data" in (_subparser("demo").description or "")
    capsys.readouterr()
    assert main(["demo", "--help"]) == 0
    assert "Generate planted-interest data" in capsys.readouterr().out


def test_index_flag_defaults_are_the_index_params():
    from bamrec.cli.serve import _INDEX_FLAGS
    from bamrec.retrieval.index import IndexParams

    defaults = IndexParams()
    for name, help_text in _INDEX_FLAGS:
        stated = re.search(r"\(default: ([0-9]+)\)", help_text)
        if stated:
            assert int(stated.group(1)) == getattr(defaults, name), name
        else:  # nlist: 0 = the rule the help states
            assert name == "nlist" and defaults.nlist == 0


def test_max_k_default_is_the_services(capsys):
    from bamrec.cli.train import MAX_K
    from bamrec.retrieval.service import Limits

    assert MAX_K == Limits().max_k


@pytest.mark.parametrize("command", ["evaluate", "recommend", "report", "export", "serve"])
def test_a_missing_run_directory_says_it_does_not_exist(capsys, tmp_path, command):
    missing = tmp_path / "runs" / "typo"
    extra = {"recommend": ["--user", "1"], "export": ["--out", str(tmp_path / "exp")]}.get(command, [])
    capsys.readouterr()
    assert main([command, str(missing), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"run directory {missing} does not exist" in err, err


def test_evaluate_and_recommend_name_their_retrieval(tiny_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(tiny_run), "--cutoffs", "5"]) == 0
    assert "standard protocol, exact ranking)" in capsys.readouterr().out.splitlines()[0]
    assert main(["recommend", str(tiny_run), "--user", "2", "-k", "3", "--retrieval", "flat"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "top-3 for user 2 (flat index)" and len(lines) == 5
    assert main(["recommend", str(tiny_run), "--items", "3", "4", "-k", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "top-2 for a history of 2 items (exact ranking)"


def test_k_over_max_k_says_how_to_raise_it(tiny_run, capsys):
    capsys.readouterr()
    assert main(["recommend", str(tiny_run), "--user", "2", "-k", "6", "--max-k", "5"]) == 2
    err = capsys.readouterr().err
    assert "k must be an integer in [1, 5], got 6" in err and "--max-k N" in err
    assert main(["recommend", str(tiny_run), "--user", "2", "-k", "6", "--max-k", "10"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2 + 6  # header, column names, 6 items
    # Over the catalogue (30 items) raising max_k would not help: no hint then.
    assert main(["recommend", str(tiny_run), "--user", "2", "-k", "31"]) == 2
    assert "--max-k" not in capsys.readouterr().err


def test_set_threads_from_python_before_torch_loads():
    code = ("import os, bamrec; n = bamrec.set_threads(1); import torch; "
            "print(n, torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "PASSIVE"]


def test_set_threads_after_torch_loaded_sets_the_count_only():
    import torch

    import bamrec

    before = torch.get_num_threads()
    try:
        assert bamrec.set_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_set_threads_is_documented_for_the_python_api():
    import bamrec

    assert "set_threads" in bamrec.__all__ and "set_threads" in (bamrec.__doc__ or "")
    assert dataclasses.is_dataclass(bamrec.RunConfig)  # the lazy names still resolve
