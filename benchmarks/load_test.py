"""Load test of `bamrec serve` on 127.0.0.1: requests/s and p50/p99 latency at 1 and 8 concurrent clients.

Starts `bamrec serve TARGET` in its own process on a free local port (or uses --url), waits for
/health, then for each concurrency level runs closed-loop clients (each sends its next request when
the previous answer arrives) until --requests requests were answered or --seconds passed, whichever
comes first. Requests are POST /recommend for users drawn uniformly (seeded) from the run's dataset,
with --k and --exclude-history; --items-share of them send the user's last 20 items as an ad-hoc
history instead. Every non-200 answer or transport failure counts as an error. The load average of
the machine is recorded before and after each level (other work on the machine shares the cores).

    python benchmarks/load_test.py runs/ml1m-export --requests 2000 --seconds 30 --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bodies(target: str, count: int, k: int, exclude_history: bool, items_share: float, seed: int) -> list[dict]:
    from bamrec.api import load_run_or_export

    run, _ = load_run_or_export(target)
    dataset = run.dataset()
    rng = np.random.default_rng(seed)
    users = rng.integers(1, dataset.num_users + 1, count)
    as_items = rng.random(count) < items_share
    bodies = []
    for user, items in zip(users.tolist(), as_items.tolist()):  # building the request list, not timed
        if items:
            rows = dataset.sequence(user)[-20:]
            bodies.append({"items": [run.item_ids[r] for r in rows.tolist()], "k": k,
                           "exclude_history": exclude_history})
        else:
            bodies.append({"user": dataset.user_ids[user - 1].item(), "k": k, "exclude_history": exclude_history})
    return bodies


async def _level(url: str, bodies: list[dict], concurrency: int, max_requests: int, max_seconds: float
                 ) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = {"count": 0, "examples": []}
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def client(worker: int) -> None:
        nonlocal issued
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while issued < max_requests and time.perf_counter() < deadline:
                body = bodies[issued % len(bodies)]
                issued += 1
                start = time.perf_counter()
                try:
                    answer = await http.post("/recommend", json=body)
                    ok = answer.status_code == 200
                    detail = f"{answer.status_code} {answer.text[:120]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, f"{type(exc).__name__}: {exc}"
                latencies.append(time.perf_counter() - start)
                if not ok:
                    errors["count"] += 1
                    if len(errors["examples"]) < 3:
                        errors["examples"].append(detail)

    load_before = os.getloadavg()
    start = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency, "requests": len(latencies), "errors": errors["count"],
        "error_examples": errors["examples"], "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def _wait_for(url: str, process: subprocess.Popen | None, timeout: float = 120) -> dict:
    import httpx

    deadline = time.time() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"bamrec serve exited: {process.stderr.read().decode()[-2000:]}")
        try:
            return httpx.get(url + "/health", timeout=2).json()
        except httpx.HTTPError:
            if time.time() > deadline:
                raise SystemExit("bamrec serve did not answer /health in time") from None
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="run or export directory (also used to draw request users)")
    parser.add_argument("--url", help="an already running service; default: start bamrec serve TARGET")
    parser.add_argument("--retrieval", help="passed to bamrec serve")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client counts (default 1,8)")
    parser.add_argument("--requests", type=int, default=2000, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=30.0, help="at most this long per level")
    parser.add_argument("--warmup", type=int, default=50, help="requests sent before measuring")
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--exclude-history", action="store_true")
    parser.add_argument("--items-share", type=float, default=0.2, help="share of ad-hoc history requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    bodies = _bodies(args.target, 5000, args.k, args.exclude_history, args.items_share, args.seed)
    process = None
    url = args.url
    if url is None:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "bamrec.cli", "serve", args.target, "--port", str(port)]
        if args.retrieval:
            command += ["--retrieval", args.retrieval]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.server_threads),
               "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        health = _wait_for(url, process)
        asyncio.run(_level(url, bodies, 1, args.warmup, 60))
        levels = [asyncio.run(_level(url, bodies, int(c), args.requests, args.seconds))
                  for c in args.concurrency.split(",")]
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    result = {"target": args.target, "service": health, "k": args.k, "exclude_history": args.exclude_history,
              "items_share": args.items_share, "server_threads": args.server_threads, "cpus": os.cpu_count(),
              "levels": levels}
    print("| clients | requests | errors | req/s | p50 ms | p99 ms | load avg (1 min) before -> after |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for level in levels:
        print(f"| {level['concurrency']} | {level['requests']} | {level['errors']} | {level['requests_per_s']} | "
              f"{level['p50_ms']} | {level['p99_ms']} | {level['load_before'][0]} -> {level['load_after'][0]} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if any(level["errors"] for level in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
