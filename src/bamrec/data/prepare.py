"""From raw interactions to a prepared :class:`SequenceDataset`: ordering, numbering, filters.

The rules, applied by :func:`build_dataset` (``docs/data.md``):

1. Ids stay what the file says: strings, compared as strings (``"10" < "9"``; ``"007"`` and ``"7"``
   are two items), unless ``id_type="int"`` (``--id-type int``) asks for integers, which compare
   as numbers (``9 < 10``). The MovieLens formats default to ``int`` (their documented ids;
   ``sources.DEFAULT_ID_TYPES``).
2. Order: each user's interactions are sorted by timestamp with a *stable* sort, so ties keep the
   file order; without timestamps the file order is the time order.
3. ``dedupe``: of repeated (user, item) pairs only the first in time order is kept.
4. k-core: users with fewer than ``min_user_count`` and items with fewer than ``min_item_count``
   interactions are removed, repeatedly, until both hold (the fixed point does not depend on the
   order of the removals). Deduplication comes first, so the counts are of distinct pairs then.
5. Numbering: the remaining users and items are numbered from 1 in ascending order of their
   original ids.

With these rules (and its preset ``id_type="int"``) MovieLens-1M gives exactly the ``ml1m`` file of
the BaM paper (Lee et al., BigData 2024): user id = UserID, item id = rank of the MovieID in
ascending numeric order, stable sort by timestamp.
Everything is vectorised with numpy/polars; no Python loop runs per interaction.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from bamrec import files, locks
from bamrec.data import parquet_parts
from bamrec.data.metadata import AlignedMetadata, align_metadata, read_items_file, read_movielens_items, save_metadata
from bamrec.data.sequences import SequenceDataset
from bamrec.data.sources import DEFAULT_ID_TYPES, RawFile, read_interactions
from bamrec.data.spark import SourceSpec
from bamrec.data.timestamps import time_key
from bamrec.errors import ConfigError, DataError

Echo = Callable[[str], None]
HASH_LIMIT = 1 << 30  # raw files up to 1 GiB get a sha256 in the manifest; larger ones name + size only
_DENSE_SPAN = 1 << 24  # integer ids spanning up to this (or 2x the rows) are encoded with a lookup table
ID_TYPES = ("str", "int")
ENGINES = ("local", "spark")  # data prepare --engine: in this process, or as Spark jobs (bamrec.data.spark)


def build_dataset(
    users: Any,
    items: Any,
    times: Any = None,
    *,
    min_user_count: int = 0,
    min_item_count: int = 0,
    dedupe: bool = False,
    manifest: dict[str, Any] | None = None,
    id_type: str | None = None,
    source: str | None = None,
) -> SequenceDataset:
    """Apply the ordering, dedupe, k-core and numbering rules to aligned columns (file order).

    ``users``, ``items`` (ids: integers or strings) and ``times`` (integers, floats, ISO-8601 text or
    dates/times: :mod:`bamrec.data.timestamps`; None for "file order is time order") are polars Series, numpy arrays or lists of equal length. ``id_type``:
    ``"str"`` or ``"int"`` for both kinds of ids (see :func:`ids_as`); None keeps them as given
    (integers stay integers, strings stay strings and are never parsed). ``source`` names the
    input in error messages.
    """
    user_col = ids_as(users, "user", id_type, source)
    item_col = ids_as(items, "item", id_type, source)
    time_arr = None if times is None else _as_times(times)
    if not (len(user_col) == len(item_col) and (time_arr is None or len(time_arr) == len(user_col))):
        raise DataError("users, items and times must have the same length")
    if len(user_col) == 0:
        raise DataError("there are no interactions to build a dataset from")
    ucodes, user_ids = encode_ids(user_col)  # int64 [nnz], [U]
    icodes, item_ids = encode_ids(item_col)  # int64 [nnz], [N]
    order = time_order(ucodes, time_arr)
    if order is not None:
        ucodes, icodes = ucodes[order], icodes[order]
    keep = first_occurrences(ucodes, icodes, len(item_ids)) if dedupe else None
    keep = kcore_mask(ucodes, icodes, min_user_count, min_item_count, keep)
    if keep is not None:
        ucodes, icodes = ucodes[keep], icodes[keep]
    ucodes, user_ids = _compact(ucodes, user_ids)
    icodes, item_ids = _compact(icodes, item_ids)
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)  # [U + 1]
    np.cumsum(np.bincount(ucodes, minlength=len(user_ids)), out=offsets[1:])
    return SequenceDataset(
        offsets=offsets,
        items=(icodes + 1).astype(np.int32),  # [nnz] 1-based, 0 is padding
        user_ids=user_ids,
        item_ids=item_ids,
        manifest=dict(manifest or {}),
    )


def ids_as(values: Any, kind: str, id_type: str | None = None, source: str | None = None) -> pl.Series:
    """Ids as a String Series (``id_type="str"``: integers become their decimal text) or an Int64
    Series (``"int"``: text must be an integer, ``"007"`` becomes 7); None keeps integers as Int64
    and text as String. Whole floats count as integers; other floats are an error."""
    if id_type is not None and id_type not in ID_TYPES:
        raise ConfigError(f"--id-type must be one of {', '.join(ID_TYPES)}, got {id_type!r}")
    series = values if isinstance(values, pl.Series) else pl.Series(kind, values, strict=False)
    where = f"{source}: " if source else ""
    if series.null_count():
        raise DataError(f"{where}{series.null_count()} {kind} ids are missing")
    dtype = series.dtype
    if dtype.is_float():
        if (series != series.floor()).any():
            raise DataError(f"{where}{kind} ids must be integers or strings, got fractional numbers")
        series, dtype = series.cast(pl.Int64), pl.Int64
    if dtype.is_integer():
        return series.cast(pl.String) if id_type == "str" else series.cast(pl.Int64)
    as_text = series.cast(pl.String)
    if id_type != "int":
        return as_text
    as_int = as_text.cast(pl.Int64, strict=False)
    bad = np.flatnonzero(as_int.is_null().to_numpy())
    if len(bad):
        raise DataError(f"{where}{kind} id {as_text[int(bad[0])]!r} is not an integer, but --id-type int "
                        "needs integer ids; use --id-type str to keep ids as text")
    return as_int


def integer_like_note(dataset: SequenceDataset) -> str | None:
    """A hint when string ids all look like plain integers and string order is not numeric order
    (``"10"`` before ``"9"``): the file may be one with numeric ids, e.g. a SASRec/S3-Rec release."""
    kinds = []
    for kind, ids in (("user", dataset.user_ids), ("item", dataset.item_ids)):
        if ids.dtype.kind != "U" or len(ids) == 0:
            continue
        text = pl.Series(ids)
        if not text.str.contains(r"^(0|[1-9][0-9]{0,17})$").all():
            continue
        numbers = text.cast(pl.Int64).to_numpy()
        if bool(np.any(numbers[1:] < numbers[:-1])):
            kinds.append(kind)
    if not kinds:
        return None
    return (f"the {' and '.join(kinds)} ids are all integers but were numbered as text ('10' before '9'); "
            "pass --id-type int to number them as integers")


def _as_times(values: Any) -> np.ndarray:
    """Int64 time order keys [nnz] of integers, floats, ISO-8601 text or dates/times (data.timestamps)."""
    series = values if isinstance(values, pl.Series) else pl.Series("time", values, strict=False)
    return time_key(series, lambda row: f"timestamp {row + 1}").to_numpy()


def encode_ids(ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """0-based codes (int64 [n]) in ascending order of the ids, and the sorted distinct ids.

    Integer ids compare as numbers and come back as int64; string ids compare as strings (code
    point order) and come back as fixed-width unicode, the form ``SequenceDataset`` stores.
    """
    if ids.dtype == pl.Int64:
        return _encode_ints(ids.to_numpy())
    codes, uniques = _encode_by_hash(ids.rechunk().to_arrow())  # one chunk: one dictionary
    return codes, uniques.astype(np.str_)


def _encode_by_hash(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Arrow's hash-based dictionary encoding, then a sort of the distinct values only: about twice
    as fast as sorting or joining all rows (30M string rows, 3M distinct ids: ~12 s against ~23 s;
    10M sparse integer rows, 100k distinct: ~2 s against ~5 s for ``np.unique``, same loaded machine)."""
    encoded = pc.dictionary_encode(values)
    by_value = pc.array_sort_indices(encoded.dictionary).to_numpy()  # [M] byte order = code-point order
    rank = np.empty(len(by_value), dtype=np.int64)
    rank[by_value] = np.arange(len(by_value), dtype=np.int64)  # [M] dictionary index -> sorted position
    uniques = encoded.dictionary.take(pa.array(by_value)).to_numpy(zero_copy_only=False)
    return rank[encoded.indices.to_numpy()], uniques


def _encode_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low, high = int(values.min()), int(values.max())
    span = high - low + 1
    if span > max(_DENSE_SPAN, 2 * len(values)):
        codes, uniques = _encode_by_hash(pa.array(values))
        return codes, uniques.astype(np.int64)
    # A lookup table over the id range is O(n), where np.unique sorts: ids are usually dense.
    shifted = values - low  # [n]
    present = np.zeros(span, dtype=bool)
    present[shifted] = True
    rank = np.cumsum(present, dtype=np.int64) - 1  # [span] code of each present id
    return rank[shifted], np.flatnonzero(present).astype(np.int64) + low


def time_order(ucodes: np.ndarray, times: np.ndarray | None) -> np.ndarray | None:
    """The stable permutation that groups users (ascending code) and sorts each by time.

    Ties keep the file order. None means the input is already in that order. The sort is polars'
    ``arg_sort_by(maintain_order=True)`` (stable and multi-threaded, unlike numpy's stable argsort).
    """
    if times is None:
        keys = [ucodes]
    else:
        low = int(times.min())
        span = int(times.max()) - low + 1
        if (int(ucodes.max()) + 1) * span < (1 << 62):
            key = ucodes * span  # [nnz] one key: user-major, then time (in place: one array, not three)
            key += times
            key -= low
            keys = [key]
        else:
            keys = [ucodes, times]
    if len(keys) == 1 and (len(keys[0]) < 2 or bool(np.all(keys[0][1:] >= keys[0][:-1]))):
        return None
    frame = pl.DataFrame({f"k{i}": key for i, key in enumerate(keys)})
    return frame.select(pl.arg_sort_by(frame.columns, maintain_order=True)).to_series().to_numpy()


def first_occurrences(ucodes: np.ndarray, icodes: np.ndarray, num_items: int) -> np.ndarray:
    """Mask (bool [nnz]) of the first occurrence of each (user, item) pair in array order."""
    pairs = pl.Series(ucodes * num_items + icodes)  # [nnz] unique per pair
    return pairs.is_first_distinct().to_numpy()


def kcore_mask(
    ucodes: np.ndarray,
    icodes: np.ndarray,
    min_user_count: int,
    min_item_count: int,
    keep: np.ndarray | None = None,
) -> np.ndarray | None:
    """Iterated k-core filter: the mask (bool [nnz]) of interactions that survive, or ``keep``
    unchanged when no filter is set. Raises a DataError naming the filter that empties the data."""
    if min_user_count < 0 or min_item_count < 0:
        raise ConfigError("--min-user-count and --min-item-count must be >= 0")
    if min_user_count <= 1 and min_item_count <= 1:
        return keep
    keep = np.ones(len(ucodes), dtype=bool) if keep is None else keep.copy()
    filters = (("user", ucodes, min_user_count, "--min-user-count"),
               ("item", icodes, min_item_count, "--min-item-count"))
    rounds, changed = 0, True
    while changed:
        rounds += 1
        changed = False
        for kind, codes, minimum, flag in filters:
            if minimum <= 1:
                continue
            counts = np.bincount(codes[keep], minlength=int(codes.max()) + 1)  # [U] or [N]
            drop = keep & (counts[codes] < minimum)
            if drop.any():
                keep &= ~drop
                changed = True
                if not keep.any():
                    raise DataError(
                        f"the k-core filter removed every interaction: in round {rounds} the {kind} filter "
                        f"({flag} {minimum}) left nothing; lower --min-user-count / --min-item-count"
                    )
    return keep


def _compact(codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber codes 0..M-1 over the ids still in use, keeping their order."""
    used = np.bincount(codes, minlength=len(ids)) > 0  # [M_old]
    if used.all():
        return codes, ids
    new_code = np.cumsum(used, dtype=np.int64) - 1
    return new_code[codes], ids[used]


# --- prepare and export -----------------------------------------------------------------------


def prepare_dataset(
    source: str | Path,
    out: str | Path,
    *,
    from_path: str | Path | None = None,
    fmt: str | None = None,
    category: str | None = None,
    min_user_count: int = 0,
    min_item_count: int = 0,
    dedupe: bool = False,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    mirror: str | None = None,
    echo: Echo | None = None,
    id_type: str | None = None,
    delimiter: str | None = None,
    items: str | Path | None = None,
    items_id_col: str | None = None,
    engine: str = "local",
    spark: Any = None,
) -> SequenceDataset:
    """Read ``source`` (a registered dataset name or a file path), build and save it to ``out``.

    Registered datasets are read from ``from_path`` (a folder, zip or file) or downloaded into
    the cache. ``id_type`` (``"str"`` or ``"int"``; None: the format's default,
    ``sources.DEFAULT_ID_TYPES``) says how ids compare. ``echo`` receives progress notes and
    warnings (users too short for leave-one-out, a skipped header line). ``items`` is an item
    metadata file (``bamrec.data.metadata``; its id column ``items_id_col``); the MovieLens presets
    read theirs from beside the ratings when ``items`` is not given. ``engine``: ``"local"`` (in
    this process, the default) or ``"spark"`` (:mod:`bamrec.data.spark`: the same rules as Spark
    jobs, for logs larger than memory; ``spark`` is its ``SparkSettings``, default local mode on
    every core); both write the same dataset.
    """
    from bamrec.data import registry

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    out = Path(out)
    _check_out(out, overwrite)
    # The whole command holds --out's lock (bamrec.locks): a second prepare into it is refused here,
    # before its download and parsing, and never mixes its files with this one's.
    with locks.write_lock(out, "bamrec data prepare"):
        _check_out(out, overwrite)  # again: another writer may have filled --out since the first look
        if min_user_count < 0 or min_item_count < 0:
            raise ConfigError("--min-user-count and --min-item-count must be >= 0")
        if id_type is not None and id_type not in ID_TYPES:
            raise ConfigError(f"--id-type must be one of {', '.join(ID_TYPES)}, got {id_type!r}")
        chosen_id_type = id_type
        if items is not None and not Path(items).is_file():
            raise DataError(f"--items {items}: no such file")
        if items is None and items_id_col is not None:
            raise ConfigError("--items-id-col names the id column of --items FILE; give --items too")
        preset_items = None
        if str(source) in registry.DATASETS:
            raw, layout = registry.raw_file(str(source), category=category, fmt=fmt, from_path=from_path,
                                            mirror=mirror, progress=progress, echo=echo)
            if any(c is not None for c in (user_col, item_col, time_col, delimiter)):
                raise ConfigError(f"--user-col, --item-col, --time-col and --delimiter do not apply to the "
                                  f"registered dataset {source}")
            columns = layout.columns or (None, None, None)
            spark_input = SourceSpec(raw, None, layout.fmt, *columns, id_type=id_type)
            source_name = str(source)
            raw_info = raw_file_info(raw)
            preset_items = registry.item_file(str(source), raw) if items is None else None
        elif parquet_parts.is_parts_source(source):
            _check_parts_options(fmt, from_path, category)
            spark_input = SourceSpec(None, str(source), parquet_parts.FORMAT, user_col, item_col, time_col)
            raw_info = None
            source_name = str(source) if not Path(source).exists() else str(Path(source).resolve())
        else:
            raw = _source_file(source, from_path, category)
            spark_input = SourceSpec(raw, None, fmt, user_col, item_col, time_col, delimiter, id_type)
            source_name = str(Path(source).resolve())
            raw_info = raw_file_info(raw)
        rules = {"min_user_count": min_user_count, "min_item_count": min_item_count, "dedupe": dedupe,
                 "category": category}
        if delimiter is not None:
            rules["delimiter"] = delimiter
        columns = (user_col, item_col, time_col)
        if engine == "spark":
            dataset, reader_warnings = _prepare_with_spark(spark_input, out, source_name, raw_info, rules, columns,
                                                           min_user_count, min_item_count, dedupe, spark, echo)
        else:
            dataset, reader_warnings = _prepare_local(spark_input, source_name, raw_info, rules, columns,
                                                      min_user_count, min_item_count, dedupe, echo)
        warnings = list(reader_warnings)
        warning = short_user_warning(dataset)
        if warning is not None:
            warnings.append(warning)
        if warnings:
            dataset.manifest["warnings"] = warnings
            if echo is not None:
                for text in warnings:
                    echo(f"warning: {text}")
        note = integer_like_note(dataset) if chosen_id_type is None else None
        if note is not None and echo is not None:
            echo(f"note: {note}")
        metadata = _item_metadata(dataset, items, items_id_col, preset_items, str(source), echo)
        if metadata is not None:
            dataset.manifest["item_metadata"] = metadata.manifest()
        dataset.save(out, overwrite=overwrite)
        save_metadata(metadata, out)
        return dataset


def _item_metadata(dataset: SequenceDataset, items: str | Path | None, id_col: str | None,
                   preset: RawFile | None, source: str, echo: Echo | None) -> AlignedMetadata | None:
    """The item metadata of ``--items`` or of a MovieLens preset, aligned to the dataset's items."""
    from bamrec.data import registry

    if items is not None:
        frame, column = read_items_file(items, id_col)
        name = str(Path(items).resolve())
    elif preset is not None:
        frame, column, name = read_movielens_items(preset, source), "item", preset.name
    else:
        if source in registry.ITEM_FILES and echo is not None:
            echo(f"note: no {registry.ITEM_FILES[source]} beside the ratings: items get no titles")
        return None
    metadata = align_metadata(frame, column, dataset.item_ids, name)
    if echo is not None:
        echo(f"item metadata: {metadata.described:,} of {dataset.num_items:,} items described by {name} "
             f"(columns: {', '.join(metadata.frame.columns[1:])})")
        for text in metadata.warnings:
            echo(f"warning: {text}")
    return metadata


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse early (before any download or parsing) to replace an existing dataset."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a directory")
    if out.is_dir() and locks.contents(out) and not overwrite:
        raise DataError(f"{out} already exists and is not empty; pass --overwrite to replace it")


def _check_parts_options(fmt: str | None, from_path: str | Path | None, category: str | None) -> None:
    if fmt not in (None, "parquet", parquet_parts.FORMAT):
        raise ConfigError(f"a directory or glob is read as Parquet part files; --format {fmt} does not apply")
    if from_path is not None:
        raise ConfigError("--from only applies to registered datasets; give the part directory itself as SOURCE")
    if category is not None:
        raise ConfigError("--category only applies to amazon2023")


def _source_file(source: str | Path, from_path: str | Path | None, category: str | None) -> RawFile:
    from bamrec.data import registry

    path = Path(source)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a file"
        raise DataError(f"{source} is {what} and not a registered dataset "
                        f"({', '.join(registry.DATASETS)}); give a file path or a dataset name")
    if from_path is not None:
        raise ConfigError("--from only applies to registered datasets; give the file itself as SOURCE")
    if category is not None:
        raise ConfigError("--category only applies to amazon2023")
    return RawFile(path)


def short_user_warning(dataset: SequenceDataset) -> str | None:
    """What leave-one-out will say about users too short to evaluate (None when all are long enough)."""
    from bamrec.data.split import LeaveOneOut

    try:
        return LeaveOneOut(dataset).describe_short_users()
    except DataError as exc:  # nobody long enough to train: still a valid dataset, but say so
        return str(exc)


def _prepare_local(source: SourceSpec, source_name: str, raw_info: dict[str, Any] | None, rules: dict[str, Any],
                   columns: Sequence[str | None], min_user_count: int, min_item_count: int, dedupe: bool,
                   echo: Echo | None) -> tuple[SequenceDataset, tuple[str, ...]]:
    """The in-process engine: read the whole log into memory, then :func:`build_dataset`."""
    if source.parts is not None:
        interactions, raw_info = parquet_parts.read_parquet_parts(source.parts, source.user_col, source.item_col,
                                                                  source.time_col)
    else:
        interactions = read_interactions(source.raw, source.fmt, user_col=source.user_col, item_col=source.item_col,
                                         time_col=source.time_col, delimiter=source.delimiter, id_type=source.id_type)
    id_type = source.id_type or DEFAULT_ID_TYPES.get(interactions.fmt)  # None: as stored (Parquet)
    if len(interactions) == 0:
        raise DataError(f"{interactions.source} holds no interactions")
    if echo is not None:
        echo(f"read {len(interactions):,} interactions from {interactions.source}")
    rules = rules | {"id_type": id_type or "stored"}
    manifest = _manifest(source_name, interactions.fmt, len(interactions), interactions.times is not None,
                         raw_info, rules, columns, "local")
    dataset = build_dataset(interactions.users, interactions.items,
                            None if interactions.times is None else interactions.times,
                            min_user_count=min_user_count, min_item_count=min_item_count, dedupe=dedupe,
                            manifest=manifest, id_type=id_type, source=interactions.source)
    return dataset, interactions.warnings


def _prepare_with_spark(source: SourceSpec, out: Path, source_name: str, raw_info: dict[str, Any] | None,
                        rules: dict[str, Any], columns: Sequence[str | None], min_user_count: int,
                        min_item_count: int, dedupe: bool, settings: Any,
                        echo: Echo | None) -> tuple[SequenceDataset, tuple[str, ...]]:
    """The Spark engine (:mod:`bamrec.data.spark`); its intermediate files go to a staging folder
    beside ``out`` (removed at the end, whatever happens), never into ``out``."""
    from bamrec.data import spark as spark_engine

    if min_user_count < 0 or min_item_count < 0:
        raise ConfigError("--min-user-count and --min-item-count must be >= 0")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.spark-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        result = spark_engine.build_with_spark(
            source, min_user_count=min_user_count, min_item_count=min_item_count, dedupe=dedupe,
            settings=settings or spark_engine.SparkSettings(), staging=staging, echo=echo)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if source.parts is not None:
        root, parts = parquet_parts.find_parts(source.parts)
        raw_info = parquet_parts.parts_info(root, parts)
    id_type = source.id_type or DEFAULT_ID_TYPES.get(result.fmt)
    rules = rules | {"id_type": id_type or "stored"}
    manifest = _manifest(source_name, result.fmt, result.raw_interactions, result.timed, raw_info, rules,
                         columns, "spark")
    dataset = SequenceDataset(offsets=result.offsets, items=result.items, user_ids=result.user_ids,
                              item_ids=result.item_ids, manifest=manifest)
    return dataset, result.warnings


def _manifest(source: str, fmt: str, raw_interactions: int, timed: bool, raw_info: dict[str, Any] | None,
              rules: dict[str, Any], columns: Sequence[str | None], engine: str) -> dict[str, Any]:
    from bamrec import __version__

    manifest: dict[str, Any] = {
        "source": source,
        "format": fmt,
        "rules": rules,
        "time_order": "timestamp" if timed else "file order",
        "raw_file": raw_info,
        "raw_interactions": raw_interactions,
        "engine": engine,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "bamrec_version": __version__,
    }
    if any(c is not None for c in columns):
        manifest["columns"] = dict(zip(("user", "item", "time"), columns))
    return manifest


def raw_file_info(raw: RawFile) -> dict[str, Any]:
    """Name, size and sha256 of the file on disk (an archive for a member); files over
    ``HASH_LIMIT`` get no sha256, hashing them would take longer than preparing them."""
    from bamrec.data.download import file_digest

    size = raw.path.stat().st_size
    info: dict[str, Any] = {"name": raw.path.name, "size": size}
    if raw.member is not None:
        info["member"] = raw.member
    info["sha256"] = file_digest(raw.path) if size <= HASH_LIMIT else None
    return info


EXPORT_IDS = ("internal", "original")


def export_uid_iid(dataset: SequenceDataset, path: str | Path, *, overwrite: bool = False,
                   ids: str = "internal") -> Path:
    """Write the original BaM text format: ``user item\n`` per interaction, users ascending, each
    user's items in time order. ``ids="internal"``: the 1-based internal ids (the BaM code's input);
    ``"original"``: the ids as the raw file wrote them, so that preparing the export again gives the
    same dataset. Deterministic bytes; written atomically."""
    if ids not in EXPORT_IDS:
        raise ConfigError(f"--ids must be one of {', '.join(EXPORT_IDS)}, got {ids!r}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"{path} already exists; pass --overwrite to replace it")
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a file name")
    users = np.repeat(np.arange(1, dataset.num_users + 1, dtype=np.int64), dataset.lengths)  # [nnz]
    items = dataset.items.astype(np.int64)  # [nnz]
    if ids == "original":
        user_col = pl.Series(dataset.user_ids)[users - 1]  # [nnz]
        item_col = pl.Series(dataset.item_ids)[items - 1]  # [nnz]
        for kind, column in (("user", user_col), ("item", item_col)):
            if column.dtype == pl.String and column.str.contains(r"\s|^$").any():
                raise DataError(f"some original {kind} ids are empty or hold whitespace: they cannot be written "
                                "as uid-iid lines; export with --ids internal")
        frame = pl.DataFrame({"user": user_col, "item": item_col})
    else:
        frame = pl.DataFrame({"user": users, "item": items})
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_write(path) as handle:
        frame.write_csv(handle, separator=" ", include_header=False, line_terminator="\n", quote_style="never")
    return path


def stderr_echo(message: str) -> None:
    """An ``echo`` for the CLI: one line on stderr."""
    print(f"bamrec: {message}", file=sys.stderr)
