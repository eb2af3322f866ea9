#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time, seeded from tests/fixtures and
# a few inputs written here.
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
    targets=(check_request request_bytes jwks_parse dpop_proof)
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
        request_bytes)
            # An encoded CheckRequest: headers map, required_scopes, a client certificate.
            printf '\x0a\x83\x01\x0a\x05\x2a\x03\x70\x65\x6d\x22\x61\x0a\x06\x08\x80\xf7\xc4\xd5\x06\x12\x57\x12\x03\x47\x45\x54\x1a\x1d\x0a\x0d\x61\x75\x74\x68\x6f\x72\x69\x7a\x61\x74\x69\x6f\x6e\x12\x0c\x42\x65\x61\x72\x65\x72\x20\x61\x2e\x62\x2e\x63\x1a\x0d\x0a\x06\x63\x6f\x6f\x6b\x69\x65\x12\x03\x61\x3d\x31\x22\x0a\x2f\x61\x70\x69\x2f\x78\x3f\x79\x3d\x31\x2a\x0f\x61\x70\x69\x2e\x65\x78\x61\x6d\x70\x6c\x65\x2e\x63\x6f\x6d\x32\x05\x68\x74\x74\x70\x73\x52\x17\x0a\x0f\x72\x65\x71\x75\x69\x72\x65\x64\x5f\x73\x63\x6f\x70\x65\x73\x12\x04\x72\x65\x61\x64' >"$dir/request"
            # Raw headers (`header_map`), one raw_value not UTF-8.
            printf '\x0a\x36\x22\x34\x12\x32\x12\x04\x50\x4f\x53\x54\x6a\x2a\x0a\x19\x0a\x0d\x61\x75\x74\x68\x6f\x72\x69\x7a\x61\x74\x69\x6f\x6e\x1a\x08\x42\x65\x61\x72\x65\x72\x20\xff\x0a\x0d\x0a\x04\x64\x70\x6f\x70\x12\x05\x78\x2e\x79\x2e\x7a' >"$dir/raw-headers"
            # Metadata (a Struct holding a list) and a destination socket address.
            printf '\x0a\x37\x5a\x20\x0a\x1e\x0a\x01\x66\x12\x19\x0a\x17\x0a\x01\x6b\x12\x12\x32\x10\x0a\x03\x1a\x01\x73\x0a\x09\x11\x00\x00\x00\x00\x00\x00\x00\x00\x12\x13\x0a\x11\x0a\x0f\x08\x01\x12\x08\x31\x30\x2e\x30\x2e\x30\x2e\x31\x18\x90\x3f' >"$dir/metadata"
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
