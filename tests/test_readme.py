"""What the README states about setting up and the quick start, checked against the project."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bamrec.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_stated_python_version_is_the_packages_and_holds_here():
    # The README's stated minimum is pyproject's (3.11: tomllib, the pinned numpy).
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", required)
    assert minimum, required
    stated = re.findall(r"Python (\d+)\.(\d+)\+", README)
    assert stated and set(stated) == {minimum.groups()}, (stated, required)
    assert sys.version_info[:2] >= tuple(map(int, minimum.groups()))


def _quick_start_commands() -> list[list[str]]:
    section = README.split("## Quick start on ML-1M", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]  # the first code block
    text = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.startswith("bamrec ")]


def test_readme_is_a_front_door():
    assert len(README.splitlines()) < 120
    section = README.split("## Quick start on ML-1M", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    assert len(block.splitlines()) < 10
    assert re.search(r"\d+ (s|min)\b", section.split("```", 2)[2].split("\n\n", 2)[1])  # its time, measured
    # The study capped at 1,000 iterations compares early training: not a headline for the front page.
    assert "+117%" not in README and "1,000 iterations" not in README


def test_quick_start_commands_parse():
    commands = _quick_start_commands()
    assert len(commands) >= 6
    assert {argv[1] for argv in commands} >= {"data", "train", "evaluate", "recommend", "serve"}
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv[1:])  # exits on an unknown flag or a bad value
        assert callable(args.handler)
    train = next(argv for argv in commands if argv[1] == "train")
    assert "--max-iters" in train  # the quick start is bounded (the default is 1,000,000 iterations)
    outs = [argv[argv.index("--out") + 1] for argv in commands if "--out" in argv]
    assert len(outs) == len(set(outs))


def test_python_snippet_does_not_collide_with_the_cli_run():
    section = README.split("## Quick start on ML-1M", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    cli_outs = {argv[argv.index("--out") + 1] for argv in _quick_start_commands() if "--out" in argv}
    python_outs = set(re.findall(r'out="([^"]+)"', snippet))
    assert python_outs and not python_outs & cli_outs
    assert "max_iters" in snippet


@pytest.mark.parametrize("line", ["source .venv/bin/activate", ".venv/bin/bamrec"])
def test_readme_says_where_bamrec_is(line):
    assert line in README


DOCS = sorted((REPO / "docs").glob("*.md"))


def _code_block_commands(text: str) -> list[str]:
    """Every ``bamrec ...`` line of the fenced code blocks (``$ `` prompts dropped, ``\\`` joined)."""
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("bamrec "):
                commands.append(line)
    return commands


def _is_template(command: str) -> bool:
    """A synopsis (``[--flag]``, ``a|b``, ``RUN``) rather than a command to paste."""
    return bool(re.search(r"\.\.\.|\[|\||<|\b[A-Z][A-Z_]{2,}\b", command))


@pytest.mark.parametrize("page", [REPO / "README.md", *DOCS], ids=lambda p: p.name)
def test_commands_in_code_blocks_parse(page):
    parser = build_parser()
    commands = [c for c in _code_block_commands(page.read_text(encoding="utf-8")) if not _is_template(c)]
    for command in commands:
        args = parser.parse_args(shlex.split(command, comments=True)[1:])  # exits on a bad flag
        assert callable(args.handler), command


def test_pasteable_prepare_one_liners_have_out():
    # An inline prepare command is meant to be pasted: without --out it would fail.
    inline = re.findall(r"`(bamrec data prepare [^`]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    assert inline
    parser = build_parser()
    for command in inline:
        assert "--out" in command, command
        parser.parse_args(shlex.split(command)[1:])


def _shell_commands(text: str) -> list[list[str]]:
    """The ``bamrec ...`` and ``python benchmarks/...`` commands of the fenced code blocks, as argv,
    after any ``VAR=value`` and ``nohup`` in front of them."""
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                argv = shlex.split(line.strip().removeprefix("$ "), comments=True)
            except ValueError:
                continue  # not a shell line (a table, a TOML string)
            while argv and (re.fullmatch(r"[A-Z_]+=\S*", argv[0]) or argv[0] == "nohup"):
                argv = argv[1:]
            if argv[:1] == ["bamrec"] or argv[:2] and argv[0] == "python" and argv[1].startswith("benchmarks/"):
                commands.append(argv)
    return commands


def _written_paths(text: str) -> list[str]:
    paths = []
    for argv in _shell_commands(text):
        for flag in ("--out", "--tensorboard"):
            if flag in argv:
                paths.append(argv[argv.index(flag) + 1])
    return paths


def test_what_the_documented_commands_write_is_ignored_by_git():
    """A fresh clone that follows the README and docs is left with a clean `git status`."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    pages = [REPO / "README.md", *DOCS]
    paths = sorted({p for page in pages for p in _written_paths(page.read_text(encoding="utf-8"))
                    if not Path(p).is_absolute() and not _is_template(p)})
    assert "exports/ml1m" in paths and "recs.parquet" in paths
    done = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", "--stdin"], input="\n".join(paths),
                          capture_output=True, text=True)
    ignored = set(done.stdout.split())
    assert done.returncode in (0, 1), done.stderr
    # an experiment's directory is committed (its cells and results), so tracked is as good as ignored
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True).stdout.split()
    kept = {p for p in paths if any(f == p or f.startswith(p.rstrip("/") + "/") for f in tracked)}
    assert [p for p in paths if p not in ignored | kept] == [], "add these to .gitignore"
    demo_file = build_parser().parse_args(["demo"]).out + "/summary.json"  # `bamrec demo` with its default --out
    assert demo_file in subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", demo_file],
                                       capture_output=True, text=True).stdout


def test_docs_and_docstrings_stand_alone():
    # A user of the package has only the package and its docs: no references to notes outside the
    # repository (the method and the design are in docs/method.md and docs/architecture.md).
    files = [REPO / "README.md", *DOCS, *sorted((REPO / "src").rglob("*.py"))]
    outside = [f"{f.relative_to(REPO)}: {line.strip()}" for f in files
               for line in f.read_text(encoding="utf-8").splitlines()
               if "shared/docs" in line or "bam-method.md" in line]
    assert outside == []
    assert (REPO / "docs" / "method.md").is_file() and (REPO / "docs" / "architecture.md").is_file()


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return [page for entry in nav for page in _nav_pages(entry)]


def test_every_docs_page_is_on_the_site():
    import yaml

    site = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert site["strict"] is True and site["docs_dir"] == "docs"
    assert sorted(_nav_pages(site["nav"])) == sorted(page.name for page in DOCS)
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    # --quiet hides the warnings that --strict turns into a failure, so the build must not be quiet
    assert "mkdocs build --strict" in makefile and "--quiet" not in makefile.split("docs:", 1)[1].split("\n\n")[0]
    assert "make docs" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_docs_images_exist_and_experiment_plots_are_read_where_the_runner_writes_them():
    import yaml

    site = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert "docs/hooks/experiment_plots.py" in site["hooks"]  # puts experiments/**/plots/ on the site
    for page in DOCS:
        for link in re.findall(r"!\[[^]]*\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / link).is_file(), f"{page.name}: image {link} does not exist"
            if "/plots/" in link:  # an experiment's plot: linked where `bamrec experiment` wrote it
                assert link.startswith("../experiments/"), f"{page.name}: {link} is a copy; link the experiment's own"


def test_the_demo_page_images_are_made_by_make_demo_images():
    # docs/images/ holds only what `make demo-images` writes there from `make demo`'s report; the
    # experiment plots are read in experiments/ (test above)
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ndemo-images:", 1)[1].split("\n\n", 1)[0]
    made = set(re.findall(r"docs/images/(\S+\.png)", recipe))
    shown = set(re.findall(r"\]\(images/(\S+\.png)\)", (REPO / "docs" / "demo.md").read_text(encoding="utf-8")))
    assert shown and shown == made


# The README's headline table: row label -> the method's label in the converged experiments' results,
# column -> dataset. Every number must be what docs/RESULTS.md's experiments computed.
HEADLINE_METHODS = {
    "SASRec, a loss at every position, full softmax": "sasrec / all-positions full lr1e-3",
    "ComiRec-SA, hard selection": "comirec-sa / hard lr1e-3",
    "ComiRec-SA, BaM_p + multi-interest loss": "comirec-sa / bam-p+multi lr1e-3",
    "ComiRec-SA, BaM_p + multi-interest loss, T = 4": "comirec-sa / bam-p+multi T4 lr1e-3",
    "REMI, BaM_p + multi-interest loss (the paper's)": "remi / bam-p+multi lr1e-3",
    "`--recipe recommended`": "comirec-sa / recommended",
}
HEADLINE_DATASETS = {"ml-100k": "ml-100k", "lastfm": "lastfm", "Beauty": "beauty", "Toys": "toys",
                     "ML-1M": "ml-1m"}


def _converged_results() -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], str]]:
    """(dataset, method) -> the configuration with the most finished seeds over the converged
    experiments; and (dataset, method) -> the method its step-size search chose (the reports' choice)."""
    import json

    found: dict[tuple[str, str], dict] = {}
    chosen: dict[tuple[str, str], tuple[int, str]] = {}  # the widest search that tried a method decides
    for path in sorted(REPO.glob("experiments/converged-*/results.json")):
        result = json.loads(path.read_text())
        for config in result["configurations"]:
            key = (config["dataset"], config["method"])
            if key not in found or len(config["seeds"]) > len(found[key]["seeds"]):
                found[key] = config
        for search in (result.get("tuning") or {}).get("searches", []):
            winner = next((t["method"] for t in search["tried"] if t["key"] == search["chosen"]), None)
            for tried in search["tried"]:
                key = (search["dataset"], tried["method"])
                if winner is not None and len(search["tried"]) > chosen.get(key, (0, ""))[0]:
                    chosen[key] = (len(search["tried"]), winner)
    return found, {key: winner for key, (_, winner) in chosen.items()}


def test_headline_table_is_the_converged_results():
    """Every number is the converged configuration's, at the step size its search chose (marked †
    where that is the larger step, unmarked where it is 1e-3): the README cannot show a method at a
    step its validation did not choose."""
    section = README.split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "method" and set(header[1:]) <= set(HEADLINE_DATASETS)
    results, chosen = _converged_results()
    checked = 0
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for column, cell in zip(header[1:], cells[1:]):
            dataset, listed = HEADLINE_DATASETS[column], HEADLINE_METHODS[cells[0]]
            method = chosen.get((dataset, listed), listed)
            assert ("†" in cell) == (method != listed), f"{column} / {listed}: the search chose {method}"
            cell = cell.replace("†", "")
            config = results.get((dataset, method))
            if cell == "·":  # not run (yet): then no seed may have finished
                assert config is None or not config["seeds"], f"{column} / {method} has results; put them in the README"
                continue
            assert config is not None, f"{column} / {method} is in no converged experiment"
            value = re.fullmatch(r"(-?\d\.\d{3})(?: \((-?\d\.\d{2})\))?", cell)
            assert value, f"{column} / {method}: {cell!r}"
            recall = config["metrics"]["standard"]["recall@20"]["mean"]
            assert float(value.group(1)) == pytest.approx(recall, abs=5e-4), (column, method)
            assert not any(stop == "max_iters" for stop in config["stopped"]), "a capped cell in the headline"
            if value.group(2) is not None:
                cosine = config["diagnostics"]["interest_similarity_mean"]["mean"]
                assert float(value.group(2)) == pytest.approx(cosine, abs=5e-3), (column, method)
            checked += 1
    assert checked >= 10
