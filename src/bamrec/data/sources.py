"""Readers for raw interaction logs: one reader per format, errors that name the file and line.

Every reader returns :class:`Interactions`, three aligned columns in file order: user ids, item
ids and timestamps (``None`` when the file order is the time order). Ids come back exactly as
they are written: text for text files (``String``: ``007`` stays ``007``), the stored type for
Parquet; :func:`bamrec.data.prepare.build_dataset` applies the id type, ordering and numbering
rules. The header-less line formats (``uid-iid``, ``sequence``) skip a header line such as
``user item`` with a warning in ``Interactions.warnings`` (see :func:`_header_line`). Parsing is vectorised (polars/numpy); no Python loop runs per line
except on the error path, where it only has to locate the first bad line.

Formats (``FORMATS``):

- ``uid-iid``: ``user item`` per line, whitespace separated, each user's lines in time order (the
  SASRec/BaM release format);
- ``sequence``: ``user item item ...`` per line, items in time order (the S3-Rec release format);
- ``csv``, ``tsv``, ``parquet``, ``jsonl``: tables with named columns (``user_col``, ``item_col``,
  optional ``time_col``; without it the file order is the time order);
- ``movielens-dat``: ``UserID::MovieID::Rating::Timestamp`` (MovieLens 1M ``ratings.dat``, latin-1);
- ``movielens-udata``: ``user<TAB>item<TAB>rating<TAB>timestamp`` (MovieLens 100K ``u.data``).

Text files may be gzip-compressed (``.gz``); a file can also be a member of a zip archive
(:class:`RawFile`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from bamrec.data.timestamps import TimestampError, time_key
from bamrec.errors import ConfigError, DataError

FORMATS: dict[str, str] = {
    "uid-iid": "`user item` per line, whitespace separated; file order is time order (SASRec/BaM)",
    "sequence": "`user item item ...` per line, items in time order (S3-Rec)",
    "csv": "comma-separated with a header row; needs --user-col, --item-col, optional --time-col",
    "tsv": "tab-separated with a header row; needs --user-col, --item-col, optional --time-col",
    "parquet": "Parquet table; needs --user-col, --item-col, optional --time-col",
    "jsonl": "one JSON object per line (.jsonl, .jsonl.gz); needs --user-col, --item-col, optional --time-col",
    "movielens-dat": "`UserID::MovieID::Rating::Timestamp` lines (MovieLens 1M ratings.dat)",
    "movielens-udata": "`user<TAB>item<TAB>rating<TAB>timestamp` lines (MovieLens 100K u.data)",
}
TABLE_FORMATS = ("csv", "tsv", "parquet", "jsonl")
# How ids compare when the user does not say (--id-type): as written ("str") in text formats, except
# in the MovieLens formats, whose ids are documented integers; the BaM paper numbers ML-1M items by
# ascending *numeric* MovieID, so these must be "int" for its numbering (and the released checkpoints).
# Parquet columns are typed: an integer column cannot hold "007", so its ids stay as stored (None).
DEFAULT_ID_TYPES: dict[str, str | None] = {fmt: "str" for fmt in FORMATS} | {
    "movielens-dat": "int", "movielens-udata": "int", "parquet": None}

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
               ".ndjson": "jsonl"}
_FILE_NAMES = {"ratings.dat": "movielens-dat", "u.data": "movielens-udata"}
_JSONL_CHUNK = 64 << 20  # bytes of decompressed JSONL parsed at a time: raw Amazon files reach tens of GB


@dataclass(frozen=True)
class RawFile:
    """A raw input file: a path on disk, or the member ``member`` of the zip archive at ``path``.

    Names ending in ``.gz`` are decompressed on the fly.
    """

    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        """How messages refer to the file."""
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    @property
    def filename(self) -> str:
        """The base name of the file itself (the member's, for an archive member)."""
        return Path(self.member).name if self.member else self.path.name

    @property
    def gzipped(self) -> bool:
        return self.filename.lower().endswith(".gz")

    def open(self) -> BinaryIO:
        """A binary stream of the (decompressed) content."""
        if not self.path.is_file():
            raise DataError(f"input file not found: {self.path}")
        if self.member is None:
            stream: BinaryIO = open(self.path, "rb")
        else:
            try:
                with zipfile.ZipFile(self.path) as archive:  # the member stream keeps the file open
                    stream = archive.open(self.member)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise DataError(f"cannot read {self.member} from archive {self.path}: {exc}") from None
        return _GzipStream(stream) if self.gzipped else stream  # type: ignore[return-value]

    def read_bytes(self) -> bytes:
        """The whole (decompressed) content."""
        with self.open() as stream:
            try:
                return stream.read()
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"cannot read {self.name}: {exc}") from None

    def polars_source(self) -> str | bytes:
        """What to hand to a polars reader: the path of a plain file (memory-mapped), else the bytes."""
        return str(self.path) if self.member is None and not self.gzipped else self.read_bytes()


class _GzipStream(gzip.GzipFile):
    """Decompresses ``inner`` and, unlike a plain GzipFile, closes it when closed."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__(fileobj=inner, mode="rb")
        self._inner = inner

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._inner.close()


@dataclass(frozen=True)
class Interactions:
    """Aligned raw columns in file order, as read from one file."""

    users: pl.Series  # [nnz] original user ids, Int64 or String
    items: pl.Series  # [nnz] original item ids, Int64 or String
    times: pl.Series | None  # [nnz] Int64 time order keys (data.timestamps); None: file order is time order
    source: str  # the file, for messages
    fmt: str  # the format it was read as
    warnings: tuple[str, ...] = ()  # what the reader did that the user should know (a skipped header)

    def __len__(self) -> int:
        return len(self.users)


def infer_format(filename: str) -> str:
    """The format of a file from its name, or a ConfigError when the name does not say."""
    name = Path(filename).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name in _FILE_NAMES:
        return _FILE_NAMES[name]
    fmt = _EXTENSIONS.get(Path(name).suffix)
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of {filename} from its name; pass --format with one of: {', '.join(FORMATS)}"
        )
    return fmt


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is a known format, else a ConfigError listing the valid ones."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def read_interactions(
    source: str | Path | RawFile,
    fmt: str | None = None,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    delimiter: str | None = None,
    id_type: str | None = None,
) -> Interactions:
    """Read a raw interaction file in format ``fmt`` (inferred from the file name when None).

    Table formats (csv, tsv, parquet, jsonl) need ``user_col`` and ``item_col``; ``time_col`` is
    optional. ``delimiter`` replaces the field separator of csv (``,``) and tsv (tab), e.g. ``;``.
    The line formats take no column names. ``id_type`` (default: ``DEFAULT_ID_TYPES[fmt]``) only
    lets the fast reader parse integer ids at once; ``prepare.ids_as`` applies the id type.
    """
    raw = source if isinstance(source, RawFile) else RawFile(Path(source))
    if not raw.path.is_file():
        raise DataError(f"input file not found: {raw.path}")
    fmt = check_format(fmt) if fmt is not None else infer_format(raw.filename)
    if delimiter is not None and (fmt not in ("csv", "tsv") or len(delimiter) != 1 or delimiter in "\r\n\"'"):
        raise ConfigError(f"--delimiter must be one character other than a quote or a line break, and only "
                          f"applies to csv and tsv; got {delimiter!r} for {fmt}")
    sep = delimiter or ("," if fmt == "csv" else "\t")
    named = {"--user-col": user_col, "--item-col": item_col, "--time-col": time_col}
    if fmt in TABLE_FORMATS:
        if user_col is None or item_col is None:
            raise ConfigError(f"format {fmt} needs --user-col and --item-col; {_describe_columns(raw, fmt, sep)}")
        return _read_table(raw, fmt, user_col, item_col, time_col, sep)
    given = [flag for flag, value in named.items() if value is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to the formats {', '.join(TABLE_FORMATS)}, not {fmt}")
    if fmt == "sequence":
        return read_sequence(raw)
    return _read_fixed(raw, _LINE_LAYOUTS[fmt], id_type or DEFAULT_ID_TYPES[fmt])


# --- line formats -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _LineLayout:
    """A line format with a fixed number of fields."""

    fmt: str
    separator: str | None  # literal field separator; None = any run of whitespace
    fields: int  # fields per line
    user: int  # field positions
    item: int
    time: int | None
    describe: str  # the expected line, for messages
    encoding: str  # for non-ASCII bytes
    # A polars read_csv layout for well-formed files: (one-byte separator, columns, column of each
    # field, columns that must be empty). '::' is read as ':' with empty columns in between.
    fast_sep: str
    fast_width: int
    fast_fields: tuple[int, ...]
    fast_empty: tuple[int, ...] = ()


_LINE_LAYOUTS = {
    "uid-iid": _LineLayout("uid-iid", None, 2, 0, 1, None, "user item", "utf-8", " ", 2, (0, 1)),
    "movielens-dat": _LineLayout(
        "movielens-dat", "::", 4, 0, 1, 3, "UserID::MovieID::Rating::Timestamp", "latin-1",
        ":", 7, (0, 2, 4, 6), (1, 3, 5),
    ),
    "movielens-udata": _LineLayout(
        "movielens-udata", "\t", 4, 0, 1, 3, "user<TAB>item<TAB>rating<TAB>timestamp", "latin-1",
        "\t", 4, (0, 1, 2, 3),
    ),
}


def _read_fixed(raw: RawFile, layout: _LineLayout, id_type: str) -> Interactions:
    fast = _read_fixed_fast(raw, layout, id_type)
    if fast is not None:
        return fast
    lines, linenos = _nonblank_lines(raw, layout.encoding)
    fields = _split_fields(lines, layout.separator)  # List[String] [n]
    warnings: tuple[str, ...] = ()
    if layout.time is None:
        lines, linenos, fields, warnings = _skip_header(raw, layout.fmt, lines, linenos, fields)
    counts = fields.list.len().to_numpy()
    bad = np.flatnonzero(counts != layout.fields)
    if len(bad):
        row = int(bad[0])
        raise _line_error(raw, linenos[row], lines[row],
                          f"expected {layout.fields} fields ({layout.describe}), found {counts[row]}")
    columns = {"user": layout.user, "item": layout.item, "time": layout.time}
    values = {role: fields.list.get(pos) for role, pos in columns.items() if pos is not None}
    _check_not_empty(raw, values, lines, linenos)
    times = _parse_times(raw, values["time"], lines, linenos) if "time" in values else None
    return Interactions(values["user"], values["item"], times, raw.name, layout.fmt, warnings)


def _read_fixed_fast(raw: RawFile, layout: _LineLayout, id_type: str) -> Interactions | None:
    """polars' CSV parser for the common case (plain ids, one separator); None means: use the
    line-by-line path, which handles anything else and names the offending line. Ids are read as
    text, or parsed as Int64 at once when integer ids are wanted (``id_type="int"``: the MovieLens
    default), which is faster than reading text and casting it."""
    wanted = layout.fast_fields
    field_of = {layout.user: "user", layout.item: "item", layout.time: "time"}
    names = [f"c{i}" for i in range(layout.fast_width)]
    roles = {wanted[pos]: role for pos, role in field_of.items() if pos is not None}
    id_dtype = pl.Int64 if id_type == "int" else pl.String
    schema = {name: (pl.Int64 if roles.get(i) == "time" else id_dtype if i in roles else pl.String)
              for i, name in enumerate(names)}
    try:
        frame = pl.read_csv(raw.polars_source(), glob=False, separator=layout.fast_sep, has_header=False, schema=schema,
                            quote_char=None, encoding="utf8-lossy", raise_if_empty=False)
    except (pl.exceptions.PolarsError, OSError):
        return None
    if frame.height == 0:
        return None
    columns = {role: frame.get_column(names[i]) for i, role in roles.items()}
    if any(column.null_count() for column in columns.values()):
        return None
    if any(frame.get_column(names[i]).null_count() != frame.height for i in layout.fast_empty):
        return None
    # Ids with whitespace, control characters or U+FFFD (a byte that was not UTF-8) take the strict path.
    # Checked on the distinct ids only: far fewer than the rows (ML-1M: 10k against 2M).
    if id_dtype == pl.String and any(columns[role].unique().str.contains(r"[\s\x00-\x1f\x7f\x{FFFD}]").any() for role in ("user", "item")):
        return None
    if id_dtype == pl.String and layout.time is None and _header_line(columns["user"], columns["item"]):
        return None  # the line path skips it and says so
    return Interactions(columns["user"], columns["item"], columns.get("time"), raw.name, layout.fmt)


def read_sequence(raw: RawFile | str | Path) -> Interactions:
    """The ``sequence`` format: ``user item item ...`` per line, items in time order."""
    raw = raw if isinstance(raw, RawFile) else RawFile(Path(raw))
    lines, linenos = _nonblank_lines(raw, "utf-8")
    fields = _split_fields(lines, None)  # List[String] [n]
    lines, linenos, fields, warnings = _skip_header(raw, "sequence", lines, linenos, fields)
    counts = fields.list.len().to_numpy()
    bad = np.flatnonzero(counts < 2)
    if len(bad):
        row = int(bad[0])
        raise _line_error(raw, linenos[row], lines[row], "expected a user id followed by at least one item id")
    frame = pl.DataFrame({"user": fields.list.first(), "item": fields.list.slice(1)}).explode("item")
    return Interactions(frame.get_column("user"), frame.get_column("item"), None, raw.name, "sequence", warnings)


# Column names a header line of a user-item file is likely to hold (compared case-insensitively).
_HEADER_WORDS = re.compile(r"(?i)^(users?|items?|uid|iid|u|i|(user|item|movie|product|session|reviewer)_?ids?|"
                           r"asin|parent_asin|sequence|history)$")
_INTEGER = r"^[+-]?[0-9]+$"


def _header_line(users: pl.Series, items: pl.Series) -> bool:
    """Whether the first row is a header: its user and item fields are both non-integers and either
    one is a typical column name (``user``, ``item_id``, ...) or every other row's are integers."""
    if len(users) == 0 or users[0] is None or items[0] is None:
        return False
    first_user, first_item = str(users[0]), str(items[0])
    if re.match(_INTEGER, first_user) or re.match(_INTEGER, first_item):
        return False
    if _HEADER_WORDS.match(first_user) or _HEADER_WORDS.match(first_item):
        return True
    rest_users, rest_items = users.slice(1), items.slice(1)
    return len(rest_users) > 0 and bool(rest_users.str.contains(_INTEGER).all()) and bool(
        rest_items.str.contains(_INTEGER).all())


def _skip_header(raw: RawFile, fmt: str, lines: pl.Series, linenos: np.ndarray,
                 fields: pl.Series) -> tuple[pl.Series, np.ndarray, pl.Series, tuple[str, ...]]:
    """Drop the first line of a header-less format when it is a header (:func:`_header_line`), and
    say so: skipping is right for ``user item``, and the warning names the line if it was data."""
    if len(lines) == 0 or fields.list.len()[0] < 2:
        return lines, linenos, fields, ()
    if not _header_line(fields.list.get(0, null_on_oob=True), fields.list.get(1, null_on_oob=True)):
        return lines, linenos, fields, ()
    warning = (f"{raw.name}:{int(linenos[0])}: skipped a header line {lines[0][:120]!r} "
               f"(format {fmt} has none; remove the line if it is data)")
    return lines.slice(1), linenos[1:], fields.slice(1), (warning,)


def _nonblank_lines(raw: RawFile, encoding: str) -> tuple[pl.Series, np.ndarray]:
    """The non-blank lines of a text file and their 1-based line numbers (int64 [n])."""
    lines = _lines(raw.read_bytes(), raw.name, encoding)
    keep = lines.str.contains(r"\S").to_numpy()
    linenos = np.flatnonzero(keep) + 1  # [n]
    return lines.filter(pl.Series(keep)), linenos


def _lines(data: bytes, name: str, encoding: str) -> pl.Series:
    """Split text into lines, vectorised: one string per line, without its ``\\n`` or ``\\r\\n``.

    Built as an Arrow string array over the bytes (offsets from the newline positions), so no
    Python object is made per line.
    """
    data = _as_utf8(data, name, encoding)
    buf = np.frombuffer(data, dtype=np.uint8)
    newline = buf == 10
    ends = np.flatnonzero(newline)  # [lines] position of each line's terminator
    if len(buf) and buf[-1] != 10:
        ends = np.append(ends, len(buf))
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    has_cr = np.zeros(len(ends), dtype=bool)
    nonempty = lengths > 0
    has_cr[nonempty] = buf[ends[nonempty] - 1] == 13
    lengths -= has_cr
    drop = newline
    drop[ends[has_cr] - 1] = True
    kept = buf[~drop]
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    array = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(kept))
    return pl.Series("line", array, dtype=pl.String)


def _as_utf8(data: bytes, name: str, encoding: str) -> bytes:
    if data.isascii():
        return data
    if encoding != "utf-8":
        return data.decode(encoding).encode("utf-8")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{name}:{line}: not valid UTF-8 text (byte {data[exc.start]:#04x}); "
                        "convert the file to UTF-8") from None
    return data


def _split_fields(lines: pl.Series, separator: str | None) -> pl.Series:
    if separator is None:
        return lines.str.extract_all(r"\S+")
    return lines.str.split(separator)


def _check_not_empty(raw: RawFile, values: dict[str, pl.Series], lines: pl.Series, linenos: np.ndarray) -> None:
    for role in ("user", "item"):
        empty = np.flatnonzero((values[role].str.strip_chars() == "").to_numpy())
        if len(empty):
            row = int(empty[0])
            raise _line_error(raw, linenos[row], lines[row], f"empty {role} id")


def _parse_times(raw: RawFile, times: pl.Series, lines: pl.Series | None, linenos: np.ndarray,
                 row_word: str = "") -> pl.Series:
    """Timestamps as an Int64 ordering key (:func:`bamrec.data.timestamps.time_key`); the first
    missing, unreadable or other-kind one is an error naming its line (``row_word``: "row " for
    Parquet, whose rows are not lines) and, for line formats, showing the line."""
    def where(row: int) -> str:
        return f"{raw.name}: {row_word}{linenos[row]}" if row_word else f"{raw.name}:{linenos[row]}"

    try:
        return time_key(times, where)
    except TimestampError as exc:
        if lines is None:
            raise
        raise DataError(f"{exc}: {lines[exc.row][:120]!r}") from None


def _line_error(raw: RawFile, lineno: int | np.integer, line: str | None, what: str) -> DataError:
    shown = "" if line is None else f": {line[:120]!r}"
    return DataError(f"{raw.name}:{int(lineno)}: {what}{shown}")


# --- table formats ----------------------------------------------------------------------------


def _read_table(raw: RawFile, fmt: str, user_col: str, item_col: str, time_col: str | None,
                sep: str) -> Interactions:
    if fmt == "jsonl":
        return _read_jsonl(raw, user_col, item_col, time_col)
    wanted = [c for c in (user_col, item_col, time_col) if c is not None]
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"--user-col, --item-col and --time-col must name different columns, got {wanted}")
    present = _columns(raw, fmt, sep)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(f"{raw.name} has no column {', '.join(map(repr, missing))}; "
                        f"its columns are: {', '.join(present)}{_delimiter_hint(raw, fmt, sep, present)}")
    if fmt == "parquet":
        frame = pl.read_parquet(raw.polars_source(), columns=wanted, glob=False)
        frame = _table_ids_and_times(frame, user_col, item_col, time_col)
        linenos = np.arange(frame.height, dtype=np.int64) + 1  # parquet has rows, not lines
    else:
        try:
            frame = pl.read_csv(raw.polars_source(), glob=False, separator=sep,
                                columns=wanted, infer_schema=False, raise_if_empty=False)
        except pl.exceptions.PolarsError as exc:
            raise _csv_error(raw, fmt, len(present), exc, sep) from None
        # polars keeps a blank line as an all-null row, so row r is line r + 2 (after the header).
        blank = frame.select(pl.all_horizontal(pl.all().is_null())).to_series().to_numpy()
        linenos = np.flatnonzero(~blank) + 2
        frame = frame.filter(pl.Series(~blank))
    return _table_interactions(raw, fmt, frame, user_col, item_col, time_col, linenos)


def _table_ids_and_times(frame: pl.DataFrame, user_col: str, item_col: str, time_col: str | None) -> pl.DataFrame:
    """Parquet columns as Int64 or String ids; times stay as stored (``time_key`` reads each type)."""
    def cast(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.Int64 if frame.schema[name].is_integer() else pl.String)

    exprs = [cast(user_col), cast(item_col)]
    if time_col is not None:
        exprs.append(pl.col(time_col))
    return frame.select(exprs)


def _table_interactions(raw: RawFile, fmt: str, frame: pl.DataFrame, user_col: str, item_col: str,
                        time_col: str | None, linenos: np.ndarray) -> Interactions:
    """Check for missing values and parse times; ``linenos`` (int64 [rows]) locates each row."""
    where = (lambda row: f"{raw.name}: row {linenos[row]}") if fmt == "parquet" else (
        lambda row: f"{raw.name}:{linenos[row]}")
    for role, col in (("user", user_col), ("item", item_col)):
        missing = np.flatnonzero(frame.get_column(col).is_null().to_numpy())
        if len(missing):
            raise DataError(f"{where(missing[0])}: missing {role} id (column {col!r})")
    times = None
    if time_col is not None:
        column = frame.get_column(time_col)
        missing = np.flatnonzero(column.is_null().to_numpy())
        if len(missing):
            raise DataError(f"{where(missing[0])}: missing timestamp (column {time_col!r})")
        times = _parse_times(raw, column, None, linenos, "row " if fmt == "parquet" else "")
    return Interactions(frame.get_column(user_col), frame.get_column(item_col), times, raw.name, fmt)


def _columns(raw: RawFile, fmt: str, sep: str) -> list[str]:
    try:
        if fmt == "parquet":
            return list(pl.read_parquet_schema(raw.polars_source()).keys())
        header = pl.read_csv(raw.polars_source(), glob=False, separator=sep, n_rows=0,
                             infer_schema=False, raise_if_empty=False)
        return header.columns
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read {raw.name} as {fmt}: {_first_line(exc)}") from None


def _describe_columns(raw: RawFile, fmt: str, sep: str) -> str:
    try:
        if fmt == "jsonl":
            return f"the first record of {raw.name} has the fields: {', '.join(_first_json_record(raw))}"
        present = _columns(raw, fmt, sep)
        return f"the columns of {raw.name} are: {', '.join(present)}{_delimiter_hint(raw, fmt, sep, present)}"
    except DataError as exc:
        return str(exc)


_DELIMITERS = (",", ";", "\t", "|", ":", " ")


def _delimiter_hint(raw: RawFile, fmt: str, sep: str, present: list[str]) -> str:
    """When the header reads as one column, the separator it most likely uses, as a hint."""
    if fmt not in ("csv", "tsv") or len(present) != 1:
        return ""
    header = present[0]
    counts = {c: header.count(c) for c in _DELIMITERS if c != sep}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        return ""
    shown = "$'\\t'" if best == "\t" else repr(best)
    return f" (one column: the file looks {best!r}-separated; pass --delimiter {shown})"


def _csv_error(raw: RawFile, fmt: str, width: int, exc: Exception, sep: str) -> DataError:
    """Locate the first line with the wrong number of fields (error path only: a Python loop)."""
    text = io.TextIOWrapper(raw.open(), encoding="utf-8", errors="replace", newline="")
    with text:
        reader = csv.reader(text, delimiter=sep)
        for row in reader:
            if row and len(row) != width:
                return DataError(f"{raw.name}:{reader.line_num}: expected {width} fields like the header, "
                                 f"found {len(row)}: {(','.join(row))[:120]!r}")
    return DataError(f"cannot read {raw.name} as {fmt}: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- JSON lines -------------------------------------------------------------------------------


def _read_jsonl(raw: RawFile, user_col: str, item_col: str, time_col: str | None) -> Interactions:
    """JSON objects, one per line, parsed in chunks so huge (gzipped) review dumps stream."""
    wanted = [c for c in (user_col, item_col, time_col) if c is not None]
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"--user-col, --item-col and --time-col must name different fields, got {wanted}")
    schema = {c: pl.String for c in wanted}
    frames: list[pl.DataFrame] = []
    lines_before = 0
    with raw.open() as stream:
        for chunk in _line_chunks(stream, _JSONL_CHUNK):
            try:
                frame = pl.read_ndjson(chunk, schema=schema)
            except pl.exceptions.PolarsError as exc:
                raise _jsonl_error(raw, chunk, lines_before, exc) from None
            rows = _chunk_linenos(chunk, lines_before)  # int64 [rows]
            frames.append(frame.with_columns(pl.Series("__line", rows)))
            lines_before += chunk.count(b"\n")
    if not frames:
        raise DataError(f"{raw.name} holds no JSON records")
    frame = pl.concat(frames, rechunk=True)
    for col in wanted:
        if frame.get_column(col).null_count() == frame.height:
            raise DataError(f"{raw.name} has no field {col!r}; its first record has the fields: "
                            f"{', '.join(_first_json_record(raw))}")
    linenos = frame.get_column("__line").to_numpy()
    for role, col in (("user", user_col), ("item", item_col)):
        missing = np.flatnonzero(frame.get_column(col).is_null().to_numpy())
        if len(missing):
            raise DataError(f"{raw.name}:{linenos[missing[0]]}: missing {role} id (field {col!r})")
    times = None
    if time_col is not None:
        times = _parse_times(raw, frame.get_column(time_col), None, linenos)
    return Interactions(frame.get_column(user_col), frame.get_column(item_col), times, raw.name, "jsonl")


def _line_chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Blocks of about ``size`` bytes that end at a line break (the last one may not)."""
    rest = b""
    while True:
        block = stream.read(size)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block
            continue
        rest = block[cut:]
        yield block[:cut]
    if rest.strip():
        yield rest


def _chunk_linenos(chunk: bytes, lines_before: int) -> np.ndarray:
    """1-based line numbers of the non-blank lines in ``chunk`` (what read_ndjson turns into rows)."""
    buf = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(buf) and buf[-1] != 10:
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    blank_bytes = np.isin(buf, np.frombuffer(b" \t\r\n", dtype=np.uint8))
    nonblank_before = np.concatenate(([0], np.cumsum(~blank_bytes, dtype=np.int64)))
    nonblank = nonblank_before[ends] > nonblank_before[starts]
    return np.flatnonzero(nonblank).astype(np.int64) + lines_before + 1


def _jsonl_error(raw: RawFile, chunk: bytes, lines_before: int, exc: Exception) -> DataError:
    for offset, line in enumerate(chunk.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            return DataError(f"{raw.name}:{lines_before + offset}: not valid JSON ({err.msg}): "
                             f"{line[:120].decode('utf-8', 'replace')!r}")
        if not isinstance(record, dict):
            return DataError(f"{raw.name}:{lines_before + offset}: expected a JSON object, "
                             f"found {type(record).__name__}")
    return DataError(f"cannot read {raw.name} as JSON lines: {_first_line(exc)}")


def _first_json_record(raw: RawFile) -> list[str]:
    with raw.open() as stream:
        for line in stream:
            if line.strip():
                try:
                    return list(json.loads(line))
                except (ValueError, TypeError):
                    raise DataError(f"{raw.name}:1: not a JSON object") from None
    return []
