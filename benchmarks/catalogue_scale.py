"""Catalogue scale: 1M items, 100k users. Training step time and peak memory per loss, exact evaluation
throughput and memory, faiss HNSW / IVF throughput and recall@20 against exact.

Every measurement runs in a fresh process, so that its peak RSS is its own, on one thread. Times
are CPU seconds of that process (``time.process_time``), not wall time: the development machine
runs other work on its two cores, which stretches wall time several-fold but not CPU time. The dataset is the
planted-interest generator's (``bamrec.data.synthetic``: 1,000 topics of 1,000 items, sequences of
20-50 items), written once under --data. Model: ComiRec-SA, K = 4, D = 64, L = 50, batch 128
(the defaults), S = 1280 negatives.

- ``train``: timed training steps (forward, backward, Adam) of each loss. The full softmax over 1M
  items runs chunked (``training.losses.chunked_full_softmax_loss``); ``full-plain`` forces the
  materialised ``[B, K, N]`` scores at a smaller batch for comparison: its memory grows with
  batch x catalogue, the chunked path's does not.
- ``eval``: ``evaluation.ranking.evaluate`` (exact, standard protocol) on --eval-users users, against
  the in-process bound: the same item-chunked score products and max over interests with nothing
  else (no exclusion, no rank counting, no model forward).
- ``retrieval``: top-20 of ``max_k m_k . e_i`` for --query-users users, exact (torch) against faiss
  flat, HNSW and IVF. A model trained for the few hundred steps this machine allows would still
  have near-random vectors at this size, so the vectors are planted instead: item i's vector is
  its topic's centroid plus noise, a user's K interests are the centroids of its planted topics
  plus noise (``planted_vectors``). Build time, queries/s and recall@20 against exact.

Example (about 30-60 minutes on 2 busy cores)::

    python benchmarks/catalogue_scale.py --data /tmp/bamrec-cat-1m --out bench-results/catalogue_scale.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

TRAIN_CASES = {
    # name: (TrainConfig overrides, batch size, force the plain full softmax)
    "sampled-shared": (dict(loss="sampled", negatives="shared"), 128, False),
    "sampled-shared+multi": (dict(loss="sampled", negatives="shared", multi_loss=True), 128, False),
    "sampled-per-example+multi": (dict(loss="sampled", negatives="per-example", multi_loss=True), 128, False),
    "full-chunked": (dict(loss="full"), 128, False),
    "full-chunked+multi": (dict(loss="full", multi_loss=True), 128, False),
    "full-chunked+multi-b32": (dict(loss="full", multi_loss=True), 32, False),
    "full-plain+multi-b32": (dict(loss="full", multi_loss=True), 32, True),
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def ensure_data(path: Path, users: int, items: int) -> Path:
    from bamrec.data.synthetic import SyntheticConfig, write_synthetic

    if not (path / "manifest.json").exists():
        write_synthetic(path, SyntheticConfig(users=users, items=items, topics=items // 1000, min_len=20,
                                              max_len=50, seed=1), overwrite=True)
    return path


def build(data: Path, overrides: dict, batch: int):
    from bamrec.config import ModelConfig, TrainConfig
    from bamrec.data.sampling import TrainSampler
    from bamrec.data.sequences import SequenceDataset
    from bamrec.data.split import LeaveOneOut
    from bamrec.models import build_backbone
    from bamrec.training import Objective

    dataset = SequenceDataset.load(data)
    backbone = build_backbone(ModelConfig(model="comirec-sa"), dataset.num_items, seed=0)
    config = TrainConfig(batch_size=batch, **overrides)
    objective = Objective(backbone, config, dataset.num_items)
    sampler = TrainSampler(LeaveOneOut(dataset), 50, batch, seed=0)
    return dataset, objective, sampler


def run_train(data: Path, case: str, steps: int) -> dict:
    from bamrec.training import objective as objective_module

    overrides, batch, plain = TRAIN_CASES[case]
    if plain:
        objective_module.FULL_SOFTMAX_CHUNK_ELEMENTS = 1 << 62
    _, objective, sampler = build(data, overrides, batch)
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    base = peak_rss_gb()
    times, cpu = [], []
    for step in range(steps + 1):  # one warm-up step
        start, start_cpu = time.perf_counter(), time.process_time()
        batch_data = sampler.sample()
        optimizer.zero_grad(set_to_none=True)
        out = objective(batch_data.history, batch_data.mask, batch_data.target, generator=generator)
        out.loss.backward()
        optimizer.step()
        loss = float(out.loss)
        if step >= 1:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    # The in-process bound: the Adam update of the same parameters from a ready gradient, the part of a
    # step every loss pays at this catalogue size (the dense [N + 1, D] table, its gradient, its moments).
    bound = []
    for _ in range(steps):
        start_cpu = time.process_time()
        optimizer.step()
        bound.append(time.process_time() - start_cpu)
    return {"kind": "train", "case": case, "batch": batch, "steps": steps, "step_ms": 1000 * statistics.median(times),
            "step_cpu_ms": 1000 * statistics.median(cpu), "adam_bound_cpu_ms": 1000 * statistics.median(bound),
            "loss": loss, "peak_rss_gb": peak_rss_gb(), "rss_before_training_gb": base}


def run_eval(data: Path, users: int, bound: bool) -> dict:
    from bamrec.data.split import LeaveOneOut, gather_windows
    from bamrec.evaluation.ranking import evaluate, score_chunk

    dataset, objective, _ = build(data, {}, 128)
    backbone = objective.backbone.eval()
    view = LeaveOneOut(dataset).view("test")
    take = np.linspace(0, len(view.users) - 1, users).astype(np.int64)
    view = type(view)(users=view.users[take], history_start=view.history_start[take],
                      history_end=view.history_end[take], targets=view.targets[take])
    table = backbone.item_embeddings().detach()  # [N + 1, D]
    start, start_cpu = time.perf_counter(), time.process_time()
    if not bound:
        evaluate(backbone, table, dataset, view, seq_len=50)
    else:
        # The bound: interests precomputed outside the timer, then only the score products and max over K.
        items = torch.from_numpy(dataset.items)
        with torch.inference_mode():
            interests = []
            for lo in range(0, users, 64):
                hist, mask = gather_windows(items, torch.from_numpy(view.history_start[lo:lo + 64]),
                                            torch.from_numpy(view.history_end[lo:lo + 64]), 50)
                interests.append(backbone(hist, mask))
            start, start_cpu = time.perf_counter(), time.process_time()
            for batch in interests:
                per_interest = batch.transpose(0, 1).contiguous()  # [K, B, D]
                for lo in range(0, table.shape[0], 16384):
                    score_chunk(per_interest, table[lo:lo + 16384])
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {"kind": "eval", "case": "bound" if bound else "evaluate", "users": users, "seconds": seconds,
            "cpu_s": cpu, "users_per_cpu_s": users / cpu, "peak_rss_gb": peak_rss_gb()}


def planted_vectors(data: Path, users: int, dim: int = 64, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Item table ``[N + 1, D]`` (row 0 padding) and interests ``[U, K, D]`` around planted topic centroids."""
    from bamrec.data.synthetic import load_ground_truth

    truth = load_ground_truth(data)
    rng = np.random.default_rng(0)
    scale = 1.0 / math.sqrt(dim)  # a Python float: keeps float32 arrays float32
    centroids = rng.standard_normal((truth.num_topics, dim), dtype=np.float32) * scale
    items = centroids[truth.item_topic] + noise * scale * rng.standard_normal((len(truth.item_topic), dim),
                                                                              dtype=np.float32)
    table = np.vstack([np.zeros((1, dim), np.float32), items])
    picked = np.linspace(0, truth.user_topics.shape[0] - 1, users).astype(np.int64)
    interests = centroids[truth.user_topics[picked]] + noise * scale * rng.standard_normal(
        (users, truth.user_topics.shape[1], dim), dtype=np.float32)
    return table, interests.astype(np.float32)


def run_retrieval(data: Path, kind: str, users: int, k: int) -> dict:
    table, interests = planted_vectors(data, users)
    exact_file = data / f"exact_top{k}_{users}.npy"
    if kind == "exact":
        start = time.process_time()
        rows = exact_topk(table, interests, k)
        seconds = time.process_time() - start
        np.save(exact_file, rows)
        return {"kind": "retrieval", "case": "exact", "users": users, "build_cpu_s": 0.0, "query_cpu_s": seconds,
                "users_per_cpu_s": users / seconds, "recall": 1.0, "peak_rss_gb": peak_rss_gb()}
    start = time.process_time()
    index, search, params = faiss_index(table, kind)
    build_s = time.process_time() - start
    start = time.process_time()
    rows = search(interests, k)
    seconds = time.process_time() - start
    exact = np.load(exact_file)
    return {"kind": "retrieval", "case": kind, "users": users, "build_cpu_s": build_s, "query_cpu_s": seconds,
            "users_per_cpu_s": users / seconds, "recall": recall(rows, exact), "params": params,
            "peak_rss_gb": peak_rss_gb()}


def exact_topk(table: np.ndarray, interests: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows of ``max_k m_k . e_i`` (row 0 never), users in chunks, items in chunks."""
    items = torch.from_numpy(table)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(interests), 256):
            query = torch.from_numpy(interests[lo:lo + 256]).transpose(0, 1).contiguous()  # [K, B, D]
            best_scores, best_rows = None, None
            for start in range(1, items.shape[0], 65536):
                chunk = items[start:start + 65536]
                scores = (query @ chunk.T).amax(0)  # [B, C]
                top = scores.topk(min(k, scores.shape[1]), dim=1)
                rows = top.indices + start
                if best_scores is None:
                    best_scores, best_rows = top.values, rows
                else:
                    merged = torch.cat([best_scores, top.values], 1)
                    pick = merged.topk(k, dim=1).indices
                    best_scores = merged.gather(1, pick)
                    best_rows = torch.cat([best_rows, rows], 1).gather(1, pick)
            out.append(best_rows.numpy())
    return np.concatenate(out)


def faiss_index(table: np.ndarray, kind: str):
    """(index, search(interests, k) -> rows [U, k], params): bamrec.retrieval.index when present."""
    try:
        from bamrec.retrieval import index as bamrec_index
    except ImportError:
        bamrec_index = None
    params = {"hnsw": dict(hnsw_m=16, ef_construction=40, ef_search=128),
              "ivf": dict(nprobe=16), "flat": {}}[kind]
    if bamrec_index is not None:
        index = bamrec_index.build_index(table, kind, **params)
        return index, lambda q, k: index.search(q, k)[0], {**params, "via": "bamrec.retrieval.index"}
    import faiss

    dim = table.shape[1]
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.add(table[1:])
        index.hnsw.efSearch = params["ef_search"]
    elif kind == "ivf":
        nlist = int(4 * np.sqrt(len(table) - 1))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(len(table) - 1, min(200_000, len(table) - 1), replace=False) + 1
        index.train(table[sample])
        index.add(table[1:])
        index.nprobe = params["nprobe"]
        params = {**params, "nlist": nlist}
    else:
        index = faiss.IndexFlatIP(dim)
        index.add(table[1:])

    def search(interests: np.ndarray, k: int) -> np.ndarray:
        users, num_interests, _ = interests.shape
        scores, labels = index.search(interests.reshape(users * num_interests, dim), k)  # all B*K at once
        scores = scores.reshape(users, -1)
        rows = labels.reshape(users, -1) + 1  # faiss label j = table row j + 1
        # Merge the K lists by score; an item found twice keeps its best score (dedupe after sort).
        order = np.argsort(-scores, axis=1, kind="stable")
        rows = np.take_along_axis(rows, order, 1)
        out = np.full((users, k), -1, dtype=np.int64)
        for u in range(users):  # benchmark-only merge; bamrec.retrieval.index does this batched
            _, first = np.unique(rows[u], return_index=True)
            out[u, :min(k, len(first))] = rows[u][np.sort(first)][:k]
        return out

    return index, search, {**params, "via": "faiss"}


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    hits = [len(set(f.tolist()) & set(e.tolist())) / len(e) for f, e in zip(found, exact)]
    return float(np.mean(hits))


def child(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    kind, case = args.child
    if kind == "train":
        return run_train(data, case, args.steps)
    if kind == "eval":
        return run_eval(data, args.eval_users, bound=case == "bound")
    return run_retrieval(data, case, args.query_users, 20)


def spawn(args: argparse.Namespace, kind: str, case: str) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, case, "--data", args.data, "--steps", str(args.steps),
           "--eval-users", str(args.eval_users), "--query-users", str(args.query_users),
           "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"kind": kind, "case": case, "error": proc.stderr.strip().splitlines()[-1:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_avg"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/tmp/bamrec-cat-1m")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per case")
    parser.add_argument("--eval-users", type=int, default=1024)
    parser.add_argument("--query-users", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="train,eval,retrieval", help="sections to run")
    parser.add_argument("--cases", default=",".join(TRAIN_CASES), help="training cases to run")
    parser.add_argument("--out")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    ensure_data(Path(args.data), args.users, args.items)
    plan = []
    sections = args.only.split(",")
    if "train" in sections:
        plan += [("train", case) for case in args.cases.split(",")]
    if "eval" in sections:
        plan += [("eval", "evaluate"), ("eval", "bound"), ("eval", "evaluate"), ("eval", "bound")]
    if "retrieval" in sections:
        plan += [("retrieval", kind) for kind in ("exact", "flat", "ivf", "hnsw")]
    results = []
    for kind, case in plan:
        results.append(spawn(args, kind, case))
        print(json.dumps(results[-1]), flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
