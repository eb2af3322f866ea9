#!/usr/bin/env bash
# The whole test suite: installs grpcurl, Envoy and nginx (scripts/install-test-tools.sh), then
# runs every unit, integration and end-to-end test of the workspace (the service and bench/)
# with one cargo build, and closes with the totals over all test binaries.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-test-tools.sh
export GRPCURL="$root/.tools/bin/grpcurl"
export ENVOY="$root/.tools/venv/bin/envoy"
export NGINX=/usr/sbin/nginx

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --locked "$@" 2>&1 | tee "$log" || status=$?
passed=$(awk '/^test result:/ { sum += $4 } END { print sum + 0 }' "$log")
failed=$(awk '/^test result:/ { sum += $6 } END { print sum + 0 }' "$log")
echo "tests: $passed passed, $failed failed"
exit "$status"
