#!/usr/bin/env bash
# Benchmarks jwt-authz on this machine, everything on 127.0.0.1:
#
#   envoy      the same HTTP load (wrk) through Envoy in four setups, alternating within
#              each round: no auth, jwt_authn + RBAC without and with jwt_cache_config,
#              and ext_authz to jwt-authz (plus, for reference, ext_authz to a no-op Check
#              service); a pool of distinct tokens and a single token; at saturation
#              (32 connections) and one connection at a time (latency)
#   rpc        the Check RPC alone with the loadgen: saturation on one server core
#              (uncached RS256, token-cache hits, a no-op Check), open loop at 3,000/s,
#              and open loop during a JWKS refresh every second
#   memory     RSS idle and after 100,000 distinct tokens
#   coldstart  exec to SERVING
#   scaling    the Check RPC with the server on one core (one runtime worker) and on two
#              cores (two workers), uncached RS256 and token-cache hits; the load
#              generator shares the two cores in the second case (see BENCHMARKS.md)
#
# usage: bench/run.sh [envoy] [rpc] [memory] [coldstart] [scaling]
#        (default: the first four)
# knobs (environment): ROUNDS=3 DURATION=8 LAT_DURATION=4 RPC_DURATION=10 CONNS=32
#                      POOL=1000 MEM_TOKENS=100000 BASE_PORT=18000 QUIET_MAX=900
#                      ENVOY=.tools/venv/bin/envoy OUT=dir
#                      AUTHZ=path LOADGEN=path (binaries to use instead of building them)
#                      ENVOY_SETUPS="ext_authz ext_authz_noop" (envoy: a subset of the setups)
#                      NOOP_ARGS="--allow-like-jwt-authz --busy-us 50" (envoy: what the no-op
#                      Check service imitates)
#                      SYSCALLS=1 (envoy: count Envoy's system calls and context switches per
#                      request with perf; adds a little cost to every system call)
#
# Every process this script starts is stopped by its PID on exit. Each load run is bounded
# by its duration; the whole default run takes about 20 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
LAT_DURATION=${LAT_DURATION:-4}
RPC_DURATION=${RPC_DURATION:-10}
CONNS=${CONNS:-32}
POOL=${POOL:-1000}
MEM_TOKENS=${MEM_TOKENS:-100000}
BASE_PORT=${BASE_PORT:-18000}
ENVOY=${ENVOY:-$ROOT/.tools/venv/bin/envoy}
OUT=${OUT:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
SECTIONS=${*:-envoy rpc memory coldstart}
SYSCALLS=${SYSCALLS:-0}

JWKS_PORT=$BASE_PORT
ISSUER="http://127.0.0.1:$JWKS_PORT/"
AUDIENCE="https://api.example.com"
AUTHZ=${AUTHZ:-}
BUILD_AUTHZ=${AUTHZ:+no}
AUTHZ=${AUTHZ:-$ROOT/target/release/jwt-authz}
BUILD_LOADGEN=${LOADGEN:+no}
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
CLK_TCK=$(getconf CLK_TCK)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------ processes

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Pins to a CPU when taskset is available (Envoy on 0; jwt-authz and wrk on 1).
can_pin() { command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; }
pin() {
  local cpu=$1
  shift
  if can_pin; then
    taskset -c "$cpu" "$@"
  else
    "$@"
  fi
}

# start NAME CPU CMD... : runs CMD in the background, logging to $OUT/NAME.log; sets $PID.
# taskset execs the command, so $PID is the command's own PID.
start() {
  local name=$1 cpu=$2
  shift 2
  local cmd=("$@")
  can_pin && cmd=(taskset -c "$cpu" "${cmd[@]}")
  "${cmd[@]}" >"$OUT/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Fraction of all CPUs busy over one second (every process, not only ours).
cpu_busy() {
  local a b
  a=$(head -n 1 /proc/stat)
  sleep 1
  b=$(head -n 1 /proc/stat)
  printf '%s\n%s\n' "$a" "$b" | awk '{t = 0; for (i = 2; i <= NF; i++) t += $i; idle = $5 + $6}
    NR == 1 {t1 = t; i1 = idle} NR == 2 {printf "%.2f", 1 - (idle - i1) / (t - t1)}'
}

# The machine is shared with builds: wait (up to QUIET_MAX seconds) until it is idle, so
# that a compiler does not run during a measurement.
quiet() {
  local waited=0 busy
  while busy=$(cpu_busy) && awk -v b="$busy" 'BEGIN {exit !(b > 0.15)}'; do
    if [ "$waited" -ge "${QUIET_MAX:-900}" ]; then
      log "machine still busy ($busy); measuring anyway"
      return
    fi
    [ $((waited % 60)) -eq 0 ] && log "machine busy ($busy of all CPUs), waiting"
    sleep 4
    waited=$((waited + 5))
  done
}

# Whether a compiler, fuzzer or test binary of someone else is running now (a lookup only).
others_running() {
  pgrep -x rustc >/dev/null || pgrep -x cc1 >/dev/null ||
    pgrep -f '/fuzz/target/|/target/debug/deps/' >/dev/null
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

wait_http() { # URL [expected status]
  local url=$1 want=${2:-200} i
  for i in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)" = "$want" ] && return 0
    sleep 0.05
  done
  die "$url did not answer $want within 10s"
}

# authz NAME CPU PORT ADMIN_PORT [FLAGS...]: starts the release server; sets $PID.
authz() {
  local name=$1 cpu=$2 port=$3 admin=$4
  shift 4
  start "$name" "$cpu" "$AUTHZ" serve --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$admin" --issuer "$ISSUER" --audience "$AUDIENCE" \
    --jwks-uri "${ISSUER}jwks.json" "$@"
  local pid=$PID
  "$LOADGEN" wait --addr "127.0.0.1:$port" 2>/dev/null || die "$name did not become SERVING"
  PID=$pid
}

# ------------------------------------------------------------------ set-up

build() {
  log "building release binary and loadgen"
  # Two builds: the server without the test kit that the load generator's build enables.
  if [ "$BUILD_AUTHZ" = no ]; then
    [ -x "$AUTHZ" ] || die "AUTHZ=$AUTHZ is not an executable"
  else
    cargo build --release --quiet --bin jwt-authz
  fi
  if [ "$BUILD_LOADGEN" = no ]; then
    [ -x "$LOADGEN" ] || die "LOADGEN=$LOADGEN is not an executable"
  else
    cargo build --release --quiet -p jwt-authz-bench --bin loadgen
  fi
}

tools() {
  if ! command -v wrk >/dev/null; then
    log "installing wrk (Debian package)"
    apt-get install -y -qq wrk >/dev/null || die "cannot install wrk"
  fi
  [ -x "$ENVOY" ] || "$ROOT/scripts/install-test-tools.sh"
  if [ "$SYSCALLS" = 1 ] && ! command -v perf >/dev/null; then
    die "SYSCALLS=1 needs perf (Debian package linux-perf)"
  fi
}

machine() {
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
    echo "kernel: $(uname -sr)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "envoy: $("$ENVOY" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "rustc: $(rustc --version)"
    echo "jwt-authz: $AUTHZ ($(sha256sum "$AUTHZ" | cut -c1-12))"
  } | tee "$OUT/machine.txt" >&2
}

tokens() {
  local count=$((MEM_TOKENS > POOL ? MEM_TOKENS : POOL))
  local have=0
  [ -f "$OUT/tokens.txt" ] && have=$(wc -l <"$OUT/tokens.txt")
  if [ "$have" -lt "$count" ]; then
    log "minting $count RS256 tokens (fixture key rsa-1)"
    "$LOADGEN" tokens --issuer "$ISSUER" --tokens "$count" --out "$OUT/tokens.txt"
  fi
  head -n "$POOL" "$OUT/tokens.txt" >"$OUT/tokens-pool.txt"
  head -n 1 "$OUT/tokens.txt" >"$OUT/tokens-single.txt"
}

jwks_server() {
  start jwks 1 "$LOADGEN" jwks --listen "127.0.0.1:$JWKS_PORT" \
    --file "$ROOT/tests/fixtures/jwks.json" --max-time 2h
  wait_http "${ISSUER}jwks.json"
}

# median of the numbers on stdin
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# field NAME: the value of NAME=... in the lines on stdin, one per line
field() { grep -o "\b$1=[^ ]*" | cut -d= -f2; }

# ------------------------------------------------------------------ envoy

envoy_bootstrap() { # TEMPLATE LISTEN ADMIN JWT_CACHE AUTHZ_PORT
  sed -e "s|@LISTEN_PORT@|$2|; s|@ADMIN_PORT@|$3|; s|@AUTHZ_PORT@|$5|" \
    -e "s|@ISSUER@|$ISSUER|; s|@JWKS_FILE@|$ROOT/tests/fixtures/jwks.json|" \
    -e "s|@JWT_CACHE@|$4|" "$ROOT/bench/$1"
}

declare -A ENVOY_PID ENVOY_PORT
# ext_authz_noop is a reference, not a setup of the comparison: the same ext_authz filter
# calling the loadgen's no-op Check service, the floor for any ext_authz service.
read -ra SETUPS <<<"${ENVOY_SETUPS:-noauth jwt_authn jwt_authn_cache ext_authz ext_authz_noop}"

start_envoys() {
  local i=0 setup template cache authz_port
  for setup in "${SETUPS[@]}"; do
    i=$((i + 1))
    cache=""
    authz_port=$((BASE_PORT + 91))
    case $setup in
      noauth) template=envoy-noauth.yaml ;;
      jwt_authn) template=envoy-jwt-authn.yaml ;;
      jwt_authn_cache)
        template=envoy-jwt-authn.yaml
        cache="jwt_cache_config: { jwt_cache_size: 100000 }"
        ;;
      ext_authz) template=envoy-ext-authz.yaml ;;
      ext_authz_noop)
        template=envoy-ext-authz.yaml
        authz_port=$((BASE_PORT + 93))
        ;;
    esac
    ENVOY_PORT[$setup]=$((BASE_PORT + 80 + i))
    envoy_bootstrap "$template" "${ENVOY_PORT[$setup]}" "$((BASE_PORT + 900 + i))" "$cache" \
      "$authz_port" >"$OUT/envoy-$setup.yaml"
    start "envoy-$setup" 0 "$ENVOY" -c "$OUT/envoy-$setup.yaml" --concurrency 1 \
      --disable-hot-restart --base-id "$((BASE_PORT + i))" -l warning
    ENVOY_PID[$setup]=$PID
    wait_http "http://127.0.0.1:$((BASE_PORT + 900 + i))/ready"
  done
  # Every setup must allow the load's tokens, and the auth setups must refuse no token.
  local token
  token=$(head -n 1 "$OUT/tokens-pool.txt")
  for setup in "${SETUPS[@]}"; do
    local code
    for _ in $(seq 1 100); do
      code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
        "http://127.0.0.1:${ENVOY_PORT[$setup]}/api/private-scoped")
      [ "$code" = 200 ] && break
      sleep 0.1
    done
    [ "$code" = 200 ] || die "$setup answered $code to a valid token"
    if [ "$setup" != noauth ] && [ "$setup" != ext_authz_noop ]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${ENVOY_PORT[$setup]}/api/private-scoped")
      [ "$code" = 401 ] || die "$setup answered $code to a request without a token"
    fi
  done
}

# wrk_run SETUP TOKENS CONNS SECONDS ROUND: one wrk run (core 1), repeated (up to twice)
# when another workload ran alongside it.
wrk_run() {
  local setup=$1 tokens=$2 conns=$3 secs=$4 round=$5 e0 a0 e1 a1 out line n attempt perf_pid
  for attempt in 1 2 3; do
    quiet
    e0=$(ticks "${ENVOY_PID[$setup]}")
    a0=$(ticks "$(service_pid "$setup")")
    if [ "$SYSCALLS" = 1 ]; then
      # Envoy's system calls and context switches (every thread) while wrk runs.
      perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "${ENVOY_PID[$setup]}" \
        -o "$OUT/perf.txt" -- sleep "$secs" &
      perf_pid=$!
    fi
    out=$(pin 1 wrk -t1 -c"$conns" -d"${secs}s" -s "$ROOT/bench/wrk-tokens.lua" \
      "http://127.0.0.1:${ENVOY_PORT[$setup]}/api/private-scoped" -- "$OUT/tokens-$tokens.txt")
    e1=$(ticks "${ENVOY_PID[$setup]}")
    a1=$(ticks "$(service_pid "$setup")")
    [ "$SYSCALLS" = 1 ] && wait "$perf_pid"
    others_running || break
    log "another workload ran during $setup/$tokens/$conns (attempt $attempt)"
  done
  line=$(grep '^RESULT' <<<"$out") || die "wrk printed no result: $out"
  n=$(field requests <<<"$line")
  line="$line envoy_cpu_us=$(awk -v d=$((e1 - e0)) -v n="$n" -v t="$CLK_TCK" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')"
  line="$line envoy_util=$(awk -v d=$((e1 - e0)) -v s="$secs" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", d / t / s}')"
  line="$line authz_cpu_us=$(awk -v d=$((a1 - a0)) -v n="$n" -v t="$CLK_TCK" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')"
  if [ "$SYSCALLS" = 1 ]; then
    line="$line envoy_syscalls=$(awk -F, -v n="$n" '/raw_syscalls/ {printf "%.2f", $1 / n}' "$OUT/perf.txt")"
    line="$line envoy_switches=$(awk -F, -v n="$n" '/context-switches/ {printf "%.2f", $1 / n}' "$OUT/perf.txt")"
  fi
  line="$line contended=$(others_running && echo 1 || echo 0)"
  echo "setup=$setup tokens=$tokens conns=$conns round=$round ${line#RESULT }" | tee -a "$OUT/envoy-raw.txt" >&2
}

# The PID of the Check service behind SETUP: its CPU per request is the `authz` column.
service_pid() {
  if [ "$1" = ext_authz_noop ]; then echo "$NOOP_PID"; else echo "$AUTHZ_PID"; fi
}

envoy_section() {
  log "envoy: starting jwt-authz (core 1) and four Envoys (core 0, --concurrency 1)"
  authz authz-envoy 1 $((BASE_PORT + 91)) $((BASE_PORT + 92))
  AUTHZ_PID=$PID
  # shellcheck disable=SC2086 # NOOP_ARGS is a list of flags
  start envoy-noop-service 1 "$LOADGEN" noop-server --listen "127.0.0.1:$((BASE_PORT + 93))" \
    --max-time 2h ${NOOP_ARGS:-}
  local noop_pid=$PID
  NOOP_PID=$noop_pid
  "$LOADGEN" wait --addr "127.0.0.1:$((BASE_PORT + 93))" 2>/dev/null || die "noop-server did not start"
  start_envoys
  : >"$OUT/envoy-raw.txt"
  local setup tokens r k n
  log "envoy: warm-up"
  for setup in "${SETUPS[@]}"; do
    pin 1 wrk -t1 -c"$CONNS" -d2s -s "$ROOT/bench/wrk-tokens.lua" \
      "http://127.0.0.1:${ENVOY_PORT[$setup]}/api/private-scoped" -- "$OUT/tokens-pool.txt" >/dev/null
  done
  n=${#SETUPS[@]}
  for r in $(seq 1 "$ROUNDS"); do
    log "envoy: round $r of $ROUNDS"
    for tokens in pool single; do
      # Rotate the order each round so that drift does not favour one setup.
      for k in $(seq 0 $((n - 1))); do
        setup=${SETUPS[$(((k + r) % n))]}
        wrk_run "$setup" "$tokens" "$CONNS" "$DURATION" "$r"
      done
      for k in $(seq 0 $((n - 1))); do
        setup=${SETUPS[$(((k + r) % n))]}
        wrk_run "$setup" "$tokens" 1 "$LAT_DURATION" "$r"
      done
    done
  done
  envoy_summary | tee "$OUT/envoy-summary.txt"
  for setup in "${SETUPS[@]}"; do stop "${ENVOY_PID[$setup]}"; done
  stop "$AUTHZ_PID"
  stop "$noop_pid"
}

envoy_summary() {
  local setup tokens conns sel rps p50 p99 ecpu acpu bad
  echo "# Through Envoy: medians of $ROUNDS rounds (wrk, HTTP/1.1; ${DURATION}s at $CONNS connections, ${LAT_DURATION}s at 1 connection)"
  printf '%-16s %-7s %5s %9s %9s %9s %14s %14s %8s %s\n' setup tokens conns 'req/s' 'p50 ms' 'p99 ms' 'envoy us/req' 'service us/req' 'non-2xx' \
    "$([ "$SYSCALLS" = 1 ] && echo 'envoy syscalls/req, switches/req')"
  for conns in "$CONNS" 1; do
    for tokens in pool single; do
      for setup in "${SETUPS[@]}"; do
        sel=$(grep "^setup=$setup tokens=$tokens conns=$conns " "$OUT/envoy-raw.txt" || true)
        rps=$(field rps <<<"$sel" | median)
        p50=$(field p50_us <<<"$sel" | median)
        p99=$(field p99_us <<<"$sel" | median)
        ecpu=$(field envoy_cpu_us <<<"$sel" | median)
        acpu=$(field authz_cpu_us <<<"$sel" | median)
        bad=$(field non2xx <<<"$sel" | awk '{s += $1} END {print s + 0}')
        local calls=""
        [ "$SYSCALLS" = 1 ] && calls="$(field envoy_syscalls <<<"$sel" | median) $(field envoy_switches <<<"$sel" | median)"
        printf '%-16s %-7s %5s %9.0f %9.3f %9.3f %14.1f %14.1f %8s %s\n' "$setup" "$tokens" "$conns" \
          "$rps" "$(awk -v v="$p50" 'BEGIN {print v / 1000}')" "$(awk -v v="$p99" 'BEGIN {print v / 1000}')" \
          "$ecpu" "$acpu" "$bad" "$calls"
        eval "RPS_${setup}_${tokens}_${conns}=$rps P50_${setup}_${tokens}_${conns}=$p50"
      done
    done
  done
  echo
  echo "# Ratios of medians (3 = ext_authz, 2 = jwt_authn, 1 = no auth)"
  for tokens in pool single; do
    local r3 r2 r2c r1 rn l3 l2 l2c
    # A setup left out (ENVOY_SETUPS) has no figures: its ratios print n/a.
    eval "r3=\${RPS_ext_authz_${tokens}_${CONNS}:-0} r2=\${RPS_jwt_authn_${tokens}_${CONNS}:-0} r2c=\${RPS_jwt_authn_cache_${tokens}_${CONNS}:-0} r1=\${RPS_noauth_${tokens}_${CONNS}:-0} rn=\${RPS_ext_authz_noop_${tokens}_${CONNS}:-0}"
    eval "l3=\${P50_ext_authz_${tokens}_1:-0} l2=\${P50_jwt_authn_${tokens}_1:-0} l2c=\${P50_jwt_authn_cache_${tokens}_1:-0}"
    awk -v t="$tokens" -v r3="$r3" -v r2="$r2" -v r2c="$r2c" -v r1="$r1" -v rn="$rn" -v l3="$l3" -v l2="$l2" -v l2c="$l2c" '
      function ratio(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "n/a" }
      function added(a, b) { return (a > 0 && b > 0) ? sprintf("%+.3f ms", (a - b) / 1000) : "n/a" }
      BEGIN {
      printf "%-7s req/s 3/2 (no JWT cache) %s   3/2 (jwt_cache_config) %s   3/1 %s   3/no-op service %s\n", t, ratio(r3, r2), ratio(r3, r2c), ratio(r3, r1), ratio(r3, rn)
      printf "%-7s added p50 at 1 connection: %s over jwt_authn, %s over jwt_authn with cache\n", t, added(l3, l2), added(l3, l2c)
    }'
  done
}

# ------------------------------------------------------------------ rpc

# loadgen_run LABEL ROUND PID ARGS...: one loadgen run (core 0); appends its RESULT line.
# Repeated (up to twice) when another workload ran alongside it.
loadgen_run() {
  local label=$1 round=$2 pid=$3 out line attempt
  shift 3
  for attempt in 1 2 3; do
    quiet
    out=$(pin 0 "$LOADGEN" check --issuer "$ISSUER" --tokens "$POOL" \
      --tokens-file "$OUT/tokens-pool.txt" --server-pid "$pid" "$@")
    others_running || break
    log "another workload ran during $label (attempt $attempt)"
  done
  echo "$out" >>"$OUT/rpc-full.txt"
  line=$(grep '^RESULT' <<<"$out") || die "loadgen printed no result"
  line="$line contended=$(others_running && echo 1 || echo 0)"
  echo "run=$label round=$round ${line#RESULT }" | tee -a "$OUT/rpc-raw.txt" >&2
}

rpc_section() {
  local port_hit=$((BASE_PORT + 191)) port_off=$((BASE_PORT + 193)) port_ref=$((BASE_PORT + 195))
  log "rpc: three servers on core 1 (token cache on; off; on with --jwks-refresh 1s), loadgen on core 0"
  authz rpc-cache-on 1 "$port_hit" $((port_hit + 1)) --log-level warn
  local pid_hit=$PID
  authz rpc-cache-off 1 "$port_off" $((port_off + 1)) --log-level warn --token-cache false
  local pid_off=$PID
  authz rpc-refresh 1 "$port_ref" $((port_ref + 1)) --log-level warn --jwks-refresh 1s
  local pid_ref=$PID
  # Reference only: tonic decoding the same request and allowing at once, no jwt-authz code.
  local port_noop=$((BASE_PORT + 199))
  start rpc-tonic-noop 1 "$LOADGEN" noop-server --listen "127.0.0.1:$port_noop" --max-time 2h
  local pid_noop=$PID
  "$LOADGEN" wait --addr "127.0.0.1:$port_noop" 2>/dev/null || die "noop-server did not start"
  : >"$OUT/rpc-raw.txt"
  : >"$OUT/rpc-full.txt"
  local closed=(--connections 2 --streams 32 --duration "${RPC_DURATION}s" --warmup 2s)
  local r
  for r in $(seq 1 "$ROUNDS"); do
    log "rpc: saturation round $r of $ROUNDS"
    loadgen_run uncached "$r" "$pid_off" --addr "127.0.0.1:$port_off" "${closed[@]}"
    loadgen_run cache_hit "$r" "$pid_hit" --addr "127.0.0.1:$port_hit" "${closed[@]}"
    loadgen_run noop_401 "$r" "$pid_hit" --addr "127.0.0.1:$port_hit" --no-auth "${closed[@]}"
    loadgen_run cache_hit_small "$r" "$pid_hit" --addr "127.0.0.1:$port_hit" --shape small "${closed[@]}"
    loadgen_run tonic_noop "$r" "$pid_noop" --addr "127.0.0.1:$port_noop" "${closed[@]}"
  done
  local open=(--rate 3000 --connections 1 --duration "${RPC_DURATION}s" --warmup 2s)
  for r in $(seq 1 "$ROUNDS"); do
    log "rpc: open loop round $r of $ROUNDS"
    loadgen_run open3k_cache_hit "$r" "$pid_hit" --addr "127.0.0.1:$port_hit" "${open[@]}"
    loadgen_run open3k_uncached "$r" "$pid_off" --addr "127.0.0.1:$port_off" "${open[@]}"
    loadgen_run open3k_jwks_refresh_1s "$r" "$pid_ref" --addr "127.0.0.1:$port_ref" "${open[@]}"
  done
  rpc_summary | tee "$OUT/rpc-summary.txt"
  stop "$pid_hit"
  stop "$pid_off"
  stop "$pid_ref"
  stop "$pid_noop"
}

rpc_summary() {
  local label sel
  echo "# Check RPC, server on one core: medians of $ROUNDS rounds; best = lowest of the rounds"
  printf '%-24s %8s %9s %9s %9s %9s %10s %7s %8s %s\n' run 'req/s' 'p50 us' 'p99 us' 'best p50' 'best p99' 'server us' 'util' 'loadgen' errors
  for label in uncached cache_hit noop_401 cache_hit_small tonic_noop open3k_cache_hit open3k_uncached open3k_jwks_refresh_1s; do
    sel=$(grep "^run=$label " "$OUT/rpc-raw.txt" || true)
    [ -n "$sel" ] || continue
    printf '%-24s %8.0f %9.1f %9.1f %9.1f %9.1f %10.1f %7.2f %8.2f %s\n' "$label" \
      "$(field rps <<<"$sel" | median)" "$(field p50_us <<<"$sel" | median)" \
      "$(field p99_us <<<"$sel" | median)" "$(field p50_us <<<"$sel" | sort -g | head -1)" \
      "$(field p99_us <<<"$sel" | sort -g | head -1)" \
      "$(field server_cpu_us <<<"$sel" | median)" "$(field server_util <<<"$sel" | median)" \
      "$(field loadgen_util <<<"$sel" | median)" \
      "$(field errors <<<"$sel" | awk '{s += $1} END {print s + 0}')"
  done
}

# ------------------------------------------------------------------ memory, cold start

memory_section() {
  local port=$((BASE_PORT + 201)) r pid idle full capped
  log "memory: RSS idle and after $MEM_TOKENS distinct tokens, $ROUNDS rounds"
  : >"$OUT/memory-raw.txt"
  for r in $(seq 1 "$ROUNDS"); do
    quiet
    authz mem 1 "$port" $((port + 1))
    pid=$PID
    sleep 1
    idle=$(rss_kib "$pid")
    pin 0 "$LOADGEN" check --addr "127.0.0.1:$port" --issuer "$ISSUER" --tokens "$MEM_TOKENS" \
      --tokens-file "$OUT/tokens.txt" --requests "$MEM_TOKENS" --warmup 0s \
      --connections 2 --streams 32 --server-pid "$pid" >"$OUT/memory-load-$r.txt"
    sleep 1
    full=$(rss_kib "$pid")
    curl -s "http://127.0.0.1:$((port + 1))/metrics" 2>/dev/null | grep -i 'token_cache' \
      >"$OUT/memory-metrics-$r.txt" || true
    stop "$pid"
    authz mem-capped 1 "$port" $((port + 1)) --token-cache-max-entries 10000
    pid=$PID
    pin 0 "$LOADGEN" check --addr "127.0.0.1:$port" --issuer "$ISSUER" --tokens "$MEM_TOKENS" \
      --tokens-file "$OUT/tokens.txt" --requests "$MEM_TOKENS" --warmup 0s \
      --connections 2 --streams 32 >/dev/null
    sleep 1
    capped=$(rss_kib "$pid")
    stop "$pid"
    echo "round=$r idle_kib=$idle full_kib=$full capped_kib=$capped" | tee -a "$OUT/memory-raw.txt" >&2
  done
  idle=$(field idle_kib <"$OUT/memory-raw.txt" | median)
  full=$(field full_kib <"$OUT/memory-raw.txt" | median)
  capped=$(field capped_kib <"$OUT/memory-raw.txt" | median)
  {
    echo "# Memory (VmRSS), medians of $ROUNDS fresh servers"
    echo "idle after SERVING: $idle KiB ($(awk -v k="$idle" 'BEGIN {printf "%.1f", k / 1024}') MiB)"
    echo "after $MEM_TOKENS distinct valid tokens (cache default, 100000 entries): $full KiB (+$(awk -v a="$full" -v b="$idle" 'BEGIN {printf "%.1f", (a - b) / 1024}') MiB)"
    echo "after the same $MEM_TOKENS tokens with --token-cache-max-entries 10000: $capped KiB (+$(awk -v a="$capped" -v b="$idle" 'BEGIN {printf "%.1f", (a - b) / 1024}') MiB)"
  } | tee "$OUT/memory-summary.txt"
}

coldstart_section() {
  local port=$((BASE_PORT + 211))
  log "coldstart: exec to SERVING, JWKS on loopback"
  quiet
  pin 1 "$LOADGEN" coldstart --addr "127.0.0.1:$port" --runs 11 -- "$AUTHZ" serve \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 1))" --issuer "$ISSUER" \
    --audience "$AUDIENCE" --jwks-uri "${ISSUER}jwks.json" | tee "$OUT/coldstart.txt"
}

# ------------------------------------------------------------------ scaling

# The same closed loop against a server on core 1 (one runtime worker: tokio sizes its pool
# from the CPUs the process may use) and a server on cores 0-1 (two workers). In the first
# case the load generator has core 0 to itself; in the second it shares both cores with
# the server, so the raw ratio is a lower bound. Checks per second of server CPU
# (1e6 / server us) shows what the server itself does with each core.
scaling_section() {
  local port1=$((BASE_PORT + 221)) port2=$((BASE_PORT + 223)) r pid1 pid2 pid1c pid2c
  log "scaling: one server on core 1, one on cores 0-1, $ROUNDS rounds"
  : >"$OUT/scaling-raw.txt"
  authz scale-1core 1 "$port1" $((port1 + 1)) --log-level warn --token-cache false
  pid1=$PID
  authz scale-2core 0,1 "$port2" $((port2 + 1)) --log-level warn --token-cache false
  pid2=$PID
  authz scale-1core-cache 1 $((port1 + 4)) $((port1 + 5)) --log-level warn
  pid1c=$PID
  authz scale-2core-cache 0,1 $((port2 + 4)) $((port2 + 5)) --log-level warn
  pid2c=$PID
  local closed=(--connections 2 --streams 32 --duration "${RPC_DURATION}s" --warmup 2s)
  for r in $(seq 1 "$ROUNDS"); do
    log "scaling: round $r of $ROUNDS"
    scaling_run uncached_1core "$r" "$pid1" 0 --addr "127.0.0.1:$port1" "${closed[@]}"
    scaling_run uncached_2core "$r" "$pid2" 0,1 --addr "127.0.0.1:$port2" "${closed[@]}"
    scaling_run cache_hit_1core "$r" "$pid1c" 0 --addr "127.0.0.1:$((port1 + 4))" "${closed[@]}"
    scaling_run cache_hit_2core "$r" "$pid2c" 0,1 --addr "127.0.0.1:$((port2 + 4))" "${closed[@]}"
  done
  scaling_summary | tee "$OUT/scaling-summary.txt"
  stop "$pid1"
  stop "$pid2"
  stop "$pid1c"
  stop "$pid2c"
}

# scaling_run LABEL ROUND PID LOADGEN_CPUS ARGS...: one loadgen run on LOADGEN_CPUS (two
# threads on two cores).
scaling_run() {
  local label=$1 round=$2 pid=$3 cpus=$4 out line attempt threads=1
  shift 4
  [ "$cpus" = 0,1 ] && threads=2
  for attempt in 1 2 3; do
    quiet
    out=$(pin "$cpus" "$LOADGEN" check --issuer "$ISSUER" --tokens "$POOL" \
      --tokens-file "$OUT/tokens-pool.txt" --server-pid "$pid" --threads "$threads" "$@")
    others_running || break
    log "another workload ran during $label (attempt $attempt)"
  done
  line=$(grep '^RESULT' <<<"$out") || die "loadgen printed no result"
  echo "run=$label round=$round ${line#RESULT }" | tee -a "$OUT/scaling-raw.txt" >&2
}

scaling_summary() {
  local kind one two
  echo "# Scaling across cores: medians of $ROUNDS rounds (closed loop, 2 connections x 32 streams)"
  printf '%-18s %9s %9s %10s %7s %16s\n' run 'req/s' 'p50 us' 'server us' 'util' 'Checks/server-s'
  for label in uncached_1core uncached_2core cache_hit_1core cache_hit_2core; do
    local sel
    sel=$(grep "^run=$label " "$OUT/scaling-raw.txt" || true)
    printf '%-18s %9.0f %9.1f %10.1f %7.2f %16.0f\n' "$label" \
      "$(field rps <<<"$sel" | median)" "$(field p50_us <<<"$sel" | median)" \
      "$(field server_cpu_us <<<"$sel" | median)" "$(field server_util <<<"$sel" | median)" \
      "$(field server_cpu_us <<<"$sel" | median | awk '{print 1e6 / $1}')"
    eval "RPS_$label=$(field rps <<<"$sel" | median)"
  done
  for kind in uncached cache_hit; do
    eval "one=\$RPS_${kind}_1core two=\$RPS_${kind}_2core"
    awk -v k="$kind" -v a="$one" -v b="$two" 'BEGIN {printf "%-10s req/s two cores / one core: %.2f\n", k, b / a}'
  done
}

# ------------------------------------------------------------------ main

mkdir -p "$OUT"
build
tools
machine
tokens
jwks_server
for section in $SECTIONS; do
  case $section in
    envoy) envoy_section ;;
    rpc) rpc_section ;;
    memory) memory_section ;;
    coldstart) coldstart_section ;;
    scaling) scaling_section ;;
    *) die "unknown section $section (envoy, rpc, memory, coldstart, scaling)" ;;
  esac
done
log "results in $OUT"
