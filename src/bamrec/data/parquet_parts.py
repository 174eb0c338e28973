"""Parquet part files as Spark and Hive write them, read as one table with polars' streaming engine.

A cluster job writes a table as a directory of part files::

    events/
      _SUCCESS                                   # job markers: ignored
      _committed_123, _started_123               # (Databricks) ignored
      .part-00000-....snappy.parquet.crc         # checksums: ignored
      day=2024-01-01/part-00000-....snappy.parquet   # hive partitions: key=value folders
      day=2024-01-02/part-00000-....snappy.parquet

``find_parts`` lists the data files of such a directory (or of a glob pattern): every regular file
below it whose path has no component starting with ``_`` or ``.`` (Spark's and Hadoop's rule for
hidden files), in sorted path order. ``read_parquet_parts`` checks each part's footer (so a
truncated or empty part is named in a one-line error before anything is read), then scans all parts
lazily with ``pl.scan_parquet`` and collects only the user, item and time columns with the
streaming engine: the other columns are never read, and no part is held in memory whole beyond the
three output columns. Partition keys (``key=value`` folders) are columns like any other, so a log
partitioned by user or by date can name them in ``--user-col`` / ``--time-col``.

File order across parts is the sorted order of their paths (Spark numbers parts ``part-00000``,
``part-00001``, ...), then the row order inside each part: with no time column, that is the time
order, as for a single file.
"""

from __future__ import annotations

import glob as _glob
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from bamrec.data.sources import Interactions
from bamrec.data.timestamps import Where, time_key
from bamrec.errors import ConfigError, DataError

FORMAT = "parquet-parts"
_MAGIC = b"PAR1"  # first and last four bytes of every Parquet file
_GLOB_CHARS = set("*?[")
HASH_LIMIT = 1 << 30  # parts totalling up to 1 GiB get one sha256 over their names and bytes


def is_parts_source(source: str | Path) -> bool:
    """True for a directory or a glob pattern (what this module reads), False for anything else."""
    text = str(source)
    return Path(text).is_dir() or (bool(_GLOB_CHARS & set(text)) and not Path(text).exists())


def find_parts(source: str | Path) -> tuple[Path, list[Path]]:
    """The root folder and the sorted data files of a part directory or glob pattern.

    Job markers and checksums (any path component starting with ``_`` or ``.``) are skipped.
    """
    text = str(source)
    if Path(text).is_dir():
        root = Path(text)
        candidates = [p for p in root.rglob("*") if p.is_file()]
    else:
        root = Path(_glob_root(text))
        candidates = [Path(p) for p in _glob.glob(text, recursive=True) if Path(p).is_file()]
    parts = sorted(p for p in candidates if not _hidden(p.relative_to(root)))
    if not parts:
        raise DataError(f"{source} holds no Parquet part files (files starting with _ or . are ignored)")
    return root, parts


def _glob_root(pattern: str) -> str:
    """The folder above the first component of ``pattern`` that has a wildcard."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))]]
    return str(Path(*fixed)) if fixed else "."


def _hidden(relative: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.parts)


def _partition_keys(root: Path, parts: list[Path]) -> list[str]:
    """The keys of the ``key=value`` folders the parts sit in (Hive partitioning), in path order."""
    keys: dict[str, None] = {}
    for path in parts:
        for folder in path.relative_to(root).parts[:-1]:
            if "=" in folder:
                keys[folder.split("=", 1)[0]] = None
    return list(keys)


def check_parts(parts: list[Path]) -> tuple[dict[str, str], int]:
    """Check every part's magic bytes and footer: the column kinds (one of ``integer``, ``float``,
    ``string``, ``temporal``, ``other``) common to all parts, and the total row count.

    A part that is empty, truncated or not Parquet, or whose columns disagree in kind with the
    first part's, is a DataError naming it.
    """
    kinds: dict[str, str] = {}
    where: dict[str, Path] = {}  # the part that fixed each column's kind, for messages
    rows = 0
    for n, path in enumerate(parts):
        size = path.stat().st_size
        if size == 0:
            raise DataError(f"part file {path} is empty (0 bytes), not Parquet; remove it or write it again")
        with open(path, "rb") as stream:
            head = stream.read(4)
            stream.seek(max(size - 4, 0))
            tail = stream.read(4)
        if head != _MAGIC or tail != _MAGIC:
            raise DataError(f"part file {path} is not a complete Parquet file (truncated or another format); "
                            "remove it or write it again")
        try:
            meta = pq.read_metadata(path)
            schema = meta.schema.to_arrow_schema()
        except Exception as exc:  # pyarrow raises several types for a damaged footer
            raise DataError(f"part file {path} has an unreadable Parquet footer: {_first_line(exc)}") from None
        rows += meta.num_rows
        part_kinds = {field.name: _kind(field.type) for field in schema}
        if n > 0:  # a column must be in every part
            kinds = {name: kind for name, kind in kinds.items() if name in part_kinds}
        for name, kind in part_kinds.items():
            if n > 0 and name not in kinds:
                continue
            if kinds.get(name, "null") == "null":
                kinds[name], where[name] = kind, path
            elif kind not in (kinds[name], "null"):
                raise DataError(f"column {name!r} holds {kind} values in {path} but {kinds[name]} values in "
                                f"{where[name]}; write the parts with one schema")
    return kinds, rows


def _kind(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_null(arrow_type):
        return "null"  # a column of an empty part written without a type: fits any kind
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "string"
    if pa.types.is_temporal(arrow_type):
        return "temporal"
    return "other"


def checked_parts(
    source: str | Path, user_col: str | None, item_col: str | None, time_col: str | None = None
) -> tuple[Path, list[Path], dict[str, str], list[str]]:
    """The parts of ``source`` checked before any engine reads them (the in-process and the Spark engine
    give the same one-line messages): the columns are named, different, present and typed, and the
    parts are complete Parquet files with rows.

    Returns the root directory, the part files, each column's kind and the hive partition keys.
    """
    if user_col is None or item_col is None:
        raise ConfigError(f"a directory of Parquet parts needs --user-col and --item-col "
                          f"({_describe(source)})")
    wanted = [c for c in (user_col, item_col, time_col) if c is not None]
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"--user-col, --item-col and --time-col must name different columns, got {wanted}")
    root, parts = find_parts(source)
    kinds, rows = check_parts(parts)
    if rows == 0:
        raise DataError(f"{source} holds no interactions (its {len(parts)} parts have no rows)")
    partition_keys = _partition_keys(root, parts)
    present = list(kinds) + [key for key in partition_keys if key not in kinds]
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(f"the parts of {source} have no column {', '.join(map(repr, missing))}; "
                        f"their columns are: {', '.join(present)}")
    for col in wanted:
        if kinds.get(col) == "other":
            raise DataError(f"column {col!r} of {source} holds neither integers, floats, strings nor "
                            "dates/times; ids must be integers or strings, timestamps integers, floats, "
                            "ISO-8601 text or dates/times")
        if kinds.get(col) == "null":
            raise DataError(f"column {col!r} of {source} has no values (every part stores it as nulls)")
    return root, parts, kinds, partition_keys


def read_parquet_parts(
    source: str | Path, user_col: str | None, item_col: str | None, time_col: str | None = None
) -> tuple[Interactions, dict[str, Any]]:
    """Read the user, item and (optional) time columns of all parts, streaming.

    Returns the interactions in file order and a description of the parts for the manifest.
    """
    wanted = [c for c in (user_col, item_col, time_col) if c is not None]
    root, parts, kinds, partition_keys = checked_parts(source, user_col, item_col, time_col)
    # polars takes the schema of the first part unless told: give the widest type of each kind, so
    # parts written as int32 and int64 (or float32 and float64) read together.
    file_schema = {col: _WIDEST.get(kinds[col]) or _first_dtype(parts, col) for col in wanted if col in kinds}
    scan = pl.scan_parquet(parts, hive_partitioning=bool(partition_keys), schema=file_schema or None,
                           extra_columns="ignore", missing_columns="raise",
                           cast_options=pl.ScanCastOptions(integer_cast="upcast", float_cast="upcast"))
    schema = scan.collect_schema()
    columns = [_as_id(col, schema[col]) for col in (user_col, item_col)]
    if time_col is not None:
        columns.append(_as_time(time_col, schema[time_col]))
    try:
        frame = scan.select(columns).collect(engine="streaming")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read the Parquet parts of {source}: {_first_line(exc)}") from None
    # The streaming engine returns many chunks per column; one chunk lets numpy view the data where it
    # would otherwise copy it (3 columns x 8 bytes a row). Rechunked a column at a time: the copy
    # costs one column at a time, not the table.
    columns = {name: frame.drop_in_place(name).rechunk() for name in list(frame.columns)}
    del frame
    for role, col in (("user", user_col), ("item", item_col)):
        if columns[col].null_count():
            raise _locate_null(parts, bool(partition_keys), role, col, schema[col])
    if time_col is not None:
        columns[time_col] = time_key(columns[time_col], _part_row(parts))
    interactions = Interactions(columns[user_col], columns[item_col], columns.get(time_col), str(source), FORMAT)
    return interactions, parts_info(root, parts)


def _first_dtype(parts: list[Path], col: str) -> pl.DataType:
    """The polars type of ``col`` in the first part that types it (a temporal column's unit)."""
    for path in parts:
        dtype = pl.read_parquet_schema(path)[col]
        if dtype != pl.Null:
            return dtype
    return pl.Null


_WIDEST = {"integer": pl.Int64, "float": pl.Float64, "string": pl.String}


def _as_id(col: str, dtype: pl.DataType) -> pl.Expr:
    """Ids as Int64 (integers), String (anything else); floats stay floats for ``build_dataset`` to check."""
    if dtype.is_integer():
        return pl.col(col).cast(pl.Int64)
    if dtype.is_float():
        return pl.col(col).cast(pl.Float64)
    return pl.col(col).cast(pl.String)


def _as_time(col: str, dtype: pl.DataType) -> pl.Expr:
    """Timestamps as stored where ``time_key`` reads the type (dates/times, integers, floats), else as
    text (ISO-8601 or numbers written as text)."""
    if dtype.is_temporal() or dtype.is_integer() or dtype.is_float():
        return pl.col(col)
    return pl.col(col).cast(pl.String)


def _part_row(parts: list[Path]) -> Where:
    """``where`` for ``time_key`` over the parts read in order: global row -> "part: row r" (error path)."""
    def where(row: int) -> str:
        ends = np.cumsum([pq.read_metadata(path).num_rows for path in parts])  # [parts]
        n = int(np.searchsorted(ends, row, side="right"))
        start = int(ends[n - 1]) if n else 0
        return f"{parts[n]}: row {row - start + 1}"

    return where


def _locate_null(parts: list[Path], hive: bool, role: str, col: str, dtype: pl.DataType) -> DataError:
    """The first part and row with a missing id (error path: a loop)."""
    what = f"missing {role} id"
    for path in parts:
        column = pl.scan_parquet(path, hive_partitioning=hive).select(pl.col(col)).collect().to_series()
        bad = np.flatnonzero(column.is_null().to_numpy())
        if len(bad):
            return DataError(f"{path}: row {int(bad[0]) + 1}: {what} (column {col!r})")
    return DataError(f"the parts hold a {what} (column {col!r})")


def parts_info(root: Path, parts: list[Path]) -> dict[str, Any]:
    """Name, part count, total size and (up to ``HASH_LIMIT`` bytes) a sha256 over the parts'
    relative paths and contents, for the manifest."""
    sizes = [p.stat().st_size for p in parts]
    info: dict[str, Any] = {"name": str(root), "parts": len(parts), "size": int(sum(sizes))}
    if sum(sizes) > HASH_LIMIT:
        info["sha256"] = None
        return info
    digest = hashlib.sha256()
    for path in parts:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    info["sha256"] = digest.hexdigest()
    return info


def _describe(source: str | Path) -> str:
    try:
        _, parts = find_parts(source)
        return f"the columns of {parts[0]} are: {', '.join(pq.read_schema(parts[0]).names)}"
    except Exception as exc:  # only for the message
        return str(exc)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
