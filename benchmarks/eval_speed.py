"""Full test-set evaluation speed and memory, both protocols, against a bare ``matmul + max + topk``
over the same tensors timed in the same process. Ratios to the original implementation are measured
side by side, in the same run, by ``side_by_side.py``.

    python benchmarks/eval_speed.py --run runs/ml1m-ref          # a trained or imported run
    python benchmarks/eval_speed.py --data prepared/ml-1m --seq-len 200   # a randomly initialised ComiRec-SA

Each protocol runs in a fresh process so that its peak RSS is its own. ``--repeat-users N`` evaluates
the test users N times over (a larger user set of the same shape) to show that memory does not grow
with the number of users.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, markdown_table, peak_rss_gb, run_child, sync, write_json  # noqa: E402

from bamrec.config import run_config_from_flat  # noqa: E402
from bamrec.data.sequences import SequenceDataset  # noqa: E402
from bamrec.data.split import LeaveOneOut  # noqa: E402
from bamrec.evaluation.ranking import evaluate  # noqa: E402
from bamrec.models import build_backbone  # noqa: E402


def load_model(args: argparse.Namespace):
    if args.run:
        from bamrec.api import load_run

        run = load_run(args.run, device=args.device)
        return run.model, run.dataset(), run.config.model.seq_len
    dataset = SequenceDataset.load(args.data)
    config = run_config_from_flat({"model": args.model, "seq_len": args.seq_len})
    torch.manual_seed(0)
    model = build_backbone(config.model, dataset.num_items, seed=0).to(args.device)
    return model, dataset, args.seq_len


def measure(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    model, dataset, seq_len = load_model(args)
    model.eval()
    view = LeaveOneOut(dataset).view("test")
    if args.repeat_users > 1:
        view = view.subset(np.tile(np.arange(len(view)), args.repeat_users))
    device = torch.device(args.device)
    with torch.inference_mode():
        item_embeddings = model.item_embeddings().detach()
    evaluate(model, item_embeddings, dataset, view.subset(np.arange(min(256, len(view)))), seq_len=seq_len,
             protocol=args.protocol, device=device)  # warm-up
    runs = []
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(args.repeats):  # the first full pass also pays for first-touch allocations
        sync(device)
        t0 = time.perf_counter()
        result = evaluate(model, item_embeddings, dataset, view, seq_len=seq_len, protocol=args.protocol,
                          cutoffs=(10, 20, 50), user_batch_size=args.user_batch_size,
                          item_chunk_size=args.item_chunk_size, device=device)
        sync(device)
        runs.append(time.perf_counter() - t0)
    # Minor page faults per timed evaluation: memory the allocator handed back and took again.
    page_faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / args.repeats
    first_s, full_s = runs[0], float(np.median(runs))
    if args.only_evaluate:  # peak memory of evaluation alone (no benchmark extras below)
        return {"protocol": args.protocol, "users": len(view), "evaluate_s": full_s, "peak_rss_gb": peak_rss_gb(),
                "page_faults": page_faults}

    # The same users' interests once, then the ranking alone vs the bare bound on those tensors.
    from bamrec.evaluation.diagnostics_run import view_interests

    t0 = time.perf_counter()
    interests = view_interests(model, dataset, view, seq_len, device, batch_size=args.user_batch_size).to(device)
    sync(device)
    forward_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(view), args.user_batch_size):
            scores = (interests[lo: lo + args.user_batch_size] @ item_embeddings.T).amax(dim=1)  # [B, N+1]
            torch.topk(scores, 50, dim=1)
    sync(device)
    bare_s = time.perf_counter() - t0
    # The ranking alone: the same evaluate, fed the precomputed interests batch by batch.
    cursor = iter(torch.split(interests, args.user_batch_size))
    t0 = time.perf_counter()
    evaluate(lambda history, mask: next(cursor), item_embeddings, dataset, view, seq_len=seq_len,
             protocol=args.protocol, user_batch_size=args.user_batch_size,
             item_chunk_size=args.item_chunk_size, device=device)
    sync(device)
    ranking_s = time.perf_counter() - t0
    metrics = result.metrics()
    return {
        "protocol": args.protocol, "users": len(view), "items": dataset.num_items, "seq_len": seq_len,
        "evaluate_s": full_s, "evaluate_first_s": first_s, "evaluate_runs_s": runs,
        "users_per_s": len(view) / full_s, "forward_s": forward_s,
        "ranking_s": ranking_s, "bare_matmul_max_topk_s": bare_s, "ranking_over_bare": ranking_s / bare_s,
        "evaluate_over_forward_plus_bare": full_s / (forward_s + bare_s),
        "command_s": time.perf_counter() - start, "peak_rss_gb": peak_rss_gb(),
        "recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"], "env": environment(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="run directory (else --data + a random model)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--model", default="comirec-sa")
    parser.add_argument("--seq-len", type=int, default=200)
    parser.add_argument("--protocols", default="standard,reference")
    parser.add_argument("--protocol", default="standard", help=argparse.SUPPRESS)
    parser.add_argument("--user-batch-size", type=int, default=64)
    parser.add_argument("--item-chunk-size", type=int, default=16384)
    parser.add_argument("--repeat-users", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="full evaluations timed (median reported)")
    parser.add_argument("--only-evaluate", action="store_true",
                        help="print one JSON line: time and peak RSS of the evaluation alone")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.run or args.data):
        parser.error("give --run or --data")
    if args.one or args.only_evaluate:
        print(json.dumps(measure(args)))
        return
    results = []
    for protocol in args.protocols.split(","):
        child = [__file__, "--one", "--protocol", protocol, "--seq-len", str(args.seq_len), "--model", args.model,
                 "--user-batch-size", str(args.user_batch_size), "--item-chunk-size", str(args.item_chunk_size),
                 "--repeat-users", str(args.repeat_users), "--device", args.device, "--repeats", str(args.repeats)]
        child += ["--run", args.run] if args.run else ["--data", args.data]
        results.append(run_child(child))
    rows = []
    for r in results:
        rows.append([r["protocol"], r["users"], r["evaluate_s"], r["evaluate_first_s"], r["users_per_s"],
                     r["forward_s"], r["ranking_s"],
                     r["bare_matmul_max_topk_s"], r["ranking_over_bare"], r["command_s"], r["peak_rss_gb"],
                     r["recall@20"]])
    print(markdown_table(["protocol", "users", "evaluate s (median)", "first run s", "users/s", "forward s",
                          "ranking s", "bare s", "ranking/bare", "command s", "peak RSS GB",
                          "recall@20"], rows))
    write_json(args.json, {"results": results})


if __name__ == "__main__":
    main()
