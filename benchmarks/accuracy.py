"""Accuracy to convergence: backbones x training schemes on one prepared dataset.

    python benchmarks/accuracy.py --data prepared/ml-100k --out bench-results/ml100k \
        --models comirec-sa,mind --schemes hard,bam-p,bam-p+multi-loss --seq-len 50

Each configuration trains with the original defaults (batch 128, Adam 1e-3, validation every 1,000
iterations, patience 15) unless flags say otherwise, then is evaluated on the test split under both
protocols. Writes ``<out>/<model>-<scheme>/`` run directories, ``<out>/accuracy.json`` and
``<out>/accuracy.md``. Already finished runs are reused (``summary.json`` present), so the script
can be re-run to resume a matrix.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, markdown_table, write_json  # noqa: E402

from bamrec.api import load_run, train  # noqa: E402
from bamrec.config import run_config_from_flat  # noqa: E402
from bamrec.rundir import layout as ckpt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default="comirec-sa,mind")
    parser.add_argument("--schemes", default="hard,bam-p,bam-p+multi-loss")
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--max-iters", type=int, default=1_000_000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    out = Path(args.out)
    results = []
    for model in args.models.split(","):
        for scheme in args.schemes.split(","):
            selection, _, extra = scheme.partition("+")
            run_dir = out / f"{model}-{scheme}"
            if not (run_dir / ckpt.SUMMARY_FILE).is_file():
                config = run_config_from_flat({
                    "data": args.data, "model": model, "seq_len": args.seq_len, "selection": selection,
                    "multi_loss": extra == "multi-loss", "max_iters": args.max_iters,
                    "eval_every": args.eval_every, "patience": args.patience, "seed": args.seed,
                    "progress": args.progress,
                })
                train(config, run_dir, overwrite=True, verbose=False)
            summary = ckpt.read_json(run_dir / ckpt.SUMMARY_FILE)
            reference = load_run(run_dir).evaluate(protocol="reference", cutoffs=(10, 20, 50))
            diagnostics = ckpt.read_json(run_dir / ckpt.DIAGNOSTICS_FILE)
            planted = diagnostics.get("planted") or {}
            row = {"model": model, "scheme": scheme, "run": str(run_dir), "best_iter": summary["best_iter"],
                   "iters": summary["iters"], "train_time_s": summary["train_time_s"],
                   "stopped": summary["stopped"], "standard": summary["test"], "reference": reference,
                   "minor_recall@20": (planted.get("recall") or {}).get("minor"),
                   "selection_entropy": diagnostics["selection"]["overall"]["normalized_entropy"]}
            results.append(row)
            print(f"{model} {scheme}: recall@20 {row['standard']['recall@20']:.4f} (reference "
                  f"{reference['recall@20']:.4f}), best iter {row['best_iter']}, {row['train_time_s']:.0f} s",
                  file=sys.stderr, flush=True)
    planted = any(r["minor_recall@20"] is not None for r in results)
    rows = [[r["model"], r["scheme"], r["standard"]["recall@20"], r["standard"]["ndcg@20"],
             r["reference"]["recall@20"], r["reference"]["ndcg@20"],
             *([r["minor_recall@20"]] if planted else []), r["selection_entropy"], r["best_iter"], r["iters"],
             round(r["train_time_s"])] for r in results]
    table = markdown_table(["model", "scheme", "recall@20", "nDCG@20", "recall@20 (ref.)", "nDCG@20 (ref.)",
                            *(["minor recall@20"] if planted else []), "sel. entropy", "best iter", "iters",
                            "train s"], rows)
    print(table)
    (out / "accuracy.md").write_text(table + "\n")
    write_json(out / "accuracy.json", {"results": results, "args": vars(args), "env": environment()})


if __name__ == "__main__":
    main()
