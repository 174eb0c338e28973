"""Timestamps of any kind a log carries, turned into one Int64 ordering key per interaction.

Only the order of a user's interactions is kept from the timestamps (``prepare.time_order``), so
each kind becomes an Int64 whose order is the time order:

- integers (text or typed): as they are, in whatever unit they were written;
- floats (``1709287200.25``, typed or text): their dense rank (exact order, ties kept; a column of
  integers and floats is a column of numbers and reads as floats);
- ISO-8601 text (``2024-03-01``, ``2024-03-01T10:00``, ``2024-03-01 10:00:00.5``, with ``Z`` or an
  offset such as ``+02:00`` / ``+0200``): microseconds since 1970-01-01 UTC; values without a zone
  are read as UTC;
- dates/times of typed columns (Parquet, Arrow): their physical value (a time zone's values are
  stored as UTC).

A column must hold one kind: numbers and date-times together, or date-times with and without a
zone together, have no one order, so they are refused with the first row of the other kind. The
checks are vectorised; the error path only formats the first offending row.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from bamrec.errors import DataError

Where = Callable[[int], str]  # row (0-based) -> "file:line" or "file: row r", for messages


class TimestampError(DataError):
    """A timestamp that cannot be read; ``row`` (0-based) is the one the message names first."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row

# Groups: date, hour, minute, second, fraction, zone. 'T' or one space between date and time.
_ISO = (r"^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
        r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$")
_DAY_US = 86_400_000_000
_KINDS = {"integer": "a number", "float": "a number", "naive": "an ISO-8601 date-time without a time zone",
          "zoned": "an ISO-8601 date-time with a time zone", "bad": "neither a number nor an ISO-8601 date-time"}


def time_key(values: pl.Series, where: Where) -> pl.Series:
    """The Int64 ordering key of a timestamp column (see the module docstring), or a DataError
    that names the first missing, unreadable or other-kind value through ``where(row)``."""
    missing = np.flatnonzero(values.is_null().to_numpy())
    if len(missing):
        raise TimestampError(f"{where(int(missing[0]))}: missing timestamp", int(missing[0]))
    dtype = values.dtype
    if dtype.is_temporal():
        return values.to_physical().cast(pl.Int64)
    if dtype.is_integer():
        return values.cast(pl.Int64)
    if dtype.is_float():
        return _float_key(values.cast(pl.Float64), where)
    if dtype == pl.Boolean or dtype.is_nested() or dtype in (pl.Binary, pl.Object, pl.Null):
        raise TimestampError(f"{where(0)}: a timestamp column must hold integers, floats, ISO-8601 text "
                             f"or dates/times, not {dtype}", 0)
    return _text_key(values.cast(pl.String), where)


def _float_key(values: pl.Series, where: Where) -> pl.Series:
    bad = np.flatnonzero(~np.isfinite(values.to_numpy()))
    if len(bad):
        row = int(bad[0])
        raise TimestampError(f"{where(row)}: timestamp {values[row]!r} is not a finite number", row)
    return values.rank("dense").cast(pl.Int64)


def _text_key(values: pl.Series, where: Where) -> pl.Series:
    text = values.str.strip_chars()
    as_int = text.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0:
        return as_int  # the common case (epoch integers as text): no float or ISO pass over the rows
    as_float = text.cast(pl.Float64, strict=False)
    # "nan" and "inf" cast to floats: they are not times.
    as_float = as_float.set(~as_float.is_finite().fill_null(False), None)  # type: ignore[arg-type]
    parts = text.str.extract_groups(_ISO).struct.unnest()
    parts.columns = ["date", "hour", "minute", "second", "fraction", "zone"]
    is_iso = parts.get_column("date").is_not_null()
    zoned = parts.get_column("zone").is_not_null()
    kind = np.select(
        [as_int.is_not_null().to_numpy(), as_float.is_not_null().to_numpy(),
         (is_iso & ~zoned).to_numpy(), (is_iso & zoned).to_numpy()],
        ["integer", "float", "naive", "zoned"], default="bad")  # [n]
    _check_one_kind(values, kind, where)
    if bool(np.all(kind == "integer")):
        return as_int
    if kind[0] in ("integer", "float"):
        return _float_key(as_float, where)
    return _iso_micros(values, parts, where)


def _check_one_kind(values: pl.Series, kind: np.ndarray, where: Where) -> None:
    bad = np.flatnonzero(kind == "bad")
    if len(bad):
        row = int(bad[0])
        raise TimestampError(f"{where(row)}: timestamp {values[row]!r} is {_KINDS['bad']} "
                             "such as 2024-03-01T10:00:00Z", row)
    numeric = np.isin(kind, ("integer", "float"))
    group = np.where(numeric, "number", kind)  # [n] integers and floats are one kind: numbers
    other = np.flatnonzero(group != group[0])
    if len(other):
        row = int(other[0])
        raise TimestampError(f"{where(row)}: timestamp {values[row]!r} is {_KINDS[kind[row]]}, but "
                             f"{where(0)} holds {_KINDS[kind[0]]} ({values[0]!r}); a timestamp column "
                             "must hold one kind", row)


def _iso_micros(values: pl.Series, parts: pl.DataFrame, where: Where) -> pl.Series:
    """Microseconds since 1970-01-01 UTC of ISO-8601 text split into ``parts`` (validated here)."""
    days = parts.get_column("date").str.to_date("%Y-%m-%d", strict=False)  # null: no such day (02-30)
    number = {name: parts.get_column(name).cast(pl.Int64).fill_null(0).to_numpy()
              for name in ("hour", "minute", "second")}
    fraction = parts.get_column("fraction").fill_null("").str.slice(0, 6).str.pad_end(6, "0")
    micros = fraction.cast(pl.Int64).to_numpy()  # [n] digits past the sixth are dropped (ties keep file order)
    zone = parts.get_column("zone").fill_null("Z").str.replace_all(":", "")
    sign = np.where(zone.str.starts_with("-").to_numpy(), -1, 1)
    zone_digits = zone.str.slice(1).str.pad_end(4, "0")
    zone_hours = zone_digits.str.slice(0, 2).cast(pl.Int64, strict=False).fill_null(0).to_numpy()
    zone_minutes = zone_digits.str.slice(2, 2).cast(pl.Int64, strict=False).fill_null(0).to_numpy()
    invalid = (days.is_null().to_numpy() | (number["hour"] > 23) | (number["minute"] > 59)
               | (number["second"] > 59) | (zone_hours > 23) | (zone_minutes > 59))
    bad = np.flatnonzero(invalid)
    if len(bad):
        row = int(bad[0])
        raise TimestampError(f"{where(row)}: timestamp {values[row]!r} is not a valid date-time", row)
    seconds = number["hour"] * 3600 + number["minute"] * 60 + number["second"]
    offset = sign * (zone_hours * 3600 + zone_minutes * 60)
    key = days.cast(pl.Int64).to_numpy() * _DAY_US + (seconds - offset) * 1_000_000 + micros  # [n]
    return pl.Series(values.name, key, dtype=pl.Int64)
