"""`bamrec data prepare | stats | export` through the real command-line entry point."""

from __future__ import annotations

import json

import pytest

from bamrec.cli import build_parser, main


def test_prepare_stats_export(fixtures, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "prepare", str(fixtures / "ratings.dat"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}: 3 users, 4 items, 7 interactions" in captured.out
    assert "bamrec: warning: 2 of 3 users have fewer than 3 interactions" in captured.err

    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == {"users": 3, "items": 4, "interactions": 7, "density": 7 / 12, "min": 1, "median": 2.0,
                     "mean": 7 / 3, "max": 4}

    assert main(["data", "stats", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["users", "3"] and table[2].split() == ["interactions", "7"]
    assert table[3].split() == ["density", "0.583333"]

    target = tmp_path / "x.txt"
    assert main(["data", "export", str(out), "--format", "uid-iid", "--out", str(target)]) == 0
    assert target.read_bytes() == b"1 2\n1 4\n1 1\n1 3\n2 4\n3 1\n3 2\n"


def test_prepare_flags_reach_the_library(fixtures, tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["data", "prepare", str(fixtures / "interactions.csv"), "--out", str(out), "--user-col", "uid",
            "--item-col", "iid", "--time-col", "ts", "--min-user-count", "3", "--dedupe"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rules"] == {"min_user_count": 3, "min_item_count": 0, "dedupe": True, "category": None,
                                 "id_type": "str"}
    assert manifest["columns"] == {"user": "uid", "item": "iid", "time": "ts"}
    assert "1 users" in capsys.readouterr().out
    assert main(args + ["--overwrite", "--min-item-count", "2"]) == 2  # k-core empties it
    assert "--min-item-count 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Beauty.txt"], "cannot tell the format"),
        (["{fixtures}/bad_time.dat", "--format", "movielens-dat"], "bad_time.dat:3: timestamp '3OO' is neither a number nor an ISO-8601 date-time"),
        (["{fixtures}/uid_iid.txt", "--format", "nope"], "unknown format 'nope'"),
        (["ml-1m", "--from", "{tmp}"], "holds none of ratings.dat"),
        (["{fixtures}/uid_iid.txt", "--format", "uid-iid", "--min-user-count", "9"],
         "user filter (--min-user-count 9)"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(fixtures, tmp_path, capsys, args, message):
    args = [a.format(fixtures=fixtures, tmp=tmp_path) for a in args]
    if args[0] == "Beauty.txt":
        (tmp_path / "Beauty.txt").write_text("1 2 3\n")
        args[0] = str(tmp_path / "Beauty.txt")
    assert main(["data", "prepare", *args, "--out", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # notes ("read N interactions") may come before
    assert last.startswith("bamrec: error: ") and message in last


def test_existing_out_is_refused(fixtures, tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["data", "prepare", str(fixtures / "u.data"), "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_export_refuses_existing_file(fixtures, tmp_path, capsys):
    out = tmp_path / "ds"
    main(["data", "prepare", str(fixtures / "u.data"), "--out", str(out)])
    target = tmp_path / "x.txt"
    target.write_text("keep")
    assert main(["data", "export", str(out), "--out", str(target)]) == 2
    assert target.read_text() == "keep"
    assert main(["data", "export", str(out), "--out", str(target), "--overwrite"]) == 0
    assert target.read_text().startswith("1 2\n")


def test_stats_of_a_non_dataset(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "run `bamrec data prepare` first" in capsys.readouterr().err


def test_data_group_lists_subcommands(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "--help"])
    listed = capsys.readouterr().out
    assert all(f"    {name} " in listed for name in ("prepare", "stats", "export"))
    with pytest.raises(SystemExit):
        parser.parse_args(["data"])  # a sub-command is required
