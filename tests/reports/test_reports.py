"""Reports over small hand-written run directories: table content, plots, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bamrec.cli import main
from bamrec.errors import RunDirError
from bamrec.reports import write_report
from bamrec.reports.tables import comparison_rows, format_duration, load_run_record, load_runs, markdown_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(
    root: Path,
    name: str,
    *,
    model: str = "comirec-sa",
    selection: str = "hard",
    multi_loss: bool = False,
    temperature: float = 1.0,
    remi_beta: float = 0.0,
    shares: tuple[list[float], ...] = ([0.7, 0.3, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0]),
    valid_recall20: tuple[float, ...] = (0.10, 0.15),
    test: dict | None = None,
    summary: bool = True,
    diagnostics: dict | None = None,
    dataset: str = "prepared/x",
) -> Path:
    run = root / name
    run.mkdir(parents=True)
    config = {
        "config": {
            "data": "prepared/x",
            "model": {"model": model, "num_interests": 4, "hidden_size": 64, "seq_len": 50, "routing_iters": 3},
            "train": {"selection": selection, "temperature": temperature, "multi_loss": multi_loss,
                      "remi_beta": remi_beta, "remi_lambda": 0.0},
            "eval": {"protocol": "standard"},
        },
        "seed": 2021,
        "versions": {},
        "dataset": {"path": dataset, "checksum": "abc" + dataset, "stats": {"users": 100, "items": 40}},
    }
    (run / "config.json").write_text(json.dumps(config))
    lines = []
    for i, (share, r20) in enumerate(zip(shares, valid_recall20)):
        lines.append(json.dumps({"iter": 1000 * (i + 1), "time_s": 10.0 * (i + 1), "loss": 5.0 - i,
                                 "valid": {"recall@10": r20 / 2, "ndcg@10": 0.05, "recall@20": r20},
                                 "selection_shares": share}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if summary:
        test = test or {"recall@10": 0.1, "ndcg@10": 0.05, "recall@20": 0.2, "ndcg@20": 0.08,
                        "users": 100, "protocol": "standard"}
        (run / "summary.json").write_text(json.dumps(
            {"test": test, "best_iter": 2000, "iters": 2000, "train_time_s": 75.4, "stopped": "max_iters"}))
    if diagnostics is not None:
        (run / "diagnostics.json").write_text(json.dumps(diagnostics))
    return run


BAM_DIAGNOSTICS = {
    "users": 100,
    "num_interests": 4,
    "cutoff": 20,
    "selection": {"overall": {"shares": [0.25, 0.25, 0.25, 0.25], "normalized_entropy": 1.0, "dead_interests": 0},
                  "final": None, "history": [{"iter": 1000, "normalized_entropy": 0.98, "entropy": 1.35,
                                              "dead_interests": 0}]},
    "planted": {"recall": {"dominant": 0.4, "minor": 0.1234, "unplanted": 0.0}},
}


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    hard = make_run(tmp_path / "runs", "hard")
    bam = make_run(tmp_path / "runs", "bam", selection="bam-p", multi_loss=True, temperature=0.5,
                   test={"recall@20": 0.25, "ndcg@20": 0.1, "users": 100, "protocol": "standard"},
                   diagnostics=BAM_DIAGNOSTICS)
    return [hard, bam]


def test_table_rows(runs):
    rows = comparison_rows(load_runs(runs))
    hard, bam = rows
    assert hard == {
        "run": "hard", "model": "comirec-sa (K=4)", "selection": "hard", "multi-loss": "no",
        "recall@20": "0.2000", "ndcg@20": "0.0800", "minor recall@20": "",
        # no diagnostics: balance of the mean metrics shares [0.8, 0.2, 0, 0] -> entropy / log 4
        "sel. entropy": "0.361", "dead": "2", "train time": "1m 15s", "best iter": "2000",
    }
    assert bam["selection"] == "bam-p T=0.5" and bam["multi-loss"] == "yes"
    assert bam["recall@20"] == "0.2500" and bam["minor recall@20"] == "0.1234"
    assert bam["sel. entropy"] == "1.000" and bam["dead"] == "0"


def test_markdown_table_layout(runs):
    table = markdown_table(comparison_rows(load_runs(runs)))
    lines = table.splitlines()
    assert lines[0].startswith("| run | model | selection | multi-loss | recall@20 | ndcg@20 | minor recall@20 |")
    assert lines[1].startswith("|---|---|---|---|---:|")
    assert lines[3].startswith("| bam | comirec-sa (K=4) | bam-p T=0.5 | yes | 0.2500 | 0.1000 | 0.1234 |")
    assert len(lines) == 4


def test_missing_pieces_leave_blank_cells(tmp_path):
    run = make_run(tmp_path, "running", summary=False, shares=([],), valid_recall20=(0.3,))
    (tmp_path / "running" / "metrics.jsonl").open("a").write('{"iter": 2000, "valid": {"rec')  # half-written
    (row,) = comparison_rows([load_run_record(run)])
    assert row["recall@20"] == "" and row["ndcg@20"] == "" and row["minor recall@20"] == ""
    assert row["sel. entropy"] == "" and row["dead"] == ""
    assert row["best iter"] == "1000" and row["train time"] == "10.0 s"  # from metrics.jsonl so far


def test_remi_and_single_labels(tmp_path):
    remi = load_run_record(make_run(tmp_path, "r", remi_beta=0.01))
    single = load_run_record(make_run(tmp_path, "s", model="single", shares=([1.0],), valid_recall20=(0.1,)))
    rows = comparison_rows([remi, single])
    assert rows[0]["model"] == "comirec-sa+REMI (K=4)"
    assert rows[1]["model"] == "single" and rows[1]["sel. entropy"] == "" and rows[1]["dead"] == "0"


def test_bad_run_dirs(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        load_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a run directory"):
        load_runs([tmp_path / "empty"])
    run = make_run(tmp_path, "broken")
    (run / "metrics.jsonl").write_text('{"iter": 1\n{"iter": 2}\n')
    with pytest.raises(RunDirError, match="metrics.jsonl:1"):
        load_run_record(run)
    (run / "metrics.jsonl").unlink()
    (run / "summary.json").write_text("{not json")
    with pytest.raises(RunDirError, match="summary.json"):
        load_run_record(run)


def test_folder_of_runs_and_unique_names(tmp_path):
    make_run(tmp_path / "a", "run1")
    make_run(tmp_path / "b", "run1")
    names = [r.name for r in load_runs([tmp_path / "a", tmp_path / "b"])]
    assert names == ["a/run1", "b/run1"]


def test_format_duration():
    assert format_duration(None) == "" and format_duration(42.34) == "42.3 s"
    assert format_duration(725) == "12m 05s" and format_duration(3720) == "1h 02m"


def test_write_report_with_plots(runs, tmp_path):
    out = tmp_path / "out"
    report = write_report(runs, out)
    assert report.path == out / "report.md"
    names = sorted(p.name for p in report.plots)
    assert names == ["metrics_by_method.png", "selection_entropy.png", "selection_shares.png", "validation_curves.png"]
    for plot in report.plots:
        data = plot.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
    text = report.path.read_text()
    assert "| hard | comirec-sa (K=4) | hard | no | 0.2000 |" in text
    assert "![validation curves](validation_curves.png)" in text and "(standard protocol)" in text
    with pytest.raises(RunDirError, match="--overwrite"):
        write_report(runs, out)
    again = write_report(runs, out, overwrite=True, plots=False)
    assert again.plots == [] and not (out / "validation_curves.png").exists()


def test_default_out_dir_and_protocol_warning(tmp_path):
    a = make_run(tmp_path / "runs", "a")
    b = make_run(tmp_path / "runs", "b", test={"recall@20": 0.3, "users": 50, "protocol": "reference"})
    report = write_report([a, b], plots=False)
    assert report.path == (tmp_path / "runs" / "report" / "report.md").resolve()
    assert "different protocols (reference, standard)" in report.markdown
    assert "different numbers of users (100, 50)" in report.markdown


def test_cli(runs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", *map(str, runs), "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("compared ") and f"wrote {out / 'report.md'}" in printed
    assert "| bam | comirec-sa (K=4) | bam-p T=0.5 |" in (out / "report.md").read_text()
    assert len(printed.splitlines()) < 6  # a summary, not the whole markdown
    assert main(["report", *map(str, runs), "--out", str(out), "--no-plots"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bamrec: error:") and len(err.splitlines()) == 1


def test_runs_of_different_datasets_get_one_table_each(tmp_path, capsys):
    # One table per dataset: ml-1m and ml-100k numbers are never compared in one column.
    make_run(tmp_path / "runs", "a", dataset="/data/ml-1m", test={"recall@20": 0.3, "users": 6040, "protocol": "standard"})
    make_run(tmp_path / "runs", "b", dataset="/data/ml-100k", test={"recall@20": 0.2, "users": 943, "protocol": "standard"})
    make_run(tmp_path / "runs", "c", dataset="/data/ml-1m", test={"recall@20": 0.4, "users": 6040, "protocol": "standard"})
    report = write_report([tmp_path / "runs"], tmp_path / "out", plots=False)
    text = report.markdown
    assert "## Dataset ml-1m (100 users, 40 items)" in text and "## Dataset ml-100k" in text
    ml1m, ml100k = text.split("## Dataset ml-100k")
    assert "| a |" in ml1m and "| c |" in ml1m and "| b |" not in ml1m and "| b |" in ml100k
    assert "2 different datasets" in text and "different numbers of users" not in text
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "cli"), "--no-plots"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "compared 3 runs on 2 datasets"
    assert printed[1] == "  ml-1m: 2 runs, best test recall@20 0.4000 (c)"
    assert printed[2] == "  ml-100k: 1 run, best test recall@20 0.2000 (b)"
