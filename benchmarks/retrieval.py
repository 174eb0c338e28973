"""faiss retrieval against the exact top-k: recall@k, build time and query throughput.

Two catalogues:

- ``--run RUN``: a trained or imported run (e.g. the released BaM_p checkpoint on ML-1M). Every
  user's interests (last seq_len items) query the catalogue with the user's history excluded; the
  exact top-k (``topk_items``) is the reference. Also reports the test-split recall@k of
  ``bamrec evaluate --retrieval`` for each index.
- ``--synthetic-items N``: N item vectors of dimension --dim around --clusters Gaussian centres
  (unit-norm centres, noise sd --noise), and --queries users of --interests interests drawn the same
  way; no exclusions.

For each index (flat, HNSW, IVF and the search-time settings in --hnsw-ef / --ivf-nprobe) it reports
the build time, the time to answer all users in batches of --batch users, users/s, and the mean
overlap of the returned top-k with the exact top-k ("recall@k vs exact"). Threads: faiss and torch
use OMP_NUM_THREADS (set it; the figures in docs/serving.md use 1).

    python benchmarks/retrieval.py --run runs/ref-bam-p --out /tmp/retrieval-ml1m.json
    python benchmarks/retrieval.py --synthetic-items 200000 --queries 2000 --out /tmp/retrieval-synth.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bamrec.retrieval.index import ItemIndex, build_index, overlap_recall  # noqa: E402
from bamrec.retrieval.recommend import topk_items  # noqa: E402


def _run_queries(path: str) -> tuple[Any, torch.Tensor, torch.Tensor, list]:
    from bamrec.api import load_run
    from bamrec.data.split import gather_windows
    from bamrec.data.csr import history_csr

    run = load_run(path)
    dataset = run.dataset()
    items = torch.from_numpy(dataset.items)
    starts, ends = torch.from_numpy(dataset.offsets[:-1]), torch.from_numpy(dataset.offsets[1:])
    parts = []
    with torch.inference_mode():
        for lo in range(0, dataset.num_users, 512):
            history, mask = gather_windows(items, starts[lo:lo + 512], ends[lo:lo + 512], run.config.model.seq_len)
            parts.append(run.model(history, mask).float())
        table = run.model.item_embeddings().detach().float()
    exclusion = [history_csr(items, starts[lo:lo + 512], ends[lo:lo + 512]) for lo in range(0, dataset.num_users, 512)]
    return run, table, torch.cat(parts), exclusion


def _synthetic(num_items: int, dim: int, clusters: int, noise: float, queries: int, interests: int, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    table = centres[rng.integers(0, clusters, num_items + 1)] + noise * rng.normal(size=(num_items + 1, dim))
    users = centres[rng.integers(0, clusters, (queries, interests))] + noise * rng.normal(size=(queries, interests, dim))
    return torch.from_numpy(table.astype(np.float32)), torch.from_numpy(users.astype(np.float32))


def _chunks(total: int, batch: int):
    return [(lo, min(lo + batch, total)) for lo in range(0, total, batch)]


def _search_all(search, queries: torch.Tensor, k: int, exclusion: list | None, batch: int) -> tuple[np.ndarray, float]:
    rows, start = [], time.perf_counter()
    for i, (lo, hi) in enumerate(_chunks(len(queries), batch)):
        rows.append(search(queries[lo:hi], k, exclusion[i] if exclusion else None))
    return np.concatenate(rows), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="run directory")
    parser.add_argument("--synthetic-items", type=int, help="synthetic catalogue size")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--interests", type=int, default=4)
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--batch", type=int, default=512, help="users per search call")
    parser.add_argument("--hnsw-ef", default="64,128,256", help="HNSW ef_search values to measure")
    parser.add_argument("--ivf-nprobe", default="8,16,64", help="IVF nprobe values to measure")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write JSON results here")
    args = parser.parse_args()
    if (args.run is None) == (args.synthetic_items is None):
        parser.error("give --run RUN or --synthetic-items N")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    run, exclusion = None, None
    if args.run:
        run, table, queries, exclusion = _run_queries(args.run)
        args.batch = 512  # the exclusion lists are prepared per 512 users
        catalogue = {"run": args.run, "items": table.shape[0] - 1, "users": len(queries), "dim": table.shape[1],
                     "interests": queries.shape[1], "exclude_history": True}
    else:
        table, queries = _synthetic(args.synthetic_items, args.dim, args.clusters, args.noise, args.queries,
                                    args.interests, args.seed)
        catalogue = {"synthetic_items": args.synthetic_items, "users": args.queries, "dim": args.dim,
                     "interests": args.interests, "clusters": args.clusters, "noise": args.noise,
                     "exclude_history": False}
    print(json.dumps(catalogue), flush=True)

    def exact(q, k, excl):
        return topk_items(q, table, k, exclude=excl)[0].numpy()

    reference, exact_seconds = _search_all(exact, queries, args.k, exclusion, args.batch)
    results = [{"index": "exact", "setting": "", "build_s": 0.0, "query_s": round(exact_seconds, 3),
                "users_per_s": round(len(queries) / exact_seconds, 1), f"recall@{args.k}_vs_exact": 1.0}]
    print(results[-1], flush=True)

    def measure(index: ItemIndex, name: str, setting: str) -> None:
        found, seconds = _search_all(lambda q, k, e: index.search(q, k, e)[0], queries, args.k, exclusion, args.batch)
        entry = {"index": name, "setting": setting, "build_s": round(index.build_seconds, 2),
                 "query_s": round(seconds, 3), "users_per_s": round(len(queries) / seconds, 1),
                 f"recall@{args.k}_vs_exact": round(overlap_recall(found, reference), 4)}
        if run is not None:
            metrics = run.evaluate(cutoffs=(args.k,), retrieval=name, index=index)
            entry[f"test_recall@{args.k}"] = round(metrics[f"recall@{args.k}"], 4)
        results.append(entry)
        print(entry, flush=True)

    measure(build_index(table, "flat"), "flat", "")
    hnsw = build_index(table, "hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
    for ef in (int(x) for x in args.hnsw_ef.split(",")):
        variant = ItemIndex(hnsw.cpu_index, dataclasses.replace(hnsw.params, ef_search=ef), hnsw.vectors,
                            hnsw.build_seconds)
        measure(variant, "hnsw", f"M={args.hnsw_m}, efC={args.ef_construction}, ef_search={ef}")
    ivf = build_index(table, "ivf")
    for nprobe in (int(x) for x in args.ivf_nprobe.split(",")):
        variant = ItemIndex(ivf.cpu_index, dataclasses.replace(ivf.params, nprobe=nprobe), ivf.vectors,
                            ivf.build_seconds)
        measure(variant, "ivf", f"nlist={ivf.cpu_index.nlist}, nprobe={nprobe}")
    if run is not None:
        exact_metrics = run.evaluate(cutoffs=(args.k,))
        results[0][f"test_recall@{args.k}"] = round(exact_metrics[f"recall@{args.k}"], 4)

    print(f"\n| index | setting | build s | query s | users/s | recall@{args.k} vs exact |"
          + (f" test recall@{args.k} |" if run is not None else ""))
    print("|---|---|---:|---:|---:|---:|" + ("---:|" if run is not None else ""))
    for r in results:
        line = (f"| {r['index']} | {r['setting']} | {r['build_s']} | {r['query_s']} | {r['users_per_s']} | "
                f"{r[f'recall@{args.k}_vs_exact']} |")
        if run is not None:
            line += f" {r[f'test_recall@{args.k}']} |"
        print(line)
    output = {"catalogue": catalogue, "k": args.k, "threads": torch.get_num_threads(), "batch": args.batch,
              "load_avg": os.getloadavg(), "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(output, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
