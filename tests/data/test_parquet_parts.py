"""`bamrec data prepare` on directories and globs of Parquet part files (Spark / Hive layouts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bamrec.data.parquet_parts import find_parts, read_parquet_parts
from bamrec.data.prepare import build_dataset, prepare_dataset
from bamrec.data.sequences import SequenceDataset
from bamrec.errors import ConfigError, DataError
from logs import parts_log


def _spark_dir(root: Path, frames: list[pl.DataFrame]) -> Path:
    """Parts as Spark writes them, with its markers and checksum files beside them."""
    root.mkdir(parents=True)
    for n, frame in enumerate(frames):
        frame.write_parquet(root / f"part-{n:05d}-3f1c.c000.snappy.parquet")
        (root / f".part-{n:05d}-3f1c.c000.snappy.parquet.crc").write_bytes(b"\x00crc")
    (root / "_SUCCESS").write_bytes(b"")
    (root / "_committed_1234").write_text("{}")
    (root / "_temporary").mkdir()
    (root / "_temporary" / "part-99999.parquet").write_bytes(b"half written")
    return root


def _same(a: SequenceDataset, b: SequenceDataset) -> None:
    for name in ("offsets", "items", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_part_directory_equals_the_concatenated_table(tmp_path):
    frames = [parts_log(300, seed) for seed in range(4)] + [parts_log(0, 9)]  # Spark writes empty parts too
    root = _spark_dir(tmp_path / "events", frames)
    whole = pl.concat(frames)
    got = prepare_dataset(root, tmp_path / "out", user_col="uid", item_col="iid", time_col="ts",
                          dedupe=True, min_user_count=2)
    expected = build_dataset(whole["uid"], whole["iid"], whole["ts"], dedupe=True, min_user_count=2)
    _same(got, expected)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["format"] == "parquet-parts" and manifest["raw_file"]["parts"] == 5
    assert manifest["raw_interactions"] == 1200 and len(manifest["raw_file"]["sha256"]) == 64


def test_without_time_column_part_order_then_row_order_is_time_order(tmp_path):
    frames = [parts_log(50, seed) for seed in range(3)]
    root = _spark_dir(tmp_path / "events", frames)
    interactions, _ = read_parquet_parts(root, "uid", "iid")
    assert interactions.times is None
    assert interactions.users.to_list() == pl.concat(frames)["uid"].to_list()


def test_hive_partitioned_layout_and_partition_key_as_column(tmp_path):
    root = tmp_path / "hive"
    expected_users, expected_days = [], []
    for day in (3, 1, 2):  # written out of order: paths sort them
        folder = root / f"day={day}"
        folder.mkdir(parents=True)
        frame = pl.DataFrame({"uid": [day, day + 10], "iid": [7, 8]})
        frame.write_parquet(folder / "000000_0.parquet")
    for day in (1, 2, 3):
        expected_users += [day, day + 10]
        expected_days += [day, day]
    (root / "_SUCCESS").write_bytes(b"")
    interactions, info = read_parquet_parts(root, "uid", "iid", time_col="day")
    assert interactions.users.to_list() == expected_users
    assert interactions.times.to_list() == expected_days
    assert info["parts"] == 3


def test_glob_pattern(tmp_path):
    root = _spark_dir(tmp_path / "events", [parts_log(20, 0), parts_log(20, 1)])
    pl.DataFrame({"other": [1]}).write_parquet(root / "notes.parquet")  # not matched by the glob
    _, parts = find_parts(f"{root}/part-*.parquet")
    assert [p.name[:10] for p in parts] == ["part-00000", "part-00001"]
    got = prepare_dataset(f"{root}/part-*.parquet", tmp_path / "out", user_col="uid", item_col="iid")
    assert got.num_interactions == 40


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    (lambda p: p.write_bytes(p.read_bytes()[:-40]), "not a complete Parquet file"),
    (lambda p: p.write_bytes(b"uid,iid\n1,2\n"), "not a complete Parquet file"),
])
def test_damaged_part_is_named(tmp_path, damage, message):
    root = _spark_dir(tmp_path / "events", [parts_log(20, 0), parts_log(20, 1)])
    bad = sorted(root.glob("part-00001*"))[0]
    damage(bad)
    with pytest.raises(DataError, match=message) as info:
        prepare_dataset(root, tmp_path / "out", user_col="uid", item_col="iid")
    assert bad.name in str(info.value) and "\n" not in str(info.value)


def test_missing_value_names_part_and_row(tmp_path):
    root = tmp_path / "events"
    root.mkdir()
    pl.DataFrame({"uid": [1, 2], "iid": [3, 4]}).write_parquet(root / "part-0.parquet")
    pl.DataFrame({"uid": [1, None, 3], "iid": [3, 4, 5]}).write_parquet(root / "part-1.parquet")
    with pytest.raises(DataError, match=r"part-1.parquet: row 2: missing user id \(column 'uid'\)"):
        read_parquet_parts(root, "uid", "iid")


def test_schema_disagreement_is_an_error_but_integer_widths_mix(tmp_path):
    root = tmp_path / "events"
    root.mkdir()
    pl.DataFrame({"uid": [1], "iid": [3]}, schema={"uid": pl.Int32, "iid": pl.Int64}).write_parquet(
        root / "part-0.parquet")
    pl.DataFrame({"uid": [2], "iid": [4]}, schema={"uid": pl.Int64, "iid": pl.UInt16}).write_parquet(
        root / "part-1.parquet")
    interactions, _ = read_parquet_parts(root, "uid", "iid")
    assert interactions.users.to_list() == [1, 2] and interactions.items.to_list() == [3, 4]
    pl.DataFrame({"uid": ["a"], "iid": [3]}).write_parquet(root / "part-2.parquet")
    with pytest.raises(DataError, match="column 'uid' holds string values in .*part-2.parquet but integer"):
        read_parquet_parts(root, "uid", "iid")


def test_missing_column_lists_the_columns(tmp_path):
    root = _spark_dir(tmp_path / "events", [parts_log(5, 0)])
    with pytest.raises(DataError, match="no column 'when'; their columns are: uid, iid, ts, rating"):
        read_parquet_parts(root, "uid", "iid", time_col="when")
    with pytest.raises(ConfigError, match="needs --user-col and --item-col"):
        prepare_dataset(root, tmp_path / "out")


def test_directory_without_parts_and_only_empty_parts(tmp_path):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "_SUCCESS").write_bytes(b"")
    with pytest.raises(DataError, match="holds no Parquet part files"):
        prepare_dataset(tmp_path / "nothing", tmp_path / "out", user_col="uid", item_col="iid")
    root = _spark_dir(tmp_path / "events", [parts_log(0, 0)])
    with pytest.raises(DataError, match="holds no interactions"):
        prepare_dataset(root, tmp_path / "out", user_col="uid", item_col="iid")


def test_cli_one_line_error_for_a_damaged_part(tmp_path):
    root = _spark_dir(tmp_path / "events", [parts_log(20, 0)])
    sorted(root.glob("part-*"))[0].write_bytes(b"")
    out = subprocess.run([sys.executable, "-m", "bamrec.cli", "data", "prepare", str(root), "--out",
                          str(tmp_path / "out"), "--user-col", "uid", "--item-col", "iid"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1 and "is empty (0 bytes)" in out.stderr and "Traceback" not in out.stderr
