"""The ordering, numbering, dedupe and k-core rules, prepare end to end, and export bytes."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from bamrec import __version__
from bamrec.data import prepare as prep
from bamrec.data.prepare import build_dataset, encode_ids, export_uid_iid, kcore_mask, prepare_dataset
from bamrec.data.sequences import SequenceDataset
from bamrec.errors import ConfigError, DataError

TIMED = [[2, 4, 1, 3], [4], [1, 2]]  # the fixtures' 7 interactions with timestamps (see fixtures README)
FILE_ORDER = [[4, 1, 2, 3], [4], [2, 1]]  # the same without timestamps: file order


def _sequences(dataset: SequenceDataset) -> list[list[int]]:
    return [dataset.sequence(u).tolist() for u in range(1, dataset.num_users + 1)]


# --- ordering and ids ---------------------------------------------------------------------------


def test_stable_sort_keeps_file_order_of_ties():
    # User 7: times 5, 1, 5, 1 -> the two 1s in file order (b, d), then the two 5s (a, c).
    dataset = build_dataset([7, 7, 7, 7], ["a", "b", "c", "d"], [5, 1, 5, 1])
    assert dataset.item_ids.tolist() == ["a", "b", "c", "d"]
    assert _sequences(dataset) == [[2, 4, 1, 3]]


def test_users_grouped_without_times_keep_file_order():
    dataset = build_dataset([2, 1, 2, 1], [10, 20, 30, 40])
    assert dataset.user_ids.tolist() == [1, 2]
    assert _sequences(dataset) == [[2, 4], [1, 3]]


def test_numeric_ids_compare_as_numbers_only_when_asked():
    as_text = build_dataset(["10", "9", "100"], ["10", "9", "100"], [1, 1, 1])
    assert as_text.user_ids.tolist() == ["10", "100", "9"]  # text stays text: string order
    dataset = build_dataset(["10", "9", "100"], ["10", "9", "100"], [1, 1, 1], id_type="int")
    assert dataset.user_ids.dtype == np.int64
    assert dataset.user_ids.tolist() == [9, 10, 100]
    assert dataset.item_ids.tolist() == [9, 10, 100]
    assert _sequences(dataset) == [[1], [2], [3]]  # user 9 -> item 9, user 10 -> item 10, ...


def test_ids_given_as_text_stay_text():
    dataset = build_dataset(["10", "9", "x"], [1, 2, 3])
    assert dataset.user_ids.tolist() == ["10", "9", "x"]  # string order: "10" < "9" < "x"
    assert dataset.item_ids.dtype == np.int64  # integers given as integers stay integers
    with pytest.raises(DataError, match=r"user id 'x' is not an integer, but --id-type int"):
        build_dataset(["10", "9", "x"], [1, 2, 3], id_type="int", source="log.txt")
    assert build_dataset([3, 1], [1, 2], id_type="str").user_ids.tolist() == ["1", "3"]


def test_leading_zeros_are_distinct_ids_and_round_trip(tmp_path):
    # Ids are not parsed as integers: 007 and 7 are two items and 0123 comes back as written.
    raw = tmp_path / "log.txt"
    raw.write_text("1 007\n1 7\n1 0123\n2 7\n2 0123\n")
    dataset = prepare_dataset(raw, tmp_path / "ds", fmt="uid-iid")
    assert dataset.item_ids.tolist() == ["007", "0123", "7"]
    assert dataset.manifest["rules"]["id_type"] == "str"
    export = export_uid_iid(dataset, tmp_path / "back.txt", ids="original")
    assert export.read_text() == raw.read_text()  # the same strings, in the same order
    merged = prepare_dataset(raw, tmp_path / "int", fmt="uid-iid", id_type="int")
    assert merged.item_ids.tolist() == [7, 123]  # asked for: 007 and 7 are one integer id


def test_string_ids_sort_by_code_point_like_python():
    values = ["\u00e9", "z", "a", "Z", "a", "10", "9"]
    chunked = pl.concat([pl.Series(values[:3]), pl.Series(values[3:])], rechunk=False)
    codes, uniques = encode_ids(chunked)
    assert uniques.tolist() == sorted(set(values)) == ["10", "9", "Z", "a", "z", "\u00e9"]
    assert [uniques[c] for c in codes] == values


def test_encode_ids_dense_and_sparse_paths_agree():
    values = np.array([5, -3, 10**12, 5, 7], dtype=np.int64)
    codes, uniques = encode_ids(pl.Series(values))  # range too wide: np.unique path
    assert codes.tolist() == [1, 0, 3, 1, 2] and uniques.tolist() == [-3, 5, 7, 10**12]
    codes, uniques = encode_ids(pl.Series(values[[0, 1, 3, 4]]))  # dense lookup-table path
    assert codes.tolist() == [1, 0, 1, 2] and uniques.tolist() == [-3, 5, 7]


def test_time_order_with_wide_timestamps_sorts_by_two_keys():
    times = np.array([2**62, 0, 2**62, -(2**62)], dtype=np.int64)  # span overflows a combined key
    order = prep.time_order(np.array([1, 0, 0, 1]), times)
    assert order.tolist() == [1, 2, 3, 0]


@pytest.mark.parametrize("wide", [False, True])
def test_time_order_is_numpys_stable_lexsort(wide):
    rng = np.random.default_rng(0)
    ucodes = rng.integers(0, 50, 20_000)
    times = rng.integers(0, 30, 20_000) * (2**58 if wide else 1)  # many ties
    expected = np.lexsort((times, ucodes))  # numpy documents lexsort as stable
    assert np.array_equal(prep.time_order(ucodes, times), expected)
    assert np.array_equal(prep.time_order(ucodes, None), np.argsort(ucodes, kind="stable"))
    assert prep.time_order(np.sort(ucodes), None) is None


def test_float_ids_must_be_whole():
    assert build_dataset([1.0, 2.0], [3, 4]).user_ids.tolist() == [1, 2]
    with pytest.raises(DataError, match="fractional"):
        build_dataset([1.5, 2.0], [3, 4])


def test_mismatched_lengths_and_empty_input():
    with pytest.raises(DataError, match="same length"):
        build_dataset([1, 2], [3])
    with pytest.raises(DataError, match="no interactions"):
        build_dataset([], [])


# --- dedupe and k-core --------------------------------------------------------------------------


def test_dedupe_keeps_first_in_time_order():
    # Times 1, 2, 3, 0: in time order x(0), x(1), y(2), x(3).
    users, items, times = [1, 1, 1, 1], ["x", "y", "x", "x"], [1, 2, 3, 0]
    assert _sequences(build_dataset(users, items, times)) == [[1, 1, 2, 1]]
    assert _sequences(build_dataset(users, items, times, dedupe=True)) == [[1, 2]]


def test_kcore_iterates_to_fixed_point():
    # u1: a b c, u2: a b, u3: a d, u4: c. Round 1 drops u4, then items c and d (1 user each),
    # which leaves u3 with one item: round 2 drops u3. A single pass would keep u3.
    users = ["u1", "u1", "u1", "u2", "u2", "u3", "u3", "u4"]
    items = ["a", "b", "c", "a", "b", "a", "d", "c"]
    dataset = build_dataset(users, items, min_user_count=2, min_item_count=2)
    assert dataset.user_ids.tolist() == ["u1", "u2"]
    assert dataset.item_ids.tolist() == ["a", "b"]
    assert _sequences(dataset) == [[1, 2], [1, 2]]


def test_kcore_mask_directly():
    ucodes = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    icodes = np.array([0, 1, 2, 0, 1, 0, 3, 2])
    mask = kcore_mask(ucodes, icodes, 2, 2)
    assert mask.tolist() == [True, True, False, True, True, False, False, False]
    assert kcore_mask(ucodes, icodes, 0, 1) is None


def test_dedupe_happens_before_kcore():
    # User 1 has item x twice: 2 interactions, but only 1 distinct.
    users, items = [1, 1, 2, 2], ["x", "x", "x", "y"]
    assert build_dataset(users, items, min_user_count=2).num_users == 2
    assert build_dataset(users, items, min_user_count=2, dedupe=True).user_ids.tolist() == [2]


def test_filter_that_empties_the_data_is_named():
    with pytest.raises(DataError, match=r"round 1 the user filter \(--min-user-count 5\) left nothing"):
        build_dataset([1, 1, 2], [1, 2, 1], min_user_count=5)
    with pytest.raises(DataError, match=r"the item filter \(--min-item-count 3\) left nothing"):
        build_dataset([1, 1, 2], [1, 2, 3], min_item_count=3)
    with pytest.raises(ConfigError, match=">= 0"):
        build_dataset([1], [1], min_user_count=-1)


# --- prepare end to end -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kwargs", "expected"),
    [
        ("ratings.dat", {}, TIMED),
        ("u.data", {}, TIMED),
        ("interactions.csv", {"user_col": "uid", "item_col": "iid", "time_col": "ts"}, TIMED),
        ("interactions.tsv", {"user_col": "uid", "item_col": "iid", "time_col": "ts"}, TIMED),
        ("reviews.jsonl", {"user_col": "user_id", "item_col": "parent_asin", "time_col": "timestamp"}, TIMED),
        ("uid_iid.txt", {"fmt": "uid-iid"}, FILE_ORDER),
        ("sequence.txt", {"fmt": "sequence"}, FILE_ORDER),
    ],
)
def test_every_format_prepares_the_same_data(fixtures, tmp_path, source, kwargs, expected):
    dataset = prepare_dataset(fixtures / source, tmp_path / "out", **kwargs)
    assert _sequences(dataset) == expected
    loaded = SequenceDataset.load(tmp_path / "out", verify=True)
    assert _sequences(loaded) == expected


def test_registered_dataset_from_local_folder_zip_or_file(fixtures, tmp_path):
    import zipfile

    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(fixtures / "ratings.dat", "ml-1m/ratings.dat")
    folder = tmp_path / "folder"
    (folder / "ml-1m").mkdir(parents=True)
    (folder / "ml-1m" / "ratings.dat").write_bytes((fixtures / "ratings.dat").read_bytes())
    for i, from_path in enumerate([fixtures, archive, folder, fixtures / "ratings.dat", tmp_path]):
        dataset = prepare_dataset("ml-1m", tmp_path / f"out{i}", from_path=from_path)
        assert _sequences(dataset) == TIMED, from_path


def test_amazon_from_local_csv_or_jsonl(fixtures, tmp_path):
    csv_data = prepare_dataset("amazon2023", tmp_path / "a", category="Video_Games", from_path=fixtures)
    assert csv_data.manifest["format"] == "csv"
    jsonl = tmp_path / "Books.jsonl"
    jsonl.write_bytes((fixtures / "reviews.jsonl").read_bytes())
    from_dir = prepare_dataset("amazon2023", tmp_path / "b", category="Books", from_path=tmp_path)
    from_file = prepare_dataset("amazon2023", tmp_path / "c", category="Books", from_path=jsonl)
    assert from_dir.manifest["format"] == from_file.manifest["format"] == "jsonl"
    assert _sequences(csv_data) == _sequences(from_dir) == _sequences(from_file) == TIMED


def test_registered_dataset_errors(fixtures, tmp_path):
    with pytest.raises(DataError, match=r"holds none of u\.data, ml-100k/u\.data, ml-100k\.zip"):
        prepare_dataset("ml-100k", tmp_path / "o", from_path=tmp_path)
    with pytest.raises(ConfigError, match="amazon2023 needs --category NAME"):
        prepare_dataset("amazon2023", tmp_path / "o", from_path=fixtures)
    with pytest.raises(ConfigError, match="--category only applies to amazon2023"):
        prepare_dataset("ml-1m", tmp_path / "o", from_path=fixtures, category="Books")
    with pytest.raises(ConfigError, match="ml-1m comes as movielens-dat, not 'csv'"):
        prepare_dataset("ml-1m", tmp_path / "o", from_path=fixtures, fmt="csv")
    with pytest.raises(DataError, match=r"--from .*nowhere does not exist"):
        prepare_dataset("ml-1m", tmp_path / "o", from_path=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="do not apply to the registered dataset"):
        prepare_dataset("ml-1m", tmp_path / "o", from_path=fixtures, user_col="u")


def test_archive_without_the_file_names_it(tmp_path):
    import zipfile

    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/movies.dat", "1::Toy Story::Animation\n")
    with pytest.raises(DataError, match=r"has no ml-1m/ratings\.dat \(it holds: ml-1m/movies\.dat\)"):
        prepare_dataset("ml-1m", tmp_path / "o", from_path=archive)


def test_unknown_source(tmp_path):
    message = r"ml1m is not a file and not a registered dataset \(ml-1m, ml-100k, amazon2023\)"
    with pytest.raises(DataError, match=message):
        prepare_dataset("ml1m", tmp_path / "o")


def test_manifest(fixtures, tmp_path):
    import hashlib

    dataset = prepare_dataset(fixtures / "ratings.dat", tmp_path / "out", min_user_count=1, dedupe=True)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    raw = (fixtures / "ratings.dat").read_bytes()
    assert manifest["source"] == str((fixtures / "ratings.dat").resolve())
    assert manifest["format"] == "movielens-dat"
    assert manifest["rules"] == {"min_user_count": 1, "min_item_count": 0, "dedupe": True, "category": None,
                                 "id_type": "int"}  # the MovieLens default
    assert manifest["raw_file"] == {"name": "ratings.dat", "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    assert manifest["raw_interactions"] == 7 and manifest["time_order"] == "timestamp"
    assert manifest["bamrec_version"] == __version__
    assert manifest["created"].endswith("+00:00")
    assert manifest["checksum"] == dataset.checksum()


def test_large_raw_files_are_not_hashed(fixtures, monkeypatch):
    from bamrec.data.sources import RawFile

    monkeypatch.setattr(prep, "HASH_LIMIT", 10)
    info = prep.raw_file_info(RawFile(fixtures / "ratings.dat"))
    assert info["sha256"] is None and info["size"] == (fixtures / "ratings.dat").stat().st_size


def test_overwrite_refused_before_reading(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    # The source does not exist: the refusal must come first, before any reading.
    with pytest.raises(DataError, match="already exists and is not empty; pass --overwrite"):
        prepare_dataset(tmp_path / "missing.csv", out)


def test_overwrite_replaces(fixtures, tmp_path):
    prepare_dataset(fixtures / "ratings.dat", tmp_path / "out")
    dataset = prepare_dataset(fixtures / "ratings.dat", tmp_path / "out", overwrite=True, min_user_count=3)
    assert SequenceDataset.load(tmp_path / "out").num_users == dataset.num_users == 1


def test_short_users_are_reported(fixtures, tmp_path):
    notes: list[str] = []
    dataset = prepare_dataset(fixtures / "ratings.dat", tmp_path / "out", echo=notes.append)
    expected = "2 of 3 users have fewer than 3 interactions: they are left out of validation and test"
    assert any(n.startswith(f"warning: {expected}") for n in notes)
    assert dataset.manifest["warnings"][0].startswith(expected)


# --- export ---------------------------------------------------------------------------------------


def test_export_bytes_exact(fixtures, tmp_path):
    dataset = prepare_dataset(fixtures / "ratings.dat", tmp_path / "out")
    path = export_uid_iid(dataset, tmp_path / "export.txt")
    assert path.read_bytes() == b"1 2\n1 4\n1 1\n1 3\n2 4\n3 1\n3 2\n"
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        export_uid_iid(dataset, path)
    export_uid_iid(SequenceDataset.from_sequences([[3], [1, 2]]), path, overwrite=True)
    assert path.read_bytes() == b"1 3\n2 1\n2 2\n"
    assert not path.with_name("export.txt.tmp").exists()


def test_export_round_trips_through_uid_iid(fixtures, tmp_path):
    dataset = prepare_dataset(fixtures / "reviews.jsonl", tmp_path / "a", user_col="user_id",
                              item_col="parent_asin", time_col="timestamp")
    path = export_uid_iid(dataset, tmp_path / "x.txt")
    again = prepare_dataset(path, tmp_path / "b", fmt="uid-iid")
    assert np.array_equal(again.items, dataset.items) and np.array_equal(again.offsets, dataset.offsets)


def test_text_ids_that_look_like_integers_get_a_note(tmp_path):
    raw = tmp_path / "log.txt"
    raw.write_text("1 9\n1 10\n2 9\n")
    notes: list[str] = []
    dataset = prepare_dataset(raw, tmp_path / "a", fmt="uid-iid", echo=notes.append)
    assert dataset.item_ids.tolist() == ["10", "9"]
    assert any("item ids are all integers but were numbered as text" in n and "--id-type int" in n for n in notes)
    notes.clear()
    prepare_dataset(raw, tmp_path / "b", fmt="uid-iid", id_type="str", echo=notes.append)  # asked for: no note
    assert not any("--id-type int" in n for n in notes)


def test_loaded_arrays_are_memory_mapped(fixtures, tmp_path):
    # Issue 23, item 5: the ranks of a torchrun job on one machine share the page cache's copy of
    # the arrays instead of each reading its own; the arrays stay writable numpy arrays (copy on write).
    dataset = prepare_dataset(fixtures / "ratings.dat", tmp_path / "out")
    loaded = SequenceDataset.load(tmp_path / "out", verify=True)
    for name in ("offsets", "items", "user_ids", "item_ids"):
        array = getattr(loaded, name)
        assert type(array) is np.ndarray and isinstance(array.base, np.memmap), name
        np.testing.assert_array_equal(array, getattr(dataset, name))
    loaded.items[0] += 1  # copy on write: the file is not changed
    assert np.array_equal(SequenceDataset.load(tmp_path / "out").items, dataset.items)
