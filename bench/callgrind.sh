#!/usr/bin/env bash
# Instructions per Check, counted by valgrind's callgrind: repeatable on a noisy machine
# where timings are not. Runs the release server (and the tonic no-op reference) under
# callgrind, drives a fixed number of Checks of each kind with the loadgen, and prints
# instructions per Check plus the heaviest functions (inclusive) for each kind.
#
# usage: bench/callgrind.sh            (needs valgrind: apt-get install valgrind)
# knobs: CHECKS=5000 UNCACHED_CHECKS=2000 BASE_PORT=18400 OUT=dir
#        AUTHZ=path LOADGEN=path (binaries to use instead of building them)
#
# Every process it starts is stopped by its PID on exit; the whole run takes 2-3 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CHECKS=${CHECKS:-5000}
UNCACHED_CHECKS=${UNCACHED_CHECKS:-2000}
BASE_PORT=${BASE_PORT:-18400}
OUT=${OUT:-$ROOT/target/bench/callgrind-$(date -u +%Y%m%dT%H%M%SZ)}
ISSUER="http://127.0.0.1:$BASE_PORT/"
BUILD_AUTHZ=${AUTHZ:+no}
AUTHZ=${AUTHZ:-$ROOT/target/release/jwt-authz}
BUILD_LOADGEN=${LOADGEN:+no}
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}

command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
mkdir -p "$OUT"
# Two builds: the server without the test kit that the load generator's build enables.
[ "$BUILD_AUTHZ" = no ] || cargo build --release --quiet --bin jwt-authz
[ "$BUILD_LOADGEN" = no ] || cargo build --release --quiet -p jwt-authz-bench --bin loadgen
[ -x "$AUTHZ" ] && [ -x "$LOADGEN" ] || { echo "no executable at $AUTHZ or $LOADGEN" >&2; exit 1; }

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$LOADGEN" jwks --listen "127.0.0.1:$BASE_PORT" --file "$ROOT/tests/fixtures/jwks.json" \
  --max-time 30m >"$OUT/jwks.log" 2>&1 &
PIDS+=($!)
"$LOADGEN" tokens --issuer "$ISSUER" --tokens 1000 --out "$OUT/tokens.txt" 2>/dev/null

# grind NAME PORT CMD...: starts CMD under callgrind; sets $PID.
grind() {
  local name=$1 port=$2
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.%p.out" "$@" >"$OUT/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  "$LOADGEN" wait --addr "127.0.0.1:$port" --timeout 60s 2>/dev/null
}

serve_flags=(--admin-listen off --issuer "$ISSUER" --audience https://api.example.com
  --jwks-uri "${ISSUER}jwks.json" --log-level warn)
grind cache-on $((BASE_PORT + 1)) "$AUTHZ" serve --listen "127.0.0.1:$((BASE_PORT + 1))" "${serve_flags[@]}"
pid_on=$PID
grind cache-off $((BASE_PORT + 2)) "$AUTHZ" serve --listen "127.0.0.1:$((BASE_PORT + 2))" "${serve_flags[@]}" --token-cache false
pid_off=$PID
grind tonic-noop $((BASE_PORT + 3)) "$LOADGEN" noop-server --listen "127.0.0.1:$((BASE_PORT + 3))" --max-time 30m
pid_noop=$PID

load=(--issuer "$ISSUER" --tokens 1000 --tokens-file "$OUT/tokens.txt" --warmup 0s --connections 1 --streams 16)
# measure KIND PID PORT COUNT [loadgen flags]: zero the counters, drive COUNT Checks, dump.
measure() {
  local kind=$1 pid=$2 port=$3 count=$4
  shift 4
  callgrind_control --zero "$pid" >/dev/null 2>&1
  "$LOADGEN" check --addr "127.0.0.1:$port" "${load[@]}" --requests "$count" "$@" | grep '^RESULT' >&2
  callgrind_control --dump="$kind" "$pid" >/dev/null 2>&1
  local file
  file=$(grep -l "^desc: Trigger: .*[ :]$kind\$" "$OUT"/*.out.* | head -1)
  local total
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$file")
  printf '%-28s %9d instructions per Check\n' "$kind" $((total / count)) | tee -a "$OUT/summary.txt"
  callgrind_annotate --inclusive=yes "$file" 2>/dev/null | grep -E '^ *[0-9,]+ \(' >"$OUT/$kind.top.txt" || true
}

# Fill the token cache once before counting hits.
"$LOADGEN" check --addr "127.0.0.1:$((BASE_PORT + 1))" "${load[@]}" --requests 1000 >/dev/null
: >"$OUT/summary.txt"
measure cache_hit_full "$pid_on" $((BASE_PORT + 1)) "$CHECKS"
measure cache_hit_small "$pid_on" $((BASE_PORT + 1)) "$CHECKS" --shape small
measure noop_401_full "$pid_on" $((BASE_PORT + 1)) "$CHECKS" --no-auth
measure uncached_full "$pid_off" $((BASE_PORT + 2)) "$UNCACHED_CHECKS"
measure tonic_noop_full "$pid_noop" $((BASE_PORT + 3)) "$CHECKS"
echo "profiles and top functions in $OUT" >&2
