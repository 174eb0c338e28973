"""Resident memory per rank of a `torchrun` job on one machine: do the ranks share one copy of a big
prepared dataset?

``SequenceDataset.load`` opens the arrays memory-mapped (copy-on-write, never written), so W ranks on
one node map the same page-cache pages instead of reading W private copies. This runs
``torchrun --standalone --nproc_per_node R -m bamrec.cli train`` on a prepared dataset and samples,
every 0.5 s while the ranks train, each rank's ``/proc/PID/smaps_rollup`` (RSS, PSS, shared and private
pages) and the part of its RSS that is the dataset's ``.npy`` files (``/proc/PID/smaps``). PSS counts a
page shared by n processes as 1/n of a page in each, so the ranks' PSS add up to what the job really
holds. The job is stopped when rank 0 logs the last training check (the final test evaluation over all
users is not part of training). Example::

    python benchmarks/rank_memory.py --data /work/bench/prepared-100m --ranks 2 --iters 100 \\
        --out bench-results/rank_memory.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proc import descendants  # noqa: E402


def _ranks(launcher: int) -> list[int]:
    """The training processes under the torchrun launcher: descendants whose command line runs bamrec."""
    ranks = []
    for pid in descendants(launcher):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bamrec.cli" in cmdline:
            ranks.append(pid)
    return sorted(ranks)


def _rollup(pid: int, dataset: Path) -> dict[str, float]:
    """Bytes of RSS, PSS, shared and private pages of ``pid``, and the dataset files' RSS and PSS."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) * 1024
    data_rss = data_pss = 0
    in_dataset = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line: its path is the last field
            in_dataset = len(head) >= 6 and head[-1].startswith(str(dataset)) and head[-1].endswith(".npy")
        elif in_dataset and head[0] == "Rss:":
            data_rss += int(head[1]) * 1024
        elif in_dataset and head[0] == "Pss:":
            data_pss += int(head[1]) * 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "shared": fields["Shared_Clean"] + fields["Shared_Dirty"],
            "private": fields["Private_Clean"] + fields["Private_Dirty"],
            "dataset_rss": data_rss, "dataset_pss": data_pss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a prepared dataset (bamrec data prepare)")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--valid-users", type=int, default=200)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    dataset = Path(args.data).resolve()
    npy_bytes = sum(path.stat().st_size for path in dataset.glob("*.npy"))
    with tempfile.TemporaryDirectory(prefix="bamrec-ranks-") as tmp:
        command = ["torchrun", "--standalone", "--nproc_per_node", str(args.ranks), "-m", "bamrec.cli", "train",
                   "--data", str(dataset), "--out", str(Path(tmp) / "run"), "--device", "cpu", "--threads", "1",
                   "--max-iters", str(args.iters), "--eval-every", str(args.iters), "--valid-users",
                   str(args.valid_users), "--batch-size", str(args.batch_size), "--no-progress"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        peaks: dict[int, dict[str, float]] = {}
        job_pss = [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set() and proc.poll() is None:
                total = 0.0
                for rank, pid in enumerate(_ranks(proc.pid)):
                    try:
                        now = _rollup(pid, dataset)
                    except (OSError, KeyError):
                        continue
                    peak = peaks.setdefault(rank, {})
                    for key, value in now.items():
                        peak[key] = max(peak.get(key, 0), value)
                    total += now["pss"]
                job_pss[0] = max(job_pss[0], total)
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        log: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line.rstrip())
            print(line, end="", flush=True)
            if f"iter {args.iters}:" in line:  # the last training check: training is over
                break
        done.set()
        sampler.join()
        seconds = time.perf_counter() - start
        with contextlib.suppress(ProcessLookupError):  # still testing (the normal case), or gone if it failed early
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    gb = 1e9
    result = {
        "data": str(dataset), "dataset_npy_gb": npy_bytes / gb, "ranks": args.ranks, "iters": args.iters,
        "batch_size": args.batch_size, "seconds_to_last_check": seconds, "load_avg": os.getloadavg()[0],
        "per_rank_peak_gb": {rank: {k: v / gb for k, v in peak.items()} for rank, peak in sorted(peaks.items())},
        "job_peak_pss_gb": job_pss[0] / gb, "trained": any(f"iter {args.iters}:" in line for line in log),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if not result["trained"]:
        sys.exit("the job ended before its last training check; its log is above")


if __name__ == "__main__":
    main()
