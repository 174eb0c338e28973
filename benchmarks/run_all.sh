#!/usr/bin/env bash
# Every figure of docs/PERFORMANCE.md, in one command; the page is regenerated from the run:
#   BAM_ORIGINAL_SRC=/tmp/bam-original benchmarks/run_all.sh PREPARED_DIR OUT_DIR
# PREPARED_DIR must hold ml-100k/ and ml-1m/ made by `bamrec data prepare`. Without BAM_ORIGINAL_SRC
# the comparisons with the original are skipped (with a message) and only bamrec's figures are printed.
set -euo pipefail
data=${1:?prepared datasets directory}
out=${2:-bench-results}
py=${PYTHON:-python}
mkdir -p "$out"
here=$(dirname "$0")
$py "$here/side_by_side.py" --prepared "$data" --work "$out/work" --json "$out/side-by-side.json" \
    --doc "$here/../docs/PERFORMANCE.md" | tee "$out/side-by-side.md"
