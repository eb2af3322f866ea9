#!/usr/bin/env bash
# What traces cost a cache-hit Check (benches/traces.rs): the three modes (off, on at
# parent-based ratio 0, on at ratio 1), alternately for ROUNDS rounds, each a criterion
# run of its own (the tracer is one per process). Prints each round's criterion median
# and, per mode and case, the median of the rounds.
#
# usage: bench/run-traces.sh          knobs: ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo bench -p jwt-authz-bench --bench traces --no-run >&2
for round in $(seq 1 "$ROUNDS"); do
  for mode in off 0 1; do
    JWT_AUTHZ_BENCH_TRACES=$mode cargo bench -q -p jwt-authz-bench --bench traces -- --noplot >&2
    for case in no_parent sampled_parent; do
      estimates=target/criterion/traces_${mode}/${case}/new/estimates.json
      median=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["median"]["point_estimate"]/1000, 3))' "$estimates")
      echo "$round $mode $case $median" | tee -a "$out/runs" >&2
    done
  done
done
echo "mode  case            median of $ROUNDS rounds (µs)"
python3 - "$out/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    _, mode, case, median = line.split()
    runs.setdefault((mode, case), []).append(float(median))
for (mode, case), values in runs.items():
    print(f"{mode:<5} {case:<15} {statistics.median(values):.3f}  (rounds: {', '.join(f'{v:.3f}' for v in values)})")
PY
