#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time, seeded from tests/fixtures.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s each, every target)
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 0      (a fixed number of executions per target)
#
# Crashes are kept in fuzz/artifacts/<target>/ (replay one with
# `cargo +nightly fuzz run <target> <file>`); each becomes a regression test in
# tests/security.rs. The corpus grows in fuzz/corpus/<target>/ across runs. Exits non-zero
# when any target crashed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(check_request jwks_parse dpop_proof)
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# libFuzzer's instrumentation and AddressSanitizer need a nightly compiler. Use one when
# rustup has it; otherwise let the stable compiler accept the nightly flags and fuzz
# without a sanitizer (Rust's own checks still turn memory bugs into panics).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cargo=(cargo +nightly fuzz)
    sanitizer=()
else
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo fuzz)
    sanitizer=(--sanitizer none)
fi

seed() {
    local dir=corpus/$1
    mkdir -p "$dir"
    case $1 in
        jwks_parse)
            cp ../tests/fixtures/jwks.json "$dir/fixtures-jwks.json"
            printf '{"keys":[]}' >"$dir/empty"
            printf '{"keys":[{"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"},42,"x",{"kty":"oct","k":"AA"}]}' >"$dir/bad-keys"
            ;;
        check_request)
            # Mode 2: one of the target's valid tokens, unedited (an allow), for each token.
            for token in 0 1 2 3 4; do
                printf "\\x02\\x$token\\x00\\x00\\x00" >"$dir/valid-token-$token"
            done
            printf '\x02\x00\x01\x00\x20AAAA' >"$dir/token-0-edited"
            # Mode 1: a raw header value, in `headers` and (high bit) in `header_map`.
            printf '\x01Bearer a.b.c' >"$dir/header"
            printf '\x81bearer \xff\xfe.e30.' >"$dir/raw-header"
            ;;
        dpop_proof)
            # Mode 1: one of the target's valid proofs, unedited, for each proof.
            for proof in 0 1 2 3; do
                printf "\x01\x$proof\x00\x00\x00" >"$dir/valid-proof-$proof"
            done
            printf '\x00a.b.c\x00d.e.f' >"$dir/two-headers"
            ;;
    esac
}

failed=()
for target in "${targets[@]}"; do
    seed "$target"
    mkdir -p "artifacts/$target"
    log=$(mktemp)
    if [ -n "${FUZZ_RUNS:-}" ]; then
        bound=(-runs="$FUZZ_RUNS")
        echo "fuzzing $target for $FUZZ_RUNS executions"
    else
        bound=(-max_total_time="$seconds")
        echo "fuzzing $target for ${seconds}s"
    fi
    started=$(date +%s)
    if "${cargo[@]}" run "${sanitizer[@]}" -O "$target" "corpus/$target" -- \
        "${bound[@]}" -max_len=16384 -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=crashed
        failed+=("$target")
    fi
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' || echo "?")
    [ "$status" = ok ] || runs=$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#' || echo "?")
    echo "$target: $status, $runs executions in $(($(date +%s) - started)) s, corpus $(find "corpus/$target" -type f | wc -l) inputs"
    if [ "$status" != ok ]; then
        tail -40 "$log"
        ls -l "artifacts/$target"
    fi
    rm -f "$log"
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
