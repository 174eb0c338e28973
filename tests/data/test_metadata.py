"""Item metadata stored with a prepared dataset: `--items FILE` in four formats, the MovieLens presets'
movies.dat / u.item, counted warnings for rows that do not fit and one-line errors for files that cannot."""

from __future__ import annotations

import json
import zipfile

import polars as pl
import pytest

from bamrec.cli import main
from bamrec.data.metadata import METADATA_FILE, load_metadata
from bamrec.data.prepare import prepare_dataset
from bamrec.data.sequences import SequenceDataset
from bamrec.errors import ConfigError, DataError

# The interactions of fixtures/ratings.dat (and u.data) hold items 10, 20, 25, 30.
MOVIES = "10::Caf\xe9 Society (2016)::Comedy|Drama\n20::Heat (1995)::Action|Crime\n99::Unrated (1990)::Drama\n"


def _notes(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_items_csv_is_aligned_to_internal_ids_with_counted_warnings(fixtures, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,category\n30,Thirty,b\n10,Ten,a\n10,Ten again,a\n77,Unknown,x\n,No id,y\n")
    out = tmp_path / "ds"
    notes: list[str] = []
    dataset = prepare_dataset(fixtures / "ratings.dat", out, items=items, echo=notes.append)
    meta = load_metadata(out)
    assert meta.columns == ("title", "category") and meta.has_title
    # Internal ids follow ascending original ids 10, 20, 25, 30; 20 and 25 have no row.
    assert [meta.title(i) for i in range(1, 5)] == ["Ten", None, None, "Thirty"]
    assert meta.row(1) == {"title": "Ten", "category": "a"}
    assert any("1 rows of" in n and "missing or not integer ids" in n for n in notes)
    assert any("1 rows of" in n and "repeat an item id" in n and "first row" in n for n in notes)
    assert any("1 rows of" in n and "do" in n and "not hold" in n for n in notes)
    assert any("2 of 4 items have no row" in n for n in notes)
    manifest = json.loads((out / "manifest.json").read_text())["item_metadata"]
    assert manifest["columns"] == ["title", "category"] and manifest["items_described"] == 2
    assert len(manifest["warnings"]) == 4
    # Metadata is not part of the dataset's identity: runs trained without it still accept it.
    plain = prepare_dataset(fixtures / "ratings.dat", tmp_path / "plain")
    assert plain.checksum() == dataset.checksum() and not (tmp_path / "plain" / METADATA_FILE).exists()


@pytest.mark.parametrize("fmt", ["tsv", "parquet", "jsonl"])
def test_items_in_other_formats_and_string_ids(fixtures, tmp_path, fmt):
    frame = pl.DataFrame({"item": ["10", "30"], "title": ["Ten", "Thirty"], "url": ["u10", None]})
    items = tmp_path / f"items.{fmt}"
    if fmt == "tsv":
        frame.write_csv(items, separator="\t")
    elif fmt == "parquet":
        frame.write_parquet(items)
    else:
        frame.write_ndjson(items)
    # interactions.csv's ids are text (the csv default), so the metadata's ids are compared as text.
    prepare_dataset(fixtures / "interactions.csv", tmp_path / "ds", user_col="uid", item_col="iid",
                    time_col="ts", items=items)
    meta = load_metadata(tmp_path / "ds")
    dataset = SequenceDataset.load(tmp_path / "ds")
    by_id = {str(i): meta.row(n) for n, i in enumerate(dataset.item_ids.tolist(), 1)}
    assert by_id["10"] == {"title": "Ten", "url": "u10"} and by_id["30"] == {"title": "Thirty", "url": None}
    assert by_id["20"] == {"title": None, "url": None}


def test_movielens_presets_read_titles_from_folder_zip_or_file(fixtures, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "ratings.dat").write_bytes((fixtures / "ratings.dat").read_bytes())
    (folder / "movies.dat").write_bytes(MOVIES.encode("latin-1"))
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(fixtures / "ratings.dat", "ml-1m/ratings.dat")
        zf.writestr("ml-1m/movies.dat", MOVIES.encode("latin-1"))
    for n, source in enumerate((folder, archive, folder / "ratings.dat")):
        prepare_dataset("ml-1m", tmp_path / f"out{n}", from_path=source)
        meta = load_metadata(tmp_path / f"out{n}")
        assert meta.columns == ("title", "genres")
        assert meta.row(1) == {"title": "Caf\xe9 Society (2016)", "genres": "Comedy|Drama"}  # latin-1 decoded
        assert meta.title(2) == "Heat (1995)" and meta.title(3) is None


def test_movielens_100k_u_item_genres_and_no_file_note(fixtures, tmp_path):
    flags = ["0"] * 19
    flags[1] = flags[16] = "1"  # Action, Thriller
    line = "|".join(["10", "GoldenEye (1995)", "01-Jan-1995", "", "http://imdb/x", *flags])
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_bytes((fixtures / "u.data").read_bytes())
    (folder / "u.item").write_bytes((line + "\n").encode("latin-1"))
    prepare_dataset("ml-100k", tmp_path / "out", from_path=folder)
    assert load_metadata(tmp_path / "out").row(1) == {"title": "GoldenEye (1995)", "release_date": "01-Jan-1995",
                                                     "imdb_url": "http://imdb/x", "genres": "Action|Thriller"}
    notes: list[str] = []
    prepare_dataset("ml-100k", tmp_path / "bare", from_path=fixtures / "u.data", echo=notes.append)
    assert "note: no u.item beside the ratings: items get no titles" in notes
    assert load_metadata(tmp_path / "bare") is None


def test_overwrite_without_metadata_removes_the_stale_file(fixtures, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item,title\n10,Ten\n")
    prepare_dataset(fixtures / "ratings.dat", tmp_path / "ds", items=items)
    assert (tmp_path / "ds" / METADATA_FILE).is_file()
    prepare_dataset(fixtures / "ratings.dat", tmp_path / "ds", overwrite=True)
    assert load_metadata(tmp_path / "ds") is None


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("name,title\n10,Ten\n", [], "has no item id column (item, item_id, itemId, id); its columns are: "
                                     "name, title; name the id column with --items-id-col"),
        ("item,title\n10,Ten\n", ["--items-id-col", "iid"], "has no column 'iid' (--items-id-col)"),
        ("item,title\n5,Five\n6,Six\n", [], "none of the 2 item ids"),
        ("item,score\n10,1\n", [], "column(s) 'score' would shadow a recommendation field"),
        ("item\n10\n", [], "has only the id column 'item'"),
    ],
)
def test_bad_metadata_is_one_line_and_exit_2(fixtures, tmp_path, capsys, content, extra, message):
    items = tmp_path / "items.csv"
    items.write_text(content)
    args = ["data", "prepare", str(fixtures / "ratings.dat"), "--out", str(tmp_path / "o"), "--items", str(items)]
    assert main(args + extra) == 2
    last = _notes(capsys)[-1]
    assert last.startswith("bamrec: error: ") and message in last
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_items_flag_mistakes(fixtures, tmp_path):
    with pytest.raises(DataError, match="--items .*nowhere.csv: no such file"):
        prepare_dataset(fixtures / "ratings.dat", tmp_path / "o", items=tmp_path / "nowhere.csv")
    with pytest.raises(ConfigError, match="give --items too"):
        prepare_dataset(fixtures / "ratings.dat", tmp_path / "o", items_id_col="iid")
    (tmp_path / "items.txt").write_text("item title\n")
    with pytest.raises(ConfigError, match=r"give a \.csv, \.tsv, \.parquet or \.jsonl file"):
        prepare_dataset(fixtures / "ratings.dat", tmp_path / "o", items=tmp_path / "items.txt")


def test_stats_names_the_metadata(fixtures, tmp_path, capsys):
    items = tmp_path / "items.csv"
    items.write_text("item,title\n10,Ten\n30,Thirty\n")
    assert main(["data", "prepare", str(fixtures / "ratings.dat"), "--out", str(tmp_path / "ds"),
                 "--items", str(items)]) == 0
    capsys.readouterr()
    assert main(["data", "stats", str(tmp_path / "ds")]) == 0
    assert "metadata  2 items described by items.csv (columns: title)" in capsys.readouterr().out
