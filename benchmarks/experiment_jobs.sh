#!/usr/bin/env bash
# Throughput of `bamrec experiment --jobs 2` against `--jobs 1` (cells per hour), interleaved A/B/A/B
# on the issue's tiny grid (4 cells of ComiRec-SA, 300 iterations, planted data), with the load
# average before each run. Usage: benchmarks/experiment_jobs.sh [REPEATS] > results.txt
set -euo pipefail
repeats=${1:-2}
py=${PYTHON:-python}
work=$(mktemp -d /tmp/bamrec-jobs.XXXXXX)
$py -m bamrec.cli data synthetic --out "$work/planted" > /dev/null
sed "s#prepared/planted#$work/planted#" "$(dirname "$0")/../experiments/tiny.toml" > "$work/tiny.toml"
echo "run jobs threads_per_job cells wall_s cells_per_hour load_1min"
for r in $(seq "$repeats"); do
  for jobs in 1 2; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    $py -m bamrec.cli experiment "$work/tiny.toml" --out "$work/out-$r-$jobs" --jobs "$jobs" 2> "$work/log-$r-$jobs" > /dev/null
    end=$(date +%s.%N)
    cells=$(ls "$work/out-$r-$jobs"/cells/*.json | wc -l)
    threads=$(grep -o "x [0-9]* thread" "$work/log-$r-$jobs" | head -1 | cut -d' ' -f2)
    awk -v r="$r" -v j="$jobs" -v t="$threads" -v c="$cells" -v s="$start" -v e="$end" -v l="$load" \
      'BEGIN { w = e - s; printf "%s %s %s %s %.1f %.1f %s\n", r, j, t, c, w, 3600 * c / w, l }'
  done
done
rm -rf "$work"
