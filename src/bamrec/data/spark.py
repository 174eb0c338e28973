"""The Spark engine of ``bamrec data prepare --engine spark``: the in-process rules, as Spark jobs.

:func:`build_with_spark` reads the same sources as :mod:`bamrec.data.sources` and applies the rules
of :mod:`bamrec.data.prepare` (id type, stable per-user time order, dedupe, iterated k-core,
numbering in ascending id order) as Spark work, so that a log larger than one machine's memory
prepares on a cluster (or in local mode, spilling to disk). The two engines write the same arrays
(``tests/data/test_spark.py`` proves it on every fixture, ml-100k and ML-1M).

How the file order survives Spark, which has none: every row carries its file's index (the
in-process engine's file order: sorted part paths), the start of the split it was read from
(``_metadata.file_block_start``) and ``monotonically_increasing_id()`` taken right at the scan,
which increases along a split. A split is a contiguous byte range of one file, read in order by one
task, so (file, split start, id) is the row's position in its file, exactly. Line formats add the
field position inside a line (``sequence``). Sorting by (user, time, that position) is the stable
sort of the in-process engine.

Memory on the driver holds the output only: the distinct users with their counts and the distinct
items (``user_ids``, ``offsets``, ``item_ids``), and the item column of the final sort, which Spark
writes as Parquet in a staging folder beside ``--out`` and the driver reads part by part into one
int32 array. Nothing is written into ``--out`` until the arrays are complete (then
``SequenceDataset.save`` writes them, manifest last).

Errors: the malformed inputs the in-process engine names (a missing column or field, a missing or
empty id, an unreadable timestamp, a wrong field count, a k-core filter that empties the data) are
found with Spark aggregates and reported as one line naming the file and its line (text formats:
located by streaming the file on the driver, on the error path only) or row (Parquet). The JVM's
own output (its banner, log4j, stage progress) goes to a log file, not the terminal.

Deviations from the in-process engine: timestamps of nanosecond precision (Parquet) are ordered by
their microseconds (ties then keep file order); text is read as UTF-8 (the MovieLens files, latin-1
in-process, hold ASCII ids); CSV fields spanning lines are not supported (Spark reads CSV per line).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote, urlparse

import numpy as np

from bamrec.data import parquet_parts
from bamrec.data.sources import (DEFAULT_ID_TYPES, TABLE_FORMATS, RawFile, _columns, _csv_error, _delimiter_hint,
                                 _first_json_record, _HEADER_WORDS, _INTEGER, _LINE_LAYOUTS, check_format,
                                 infer_format)
from bamrec.data.timestamps import _ISO, _KINDS
from bamrec.errors import ConfigError, DataError

Echo = Callable[[str], None]
ENGINES = ("local", "spark")
_ORDER = ["_f", "_b", "_r", "_p"]  # a row's position in the input: file, split start, id in split, field in line
_SPARK_FORMATS = ("uid-iid", "sequence", "csv", "tsv", "parquet", "jsonl", "movielens-dat", "movielens-udata",
                  parquet_parts.FORMAT)
_LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
"""


@dataclass(frozen=True)
class SparkSettings:
    """How the Spark engine runs; the ``--spark-*`` flags of ``bamrec data prepare``."""

    master: str = "local[*]"  # any master Spark accepts: local[N], spark://host:7077, yarn, k8s://...
    driver_memory: str | None = None  # spark.driver.memory, e.g. "8g" (local mode: the whole job's heap)
    executor_memory: str | None = None  # spark.executor.memory (cluster masters)
    shuffle_partitions: int | None = None  # spark.sql.shuffle.partitions (default: 2 per core in local mode)
    local_dir: str | None = None  # spark.local.dir: where shuffles and spills go (a big local disk)
    conf: tuple[tuple[str, str], ...] = field(default=())  # any other spark.* setting (--spark-conf KEY=VALUE)


def parse_conf(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` strings of ``--spark-conf`` as pairs; a ConfigError for anything else."""
    pairs = []
    for text in values or ():
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--spark-conf takes KEY=VALUE (e.g. spark.sql.files.maxPartitionBytes=256m), got {text!r}")
        pairs.append((key.strip(), value))
    return tuple(pairs)


# --- the session ------------------------------------------------------------------------------


def _import_pyspark() -> Any:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigError("--engine spark needs pyspark: pip install 'bamrec[spark]' (and a Java 17+ runtime)") from None
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ConfigError("--engine spark needs a Java 17+ runtime (java on PATH or JAVA_HOME); "
                          "e.g. apt-get install openjdk-17-jre-headless")
    return pyspark


@contextlib.contextmanager
def spark_session(settings: SparkSettings, echo: Echo | None = None) -> Iterator[Any]:
    """The active SparkSession if there is one (left running), else a new one, stopped at the end.

    A new session's JVM writes its output (banner, log4j, progress) to a log file, not the terminal.
    """
    _import_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        _session_conf(active)
        yield active
        return
    log_dir = Path(settings.local_dir or tempfile.gettempdir())
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"bamrec-spark-{os.getpid()}.log"
    log4j = log_dir / f"bamrec-spark-{os.getpid()}.log4j2.properties"
    log4j.write_text(_LOG4J)
    builder = SparkSession.builder.master(settings.master).appName("bamrec data prepare")
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j}"}
    if settings.driver_memory:
        conf["spark.driver.memory"] = settings.driver_memory
    if settings.executor_memory:
        conf["spark.executor.memory"] = settings.executor_memory
    if settings.local_dir:
        conf["spark.local.dir"] = settings.local_dir
    conf.update(dict(settings.conf))
    for key, value in conf.items():
        builder = builder.config(key, value)
    if echo is not None:
        echo(f"spark: starting {settings.master} (Spark's own log: {log})")
    with _stderr_to(log):  # the JVM inherits stderr when it starts: send it to the log for good
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    _session_conf(session, settings.shuffle_partitions)
    try:
        yield session
    finally:
        session.stop()
        log4j.unlink(missing_ok=True)


def _session_conf(session: Any, shuffle_partitions: int | None = None) -> None:
    # Casts that fail give null (checked, then named in a message) rather than a JVM exception.
    session.conf.set("spark.sql.ansi.enabled", "false")
    # A CSV row with more fields than the header is only seen when every column is parsed.
    session.conf.set("spark.sql.csv.parser.columnPruning.enabled", "false")
    if shuffle_partitions:
        session.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
    # Local files are read as the in-process engine reads them: a part's .crc file beside it (Hadoop's
    # checksums, which copies and hand edits leave stale) is not consulted.
    jvm = session.sparkContext._jvm
    jvm.org.apache.hadoop.fs.FileSystem.getLocal(session.sparkContext._jsc.hadoopConfiguration()).setVerifyChecksum(False)


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _jvm_errors(what: str) -> Iterator[None]:
    """A Spark/Py4J failure as one DataError line (its first line), not a JVM stack trace."""
    from pyspark.errors import PySparkException
    from py4j.protocol import Py4JError

    try:
        yield
    except (PySparkException, Py4JError) as exc:
        raise DataError(f"{what}: {_java_message(exc)[:300]}") from None


def _java_message(exc: Exception) -> str:
    """The innermost Java cause's class and message (what went wrong), else the first line."""
    java = getattr(exc, "java_exception", None)
    try:
        while java is not None and java.getCause() is not None:
            java = java.getCause()
        if java is not None:
            return " ".join(str(java.toString()).split())
    except Exception:  # the JVM may be gone: fall back to the Python text
        pass
    text = [line for line in str(exc).splitlines() if line.strip()]
    return text[0].strip() if text else type(exc).__name__


# --- the job ----------------------------------------------------------------------------------


@dataclass
class SourceSpec:
    """What ``prepare_dataset`` resolved the source to, for either engine."""

    raw: RawFile | None  # a single file (or archive member); None for a part directory / glob
    parts: str | None  # the part directory or glob
    fmt: str | None
    user_col: str | None
    item_col: str | None
    time_col: str | None
    delimiter: str | None = None
    id_type: str | None = None


@dataclass
class SparkResult:
    """The arrays and what the manifest says of the input."""

    offsets: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    fmt: str
    raw_interactions: int
    timed: bool
    source: str
    warnings: tuple[str, ...]


def build_with_spark(source: SourceSpec, *, min_user_count: int, min_item_count: int, dedupe: bool,
                     settings: SparkSettings, staging: Path, echo: Echo | None = None) -> SparkResult:
    """Read ``source`` and apply the preparation rules with Spark; ``staging`` is an empty folder
    for the job's intermediate files (removed by the caller)."""
    say = echo or (lambda message: None)
    with spark_session(settings, echo) as spark, contextlib.ExitStack() as stack:
        stack.callback(_release)
        shown = source.raw.name if source.raw is not None else str(source.parts)
        with _jvm_errors(f"Spark failed reading {shown}"):
            frame, fmt, where, warnings = _read(spark, source, staging, say)
            id_type = source.id_type or DEFAULT_ID_TYPES.get(fmt)
            frame = _cached(frame)
            where.frame = frame
            raw_interactions = frame.count()
            if raw_interactions == 0:
                raise DataError(f"{where.name} holds no interactions")
            say(f"spark: read {raw_interactions:,} interactions from {where.name}")
            frame = _cached(_typed(frame, id_type, where))
            timed = "_t" in frame.columns
        with _jvm_errors(f"Spark failed preparing {where.name}"):
            result = _prepare(spark, frame, min_user_count, min_item_count, dedupe, staging, say)
        return SparkResult(*result, fmt=fmt, raw_interactions=raw_interactions, timed=timed,
                           source=where.name, warnings=warnings)


# --- reading ----------------------------------------------------------------------------------


@dataclass
class _Where:
    """Row -> "file:line" (text formats) or "file: row r" (Parquet), as the in-process messages say;
    only called on the error path (each call runs a Spark count, and may stream the file)."""

    kind: str  # "parquet", "csv", "jsonl" or "lines"
    name: str  # the input, for messages
    raw: RawFile | None = None
    parts: list[Path] | None = None  # Parquet files by index (_f)
    lines: Any = None  # line formats: every line of the file, blank ones too, with its position
    frame: Any = None  # the rows as read (set once read)
    columns: dict[str, str | None] = field(default_factory=dict)  # role -> the column or field name

    def __call__(self, row: dict[str, Any]) -> str:
        if self.kind == "lines":
            return f"{self.name}:{self.lines.filter(_before(row, same_file=False)).count() + 1}"
        rank = _rank(self.frame, row)
        if self.kind == "parquet":
            return f"{self.parts[row['_f']] if self.parts else self.name}: row {rank}"
        assert self.raw is not None
        return f"{self.name}:{_line_of_record(self.raw, rank, header=self.kind == 'csv')}"

    def column(self, role: str) -> str:
        name = self.columns.get(role)
        return "" if name is None else f" ({'field' if self.kind == 'jsonl' else 'column'} {name!r})"


def _scan(frame: Any) -> Any:
    """The scan's rows with their position: split start and an id increasing along the split."""
    from pyspark.sql import functions as F

    return frame.select("*", F.col("_metadata.file_path").alias("_path"),
                        F.col("_metadata.file_block_start").alias("_b"),
                        F.monotonically_increasing_id().alias("_r"))


def _with_file_index(spark: Any, frame: Any, files: list[Path]) -> Any:
    """Replace the scan's file path by the file's index in ``files`` (the in-process file order)."""
    from pyspark.sql import functions as F

    if len(files) == 1:
        return frame.drop("_path").withColumn("_f", F.lit(0))
    index = {str(path.resolve()): n for n, path in enumerate(files)}
    reported = [row[0] for row in frame.select("_path").distinct().collect()]
    pairs = []
    for text in reported:
        local = str(Path(unquote(urlparse(text).path)).resolve())
        if local not in index:
            raise DataError(f"Spark read a file that is not one of the input's: {text}")
        pairs.append((text, index[local]))
    lookup = spark.createDataFrame(pairs, "_path string, _f int")
    return frame.join(F.broadcast(lookup), "_path").drop("_path")


def _read(spark: Any, source: SourceSpec, staging: Path, say: Echo) -> tuple[Any, str, _Where, tuple[str, ...]]:
    """Columns u, i (ids as read), t (raw timestamps, when a time column is given) and the order
    columns, in any row order; the format, the locator of rows for messages, the reader's warnings."""
    columns = {"u": source.user_col, "i": source.item_col, "t": source.time_col}
    if source.parts is not None:
        frame, where = _read_parts(spark, source, say)
        where.columns = columns
        return frame, parquet_parts.FORMAT, where, ()
    raw = source.raw
    assert raw is not None
    if not raw.path.is_file():
        raise DataError(f"input file not found: {raw.path}")
    fmt = check_format(source.fmt) if source.fmt is not None else infer_format(raw.filename)
    delimiter = source.delimiter
    if delimiter is not None and (fmt not in ("csv", "tsv") or len(delimiter) != 1 or delimiter in "\r\n\"'"):
        raise ConfigError(f"--delimiter must be one character other than a quote or a line break, and only "
                          f"applies to csv and tsv; got {delimiter!r} for {fmt}")
    sep = delimiter or ("," if fmt == "csv" else "\t")
    if fmt not in TABLE_FORMATS:
        named = {"--user-col": source.user_col, "--item-col": source.item_col, "--time-col": source.time_col}
        given = [flag for flag, value in named.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to the formats {', '.join(TABLE_FORMATS)}, not {fmt}")
    elif source.user_col is None or source.item_col is None:
        raise ConfigError(f"format {fmt} needs --user-col and --item-col")
    else:
        wanted = [c for c in columns.values() if c is not None]
        if len(set(wanted)) != len(wanted):
            what = "fields" if fmt == "jsonl" else "columns"
            raise ConfigError(f"--user-col, --item-col and --time-col must name different {what}, got {wanted}")
    path = _local_copy(raw, staging, say)
    say(f"spark: reading {raw.name} as {fmt}")
    warnings: tuple[str, ...] = ()
    if fmt in ("csv", "tsv"):
        frame, where = _read_csv(spark, raw, path, fmt, sep, columns), _Where("csv", raw.name, raw)
    elif fmt == "parquet":
        frame, where = _read_parquet(spark, [path], None, columns, raw.name), _Where("parquet", raw.name, raw)
    elif fmt == "jsonl":
        where = _Where("jsonl", raw.name, raw)
        frame = _read_jsonl(spark, raw, path, columns, where)
    else:
        where = _Where("lines", raw.name, raw)
        frame, warnings = _read_lines(spark, raw, path, fmt, where)
    where.columns = columns
    return frame, fmt, where, warnings


def _local_copy(raw: RawFile, staging: Path, say: Echo) -> Path:
    """The path Spark reads: the file itself, or a zip archive's member extracted into ``staging``."""
    if raw.member is None:
        return raw.path
    target = staging / "input" / Path(raw.member).name
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"spark: extracting {raw.name} to {target}")
    try:
        with zipfile.ZipFile(raw.path) as archive, archive.open(raw.member) as member, open(target, "wb") as out:
            shutil.copyfileobj(member, out, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"cannot read {raw.member} from archive {raw.path}: {exc}") from None
    return target


def _read_parts(spark: Any, source: SourceSpec, say: Echo) -> tuple[Any, _Where]:
    # The in-process engine's checks of the parts, footers and columns, with its messages.
    root, parts, kinds, keys = parquet_parts.checked_parts(source.parts, source.user_col, source.item_col,
                                                           source.time_col)
    say(f"spark: reading {len(parts)} Parquet parts of {source.parts}")
    columns = {"u": source.user_col, "i": source.item_col, "t": source.time_col}
    frame = _read_parquet(spark, parts, root if keys else None, columns, str(source.parts), kinds)
    return frame, _Where("parquet", str(source.parts), parts=parts)


def _read_parquet(spark: Any, files: list[Path], root: Path | None, columns: dict[str, str | None], name: str,
                  kinds: dict[str, str] | None = None) -> Any:
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    reader = spark.read
    if root is not None:
        reader = reader.option("basePath", str(root))
    if kinds is not None and len(files) > 1:  # parts written as int32 and int64 (float, double) read as the widest
        widest = {"integer": "bigint", "float": "double"}
        typed = [path for path in files if pq.read_metadata(path).num_rows > 0][:1] or files[:1]
        present = reader.parquet(str(typed[0])).schema
        schema = ", ".join(f"`{f.name}` {widest.get(kinds.get(f.name, ''), f.dataType.simpleString())}"
                           for f in present)
        reader = reader.schema(schema)
    # Parts without rows add nothing, and their columns may carry no type (a null column): not read.
    read = [path for path in files if len(files) == 1 or pq.read_metadata(path).num_rows > 0]
    frame = reader.parquet(*map(str, read))
    names = frame.columns
    missing = [c for c in columns.values() if c is not None and c not in names]
    if missing:
        raise DataError(f"{name} has no column {', '.join(map(repr, missing))}; its columns are: {', '.join(names)}")
    frame = _scan(frame.select(*[F.col(f"`{col}`").alias(role) for role, col in columns.items() if col is not None]))
    return _with_file_index(spark, frame, files).withColumn("_p", F.lit(0))


def _read_csv(spark: Any, raw: RawFile, path: Path, fmt: str, sep: str, columns: dict[str, str | None]) -> Any:
    from pyspark.sql import functions as F

    wanted = [c for c in columns.values() if c is not None]
    present = _columns(raw, fmt, sep)  # the header, read by the in-process engine: same messages
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(f"{raw.name} has no column {', '.join(map(repr, missing))}; "
                        f"its columns are: {', '.join(present)}{_delimiter_hint(raw, fmt, sep, present)}")
    schema = ", ".join(f"`c{n}` string" for n in range(len(present))) + ", `_corrupt` string"
    frame = (spark.read.schema(schema)
             .options(header=True, sep=sep, quote='"', escape='"', mode="PERMISSIVE", multiLine=False,
                      columnNameOfCorruptRecord="_corrupt", enforceSchema=True)
             .csv(str(path)))
    position = {col: f"c{present.index(col)}" for col in wanted}
    frame = _scan(frame.select(*[F.col(position[col]).alias(role) for role, col in columns.items() if col is not None],
                               "_corrupt"))
    frame = _cached(frame.drop("_path").withColumn("_f", F.lit(0)).withColumn("_p", F.lit(0)))
    if frame.filter(F.col("_corrupt").isNotNull()).limit(1).count():
        # The line with the wrong field count, found as the in-process engine finds it (a streamed scan).
        raise _csv_error(raw, fmt, len(present), ValueError("a row does not match the header"), sep)
    return frame.drop("_corrupt")


def _read_jsonl(spark: Any, raw: RawFile, path: Path, columns: dict[str, str | None], where: _Where) -> Any:
    from pyspark.sql import functions as F

    wanted = [c for c in columns.values() if c is not None]
    schema = ", ".join(f"`{col}` string" for col in wanted) + ", `_corrupt` string"
    frame = (spark.read.schema(schema).options(mode="PERMISSIVE", columnNameOfCorruptRecord="_corrupt")
             .json(str(path)))
    frame = _scan(frame.select(*[F.col(f"`{col}`").alias(role) for role, col in columns.items() if col is not None],
                               "_corrupt"))
    frame = _cached(frame.drop("_path").withColumn("_f", F.lit(0)).withColumn("_p", F.lit(0)))
    bad = _first(frame.filter(F.col("_corrupt").isNotNull()), "_corrupt")
    if bad is not None:
        line = _line_of_record(raw, _rank(frame, bad), header=False)
        raise DataError(f"{raw.name}:{line}: not valid JSON (or not a JSON object): {bad['_corrupt'][:120]!r}")
    roles = [role for role, col in columns.items() if col is not None]
    counts = frame.select(*[F.count(role).alias(role) for role in roles]).first()
    for role in roles:
        if counts[role] == 0:
            raise DataError(f"{raw.name} has no field {columns[role]!r}; its first record has the fields: "
                            f"{', '.join(_first_json_record(raw))}")
    return frame.drop("_corrupt")


def _read_lines(spark: Any, raw: RawFile, path: Path, fmt: str, where: _Where) -> tuple[Any, tuple[str, ...]]:
    """The line formats: uid-iid, sequence, movielens-dat, movielens-udata."""
    from pyspark.sql import functions as F

    where.lines = _scan(spark.read.text(str(path))).drop("_path").withColumn("_f", F.lit(0))
    lines = where.lines.filter(F.col("value").rlike(r"\S"))  # blank lines are skipped, as in-process
    layout = None if fmt == "sequence" else _LINE_LAYOUTS[fmt]
    if layout is None or layout.separator is None:
        fields = F.regexp_extract_all("value", F.lit(r"\S+"), 0)
    else:
        fields = F.split("value", re.escape(layout.separator), -1)
    lines = _cached(lines.withColumn("fields", fields))
    warnings: tuple[str, ...] = ()
    if fmt in ("uid-iid", "sequence"):
        lines, warnings = _skip_header(lines, raw, fmt, where)
    if layout is None:
        bad = _first(lines.filter(F.size("fields") < 2), "value")
        if bad is not None:
            raise _line_error(where(bad), bad["value"], "expected a user id followed by at least one item id")
        frame = lines.select("_f", "_b", "_r", F.col("fields")[0].alias("u"),
                             F.posexplode(F.slice("fields", 2, 1 << 30)).alias("_p", "i"))
        return frame, warnings
    columns = [F.col("fields")[layout.user].alias("u"), F.col("fields")[layout.item].alias("i")]
    if layout.time is not None:
        columns.append(F.col("fields")[layout.time].alias("t"))
    frame = lines.select("_f", "_b", "_r", "value", "fields", *columns).withColumn("_p", F.lit(0))
    checks = {"fields": F.size(F.col("fields")) != layout.fields}
    checks |= {role: F.trim(F.col(role)) == "" for role in ("u", "i")}
    failed = _any(frame, **checks)  # one pass; reported in the in-process engine's order
    if "fields" in failed:
        bad = _first(lines.filter(F.size("fields") != layout.fields), "value", F.size("fields").alias("n"))
        raise _line_error(where(bad), bad["value"],
                          f"expected {layout.fields} fields ({layout.describe}), found {bad['n']}")
    for role, what in (("u", "user"), ("i", "item")):
        if role in failed:
            bad = _first(frame.filter(F.trim(F.col(role)) == ""), "value")
            raise _line_error(where(bad), bad["value"], f"empty {what} id")
    return frame.drop("value", "fields"), warnings


def _skip_header(lines: Any, raw: RawFile, fmt: str, where: _Where) -> tuple[Any, tuple[str, ...]]:
    """The in-process rule (``sources._header_line``) on the first line, with a Spark aggregate for
    "every other row's user and item are integers"."""
    from pyspark.sql import functions as F

    first = _first(lines, "value", "fields")
    if first is None or len(first["fields"]) < 2:
        return lines, ()
    user, item = first["fields"][0], first["fields"][1]
    if re.match(_INTEGER, user) or re.match(_INTEGER, item):
        return lines, ()
    rest = lines.filter(~((F.col("_b") == first["_b"]) & (F.col("_r") == first["_r"])))
    if not (_HEADER_WORDS.match(user) or _HEADER_WORDS.match(item)):
        integers = F.col("fields")[0].rlike(_INTEGER) & F.coalesce(F.col("fields")[1], F.lit("")).rlike(_INTEGER)
        if rest.limit(1).count() == 0 or rest.filter(~integers).limit(1).count() > 0:
            return lines, ()
    warning = (f"{where(first)}: skipped a header line {first['value'][:120]!r} "
               f"(format {fmt} has none; remove the line if it is data)")
    return rest, (warning,)


def _first(frame: Any, *columns: Any) -> Any:
    """The first row in file order of ``frame`` with the order columns and ``columns``, or None."""
    from pyspark.sql import functions as F

    order = [c for c in _ORDER if c in frame.columns]
    row = frame.select(F.min(F.struct(*order, *columns)).alias("first")).first()["first"]
    return None if row is None else row.asDict()


def _before(row: dict[str, Any], same_file: bool = True) -> Any:
    """Rows that come before ``row`` in its file (the order columns ``_b``, ``_r``)."""
    from pyspark.sql import functions as F

    earlier = (F.col("_b") < row["_b"]) | ((F.col("_b") == row["_b"]) & (F.col("_r") < row["_r"]))
    return (F.col("_f") == row["_f"]) & earlier if same_file else earlier


def _rank(frame: Any, row: dict[str, Any]) -> int:
    """1-based position of ``row`` among ``frame``'s rows of its file."""
    return frame.filter(_before(row)).count() + 1


def _line_of_record(raw: RawFile, record: int, header: bool) -> int:
    """The line number of the ``record``-th (1-based) non-blank line after an optional header, found by
    streaming the file (error path only)."""
    seen = -1 if header else 0
    with raw.open() as stream:
        for lineno, line in enumerate(stream, start=1):
            if line.strip():
                seen += 1
                if seen == record:
                    return lineno
    return record


def _line_error(where: str, line: str, what: str) -> DataError:
    return DataError(f"{where}: {what}: {line[:120]!r}")


# --- ids and timestamps -----------------------------------------------------------------------


def _any(frame: Any, **conditions: Any) -> set[str]:
    """The names of the ``conditions`` that some row of ``frame`` meets: one Spark job for all."""
    from pyspark.sql import functions as F

    if not conditions:
        return set()
    row = frame.select(*[F.max(F.coalesce(cond, F.lit(False)).cast("int")).alias(name)
                         for name, cond in conditions.items()]).first()
    return {name for name in conditions if row[name]}


def _typed(frame: Any, id_type: str | None, where: _Where) -> Any:
    """Ids by ``id_type`` (the rules of ``prepare.ids_as``) and timestamps as one ordering key ``_t``
    (the rules of ``bamrec.data.timestamps``); the first bad value is a one-line DataError. Every
    check runs in one pass over the rows; only a failed one looks for its first row."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    name = where.name
    checks: dict[str, Any] = {}
    kinds: dict[str, Any] = {}
    for role in ("u", "i"):
        dtype = kinds[role] = frame.schema[role].dataType
        checks[f"null_{role}"] = F.col(role).isNull()
        if isinstance(dtype, (T.FloatType, T.DoubleType, T.DecimalType)):
            checks[f"fraction_{role}"] = F.col(role) != F.floor(role)
        elif isinstance(dtype, T.StringType) and id_type == "int":
            checks[f"not_int_{role}"] = ~F.col(role).rlike(_INTEGER) | F.col(role).cast("bigint").isNull()
    timed = "t" in frame.columns
    if timed:
        checks["null_t"] = F.col("t").isNull()
        if isinstance(frame.schema["t"].dataType, T.StringType):  # the common case: integers as text
            text = F.regexp_replace("t", r"^\s+|\s+$", "")
            checks["not_int_t"] = ~text.rlike(_INTEGER) | text.cast("bigint").isNull()
    failed = _any(frame, **checks)
    for role, what in (("u", "user"), ("i", "item")):
        if f"null_{role}" in failed:
            bad = _first(frame.filter(F.col(role).isNull()), role)
            raise DataError(f"{where(bad)}: missing {what} id{where.column(role)}")
        dtype = kinds[role]
        if isinstance(dtype, (T.FloatType, T.DoubleType, T.DecimalType)):
            if f"fraction_{role}" in failed:
                raise DataError(f"{name}: {what} ids must be integers or strings, got fractional numbers")
            frame = frame.withColumn(role, F.col(role).cast("bigint"))
            dtype = T.LongType()
        if isinstance(dtype, T.IntegralType):
            frame = frame.withColumn(role, F.col(role).cast("string" if id_type == "str" else "bigint"))
        elif isinstance(dtype, T.StringType):
            if f"not_int_{role}" in failed:
                bad = _first(frame.filter(checks[f"not_int_{role}"]), role)
                raise DataError(f"{name}: {what} id {bad[role]!r} is not an integer, but --id-type int "
                                "needs integer ids; use --id-type str to keep ids as text")
            if id_type == "int":
                frame = frame.withColumn(role, F.col(role).cast("bigint"))
        else:
            raise DataError(f"{name}: {what} ids must be integers or strings, not {dtype.simpleString()}")
    if timed:
        if "null_t" in failed:
            bad = _first(frame.filter(F.col("t").isNull()), "t")
            raise DataError(f"{where(bad)}: missing timestamp{where.column('t')}")
        if "not_int_t" in checks and "not_int_t" not in failed:
            key = F.regexp_replace("t", r"^\s+|\s+$", "").cast("bigint")
        else:
            key = _time_key(frame, where)
        frame = frame.withColumn("_t", key).drop("t")
    return frame


def _time_key(frame: Any, where: _Where) -> Any:
    """The ordering key column of ``t``: integers as they are, floats by value, dates/times by their
    microseconds, ISO-8601 text by microseconds since 1970 UTC (``timestamps._iso_micros``)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = frame.schema["t"].dataType
    if isinstance(dtype, T.TimestampType) or isinstance(dtype, T.TimestampNTZType):
        return F.unix_micros(F.col("t").cast("timestamp"))
    if isinstance(dtype, T.DateType):
        return F.unix_date("t").cast("bigint")
    if isinstance(dtype, T.IntegralType):
        return F.col("t").cast("bigint")
    if isinstance(dtype, (T.FloatType, T.DoubleType)):
        bad = _first(frame.filter(F.isnan("t") | F.col("t").isin(float("inf"), float("-inf"))), "t")
        if bad is not None:
            raise DataError(f"{where(bad)}: timestamp {bad['t']!r} is not a finite number")
        return F.col("t").cast("double")
    if not isinstance(dtype, T.StringType):
        raise DataError(f"{where.name}: a timestamp column must hold integers, floats, ISO-8601 text or "
                        f"dates/times, not {dtype.simpleString()}")
    text = F.regexp_replace("t", r"^\s+|\s+$", "")
    is_int = text.rlike(_INTEGER) & text.cast("bigint").isNotNull()
    as_float = text.cast("double")
    is_float = (text.rlike(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$") & as_float.isNotNull()
                & ~F.isnan(as_float) & ~as_float.isin(float("inf"), float("-inf")))
    is_iso = text.rlike(_ISO)
    zoned = F.regexp_extract(text, _ISO, 6) != ""
    kind = (F.when(is_int, "integer").when(is_float, "float").when(is_iso & ~zoned, "naive")
            .when(is_iso & zoned, "zoned").otherwise("bad"))
    kinds = frame.withColumn("_k", kind)
    group = F.when(F.col("_k").isin("integer", "float"), "number").otherwise(F.col("_k"))
    bad = _first(kinds.filter(F.col("_k") == "bad"), "t")
    if bad is not None:
        raise DataError(f"{where(bad)}: timestamp {bad['t']!r} is {_KINDS['bad']} such as 2024-03-01T10:00:00Z")
    first = _first(kinds, "t", "_k")
    first_group = "number" if first["_k"] in ("integer", "float") else first["_k"]
    other = _first(kinds.filter(group != first_group), "t", "_k")
    if other is not None:
        raise DataError(f"{where(other)}: timestamp {other['t']!r} is {_KINDS[other['_k']]}, but {where(first)} "
                        f"holds {_KINDS[first['_k']]} ({first['t']!r}); a timestamp column must hold one kind")
    if first_group == "number":
        if kinds.filter(F.col("_k") == "float").limit(1).count() == 0:
            return text.cast("bigint")
        return as_float
    key = _iso_micros(text)
    bad = _first(frame.filter(key.isNull()), "t")
    if bad is not None:
        raise DataError(f"{where(bad)}: timestamp {bad['t']!r} is not a valid date-time")
    return key


def _iso_micros(text: Any) -> Any:
    """``timestamps._iso_micros`` as a Spark expression: null where the date-time is not valid."""
    from pyspark.sql import functions as F

    def group(n: int) -> Any:
        return F.regexp_extract(text, _ISO, n)

    def number(n: int) -> Any:
        return F.when(group(n) == "", F.lit(0)).otherwise(group(n).cast("bigint"))

    days = F.unix_date(F.to_date(group(1), "yyyy-MM-dd")).cast("bigint")
    micros = F.rpad(group(5), 6, "0").cast("bigint")  # rpad cuts past six digits, as in-process
    zone = F.regexp_replace(F.when(group(6) == "", F.lit("Z")).otherwise(group(6)), ":", "")
    sign = F.when(zone.startswith("-"), F.lit(-1)).otherwise(F.lit(1))
    digits = F.rpad(F.substring(zone, 2, 10), 4, "0")
    zone_hours = F.coalesce(F.substring(digits, 1, 2).cast("bigint"), F.lit(0))
    zone_minutes = F.coalesce(F.substring(digits, 3, 2).cast("bigint"), F.lit(0))
    hour, minute, second = number(2), number(3), number(4)
    valid = (days.isNotNull() & (hour <= 23) & (minute <= 59) & (second <= 59) & (zone_hours <= 23)
             & (zone_minutes <= 59))
    seconds = hour * 3600 + minute * 60 + second
    offset = sign * (zone_hours * 3600 + zone_minutes * 60)
    return F.when(valid, days * 86_400_000_000 + (seconds - offset) * 1_000_000 + micros)


# --- dedupe, k-core, numbering, the final order -------------------------------------------------


def _prepare(spark: Any, frame: Any, min_user_count: int, min_item_count: int, dedupe: bool,
             staging: Path, say: Echo) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from pyspark.sql import functions as F

    order = (["_t"] if "_t" in frame.columns else []) + _ORDER
    frame = frame.select("u", "i", *order)
    if dedupe:
        # The first of each (user, item) pair in time order: the least (time, position).
        frame = frame.groupBy("u", "i").agg(F.min(F.struct(*order)).alias("_first")).select("u", "i", "_first.*")
        frame = _cached(frame)
        say(f"spark: dedupe kept {frame.count():,} interactions")
    frame = _kcore(frame, min_user_count, min_item_count, say)
    users = frame.groupBy("u").count().orderBy("u").toArrow()  # [U] ascending ids: the numbering
    items = frame.select("i").distinct().orderBy("i").toArrow()  # [N]
    user_ids, item_ids = _ids(users.column("u")), _ids(items.column("i"))
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)  # [U + 1]
    np.cumsum(users.column("count").to_numpy(), out=offsets[1:])
    say(f"spark: {len(user_ids):,} users, {len(item_ids):,} items, {int(offsets[-1]):,} interactions; sorting")
    codes = spark.createDataFrame(_code_table(items.column("i")))
    out = staging / f"items-{uuid.uuid4().hex}"
    (frame.join(F.broadcast(codes) if len(item_ids) <= 5_000_000 else codes, "i")
     .orderBy("u", *order).select("_code").write.parquet(str(out)))
    items_array = _read_items(out, int(offsets[-1]))
    return offsets, items_array, user_ids, item_ids


_HELD: list[Any] = []  # what this job persisted, unpersisted when it ends (a shared session lives on)


def _cached(frame: Any) -> Any:
    from pyspark import StorageLevel

    _HELD.append(frame)
    return frame.persist(StorageLevel.MEMORY_AND_DISK)


def _release() -> None:
    while _HELD:
        with contextlib.suppress(Exception):
            _HELD.pop().unpersist()


def _kcore(frame: Any, min_user_count: int, min_item_count: int, say: Echo) -> Any:
    """The iterated k-core filter of ``prepare.kcore_mask``, as rounds of Spark count-and-filter."""
    from pyspark.sql import functions as F

    if min_user_count <= 1 and min_item_count <= 1:
        return frame
    frame = _cached(frame)
    rows = frame.count()
    filters = (("user", "u", min_user_count, "--min-user-count"), ("item", "i", min_item_count, "--min-item-count"))
    rounds, changed = 0, True
    while changed:
        rounds += 1
        changed = False
        for kind, col, minimum, flag in filters:
            if minimum <= 1:
                continue
            small = frame.groupBy(col).count().filter(F.col("count") < minimum).select(col)
            kept = _cached(frame.join(small, col, "left_anti"))
            left = kept.count()
            if left < rows:
                frame.unpersist()
                frame, rows, changed = kept, left, True
                if rows == 0:
                    raise DataError(
                        f"the k-core filter removed every interaction: in round {rounds} the {kind} filter "
                        f"({flag} {minimum}) left nothing; lower --min-user-count / --min-item-count"
                    )
            else:
                kept.unpersist()
        say(f"spark: k-core round {rounds}: {rows:,} interactions left")
    return frame


def _ids(column: Any) -> np.ndarray:
    """Sorted distinct ids as the in-process engine stores them: int64, or fixed-width unicode."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int64)
    return column.to_numpy(zero_copy_only=False).astype(np.str_)


def _code_table(ids: Any) -> Any:
    import pyarrow as pa

    return pa.table({"i": ids, "_code": pa.array(np.arange(1, len(ids) + 1, dtype=np.int32))})


def _read_items(folder: Path, total: int) -> np.ndarray:
    """The item column Spark wrote in sorted order (part-00000, part-00001, ...), as one int32 array."""
    import pyarrow.parquet as pq

    items = np.empty(total, dtype=np.int32)  # [nnz]
    start = 0
    for part in sorted(p for p in folder.glob("part-*") if p.suffix == ".parquet" or ".parquet" in p.name):
        for batch in pq.ParquetFile(part).iter_batches(columns=["_code"], batch_size=1 << 22):
            values = batch.column(0).to_numpy()
            if start + len(values) > total:
                raise DataError("the Spark job wrote more interactions than it counted; run it again")
            items[start:start + len(values)] = values
            start += len(values)
    if start != total:
        raise DataError(f"the Spark job wrote {start:,} of {total:,} interactions; run it again")
    return items
