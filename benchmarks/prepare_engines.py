"""Both engines of `bamrec data prepare` side by side: wall time and peak memory of the whole process
tree (the Python process and, for --engine spark, its JVM), on the synthetic Parquet part logs of
benchmarks/prepare_scale.py.

Each run is ``bamrec data prepare DIR --engine E ...`` in a fresh process; a sampler sums the
resident memory (/proc/PID/status VmRSS) of that process and all its descendants every 0.2 s and
keeps the largest sum. The two engines' datasets are compared array for array after each size.
Example::

    nice -n 10 python benchmarks/prepare_engines.py --rows 10000000 --dir /tmp/bamrec-parts \\
        --spark-driver-memory 6g --out bench-results/prepare_engines.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proc import tree_rss_bytes  # noqa: E402
from prepare_scale import generate  # noqa: E402  (the same generator, cached part directories)


def run(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; its wall time, the peak RSS of its process tree, its exit code and stderr tail."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    return {"seconds": seconds, "peak_tree_rss_gb": peak[0] / 1e9, "rc": proc.returncode,
            "stderr_tail": err.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000000", help="comma-separated sizes")
    parser.add_argument("--dir", default="/tmp/bamrec-parts", help="where the part directories are cached")
    parser.add_argument("--engines", default="local,spark")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--spark-driver-memory", default="4g")
    parser.add_argument("--spark-local-dir", default=None, help="default: a temporary folder")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "2"}
    results = []
    for rows in [int(float(r)) for r in args.rows.split(",")]:
        root = generate(Path(args.dir) / f"rows-{rows}", rows)
        with tempfile.TemporaryDirectory(prefix="bamrec-engines-") as tmp:
            datasets = {}
            for engine in args.engines.split(","):
                out = Path(tmp) / engine
                command = [sys.executable, "-m", "bamrec.cli", "data", "prepare", str(root), "--user-col", "user_id",
                           "--item-col", "item_id", "--time-col", "ts", "--out", str(out), "--engine", engine]
                if engine == "spark":
                    command += ["--spark-master", args.spark_master, "--spark-driver-memory", args.spark_driver_memory,
                                "--spark-local-dir", args.spark_local_dir or str(Path(tmp) / "spill")]
                row = {"rows": rows, "engine": engine, **run(command, env), "load_avg": os.getloadavg()[0]}
                print(json.dumps(row), flush=True)
                results.append(row)
                if row["rc"] == 0:
                    datasets[engine] = out
            if len(datasets) == 2:
                from bamrec.data.sequences import SequenceDataset

                a, b = (SequenceDataset.load(path) for path in datasets.values())
                same = all(np.array_equal(getattr(a, n), getattr(b, n))
                           for n in ("offsets", "items", "user_ids", "item_ids"))
                print(json.dumps({"rows": rows, "identical": same}), flush=True)
                results.append({"rows": rows, "identical": same})
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
