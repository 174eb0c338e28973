"""The runner on tiny grids: cells, skip, resume after interruption, results; aggregation on fixed numbers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bamrec.cli import main
from bamrec.experiments import load_experiment, parse_experiment, run_experiment
from bamrec.experiments.aggregate import aggregate, find_baseline, render_markdown
from bamrec.errors import ConfigError
from bamrec.experiments.cell import CELL_FORMAT
from bamrec.rundir import layout as ckpt

TINY = dict(seq_len=8, hidden_size=8, num_interests=2, batch_size=16, num_negatives=10, eval_every=20,
            max_iters=40)


def _file(tmp_path, data_dir, seeds):
    fixed = "\n".join(f"{k} = {v}" for k, v in TINY.items())
    file = tmp_path / "tiny.toml"
    file.write_text(f'name = "tiny"\n[grid]\ndata = ["{data_dir}"]\nmodel = ["comirec-sa"]\n'
                    f'selection = ["hard", "bam-p"]\nseed = {seeds}\n[fixed]\n{fixed}\n'
                    '[compare]\nbaseline = { selection = "hard" }\n')
    return file


def test_run_skip_and_extend(tmp_path, data_dir, capsys):
    out = tmp_path / "exp"
    assert main(["experiment", str(_file(tmp_path, data_dir, [1])), "--out", str(out), "--jobs", "2",
                 "--threads", "1"]) == 0
    cells = sorted(out.glob("cells/*.json"))
    assert len(cells) == 2 and len(list(out.glob("cells/*.ranks.npz"))) == 2
    record = json.loads(cells[0].read_text())
    assert record["format"] == CELL_FORMAT and record["seed"] == 1 and record["iters"] == 40
    assert set(record["test"]) == {"standard", "reference"} and "recall@20" in record["test"]["reference"]
    assert record["dataset"]["checksum"] and record["machine"]["threads"] == 1 and record["commit"]
    # the validation curve against wall time: one point per check, time increasing
    curve = record["curve"]
    assert curve["iter"] == [20, 40] and curve["time_s"][0] < curve["time_s"][1]
    assert all(0 <= v <= 1 for v in curve["recall@10"] + curve["recall@20"])
    assert record["early_stopping"] == {"eval_every": 20, "patience": 15, "max_iters": 40, "cap_bound": True}
    # the selection shares of the last check (what docs/fidelity.md's "max sel. share" reads)
    shares = record["selection_shares_last"]
    assert len(shares) == TINY["num_interests"] and abs(sum(shares) - 1) < 1e-4
    far = record["far_targets"]
    assert far["users"] == round(40 / 3) and set(far["recall"]) == {"standard", "reference"}
    ranks = np.load(out / "cells" / record["ranks_file"])
    assert far["recall"]["standard"]["recall@50"] >= far["recall"]["standard"]["recall@10"]
    assert len(ranks["users"]) == 40
    run_dir = out / "runs" / record["cell"]
    assert (run_dir / "test_ranks.npz").is_file() and (run_dir / "model.safetensors").is_file()
    first_mtimes = {p.name: p.stat().st_mtime_ns for p in cells}
    capsys.readouterr()

    # a second seed: the finished cells are skipped, the two new ones run, the statistics pair by seed
    assert main(["experiment", str(_file(tmp_path, data_dir, [1, 2])), "--out", str(out), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "4 cells, 2 already done, 2 to run" in err
    assert {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("cells/*.json")) if p.name in first_mtimes} \
        == first_mtimes
    result = json.loads((out / "results.json").read_text())
    assert result["cells_done"] == result["cells_total"] == 4
    [bam] = [g for g in result["configurations"] if "bam-p" in g["method"]]
    assert bam["seeds"] == [1, 2] and bam["metrics"]["standard"]["recall@20"]["n"] == 2
    assert bam["stopped"] == ["max_iters"] and bam["far_targets"]["standard"]["recall@20"]["n"] == 2
    compared = [c for c in result["comparisons"] if c["metric"] == "recall@20" and c["protocol"] == "standard"]
    assert len(compared) == 1 and compared[0]["seeds"] == [1, 2] and compared[0]["bootstrap"]["users"] == 40
    md = (out / "results.md").read_text()
    assert "far recall@20" in md and "| max_iters |" in md
    assert "4 of 4 cells done" in md and "Against the baseline" in md and (out / "plots/recall20-standard.png").is_file()
    assert (out / "plots/valid-curves.png").is_file() and len(bam["curves"]) == 2


def test_bad_cell_fails_cleanly(tmp_path, capsys):
    file = tmp_path / "bad.toml"
    file.write_text(f'name = "bad"\n[grid]\ndata = ["{tmp_path / "missing"}"]\nseed = [1]\n')
    assert main(["experiment", str(file), "--out", str(tmp_path / "exp"), "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "Traceback" not in err.split("last lines")[0]
    assert main(["experiment", str(tmp_path / "nope.toml")]) == 2
    assert "experiment file not found" in capsys.readouterr().err
    assert main(["experiment", str(file), "--report-only", "--out", str(tmp_path / "elsewhere")]) == 2
    assert "no cell summaries in" in capsys.readouterr().err


def _fake_cell(cells_dir, cell, recall, ranks, valid=None):
    record = {"format": CELL_FORMAT, "cell": cell.id, "options": cell.options, "seed": cell.seed,
              "best_iter": 10, "iters": 10, "train_time_s": 1.0, "wall_time_s": 2.0, "diagnostics": {},
              "best_valid": {"recall@10": valid, "recall@20": 1.0 - (valid or 0.0)},
              "test": {p: {"recall@20": recall, "ndcg@20": recall / 2} for p in ("standard", "reference")},
              "dataset": {"name": "d", "checksum": "abc"}, "machine": {"hostname": "h"}, "commit": "c",
              "ranks_file": f"{cell.id}.ranks.npz"}
    cells_dir.mkdir(parents=True, exist_ok=True)
    (cells_dir / f"{cell.id}.json").write_text(json.dumps(record))
    np.savez(cells_dir / f"{cell.id}.ranks.npz", users=np.arange(1, len(ranks) + 1), standard=np.array(ranks),
             reference=np.array(ranks))


def test_aggregation_on_fixed_numbers(tmp_path):
    exp = parse_experiment({"name": "fixed", "grid": {"data": ["d"], "selection": ["hard", "bam-p"],
                                                      "seed": [1, 2, 3]},
                            "compare": {"baseline": {"selection": "hard"}}})
    cells = {(c.options["selection"], c.seed): c for c in exp.cells}
    hard = {1: 1.0, 2: 2.0, 3: 3.0}
    bam = {1: 2.0, 2: 4.0, 3: 5.0}
    for seed in (1, 2, 3):
        # user 1 is a hit for both, user 2 only for BaM (rank 25 >= 20 for hard)
        _fake_cell(tmp_path, cells[("hard", seed)], hard[seed], [0, 25])
        _fake_cell(tmp_path, cells[("bam-p", seed)], bam[seed], [0, 3])
    result = aggregate(exp, tmp_path)
    assert result["cells_done"] == 6
    base = result["configurations"][0]["metrics"]["standard"]["recall@20"]
    assert base["mean"] == pytest.approx(2.0) and base["std"] == pytest.approx(1.0)
    assert base["ci_high"] - 2.0 == pytest.approx(4.302652729911275 / np.sqrt(3))
    [c] = [c for c in result["comparisons"] if c["protocol"] == "standard" and c["metric"] == "recall@20"]
    assert c["seeds"] == [1, 2, 3]
    assert c["over_seeds"]["t_pvalue"] == pytest.approx(1 - 5 / np.sqrt(27))  # as in test_stats
    assert c["over_seeds"]["relative_gain"] == pytest.approx(11 / 6 - 1)
    boot = c["bootstrap"]  # per-user recall@20: hard [1, 0], bam [1, 1] -> differences 0 and 1
    assert boot["seed"] == 1 and boot["diff"] == pytest.approx(0.5) and (boot["ci_low"], boot["ci_high"]) == (0, 1)


def _searched(tmp_path, seed_one_done=True):
    """hard and BaM_p, each at two step sizes, seeds 1-2; the lr search chooses on seed 1's validation."""
    exp = parse_experiment({"name": "searched", "grid": {"data": ["d"], "selection": ["hard", "bam-p"],
                                                         "lr": [0.001, 0.004], "seed": [1, 2]},
                            "compare": {"baseline": {"selection": "hard"}, "tune": ["lr"], "tune_seed": 1}})
    cells = {(c.options["selection"], c.options["lr"], c.seed): c for c in exp.cells}
    # validation (recall@10 at the best check) on seed 1 chooses hard 4e-3 and BaM_p 1e-3; the test
    # numbers point the other way and the seed-2 validation too, so neither may choose.
    valid = {("hard", 0.001): 0.10, ("hard", 0.004): 0.20, ("bam-p", 0.001): 0.30, ("bam-p", 0.004): 0.25}
    test = {("hard", 0.001): 0.5, ("hard", 0.004): 0.2, ("bam-p", 0.001): 0.4, ("bam-p", 0.004): 0.9}
    for (selection, lr, seed), cell in cells.items():
        if (selection, lr, seed) == ("bam-p", 0.004, 1) and not seed_one_done:
            continue
        v = valid[selection, lr] if seed == 1 else 1.0 - valid[selection, lr]
        spread = 0.01 * seed * (1 + 100 * lr) * (2 if selection == "bam-p" else 1)  # unequal seed-to-seed moves
        _fake_cell(tmp_path, cell, test[selection, lr] + spread, [0, 3], valid=v)
    return exp, {k: c.config_key for k, c in cells.items()}


def test_a_search_chooses_on_the_choosing_seeds_validation_and_baselines_are_the_chosen(tmp_path):
    exp, key = _searched(tmp_path)
    result = aggregate(exp, tmp_path)
    searches = {s["tried"][0]["method"].split(" / ")[0]: s for s in result["tuning"]["searches"]}
    assert result["tuning"]["options"] == ["lr"] and result["tuning"]["seed"] == 1
    assert searches["hard"]["chosen"] == key["hard", 0.004, 1] and searches["hard"]["complete"]
    assert searches["bam-p"]["chosen"] == key["bam-p", 0.001, 1]
    assert [t["valid"] for t in searches["bam-p"]["tried"]] == [0.30, 0.25]
    chosen = {g["key"]: g["chosen"] for g in result["configurations"]}
    assert chosen == {key["hard", 0.001, 1]: False, key["hard", 0.004, 1]: True,
                      key["bam-p", 0.001, 1]: True, key["bam-p", 0.004, 1]: False}
    # every BaM_p configuration is compared with hard at its chosen 4e-3, not with hard at 1e-3
    compared = {c["key"]: c["baseline_key"] for c in result["comparisons"]}
    assert compared == {key["bam-p", 0.001, 1]: key["hard", 0.004, 1], key["bam-p", 0.004, 1]: key["hard", 0.004, 1]}
    page = render_markdown(result)
    headline = page.split("Headline", 1)[1].split("\n#", 1)[0]
    rows = [line for line in headline.splitlines() if line.startswith("| d |")]
    assert len(rows) == 1 and rows[0].startswith("| d | bam-p / 0.001 | hard / 0.004 |")  # the chosen only
    assert "| d | hard / 0.001 0.1000; hard / 0.004 0.2000 | hard / 0.004 |" in page


def test_a_search_with_a_cell_missing_on_the_choosing_seed_says_incomplete(tmp_path):
    exp, key = _searched(tmp_path, seed_one_done=False)
    result = aggregate(exp, tmp_path)
    [bam] = [s for s in result["tuning"]["searches"] if s["tried"][0]["method"].startswith("bam-p")]
    assert bam["chosen"] == key["bam-p", 0.001, 1] and not bam["complete"]
    assert [t["valid"] for t in bam["tried"]] == [0.30, None]
    assert "| bam-p / 0.001 (incomplete) |" in render_markdown(result)


def test_without_a_search_every_configuration_is_compared_as_before(tmp_path):
    exp = parse_experiment({"name": "plain", "grid": {"data": ["d"], "selection": ["hard", "bam-p"], "seed": [1]},
                            "compare": {"baseline": {"selection": "hard"}}})
    for cell in exp.cells:
        _fake_cell(tmp_path, cell, 0.5, [0, 3], valid=0.1)
    result = aggregate(exp, tmp_path)
    assert result["tuning"] is None and all(g["chosen"] is None for g in result["configurations"])
    assert len({c["key"] for c in result["comparisons"]}) == 1 and "Search over" not in render_markdown(result)


@pytest.mark.parametrize("compare, message", [
    ({"tune": "lr"}, "a list of option names"),
    ({"tune": ["learning_rate"]}, "unknown option(s) learning_rate"),
    ({"tune": ["lr"], "tune_seed": "1"}, "an integer seed"),
    ({"tune": ["lr"], "tune_metric": "recall"}, "unknown metric"),
])
def test_a_bad_search_is_one_clear_error(compare, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_experiment({"name": "bad", "grid": {"data": ["d"], "lr": [0.001, 0.004]}, "compare": compare})


def test_baseline_is_the_closest_matching_configuration():
    configs = [{"data": "a", "model": "mind", "selection": "hard"},
               {"data": "a", "model": "comirec-sa", "selection": "hard"},
               {"data": "b", "model": "mind", "selection": "hard"},
               {"data": "a", "model": "mind", "selection": "bam-p", "multi_loss": True}]
    spec = {"selection": "hard"}
    assert find_baseline(configs[3], configs, spec) == 0
    assert find_baseline(configs[0], configs, spec) is None  # a baseline itself
    assert find_baseline({"data": "c", "selection": "bam-p"}, configs, spec) is None  # none on its data


def test_a_baseline_with_for_compares_only_the_configurations_it_names():
    configs = [{"data": "a", "model": "comirec-sa", "selection": "hard"},
               {"data": "a", "model": "comirec-sa", "selection": "bam-p", "multi_loss": True},
               {"data": "a", "model": "comirec-sa", "recipe": "recommended"},
               {"data": "a", "model": "mind", "selection": "hard"}]
    spec = {"selection": "bam-p", "multi_loss": True, "loss": "sampled", "for": {"recipe": "recommended"}}
    assert find_baseline(configs[2], configs, spec) == 1  # the recipe's BaM_p + multi-loss, full softmax, lr
    assert find_baseline(configs[0], configs, spec) is None  # outside `for`: not compared
    assert find_baseline(configs[3], configs, spec) is None
    assert find_baseline(configs[2], configs, {"selection": "bam-p", "multi_loss": True}) is None  # matches itself


def test_for_in_a_baseline_must_be_a_table_of_options():
    base = {"name": "x", "grid": {"data": ["d"], "seed": [1]}}
    with pytest.raises(ConfigError, match="`for` must be a table"):
        parse_experiment({**base, "compare": {"baseline": {"selection": "hard", "for": "remi"}}})
    with pytest.raises(ConfigError, match="unknown option"):
        parse_experiment({**base, "compare": {"baseline": {"selection": "hard", "for": {"modle": "remi"}}}})
    exp = parse_experiment({**base, "compare": {"baseline": {"selection": "hard", "for": {"model": "remi"}}}})
    assert exp.baselines == ({"selection": "hard", "for": {"model": "remi"}},)


def test_sigterm_stops_the_runner_and_a_rerun_resumes(tmp_path, data_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    # lr ~ 0: validation never improves after the first check, so patience 2 ends the cell at
    # iteration 3000; the runner is stopped right after the first check (1000). The 1000 iterations
    # between checks take over a second here: a fast machine must not reach the next check in the
    # milliseconds the stop takes (200 of them once did, in the half second the runner used to wait
    # for its next poll before passing SIGTERM on).
    options = dict(TINY, max_iters=3000, eval_every=1000, patience=2, lr=1e-12)
    file = tmp_path / "long.toml"
    fixed = "\n".join(f"{k} = {v}" for k, v in options.items())
    file.write_text(f'name = "long"\n[grid]\ndata = ["{data_dir}"]\nseed = [1]\n[fixed]\n{fixed}\n')
    out = tmp_path / "exp"
    command = [sys.executable, "-m", "bamrec.cli", "experiment", str(file), "--out", str(out), "--threads", "1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    runner = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    [cell] = load_experiment(file).cells
    metrics = out / "runs" / cell.id / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.is_file() and metrics.read_text().strip()):
        time.sleep(0.005)
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=120)
    stopped_at = [r["iter"] for r in ckpt.read_jsonl(metrics)]
    assert stopped_at and stopped_at[-1] < 3000, "the cell finished before the runner was stopped"
    assert runner.returncode == 130 and "rerun the same command" in err, err
    assert not list(out.glob("cells/*.json"))  # an interrupted cell is not a finished cell
    assert (metrics.parent / "last.ckpt").is_file()

    report = run_experiment(load_experiment(file), out, threads=1, log=lambda m: None)
    assert report.finished == [cell.id] and not report.failed
    record = json.loads((out / "cells" / f"{cell.id}.json").read_text())
    # the trainer had written summary.json (stopped: interrupted) on SIGTERM: resumed, not taken as done
    assert record["resumed"] is True and record["stopped"] == "patience"
    assert [r["iter"] for r in ckpt.read_jsonl(metrics)] == [1000, 2000, 3000]  # continued, not restarted


def test_baselines_are_matched_on_the_recorded_config_not_on_todays_defaults():
    from bamrec.config import RunConfig, to_dict
    from bamrec.experiments.aggregate import as_run_options

    def ran(options: dict, **recorded: str) -> dict:
        """A configuration whose cell ran with ``recorded`` model options (a default since changed)."""
        config = to_dict(RunConfig(data=options["data"]))
        config["model"].update(model=options["model"], **recorded)
        return {"options": options, "_records": [{"config": config}]}

    defaults = ran({"data": "a", "model": "mind"}, routing_norm="valid")  # ran before B2I became the default
    b2i = ran({"data": "a", "model": "mind", "routing_norm": "interests"}, routing_norm="interests")
    spec = {"routing_norm": "valid"}
    options = [as_run_options(g) for g in (defaults, b2i)]
    assert options[0]["routing_norm"] == "valid" and options[1]["routing_norm"] == "interests"
    assert find_baseline(options[1], options, spec, resolved=True) == 0  # compared with what ran as the defaults
    # Matching on today's defaults instead would take both for the same configuration (no baseline):
    assert find_baseline(b2i["options"], [defaults["options"], b2i["options"]], spec) is None
    # A recorded option that today's checks refuse for this model (routing on REMI) is not re-checked:
    remi = as_run_options(ran({"data": "a", "model": "remi"}, routing_norm="valid"))
    assert find_baseline(remi, [remi, options[0]], {"negatives": "shared", "for": {"model": "remi"}},
                         resolved=True) is None  # REMI is its own baseline, no error
    assert as_run_options({"options": {"data": "a", "seed": 3}, "_records": []})["routing_norm"] == "interests"
    # A cell recorded before an option existed: the option takes today's default, not a difference.
    old = ran({"data": "a", "model": "mind"}, routing_norm="valid")
    del old["_records"][0]["config"]["train"]["negatives"]
    assert as_run_options(old)["negatives"] == "shared"
    assert find_baseline(options[1], [as_run_options(old), options[1]], spec, resolved=True) == 0


def test_results_page_links_each_experiment_own_plots_without_copies(tmp_path, capsys):
    file = tmp_path / "exp.toml"
    file.write_text('name = "exp"\n[grid]\ndata = ["d"]\nselection = ["hard", "bam-p"]\nseed = [1, 2]\n'
                    '[compare]\nbaseline = { selection = "hard" }\n')
    out = tmp_path / "experiments" / "exp"
    for cell in load_experiment(file).cells:
        _fake_cell(out / "cells", cell, 0.5 if cell.options["selection"] == "hard" else 0.6, [0, 25])
    page = tmp_path / "docs" / "RESULTS.md"
    assert main(["experiment", str(file), "--out", str(out), "--report-only", "--results", str(page)]) == 0
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", page.read_text())
    assert links and all(link.startswith("../experiments/exp/plots/") for link in links)
    assert all((page.parent / link).resolve().is_file() for link in links)
    assert not (page.parent / "images").exists()  # the page reads the experiment's plots, no copy
    assert page.read_text().startswith("# Results\n")
    capped = tmp_path / "docs" / "capped.md"
    assert main(["experiment", str(file), "--out", str(out), "--report-only", "--results", str(capped),
                 "--title", "Early study (capped at 1,000 iterations)"]) == 0
    text = capped.read_text()
    assert text.startswith("# Early study (capped at 1,000 iterations)\n")
    assert "--title 'Early study (capped at 1,000 iterations)'" in text  # the command that makes the page


def test_sigterm_is_passed_to_each_running_cell_at_once_and_only_once():
    import signal

    from bamrec.experiments.runner import _StopFlag

    class Cell:
        def __init__(self, pid: int, done: bool) -> None:
            self.pid, self.done, self.signals = pid, done, []

        def poll(self):
            return 0 if self.done else None

        def send_signal(self, signum: int) -> None:
            self.signals.append(signum)

    running_cell, finished_cell = Cell(1, done=False), Cell(2, done=True)
    running = {"a": (running_cell, 0.0, None), "b": (finished_cell, 0.0, None)}
    stop = _StopFlag(running)
    stop.set(signal.SIGTERM, None)  # as the signal handler: the cells hear it now, not at the next poll
    assert stop.value and running_cell.signals == [signal.SIGTERM] and finished_cell.signals == []
    stop.stop_cells()  # the loop's own stop afterwards: a second SIGTERM would cut the trainer's finish
    assert running_cell.signals == [signal.SIGTERM]
    quiet = _StopFlag({"a": (Cell(3, done=False), 0.0, None)})
    quiet.set()  # set without a signal (a full disk): the loop stops the cells itself
    assert quiet.value and quiet._running["a"][0].signals == []
