"""Readers: every format on tiny hand-written files, malformed input named by file and line."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import polars as pl
import pytest

from bamrec.data import sources
from bamrec.data.sources import RawFile, infer_format, read_interactions
from bamrec.errors import ConfigError, DataError

# The 7 interactions every well-formed fixture holds, in file order: (user, item, time).
ROWS = [(3, 20, 300), (3, 10, 100), (1, 30, 200), (1, 10, 200), (1, 20, 100), (2, 30, 50), (1, 25, 200)]
USERS = [r[0] for r in ROWS]
ITEMS = [r[1] for r in ROWS]
TIMES = [r[2] for r in ROWS]


def _as_ints(series: pl.Series) -> list[int]:
    return [int(v) for v in series.to_list()]


@pytest.mark.parametrize("name", ["ratings.dat", "u.data"])
def test_movielens_readers(fixtures, name):
    result = read_interactions(fixtures / name)
    assert result.fmt == infer_format(name)
    assert (_as_ints(result.users), _as_ints(result.items), _as_ints(result.times)) == (USERS, ITEMS, TIMES)


@pytest.mark.parametrize("id_type", ["str", "int"])
@pytest.mark.parametrize("name", ["ratings.dat", "u.data", "uid_iid.txt"])
def test_line_by_line_path_matches_fast_path(fixtures, name, id_type, monkeypatch):
    fmt = None if name != "uid_iid.txt" else "uid-iid"
    fast = read_interactions(fixtures / name, fmt, id_type=id_type)
    assert fast.users.dtype == (pl.Int64 if id_type == "int" else pl.String)
    monkeypatch.setattr(sources, "_read_fixed_fast", lambda raw, layout, id_type: None)
    slow = read_interactions(fixtures / name, fmt, id_type=id_type)
    assert _as_ints(slow.users) == _as_ints(fast.users) == USERS
    assert _as_ints(slow.items) == _as_ints(fast.items) == ITEMS
    assert (slow.times is None) == (fast.times is None)


def test_fast_path_keeps_ids_as_written(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("1 007\n1 7\n2 0123\n")
    result = read_interactions(path, "uid-iid")
    assert result.items.to_list() == ["007", "7", "0123"] and result.users.to_list() == ["1", "1", "2"]


def test_uid_iid_has_no_times(fixtures):
    result = read_interactions(fixtures / "uid_iid.txt", "uid-iid")
    assert result.times is None
    assert (_as_ints(result.users), _as_ints(result.items)) == (USERS, ITEMS)


def test_uid_iid_tolerates_tabs_runs_of_spaces_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"1\t10\r\n\n  2   20  \r\n3 30")
    result = read_interactions(path, "uid-iid")
    assert (_as_ints(result.users), _as_ints(result.items)) == ([1, 2, 3], [10, 20, 30])


def test_uid_iid_string_ids_are_kept_as_strings(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("alice i9\nbob i10\n")
    result = read_interactions(path, "uid-iid")
    assert result.users.to_list() == ["alice", "bob"] and result.items.to_list() == ["i9", "i10"]


def test_sequence_reader(fixtures):
    result = read_interactions(fixtures / "sequence.txt", "sequence")
    assert result.times is None
    # Lines "3 20 10", "1 30 10 20 25", "2 30" exploded in order.
    assert _as_ints(result.users) == [3, 3, 1, 1, 1, 1, 2]
    assert _as_ints(result.items) == [20, 10, 30, 10, 20, 25, 30]


@pytest.mark.parametrize("name", ["interactions.csv", "interactions.tsv"])
def test_csv_and_tsv(fixtures, name):
    result = read_interactions(fixtures / name, user_col="uid", item_col="iid", time_col="ts")
    assert (_as_ints(result.users), _as_ints(result.items), _as_ints(result.times)) == (USERS, ITEMS, TIMES)


def test_csv_without_time_column(fixtures):
    result = read_interactions(fixtures / "interactions.csv", user_col="uid", item_col="iid")
    assert result.times is None and _as_ints(result.items) == ITEMS


def test_gzipped_csv_in_zip_archive(fixtures, tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dir/log.csv.gz", gzip.compress((fixtures / "interactions.csv").read_bytes()))
    result = read_interactions(RawFile(archive, "dir/log.csv.gz"), user_col="uid", item_col="iid", time_col="ts")
    assert _as_ints(result.times) == TIMES


def test_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"u": USERS, "i": [f"it{v}" for v in ITEMS], "t": TIMES}).write_parquet(path)
    result = read_interactions(path, user_col="u", item_col="i", time_col="t")
    assert result.users.dtype == pl.Int64 and result.items.to_list()[:2] == ["it20", "it10"]
    assert _as_ints(result.times) == TIMES


def test_parquet_datetime_time_column(tmp_path):
    from datetime import datetime

    path = tmp_path / "log.parquet"
    stamps = [datetime(2020, 1, 2), datetime(2020, 1, 1)]
    pl.DataFrame({"u": [1, 1], "i": [5, 6], "t": stamps}).write_parquet(path)
    times = _as_ints(read_interactions(path, user_col="u", item_col="i", time_col="t").times)
    assert times[0] > times[1]


def test_jsonl_reviews(fixtures):
    result = read_interactions(fixtures / "reviews.jsonl", user_col="user_id", item_col="parent_asin",
                               time_col="timestamp")
    assert result.users.to_list() == [f"U{u}" for u in USERS]
    assert result.items.to_list() == [f"P{i}" for i in ITEMS]
    assert _as_ints(result.times) == [t * 1000 for t in TIMES]


def test_jsonl_streams_in_chunks(fixtures, monkeypatch, tmp_path):
    path = tmp_path / "reviews.jsonl.gz"
    path.write_bytes(gzip.compress((fixtures / "reviews.jsonl").read_bytes()))
    monkeypatch.setattr(sources, "_JSONL_CHUNK", 64)  # many chunks, cut mid-line
    result = read_interactions(path, user_col="user_id", item_col="parent_asin", time_col="timestamp")
    assert result.users.to_list() == [f"U{u}" for u in USERS]


def test_line_chunks_cut_at_line_breaks():
    chunks = list(sources._line_chunks(io.BytesIO(b"ab\ncd\nef"), 4))
    assert chunks == [b"ab\n", b"cd\n", b"ef"]


# --- format inference ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("ratings.dat", "movielens-dat"), ("u.data", "movielens-udata"), ("x.csv", "csv"), ("x.csv.gz", "csv"),
     ("x.TSV", "tsv"), ("x.parquet", "parquet"), ("x.jsonl.gz", "jsonl")],
)
def test_infer_format(name, fmt):
    assert infer_format(name) == fmt


@pytest.mark.parametrize("name", ["Beauty.txt", "movies.dat", "data"])
def test_ambiguous_extension_needs_format(name):
    with pytest.raises(ConfigError, match=r"cannot tell the format of .* pass --format with one of: uid-iid, sequence"):
        infer_format(name)


def test_unknown_format_lists_valid_ones(fixtures):
    with pytest.raises(ConfigError, match=r"unknown format 'xml': choose one of uid-iid, sequence, csv"):
        read_interactions(fixtures / "uid_iid.txt", "xml")


def test_column_flags_rejected_for_line_formats(fixtures):
    with pytest.raises(ConfigError, match="--user-col only apply to the formats csv, tsv, parquet, jsonl"):
        read_interactions(fixtures / "uid_iid.txt", "uid-iid", user_col="u")


# --- malformed input: file and line ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("bad_fields.dat", "movielens-dat",
         r"bad_fields\.dat:3: expected 4 fields \(UserID::MovieID::Rating::Timestamp\), found 3: '2::10::3'"),
        ("bad_time.dat", "movielens-dat", r"bad_time\.dat:3: timestamp '3OO' is neither a number nor an ISO-8601 date-time such as "
         r"2024-03-01T10:00:00Z: '2::10::3::3OO'"),
        ("bad_uid_iid.txt", "uid-iid", r"bad_uid_iid\.txt:4: expected 2 fields \(user item\), found 1: '3'"),
        ("bad_sequence.txt", "sequence", r"bad_sequence\.txt:2: expected a user id followed by at least one item id"),
    ],
)
def test_malformed_lines_name_file_and_line(fixtures, name, fmt, message):
    with pytest.raises(DataError, match=message):
        read_interactions(fixtures / name, fmt)


def test_malformed_csv_time(fixtures):
    with pytest.raises(DataError, match=r"bad_time\.csv:3: timestamp '2020-01-01' is an ISO-8601 date-time without "
                                        r"a time zone, but .*bad_time\.csv:2 holds a number \('100'\); a timestamp "
                                        "column must hold one kind"):
        read_interactions(fixtures / "bad_time.csv", user_col="uid", item_col="iid", time_col="ts")


def test_malformed_csv_field_count(fixtures):
    with pytest.raises(DataError, match=r"bad_fields\.csv:3: expected 3 fields like the header, found 4"):
        read_interactions(fixtures / "bad_fields.csv", user_col="uid", item_col="iid", time_col="ts")


def test_csv_missing_value_names_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("u,i\n1,2\n\n3,\n")
    with pytest.raises(DataError, match=r"x\.csv:4: missing item id \(column 'i'\)"):
        read_interactions(path, user_col="u", item_col="i")


def test_jsonl_bad_time_and_bad_json(fixtures):
    cols = {"user_col": "user_id", "item_col": "parent_asin", "time_col": "timestamp"}
    with pytest.raises(DataError, match=r"bad_time\.jsonl:3: timestamp 'noon' is neither a number nor an ISO-8601"):
        read_interactions(fixtures / "bad_time.jsonl", **cols)
    with pytest.raises(DataError, match=r"bad_json\.jsonl:2: not valid JSON"):
        read_interactions(fixtures / "bad_json.jsonl", **cols)


def test_jsonl_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"u": "a", "i": "x"}\n\n\n{"u": "b"}\n')
    with pytest.raises(DataError, match=r"r\.jsonl:4: missing item id \(field 'i'\)"):
        read_interactions(path, user_col="u", item_col="i")


def test_missing_columns_list_the_present_ones(fixtures):
    with pytest.raises(DataError, match=r"has no column 'user'; its columns are: uid, iid, rating, ts"):
        read_interactions(fixtures / "interactions.csv", user_col="user", item_col="iid")
    with pytest.raises(ConfigError, match=r"needs --user-col and --item-col; the columns of .* are: uid, iid, rating"):
        read_interactions(fixtures / "interactions.csv")
    with pytest.raises(DataError, match=r"has no field 'asin_x'; its first record has the fields: rating, title"):
        read_interactions(fixtures / "reviews.jsonl", user_col="user_id", item_col="asin_x")


def test_missing_parquet_column(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"a": [1], "b": [2]}).write_parquet(path)
    with pytest.raises(DataError, match=r"has no column 'c'; its columns are: a, b"):
        read_interactions(path, user_col="a", item_col="c")


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"1 a\n2 b\n3 \xff\n")
    with pytest.raises(DataError, match=r"x\.txt:3: not valid UTF-8"):
        read_interactions(path, "sequence")


def test_latin1_movielens_line(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"1::10::5::100\n2::\xe9t\xe9::4::50\n")
    result = read_interactions(path)
    assert result.items.to_list() == ["10", "\u00e9t\u00e9"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="input file not found"):
        read_interactions(tmp_path / "nope.csv", user_col="a", item_col="b")


def test_lines_splits_exactly():
    lines = sources._lines(b"a b\r\n\nc\rd\n  \nlast", "x", "utf-8")
    assert lines.to_list() == ["a b", "", "c\rd", "  ", "last"]
    assert sources._lines(b"", "x", "utf-8").to_list() == []
    assert sources._lines(b"only\r\n", "x", "utf-8").to_list() == ["only"]


def test_relative_path_name_in_messages(fixtures, monkeypatch):
    monkeypatch.chdir(fixtures)
    with pytest.raises(DataError, match=r"^bad_time\.dat:3:"):
        read_interactions(Path("bad_time.dat"), "movielens-dat")
