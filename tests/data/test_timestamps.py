"""Timestamps as logs carry them: integers, floats, ISO-8601 text, Parquet dates/times; one kind a column."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bamrec.cli import main
from bamrec.data.parquet_parts import read_parquet_parts
from bamrec.data.prepare import build_dataset
from bamrec.data.sequences import SequenceDataset
from bamrec.data.sources import read_interactions
from bamrec.data.timestamps import time_key
from bamrec.errors import DataError

# One log, in file order: user, item, seconds since 1970 (ties inside user 1 keep the file order).
ROWS = [("u1", "a", 30), ("u1", "b", 10), ("u2", "a", 5), ("u1", "c", 10), ("u2", "d", 1), ("u1", "d", 20)]
EPOCH = 1_709_287_200  # 2024-03-01T10:00:00Z


def _iso(seconds: int, zone: str = "Z") -> str:
    moment = dt.datetime.fromtimestamp(EPOCH + seconds, dt.timezone.utc)
    if zone == "Z":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if zone == "":
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    shifted = moment.astimezone(dt.timezone(dt.timedelta(hours=int(zone[:3]), minutes=int(zone[0] + zone[-2:]))))
    return shifted.strftime("%Y-%m-%dT%H:%M:%S") + zone  # the same instant in another zone


def _csv(path: Path, times: list[object]) -> Path:
    lines = ["user,item,ts"] + [f"{u},{i},{t}" for (u, i, _), t in zip(ROWS, times)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _sequences(path: Path, fmt: str | None = None) -> list[list[int]]:
    log = read_interactions(path, fmt, user_col="user", item_col="item", time_col="ts")
    dataset = build_dataset(log.users, log.items, log.times)
    return [dataset.sequence(u).tolist() for u in range(1, dataset.num_users + 1)]


def test_iso_float_and_integer_timestamps_give_the_same_order(tmp_path):
    integers = _sequences(_csv(tmp_path / "int.csv", [EPOCH + t for _, _, t in ROWS]))
    assert integers == [[2, 3, 4, 1], [4, 1]]
    assert _sequences(_csv(tmp_path / "iso.csv", [_iso(t) for _, _, t in ROWS])) == integers
    assert _sequences(_csv(tmp_path / "naive.csv", [_iso(t, "") for _, _, t in ROWS])) == integers
    # The same instants written in different zones: ordered as instants, not as text.
    zones = ["+02:00", "-0530", "Z", "+09:00", "-01:00", "+00:00"]
    assert _sequences(_csv(tmp_path / "zones.csv", [_iso(t, z) for (_, _, t), z in zip(ROWS, zones)])) == integers
    # Fractions of a second order within one second; integers and floats together are numbers.
    floats = [f"{EPOCH}.{t:02d}" for _, _, t in ROWS]
    floats[2] = str(EPOCH + 1)  # an integer among floats: u2 item a after d (EPOCH.01)
    assert _sequences(_csv(tmp_path / "float.csv", floats)) == integers


def test_iso_microseconds_are_utc_and_fractions_count():
    key = time_key(pl.Series(["2024-03-01T10:00:00Z", "2024-03-01T12:00:00.25+02:00", "1970-01-01Z"]), str)
    assert key.to_list() == [EPOCH * 10**6, EPOCH * 10**6 + 250_000, 0]


def test_jsonl_floats_and_iso_text(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"user": u, "item": i, "ts": EPOCH + t + 0.5}) + "\n" for u, i, t in ROWS))
    assert _sequences(path) == [[2, 3, 4, 1], [4, 1]]
    path.write_text("".join(json.dumps({"user": u, "item": i, "ts": _iso(t)}) + "\n" for u, i, t in ROWS))
    assert _sequences(path) == [[2, 3, 4, 1], [4, 1]]


@pytest.mark.parametrize("kind", ["float", "datetime", "datetime_tz", "date", "iso_text"])
def test_parquet_time_types(tmp_path, kind):
    seconds = [t for _, _, t in ROWS]
    instants = [dt.datetime.fromtimestamp(EPOCH + t, dt.timezone.utc) for t in seconds]
    column = {
        "float": pl.Series([EPOCH + t + 0.5 for t in seconds], dtype=pl.Float64),
        "datetime": pl.Series([i.replace(tzinfo=None) for i in instants]),
        "datetime_tz": pl.Series(instants).dt.convert_time_zone("Asia/Tokyo"),
        "date": pl.Series([dt.date(2024, 1, 1) + dt.timedelta(days=t) for t in seconds]),
        "iso_text": pl.Series([_iso(t) for t in seconds]),
    }[kind]
    frame = pl.DataFrame({"user": [r[0] for r in ROWS], "item": [r[1] for r in ROWS], "ts": column})
    frame.write_parquet(tmp_path / "log.parquet")
    assert _sequences(tmp_path / "log.parquet") == [[2, 3, 4, 1], [4, 1]]
    parts = tmp_path / "parts"
    parts.mkdir()
    frame.slice(0, 3).write_parquet(parts / "part-00000.parquet")
    frame.slice(3).write_parquet(parts / "part-00001.parquet")
    log, _ = read_parquet_parts(parts, "user", "item", "ts")
    dataset = build_dataset(log.users, log.items, log.times)
    assert [dataset.sequence(u).tolist() for u in (1, 2)] == [[2, 3, 4, 1], [4, 1]]


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ([_iso(0), _iso(1), "1709287202", _iso(3), _iso(4), _iso(5)],
         r"log\.csv:4: timestamp '1709287202' is a number, but .*log\.csv:2 holds an ISO-8601 date-time with a "
         r"time zone \('2024-03-01T10:00:00Z'\); a timestamp column must hold one kind"),
        ([_iso(0), _iso(1), _iso(2), _iso(3, ""), _iso(4), _iso(5)],
         r"log\.csv:5: timestamp '2024-03-01 10:00:03' is an ISO-8601 date-time without a time zone, but "
         r".*log\.csv:2 holds an ISO-8601 date-time with a time zone"),
        ([1, 2, 3, 4, "2024-02-30", 6], r"log\.csv:6: timestamp '2024-02-30' is an ISO-8601 date-time"),
        (["2024-02-30", "2024-03-01", "2024-03-01", "2024-03-01", "2024-03-01", "2024-03-01"],
         r"log\.csv:2: timestamp '2024-02-30' is not a valid date-time"),
        (["2024-03-01T24:00:00", *["2024-03-01"] * 5], r"log\.csv:2: timestamp '2024-03-01T24:00:00' is not a valid"),
        ([1, 2, "nan", 4, 5, 6], r"log\.csv:4: timestamp 'nan' is neither a number nor an ISO-8601 date-time"),
        ([1, 2, 3, "yesterday", 5, 6], r"log\.csv:5: timestamp 'yesterday' is neither a number nor an ISO-8601"),
    ],
)
def test_mixed_or_unreadable_timestamps_name_the_line(tmp_path, times, message):
    with pytest.raises(DataError, match=message):
        _sequences(_csv(tmp_path / "log.csv", times))


def test_parquet_mixed_kinds_name_the_part_and_row(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    pl.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "ts": [_iso(0), _iso(1)]}).write_parquet(
        parts / "part-00000.parquet")
    pl.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "ts": [_iso(2), "17"]}).write_parquet(
        parts / "part-00001.parquet")
    with pytest.raises(DataError, match=r"part-00001\.parquet: row 2: timestamp '17' is a number, but "
                                        r".*part-00000\.parquet: row 1 holds an ISO-8601 date-time"):
        read_parquet_parts(parts, "user", "item", "ts")
    frame = pl.DataFrame({"user": ["a", "b", "c"], "item": ["x", "y", "z"], "ts": [1.5, float("inf"), 2.0]})
    frame.write_parquet(tmp_path / "inf.parquet")
    with pytest.raises(DataError, match=r"inf\.parquet: row 2: timestamp inf is not a finite number"):
        read_interactions(tmp_path / "inf.parquet", user_col="user", item_col="item", time_col="ts")


def test_build_dataset_takes_floats_and_datetimes():
    users, items = [r[0] for r in ROWS], [r[1] for r in ROWS]
    for times in ([EPOCH + t + 0.5 for _, _, t in ROWS],
                  [dt.datetime.fromtimestamp(EPOCH + t, dt.timezone.utc) for _, _, t in ROWS],
                  np.array([t for _, _, t in ROWS], dtype=np.float32)):
        dataset = build_dataset(users, items, times)
        assert [dataset.sequence(u).tolist() for u in (1, 2)] == [[2, 3, 4, 1], [4, 1]]


def test_cli_prepares_an_iso_log(tmp_path, capsys):
    """The issue's example: a CSV of ISO-8601 timestamps prepares instead of being refused."""
    log = _csv(tmp_path / "log.csv", [_iso(t) for _, _, t in ROWS])
    assert main(["data", "prepare", str(log), "--user-col", "user", "--item-col", "item",
                 "--time-col", "ts", "--out", str(tmp_path / "prepared")]) == 0
    dataset = SequenceDataset.load(tmp_path / "prepared")
    assert [dataset.sequence(u).tolist() for u in (1, 2)] == [[2, 3, 4, 1], [4, 1]]
    _csv(log, [_iso(0), 5, 6, 7, 8, 9])
    assert main(["data", "prepare", str(log), "--user-col", "user", "--item-col", "item",
                 "--time-col", "ts", "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bamrec: error: ") and "log.csv:3: timestamp '5' is a number" in err[-1]
