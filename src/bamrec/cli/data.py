"""`bamrec data`: prepare datasets from raw logs, show their statistics, export them.

Sub-commands only parse arguments and call ``bamrec.data.prepare``; see ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json

from bamrec.cli import NONNEGATIVE_INT

_PREPARE_EPILOG = """\
registered datasets: ml-1m, ml-100k, amazon2023 (needs --category, e.g. Video_Games)
formats: uid-iid, sequence, csv, tsv, parquet, jsonl, movielens-dat, movielens-udata

examples:
  bamrec data prepare ml-1m --out prepared/ml1m                  # download (cached), verify, prepare
  bamrec data prepare ml-1m --from ~/data/ml-1m.zip --out prepared/ml1m
  bamrec data prepare amazon2023 --category Video_Games --min-user-count 5 --out prepared/games
  bamrec data prepare Beauty.txt --format sequence --out prepared/beauty
  bamrec data prepare log.csv --user-col uid --item-col iid --time-col ts --out prepared/log
  bamrec data prepare log.csv --user-col uid --item-col iid --items items.csv --out prepared/log  # + titles
  bamrec data prepare events/ --user-col uid --item-col iid --time-col ts --engine spark \\
      --spark-master 'local[*]' --spark-driver-memory 16g --spark-local-dir /big/disk --out prepared/events
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group (prepare, stats, export, and synthetic when present)."""
    parser = subparsers.add_parser(
        "data",
        help="prepare, inspect and export datasets",
        description="Prepare datasets from raw interaction logs, show their statistics, export them.",
    )
    data_subparsers = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data_subparsers.required = True
    _add_prepare(data_subparsers)
    _add_stats(data_subparsers)
    _add_export(data_subparsers)
    # `data synthetic` is another module's: add it when it is installed. import_module, unlike
    # `from bamrec.cli import data_synthetic`, reports a missing module as ModuleNotFoundError.
    try:
        data_synthetic = importlib.import_module("bamrec.cli.data_synthetic")
    except ModuleNotFoundError as exc:
        if exc.name != "bamrec.cli.data_synthetic":
            raise
    else:
        data_synthetic.register(data_subparsers)


def _add_prepare(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "prepare",
        help="read a registered dataset or a raw file and write a prepared dataset",
        description="Read a registered dataset (downloaded into the cache, or from --from) or a raw\n"
        "interaction file; sort each user's interactions by time (stable), number users and items\n"
        "from 1 in ascending order of their ids, optionally deduplicate and k-core filter, and\n"
        "write a prepared dataset to --out. See docs/data.md.",
        epilog=_PREPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE", help="a registered dataset name or a file path")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--from", dest="from_path", metavar="PATH",
                        help="read a registered dataset from this folder, zip archive or file instead of downloading")
    parser.add_argument("--format", dest="fmt", metavar="FMT",
                        help="raw file format (default: from the file name); for amazon2023: csv (5-core, "
                        "default) or jsonl (raw reviews)")
    parser.add_argument("--category", metavar="NAME", help="amazon2023 category, e.g. Movies_and_TV")
    parser.add_argument("--id-type", choices=("str", "int"), default=None,
                        help="how ids compare: str (the default: exactly as written, '007' and '7' "
                        "are two items, '10' sorts before '9') or int (parsed as integers, numeric order; "
                        "the default of the MovieLens formats, hence of ml-1m and ml-100k)")
    parser.add_argument("--delimiter", metavar="CHAR",
                        help="field separator of a csv/tsv file, e.g. ';' (default: ',' for csv, tab for tsv)")
    parser.add_argument("--min-user-count", type=NONNEGATIVE_INT, default=0, metavar="N",
                        help="k-core: drop users with fewer than N interactions (iterated with --min-item-count)")
    parser.add_argument("--min-item-count", type=NONNEGATIVE_INT, default=0, metavar="N",
                        help="k-core: drop items with fewer than N interactions")
    parser.add_argument("--dedupe", action="store_true",
                        help="keep only the first (in time order) of repeated user-item pairs")
    parser.add_argument("--user-col", metavar="NAME", help="user id column (csv, tsv, parquet, jsonl)")
    parser.add_argument("--item-col", metavar="NAME", help="item id column (csv, tsv, parquet, jsonl)")
    parser.add_argument("--time-col", metavar="NAME",
                        help="timestamp column (integers, floats, ISO-8601 text or Parquet dates/times, one kind); "
                             "without it the file order is the time order")
    parser.add_argument("--items", metavar="FILE",
                        help="item metadata (csv, tsv, parquet, jsonl): an item id column and any others (title, "
                        "category, url, image); a 'title' column is shown next to ids. The ml-1m / ml-100k "
                        "presets read movies.dat / u.item from beside the ratings without it")
    parser.add_argument("--items-id-col", metavar="NAME",
                        help="the item id column of --items (default: the first of item, item_id, itemId, id)")
    parser.add_argument("--mirror", metavar="URL",
                        help="download from this base URL instead of the publisher's (or set BAMREC_MIRROR)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no download progress bar")
    spark = parser.add_argument_group("engine", "where the preparation runs (docs/scale.md)")
    spark.add_argument("--engine", choices=("local", "spark"), default="local",
                       help="local: in this process, in memory (the default); spark: as Spark jobs, for logs "
                       "larger than memory or on a cluster (needs the spark extra and Java 17+); same dataset")
    spark.add_argument("--spark-master", default="local[*]", metavar="URL",
                       help="Spark master: local[*] (every core here, the default), local[N], spark://host:7077, yarn")
    spark.add_argument("--spark-driver-memory", metavar="SIZE",
                       help="spark.driver.memory, e.g. 8g (in local mode the memory of the whole job)")
    spark.add_argument("--spark-executor-memory", metavar="SIZE", help="spark.executor.memory, e.g. 16g (clusters)")
    spark.add_argument("--spark-shuffle-partitions", type=NONNEGATIVE_INT, metavar="N",
                       help="spark.sql.shuffle.partitions (default: Spark's, 200)")
    spark.add_argument("--spark-local-dir", metavar="DIR",
                       help="spark.local.dir: where Spark spills and shuffles (a large local disk); "
                       "Spark's log file goes there too")
    spark.add_argument("--spark-conf", action="append", metavar="KEY=VALUE",
                       help="any other Spark setting, e.g. spark.sql.files.maxPartitionBytes=512m (repeatable)")
    parser.set_defaults(handler=run_prepare)


def _add_stats(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser("stats", help="statistics of a prepared dataset",
                                        description="Users, items, interactions, density and sequence lengths.")
    parser.add_argument("path", metavar="DIR", help="prepared dataset directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(handler=run_stats)


def _add_export(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "export", help="write a prepared dataset in the original BaM text format",
        description="Write `user item` lines (internal ids, or with --ids original the raw ids): users ascending, each user's items in time "
        "order (the format of the original BaM code).",
    )
    parser.add_argument("path", metavar="DIR", help="prepared dataset directory")
    parser.add_argument("--format", dest="fmt", choices=("uid-iid",), default="uid-iid",
                        help="output format (default: uid-iid)")
    parser.add_argument("--ids", choices=("internal", "original"), default="internal",
                        help="internal: 1-based internal ids, the BaM code's input (default); original: the "
                        "ids as the raw file wrote them (preparing the export again gives the same dataset)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.set_defaults(handler=run_export)


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare, print where it went and what it holds; warnings go to stderr."""
    from bamrec.data.prepare import prepare_dataset, stderr_echo

    spark = None
    if args.engine == "spark":
        from bamrec.data.spark import SparkSettings, parse_conf

        spark = SparkSettings(master=args.spark_master, driver_memory=args.spark_driver_memory,
                              executor_memory=args.spark_executor_memory,
                              shuffle_partitions=args.spark_shuffle_partitions or None,
                              local_dir=args.spark_local_dir, conf=parse_conf(args.spark_conf))
    elif any(getattr(args, name) is not None for name in ("spark_driver_memory", "spark_executor_memory",
                                                          "spark_shuffle_partitions", "spark_local_dir",
                                                          "spark_conf")) or args.spark_master != "local[*]":
        from bamrec.errors import ConfigError

        raise ConfigError("the --spark-* options apply to --engine spark only")
    dataset = prepare_dataset(
        args.source, args.out, from_path=args.from_path, fmt=args.fmt, category=args.category,
        min_user_count=args.min_user_count, min_item_count=args.min_item_count, dedupe=args.dedupe,
        user_col=args.user_col, item_col=args.item_col, time_col=args.time_col, overwrite=args.overwrite,
        progress=args.progress, mirror=args.mirror, echo=stderr_echo, id_type=args.id_type,
        delimiter=args.delimiter, items=args.items, items_id_col=args.items_id_col,
        engine=args.engine, spark=spark,
    )
    stats = dataset.stats()
    print(f"wrote {args.out}: {stats['users']:,} users, {stats['items']:,} items, "
          f"{stats['interactions']:,} interactions")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """Print the statistics as a table, or as one JSON object."""
    from bamrec.data.sequences import SequenceDataset

    from bamrec.data.metadata import describe

    dataset = SequenceDataset.load(args.path)
    stats = dataset.stats()
    if args.json:
        print(json.dumps(stats))
        return 0
    print(format_stats(stats))
    line = describe(dataset.manifest.get("item_metadata"))
    if line:
        print(f"metadata  {line}")
    return 0


def format_stats(stats: dict) -> str:
    """A two-column text table of ``SequenceDataset.stats()``."""
    rows = [
        ("users", f"{stats['users']:,}"),
        ("items", f"{stats['items']:,}"),
        ("interactions", f"{stats['interactions']:,}"),
        ("density", f"{stats['density']:.6f}"),
        ("length min", f"{stats['min']:,}"),
        ("length median", f"{stats['median']:g}"),
        ("length mean", f"{stats['mean']:.2f}"),
        ("length max", f"{stats['max']:,}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>12}" for name, value in rows)


def run_export(args: argparse.Namespace) -> int:
    """Export and print where it went."""
    from bamrec.data.prepare import export_uid_iid
    from bamrec.data.sequences import SequenceDataset

    dataset = SequenceDataset.load(args.path)
    path = export_uid_iid(dataset, args.out, overwrite=args.overwrite, ids=args.ids)
    print(f"wrote {path}: {dataset.num_interactions:,} lines ({args.fmt}, {args.ids} ids)")
    return 0
