#!/usr/bin/env bash
# Every figure of docs/PERFORMANCE.md, in one command (run on a quiet machine):
#   benchmarks/run_all.sh PREPARED_DIR OUT_DIR
# PREPARED_DIR must hold ml-100k/ and ml-1m/ made by `bamrec data prepare`.
set -euo pipefail
data=${1:?prepared datasets directory}
out=${2:-bench-results}
py=${PYTHON:-python}
mkdir -p "$out"
here=$(dirname "$0")
$py "$here/train_speed.py" --data "$data/ml-100k" --matrix --seq-len 50 --iters 300 --warmup 20 \
    --original ml-100k --json "$out/train-ml100k.json" | tee "$out/train-ml100k.md"
$py "$here/train_speed.py" --data "$data/ml-100k" --matrix --seq-len 50 --iters 100 --warmup 10 \
    --negatives per-example --original ml-100k --json "$out/train-ml100k-per-example.json" | tee "$out/train-ml100k-per-example.md"
$py "$here/train_speed.py" --data "$data/ml-1m" --matrix --seq-len 200 --seq-len-mind 100 --iters 100 --warmup 10 \
    --original ml-1m --json "$out/train-ml1m.json" | tee "$out/train-ml1m.md"
$py "$here/eval_speed.py" --data "$data/ml-1m" --seq-len 200 --original ml-1m --json "$out/eval-ml1m.json" \
    | tee "$out/eval-ml1m.md"
$py "$here/eval_speed.py" --data "$data/ml-1m" --seq-len 200 --repeat-users 4 --protocols standard \
    --json "$out/eval-ml1m-x4.json" | tee "$out/eval-ml1m-x4.md"
