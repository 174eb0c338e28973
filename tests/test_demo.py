"""`bamrec demo` end to end, shrunk to seconds (the real budget is exercised by `make demo`)."""

from __future__ import annotations

import json

import pytest

from bamrec import demo
from bamrec.cli import main
from bamrec.errors import RunDirError


@pytest.fixture
def tiny_demo(monkeypatch):
    monkeypatch.setattr(demo, "QUICK", {"max_iters": 40, "eval_every": 20, "patience": 4})
    monkeypatch.setattr(demo, "QUICK_DATA", {"users": 150, "items": 1000, "topics": 10, "max_len": 60})


def test_demo_writes_table_runs_and_plots(tiny_demo, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "minor recall@20" in printed and "bam-p+multi" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [m["method"] for m in summary["methods"]] == ["hard", "bam-p", "bam-p+multi"]
    for row in summary["methods"]:
        assert 0.0 <= row["recall@20"] <= 1.0
        assert row["minor_recall@20"] is not None and row["selection_entropy"] is not None
        assert (out / "runs" / row["method"] / "diagnostics.json").is_file()
    for png in ("validation_curves.png", "selection_shares.png", "metrics_by_method.png"):
        assert (out / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_refuses_to_overwrite(tiny_demo, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RunDirError, match="--overwrite"):
        demo.run_demo(out, quick=True, progress=False, echo=lambda _: None)
    assert (out / "keep.txt").read_text() == "mine"


def test_demo_overwrite_refuses_a_folder_it_did_not_write(tiny_demo, tmp_path):
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "data" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a bamrec demo output"):
        demo.run_demo(out, quick=True, overwrite=True, progress=False, echo=lambda _: None)
    assert (out / "data" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.rglob("*")) == ["data", "notes.txt"]


def test_demo_overwrite_replaces_its_own_output(tiny_demo, tmp_path):
    out = tmp_path / "demo"
    demo.run_demo(out, quick=True, progress=False, echo=lambda _: None)
    assert (out / demo.DEMO_MARKER).is_file()
    demo.run_demo(out, quick=True, overwrite=True, progress=False, echo=lambda _: None)
    assert (out / "summary.json").is_file()
