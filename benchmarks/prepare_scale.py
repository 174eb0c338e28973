"""Peak memory and time of `bamrec data prepare` on a directory of Parquet part files, at scale.

For each size it writes (once, cached under --dir) a Spark-style directory of part files holding a
synthetic log: users with power-law activity, a power-law item catalogue, integer timestamps, and
a float column prepare never reads. Then, each in a fresh process so that its peak RSS is its own,
and interleaved A/B/A/B over --repeats:

- ``prepare``: ``bamrec.data.prepare.prepare_dataset`` on the directory (read, order, number, save);
- ``bound``: the in-process bound, a bare polars streaming scan of the same three columns of the
  same files, sorted by (user, time) with a stable sort, collected: the least any preparation of
  these files must do;
- ``scan`` (with ``--modes``): the scan of the three columns alone, no sort: the floor of reading.

It reports the median wall time, CPU time (all threads) and peak RSS of each, and their ratios. On a
busy machine wall time stretches with the load; CPU time much less. Example::

    python benchmarks/prepare_scale.py --rows 10000000,30000000,100000000 --dir /tmp/bamrec-parts \\
        --out bench-results/prepare_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS_PER_PART = 5_000_000


def generate(root: Path, rows: int, seed: int = 0) -> Path:
    """A Spark-style part directory of ``rows`` interactions (cached: reused when complete)."""
    import polars as pl

    if (root / "_SUCCESS").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    num_users = max(rows // 100, 10)
    num_items = max(min(rows // 50, 2_000_000), 10)
    written = 0
    for part in range(0, -(-rows // ROWS_PER_PART)):
        n = min(ROWS_PER_PART, rows - written)
        # Zipf-like activity: a few users and items account for most interactions.
        users = (rng.pareto(1.2, n) * num_users / 20).astype(np.int64) % num_users + 1
        items = (rng.pareto(1.0, n) * num_items / 50).astype(np.int64) % num_items + 1
        frame = pl.DataFrame({
            "user_id": users * 7919,  # sparse ids, as a cluster's id columns are
            "item_id": items * 104729,
            "ts": rng.integers(1_600_000_000, 1_700_000_000, n),
            "rating": rng.random(n, dtype=np.float32),
        })
        frame.write_parquet(root / f"part-{part:05d}-0b7c.c000.snappy.parquet", compression="snappy")
        written += n
    (root / "_SUCCESS").write_bytes(b"")
    return root


def child(mode: str, root: str, out: str) -> dict:
    """Run one measurement in this process and return its figures."""
    start, start_cpu = time.perf_counter(), time.process_time()
    if mode == "prepare":
        from bamrec.data.prepare import prepare_dataset

        dataset = prepare_dataset(root, out, user_col="user_id", item_col="item_id", time_col="ts",
                                  overwrite=True, progress=False)
        rows, extra = dataset.num_interactions, {"users": dataset.num_users, "items": dataset.num_items}
    else:
        import polars as pl

        files = sorted(str(p) for p in Path(root).glob("part-*.parquet"))
        scan = pl.scan_parquet(files).select("user_id", "item_id", "ts")
        if mode == "bound":
            scan = scan.sort(["user_id", "ts"], maintain_order=True)
        frame = scan.collect(engine="streaming")
        rows, extra = frame.height, {}
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return {"mode": mode, "rows": rows, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_gb": peak, **extra}


def measure(mode: str, root: Path, threads: int) -> dict:
    env = {**os.environ, "POLARS_MAX_THREADS": str(threads), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="bamrec-prep-") as out:
        proc = subprocess.run([sys.executable, __file__, "--child", mode, str(root), str(Path(out) / "ds")],
                              capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed on {root}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--dir", default="/tmp/bamrec-parts", help="where the part directories are cached")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="POLARS_MAX_THREADS of the measured processes")
    parser.add_argument("--modes", default="prepare,bound", help="which measurements, interleaved in this order")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "ROOT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    results = []
    for rows in [int(float(r)) for r in args.rows.split(",")]:
        root = generate(Path(args.dir) / f"rows-{rows}", rows)
        size = sum(p.stat().st_size for p in root.glob("part-*"))
        modes = args.modes.split(",")
        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode in modes:
                runs[mode].append(measure(mode, root, args.threads))
                print(json.dumps(runs[mode][-1]), flush=True)
        row = {"rows": rows, "parts": len(list(root.glob("part-*"))), "bytes": size,
               "load_avg": os.getloadavg()[0]}
        for mode, got in runs.items():
            row[f"{mode}_seconds"] = statistics.median(r["seconds"] for r in got)
            row[f"{mode}_peak_rss_gb"] = statistics.median(r["peak_rss_gb"] for r in got)
            row[f"{mode}_cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in got)
        if "prepare" in runs:
            row["bytes_per_row_peak"] = row["prepare_peak_rss_gb"] * 1e9 / rows
            for mode in runs:
                if mode != "prepare":
                    row[f"time_ratio_{mode}"] = row["prepare_seconds"] / row[f"{mode}_seconds"]
                    row[f"memory_ratio_{mode}"] = row["prepare_peak_rss_gb"] / row[f"{mode}_peak_rss_gb"]
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"results": results}, indent=2) + "\n")
    header = [f"{mode} {what}" for mode in modes for what in ("s", "peak GB")]
    print("| rows | parts | " + " | ".join(header) + " |")
    print("|---|---|" + "---|" * len(header))
    for r in results:
        cells = [f"{r[f'{mode}_seconds']:.1f} | {r[f'{mode}_peak_rss_gb']:.2f}" for mode in modes]
        print(f"| {r['rows']:,} | {r['parts']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
