"""The real datasets in ../shared/data (skipped where absent): counts, and ML-1M exactly as the
BaM paper used it (user id = UserID, item id = rank of MovieID, stable sort by timestamp)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bamrec.data.prepare import export_uid_iid, prepare_dataset
from bamrec.data.sequences import SequenceDataset


def _counts(dataset: SequenceDataset) -> tuple[int, int, int]:
    return dataset.num_users, dataset.num_items, dataset.num_interactions


def test_ml1m_is_the_paper_file(shared_data, tmp_path):
    start = time.perf_counter()
    dataset = prepare_dataset("ml-1m", tmp_path / "ml1m", from_path=shared_data / "ml-1m", progress=False)
    elapsed = time.perf_counter() - start
    assert _counts(dataset) == (6040, 3706, 1_000_209)
    assert elapsed < 10  # a bound generous enough for a loaded CI machine

    # Independent check with plain Python on the raw bytes.
    raw = (shared_data / "ml-1m" / "ratings.dat").read_bytes().split(b"\n")
    movie_ids = sorted({int(line.split(b"::", 2)[1]) for line in raw if line})
    assert dataset.user_ids.tolist() == list(range(1, 6041))
    assert dataset.item_ids.tolist() == movie_ids  # item id i is the i-th smallest MovieID
    rank = {movie: i + 1 for i, movie in enumerate(movie_ids)}
    head = [tuple(map(int, line.split(b"::"))) for line in raw[:1000] if line]  # users 1..6 and more
    for user in (1, 2, 3, 4, 5):
        rows = [r for r in head if r[0] == user]
        expected = [rank[r[1]] for r in sorted(rows, key=lambda r: r[3])]  # sorted() is stable
        tie_broken = [rank[r[1]] for r in sorted(rows, key=lambda r: (r[3], r[1]))]
        assert dataset.sequence(user).tolist() == expected
        assert expected != tie_broken  # ties exist, so the stable rule is what is being checked
    assert dataset.sequence(1)[:5].tolist() == [2970, 1179, 1575, 958, 2148]

    start = time.perf_counter()
    loaded = SequenceDataset.load(tmp_path / "ml1m")
    assert time.perf_counter() - start < 1.0
    assert np.array_equal(loaded.items, dataset.items) and loaded.manifest["raw_file"]["sha256"] == (
        "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f"
    )


def test_ml100k_counts(shared_data, tmp_path):
    dataset = prepare_dataset("ml-100k", tmp_path / "ml100k", from_path=shared_data / "ml-100k", progress=False)
    assert _counts(dataset) == (943, 1682, 100_000)


@pytest.mark.parametrize(
    ("path", "counts"),
    [
        ("lastfm/LastFM.txt", (1090, 3646, 52_551)),
        ("amazon-beauty/Beauty.txt", (22_363, 12_101, 198_502)),
        ("amazon-sports/Sports_and_Outdoors.txt", (35_598, 18_357, 296_337)),
        ("amazon-toys/Toys_and_Games.txt", (19_412, 11_924, 167_597)),
        ("yelp/Yelp.txt", (30_431, 20_033, 316_354)),
    ],
)
def test_sequence_files(shared_data, tmp_path, path, counts):
    dataset = prepare_dataset(shared_data / path, tmp_path / "out", fmt="sequence")
    assert _counts(dataset) == counts


def test_sequence_file_exports_as_its_own_lines(shared_data, tmp_path):
    path = shared_data / "lastfm" / "LastFM.txt"
    dataset = prepare_dataset(path, tmp_path / "out", fmt="sequence", id_type="int")
    expected = b"".join(
        b"".join(fields[0] + b" " + item + b"\n" for item in fields[1:])
        for fields in (line.split() for line in path.read_bytes().splitlines())
    )
    assert export_uid_iid(dataset, tmp_path / "x.txt").read_bytes() == expected  # ids there are 1..N already


def test_uid_iid_videogames_round_trips_byte_for_byte(shared_data, tmp_path):
    path = shared_data / "amazon-videogames" / "Video.txt"
    dataset = prepare_dataset(path, tmp_path / "out", fmt="uid-iid", id_type="int")  # ids are 1..N already
    assert _counts(dataset) == (31_013, 23_715, 287_107)
    assert export_uid_iid(dataset, tmp_path / "x.txt").read_bytes() == path.read_bytes()
    as_text = prepare_dataset(path, tmp_path / "str", fmt="uid-iid")  # the default: ids as text
    assert _counts(as_text) == (31_013, 23_715, 287_107) and as_text.item_ids.dtype.kind == "U"
    assert export_uid_iid(as_text, tmp_path / "y.txt", ids="original").read_bytes() != path.read_bytes()
    assert sorted(export_uid_iid(as_text, tmp_path / "z.txt", ids="original").read_bytes().splitlines()) == sorted(
        path.read_bytes().splitlines())  # the same lines, users in string order
