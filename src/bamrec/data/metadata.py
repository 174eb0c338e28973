"""Item metadata (titles, categories, links, images) stored with a prepared dataset.

``bamrec data prepare ... --items FILE`` reads a CSV, TSV, Parquet or JSON-lines file with an item id
column and any other columns; the MovieLens presets read ``movies.dat`` (ML-1M) or ``u.item``
(ML-100K) from beside the ratings. The result is ``item_metadata.parquet`` in the dataset directory:

    item       original item id, in internal order (row i is internal item i + 1)
    <columns>  the file's other columns, as read; null for items the file does not describe

A column called ``title`` is what ``recommend``, the service and the explorer page show next to an
id. The file is not part of the dataset checksum, so metadata can be corrected without making the
runs trained on the dataset refuse it. What does not fit is counted, not fatal: rows of ids the
dataset does not hold (filtered out, never rated), repeated ids (the first row is kept) and items
without a row are warnings with counts; a missing id column, clashing column names or a file none of
whose ids match are one-line errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bamrec import files
from bamrec.data.sources import RawFile, infer_format
from bamrec.errors import ConfigError, DataError

METADATA_FILE = "item_metadata.parquet"
TITLE = "title"
ID_COLUMNS = ("item", "item_id", "itemId", "id")  # the id column when --items-id-col is not given
# Fields of a recommendation (``Recommendation.as_dict``): a metadata column may not shadow them.
RESERVED = ("rank", "score", "interest", "user", "weight")
FORMATS = ("csv", "tsv", "parquet", "jsonl")
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")  # u.item's 19 genre flags in order, as ML-100K's u.genre lists them


@dataclass(frozen=True)
class ItemMetadata:
    """Metadata columns of a dataset's items, indexed by internal id (1-based)."""

    columns: tuple[str, ...]  # metadata column names, without the id
    values: dict[str, list[Any]]  # column -> [N] plain Python values (None where missing)

    @property
    def has_title(self) -> bool:
        return TITLE in self.columns

    def row(self, internal: int) -> dict[str, Any]:
        """The metadata of internal item ``internal`` (1-based): every column, None where missing."""
        return {name: self.values[name][internal - 1] for name in self.columns}

    def title(self, internal: int) -> str | None:
        return self.values[TITLE][internal - 1] if self.has_title else None


@dataclass(frozen=True)
class AlignedMetadata:
    """Metadata aligned to a dataset's items, ready to save, with what aligning it found."""

    frame: pl.DataFrame  # [N] rows: "item" then the metadata columns, internal order
    source: str
    described: int  # items of the dataset with a metadata row
    warnings: tuple[str, ...]

    def manifest(self) -> dict[str, Any]:
        """The dataset manifest's ``item_metadata`` entry."""
        return {"file": METADATA_FILE, "source": self.source, "columns": self.frame.columns[1:],
                "items_described": self.described, "warnings": list(self.warnings)}


def read_items_file(path: str | Path, id_col: str | None = None, delimiter: str | None = None) -> tuple[pl.DataFrame, str]:
    """The table of ``path`` (CSV/TSV read as text, Parquet and JSONL as typed) and its id column."""
    raw = RawFile(Path(path))
    if not raw.path.is_file():
        raise DataError(f"--items {path}: no such file")
    try:
        fmt = infer_format(raw.filename)
    except ConfigError:
        fmt = None
    if fmt not in FORMATS:
        raise ConfigError(f"--items {path}: give a .csv, .tsv, .parquet or .jsonl file (optionally .gz)")
    try:
        if fmt == "parquet":
            frame = pl.read_parquet(raw.polars_source(), glob=False)
        elif fmt == "jsonl":
            frame = pl.read_ndjson(raw.read_bytes(), infer_schema_length=None)
        else:
            separator = delimiter or ("\t" if fmt == "tsv" else ",")
            frame = pl.read_csv(raw.polars_source(), glob=False, separator=separator, infer_schema=False,
                                raise_if_empty=False)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read --items {path} as {fmt}: {first}") from None
    return frame, _id_column(frame, id_col, str(path))


def _id_column(frame: pl.DataFrame, id_col: str | None, source: str) -> str:
    if id_col is not None:
        if id_col not in frame.columns:
            raise DataError(f"{source} has no column {id_col!r} (--items-id-col); its columns are: "
                            f"{', '.join(frame.columns)}")
        return id_col
    for name in ID_COLUMNS:
        if name in frame.columns:
            return name
    raise DataError(f"{source} has no item id column ({', '.join(ID_COLUMNS)}); its columns are: "
                    f"{', '.join(frame.columns) or 'none'}; name the id column with --items-id-col")


def align_metadata(frame: pl.DataFrame, id_col: str, item_ids: np.ndarray, source: str) -> AlignedMetadata:
    """Match the rows of ``frame`` to the dataset's original ``item_ids`` ([N], internal order)."""
    others = [c for c in frame.columns if c != id_col]
    if not others:
        raise DataError(f"{source} has only the id column {id_col!r}: there is no metadata to store")
    clashes = [c for c in others if c in RESERVED or c == "item"]
    if clashes:
        raise DataError(f"{source}: column(s) {', '.join(map(repr, clashes))} would shadow a recommendation "
                        f"field ({', '.join(('item',) + RESERVED)}); rename them")
    warnings: list[str] = []
    integer_ids = np.issubdtype(item_ids.dtype, np.integer)
    ids = frame.get_column(id_col)
    if integer_ids:
        if ids.dtype.is_float():  # whole floats (a JSON 3.0) are ids, fractional ones are not
            ids = pl.Series(ids.name, np.where(ids.to_numpy() % 1 == 0, ids.to_numpy(), np.nan)).fill_nan(None)
        else:
            ids = ids.cast(pl.String).str.strip_chars()
        ids = ids.cast(pl.Int64, strict=False)
    else:
        ids = ids.cast(pl.String)
    table = frame.select(others).with_columns(ids.alias("item")).select(["item", *others])
    unusable = table.get_column("item").is_null()
    if unusable.any():
        what = "missing or not integer ids (the dataset's ids are integers)" if integer_ids else "missing ids"
        warnings.append(f"{int(unusable.sum()):,} rows of {source} have {what}: ignored")
        table = table.filter(~unusable)
    repeated = ~table.get_column("item").is_first_distinct()
    if repeated.any():
        warnings.append(f"{int(repeated.sum()):,} rows of {source} repeat an item id already described: "
                        "the first row of each id is kept")
        table = table.filter(~repeated)
    known = pl.DataFrame({"item": pl.Series(item_ids).cast(table.schema["item"]),
                          "_row": np.arange(len(item_ids), dtype=np.int64)})
    joined = known.join(table, on="item", how="left").sort("_row")
    matched = table.height - table.join(known, on="item", how="anti").height
    if matched == 0:
        raise DataError(f"none of the {table.height:,} item ids in {source} (column {id_col!r}) is an item of "
                        f"the dataset; check --items-id-col and that the file uses the same ids as the interactions")
    if table.height > matched:
        warnings.append(f"{table.height - matched:,} rows of {source} name items the dataset does not hold "
                        "(never interacted with, or removed by the filters): ignored")
    if matched < len(item_ids):
        warnings.append(f"{len(item_ids) - matched:,} of {len(item_ids):,} items have no row in {source}: "
                        "they are shown by id only")
    return AlignedMetadata(joined.drop("_row"), source, matched, tuple(warnings))


def save_metadata(metadata: AlignedMetadata | None, out: str | Path) -> None:
    """Write ``metadata`` into dataset directory ``out``, or remove a stale file when None."""
    path = Path(out) / METADATA_FILE
    if metadata is None:
        path.unlink(missing_ok=True)
        return
    with files.atomic_write(path) as handle:
        metadata.frame.write_parquet(handle)


def load_metadata(dataset_dir: str | Path) -> ItemMetadata | None:
    """The metadata of the dataset in ``dataset_dir``, or None when it has none."""
    path = Path(dataset_dir) / METADATA_FILE
    if not path.is_file():
        return None
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path} is damaged ({type(exc).__name__}); prepare the dataset again") from None
    columns = tuple(c for c in frame.columns if c != "item")
    return ItemMetadata(columns, {c: [as_json_value(v) for v in frame.get_column(c).to_list()] for c in columns})


# --- the MovieLens presets ---------------------------------------------------------------------


def read_movielens_items(raw: RawFile, kind: str) -> pl.DataFrame:
    """``movies.dat`` (``kind="ml-1m"``: ``MovieID::Title::Genres``) or ``u.item`` (``"ml-100k"``:
    ``id|title|release date|video release date|IMDb URL|19 genre flags``), both latin-1, as a frame with
    an ``item`` column (integers), ``title`` and ``genres`` (``|``-separated, as movies.dat writes them)."""
    text = raw.read_bytes().decode("latin-1")
    lines = [line for line in text.splitlines() if line.strip()]
    if kind == "ml-1m":
        fields = [line.split("::", 2) for line in lines]
        bad = next((n for n, f in enumerate(fields, 1) if len(f) != 3), None)
        if bad is not None:
            raise DataError(f"{raw.name}:{bad}: expected MovieID::Title::Genres, found {lines[bad - 1][:80]!r}")
        return pl.DataFrame({"item": [f[0] for f in fields], "title": [f[1] for f in fields],
                             "genres": [f[2] for f in fields]})
    fields = [line.split("|") for line in lines]
    bad = next((n for n, f in enumerate(fields, 1) if len(f) != 5 + len(ML100K_GENRES)), None)
    if bad is not None:
        raise DataError(f"{raw.name}:{bad}: expected 24 |-separated fields, found {lines[bad - 1][:80]!r}")
    genres = ["|".join(g for g, flag in zip(ML100K_GENRES, f[5:]) if flag == "1") for f in fields]
    return pl.DataFrame({"item": [f[0] for f in fields], "title": [f[1] for f in fields],
                         "release_date": [f[2] or None for f in fields], "imdb_url": [f[4] or None for f in fields],
                         "genres": genres})


def describe(metadata_manifest: dict[str, Any] | None) -> str | None:
    """One line for ``data stats``: where the metadata came from and what it covers."""
    if not metadata_manifest:
        return None
    return (f"{metadata_manifest.get('items_described', 0):,} items described by "
            f"{Path(str(metadata_manifest.get('source', '?'))).name} "
            f"(columns: {', '.join(metadata_manifest.get('columns', []))})")


def as_json_value(value: Any) -> Any:
    """A metadata value as JSON can hold it (dates and other objects become their text)."""
    if isinstance(value, float) and value != value:
        return None  # NaN: JSON has no such value
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [as_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): as_json_value(v) for k, v in value.items()}
    return str(value)
