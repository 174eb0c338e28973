"""`bamrec data prepare --engine spark` writes the in-process engine's dataset: one table of inputs
(every fixture of the in-process tests, Parquet part layouts, ml-100k and ML-1M), both engines,
identical arrays and manifest statistics; and the same kind of one-line errors.

Spark runs in local mode, one session for the module. These tests are not skipped when pyspark or
Java is missing (CI installs both: ``make setup``); set ``BAMREC_SPARK_TESTS=0`` to skip them on
purpose (they then say so).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import pytest

from bamrec import locks
from bamrec.data.prepare import prepare_dataset
from bamrec.data.sequences import SequenceDataset
from bamrec.errors import BamrecError, ConfigError, DataError
from logs import parts_log

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.environ.get("BAMREC_SPARK_TESTS") == "0",
                                reason="BAMREC_SPARK_TESTS=0: the Spark engine tests were switched off")


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """One local SparkSession for the module; prepare_dataset(engine="spark") uses the active one."""
    from bamrec.data.spark import SparkSettings, spark_session

    settings = SparkSettings(master="local[2]", shuffle_partitions=2,
                             local_dir=str(tmp_path_factory.mktemp("spark-local")))
    with spark_session(settings) as session:
        yield session


def _parts(root: Path, frames: list[pl.DataFrame]) -> Path:
    root.mkdir(parents=True)
    for n, frame in enumerate(frames):
        frame.write_parquet(root / f"part-{n:05d}-3f1c.c000.snappy.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    (root / ".part-00000-3f1c.c000.snappy.parquet.crc").write_bytes(b"\x00crc")
    return root


def _hive(root: Path) -> Path:
    for day in (3, 1, 2):
        folder = root / f"day={day}"
        folder.mkdir(parents=True)
        pl.DataFrame({"uid": [day, day + 10, 1], "iid": [7, 8, day]}).write_parquet(folder / "000000_0.parquet")
    return root


def _text(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _ml1m_zip(tmp: Path) -> Path:
    archive = tmp / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FIXTURES / "ratings.dat", "ml-1m/ratings.dat")
    return archive


def _long_csv(tmp: Path) -> Path:
    rng = np.random.default_rng(3)
    n = 3000
    frame = pl.DataFrame({"u": [f"user{v}" for v in rng.integers(0, 120, n)],
                          "i": rng.integers(0, 90, n).astype(str), "t": rng.integers(0, 20, n)})
    path = tmp / "long.csv"
    frame.write_csv(path)
    return path


Case = Callable[[Path], tuple[Any, dict[str, Any]]]
TIMED = {"user_col": "uid", "item_col": "iid", "time_col": "ts"}
# The shared table: (id, how to make the source and the prepare_dataset arguments).
CASES: list[tuple[str, Case]] = [
    ("ratings.dat", lambda tmp: (FIXTURES / "ratings.dat", {})),
    ("u.data", lambda tmp: (FIXTURES / "u.data", {})),
    ("csv", lambda tmp: (FIXTURES / "interactions.csv", TIMED)),
    ("tsv", lambda tmp: (FIXTURES / "interactions.tsv", TIMED)),
    ("jsonl", lambda tmp: (FIXTURES / "reviews.jsonl",
                           {"user_col": "user_id", "item_col": "parent_asin", "time_col": "timestamp"})),
    ("uid-iid", lambda tmp: (FIXTURES / "uid_iid.txt", {"fmt": "uid-iid"})),
    ("sequence", lambda tmp: (FIXTURES / "sequence.txt", {"fmt": "sequence"})),
    ("ml-1m-folder", lambda tmp: ("ml-1m", {"from_path": FIXTURES})),
    ("ml-1m-zip", lambda tmp: ("ml-1m", {"from_path": _ml1m_zip(tmp)})),
    ("amazon-csv", lambda tmp: ("amazon2023", {"category": "Video_Games", "from_path": FIXTURES})),
    ("leading-zeros", lambda tmp: (_text(tmp, "z.txt", "1 007\n1 7\n1 0123\n2 7\n2 0123\n"), {"fmt": "uid-iid"})),
    ("leading-zeros-int", lambda tmp: (_text(tmp, "z.txt", "1 007\n1 7\n1 0123\n2 7\n2 0123\n"),
                                       {"fmt": "uid-iid", "id_type": "int"})),
    ("text-order", lambda tmp: (_text(tmp, "t.txt", "10 9\n9 10\n100 x\n\n9 100\n"), {"fmt": "uid-iid"})),
    ("header-skipped", lambda tmp: (_text(tmp, "h.txt", "user item\n3 20\n3 10\n1 30\n"), {"fmt": "uid-iid"})),
    ("iso-times", lambda tmp: (_text(tmp, "iso.csv", "u,i,t\na,x,2024-03-01T10:00:00Z\na,y,2024-03-01T11:00:00+02:00\n"
                                     "a,z,2024-03-01 09:00:00.5Z\nb,x,2024-02-29Z\nb,y,2024-02-28T23:59+0100\n"),
                               {"user_col": "u", "item_col": "i", "time_col": "t"})),
    ("float-times", lambda tmp: (_text(tmp, "f.tsv", "u\ti\tt\n1\ta\t2.5\n1\tb\t2\n1\tc\t1e0\n2\ta\t-1.5\n"),
                                 {"user_col": "u", "item_col": "i", "time_col": "t"})),
    ("dedupe-kcore", lambda tmp: (_long_csv(tmp), {"user_col": "u", "item_col": "i", "time_col": "t", "dedupe": True,
                                                   "min_user_count": 12, "min_item_count": 20})),
    ("kcore-int", lambda tmp: (_long_csv(tmp), {"user_col": "u", "item_col": "i", "time_col": "t",
                                                "id_type": "str", "min_user_count": 25})),
    ("parts", lambda tmp: (_parts(tmp / "events", [parts_log(300, s) for s in range(4)] + [parts_log(0, 9)]),
                           {**TIMED, "dedupe": True})),
    ("parts-file-order", lambda tmp: (_parts(tmp / "events", [parts_log(50, s) for s in range(3)]),
                                      {"user_col": "uid", "item_col": "iid"})),
    ("parts-glob", lambda tmp: (f"{_parts(tmp / 'events', [parts_log(20, 0), parts_log(20, 1)])}/part-*.parquet",
                                TIMED)),
    ("hive", lambda tmp: (_hive(tmp / "hive"), {"user_col": "uid", "item_col": "iid", "time_col": "day"})),
    ("parquet-file", lambda tmp: (_parquet_file(tmp), {**TIMED, "id_type": "str", "min_item_count": 3})),
]


def _parquet_file(tmp: Path) -> Path:
    path = tmp / "log.parquet"
    parts_log(400, 5).write_parquet(path, row_group_size=64)  # several row groups
    return path


def _same(local: SequenceDataset, spark: SequenceDataset, local_dir: Path, spark_dir: Path) -> None:
    for name in ("offsets", "items", "user_ids", "item_ids"):
        a, b = getattr(local, name), getattr(spark, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (local_dir, spark_dir)]
    assert manifests[0]["engine"] == "local" and manifests[1]["engine"] == "spark"
    for manifest in manifests:
        del manifest["created"], manifest["engine"]
    assert manifests[0] == manifests[1]  # stats, checksum, rules, raw file, warnings: all the same


@pytest.mark.parametrize("case", [pytest.param(make, id=name) for name, make in CASES])
def test_spark_writes_the_in_process_dataset(spark, tmp_path, case):
    src, kwargs = case(tmp_path)
    local = prepare_dataset(src, tmp_path / "local", progress=False, **kwargs)
    notes: list[str] = []
    got = prepare_dataset(src, tmp_path / "spark", progress=False, engine="spark", echo=notes.append, **kwargs)
    _same(local, got, tmp_path / "local", tmp_path / "spark")
    assert any(note.startswith("spark: read ") for note in notes)  # progress, a line per stage


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m"])
def test_spark_on_movielens(spark, shared_data, tmp_path, name):
    local = prepare_dataset(name, tmp_path / "local", from_path=shared_data / name, progress=False)
    got = prepare_dataset(name, tmp_path / "spark", from_path=shared_data / name, progress=False, engine="spark")
    _same(local, got, tmp_path / "local", tmp_path / "spark")


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kwargs", "message"),
    [
        ("bad_fields.dat", {"fmt": "movielens-dat"}, r"bad_fields\.dat:3: expected 4 fields"),
        ("bad_time.dat", {"fmt": "movielens-dat"}, r"bad_time\.dat:3: timestamp '3OO' is neither a number nor an ISO-8601"),
        ("bad_fields.csv", TIMED, r"bad_fields\.csv:3: expected 3 fields like the header, found 4"),
        ("bad_time.csv", TIMED, r"bad_time\.csv:3: timestamp '2020-01-01' is an ISO-8601 date-time without a time "
                                r"zone, but .*bad_time\.csv:2 holds a number"),
        ("bad_json.jsonl", {"user_col": "user_id", "item_col": "parent_asin"}, r"bad_json\.jsonl:2: not valid JSON"),
        ("bad_time.jsonl", {"user_col": "user_id", "item_col": "parent_asin", "time_col": "timestamp"},
         r"bad_time\.jsonl:3: timestamp 'noon' is neither"),
        ("bad_sequence.txt", {"fmt": "sequence"}, r"bad_sequence\.txt:2: expected a user id followed by"),
        ("bad_uid_iid.txt", {"fmt": "uid-iid"}, r"bad_uid_iid\.txt:4: expected 2 fields"),
        ("interactions.csv", {"user_col": "user", "item_col": "iid"}, r"has no column 'user'; its columns are: uid"),
        ("reviews.jsonl", {"user_col": "user", "item_col": "parent_asin"}, r"has no field 'user'"),
        ("ratings.dat", {"min_user_count": 9}, r"round 1 the user filter \(--min-user-count 9\) left nothing"),
    ],
)
def test_bad_input_is_one_line_naming_file_and_line(spark, tmp_path, source, kwargs, message):
    with pytest.raises(DataError, match=message) as spark_error:
        prepare_dataset(FIXTURES / source, tmp_path / "out", engine="spark", **kwargs)
    assert "\n" not in str(spark_error.value)
    assert not (tmp_path / "out").exists() or not locks.contents(tmp_path / "out")  # nothing half-written
    assert not list(tmp_path.glob(".out.spark-*"))  # the staging folder is gone


def test_missing_ids_name_the_row(spark, tmp_path):
    csv = _text(tmp_path, "m.csv", "uid,iid,ts\n1,10,5\n\n2,,6\n")
    with pytest.raises(DataError, match=r"m\.csv:4: missing item id \(column 'iid'\)"):
        prepare_dataset(csv, tmp_path / "a", engine="spark", **TIMED)
    root = tmp_path / "events"
    root.mkdir()
    pl.DataFrame({"uid": [1, 2], "iid": [3, 4]}).write_parquet(root / "part-0.parquet")
    pl.DataFrame({"uid": [1, None, 3], "iid": [3, 4, 5]}).write_parquet(root / "part-1.parquet")
    with pytest.raises(DataError, match=r"part-1\.parquet: row 2: missing user id"):
        prepare_dataset(root, tmp_path / "b", engine="spark", user_col="uid", item_col="iid")
    with pytest.raises(DataError, match=r"user id 'x' is not an integer, but --id-type int"):
        prepare_dataset(_text(tmp_path, "x.txt", "1 2\nx 3\n"), tmp_path / "c", fmt="uid-iid", id_type="int",
                        engine="spark")


def test_cli_spark_error_is_one_line_without_a_jvm_trace(tmp_path):
    """A fresh process: its own JVM, whose output must not reach the terminal."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "bamrec.cli", "data", "prepare", str(FIXTURES / "bad_time.dat"),
               "--format", "movielens-dat", "--out", str(tmp_path / "out"), "--engine", "spark",
               "--spark-master", "local[1]",
               "--spark-local-dir", str(tmp_path / "spill")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("bamrec: error: ") and "bad_time.dat:3" in lines[-1]
    assert all(line.startswith("bamrec: ") for line in lines), done.stderr  # no JVM banner, log4j or Py4J trace
    assert not (tmp_path / "out").exists() or not locks.contents(tmp_path / "out")


def test_options_are_checked(tmp_path):
    from bamrec.cli import main
    from bamrec.data.spark import parse_conf

    with pytest.raises(ConfigError, match="--engine must be one of local, spark"):
        prepare_dataset(FIXTURES / "ratings.dat", tmp_path / "o", engine="dask")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_conf(["spark.executor.cores"])
    assert parse_conf(["a=b=c"]) == (("a", "b=c"),)
    assert main(["data", "prepare", str(FIXTURES / "ratings.dat"), "--out", str(tmp_path / "o"),
                 "--spark-driver-memory", "4g"]) == 2  # a --spark-* option without --engine spark
    assert issubclass(ConfigError, BamrecError)
