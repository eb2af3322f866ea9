//! Heap allocations per Check on a token-cache hit, counted by a global allocator of this
//! bench binary (the service's own binary never has it). A Check here is what the server does
//! between the transport's bytes: the encoded `CheckRequest` in, the encoded
//! `CheckResponse` out (into a buffer kept across Checks, as tonic keeps its own), for the
//! full browser request and the small one Envoy sends with `allowed_headers`.
//!
//! - `prost`: the request decoded by prost into a `CheckRequest`, then
//!   `Authorization::check`, as tonic's generated server does;
//! - `bytes`: `AuthzService::check_encoded`, the server's path: the byte reader, then the
//!   same decision.
//!
//! Each row is the mean over many Checks after a first one that fills the cache. Prints a
//! table and asserts only that every Check was allowed: counts are shown, not tested.
//!
//! Then the token cache's memory per entry: the heap a Check of a new token leaves
//! behind (the entry, its map slot and the map's growth), beside what the cache counts
//! against `token_cache.max_bytes`, for a typical token and a 7.4 KB one, with and
//! without `forward_payload_header`.
//!
//! ```text
//! cargo bench -p jwt-authz-bench --bench allocs
//! ```

mod common;

use std::alloc::System;

use bytes::Bytes;
use jsonwebtoken::Algorithm;
use jwt_authz::service::AuthzService;
use jwt_authz::testkit::{Shape, allows};
use jwt_authz::wire::proto::{Authorization, CheckRequest, CheckResponse};
use prost::Message;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Checks counted per row.
const CHECKS: u64 = 2_000;

/// One Check's steps, each done by `run` for a row.
struct Steps<'a> {
    rt: &'a tokio::runtime::Runtime,
    service: &'a AuthzService,
    out: Vec<u8>,
}

impl Steps<'_> {
    fn prost_decode(&self, request: &Bytes) -> CheckRequest {
        CheckRequest::decode(request.clone()).expect("the request decodes")
    }

    fn prost_check(&self, request: CheckRequest) -> CheckResponse {
        self.rt
            .block_on(self.service.check(tonic::Request::new(request)))
            .expect("Check answers")
            .into_inner()
    }

    fn bytes_check(&self, request: &Bytes) -> CheckResponse {
        self.rt
            .block_on(self.service.check_encoded(request, None))
            .expect("Check answers")
    }

    fn encode(&mut self, response: &CheckResponse) {
        self.out.clear();
        response.encode(&mut self.out).expect("the buffer grows");
    }
}

/// Allocations (and reallocations) and bytes allocated per call of `f`, over [`CHECKS`]
/// calls.
fn count(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let region = Region::new(GLOBAL);
    for _ in 0..CHECKS {
        f();
    }
    let stats = region.change();
    let calls = CHECKS as f64;
    (
        (stats.allocations + stats.reallocations) as f64 / calls,
        stats.bytes_allocated as f64 / calls,
    )
}

fn main() {
    let rt = common::runtime();
    let config = common::config(true);
    let replay = std::sync::Arc::new(jwt_authz::replay::ReplayStore::memory(1_000));
    let service = AuthzService::from_config(&config, common::verifier(&config), replay);
    let token = common::token("rsa-1", Algorithm::RS256);
    let mut steps = Steps {
        rt: &rt,
        service: &service,
        out: Vec::with_capacity(8192),
    };
    println!("allocations per Check on a token-cache hit ({CHECKS} Checks per row)");
    println!(
        "| request | bytes | path | step | allocations | bytes allocated |\n| --- | ---: | --- | --- | ---: | ---: |"
    );
    for (name, shape) in [("full", Shape::Full), ("small", Shape::Small)] {
        let request = common::encoded_request(&token, shape);
        let row = |path: &str, step: &str, (allocations, bytes): (f64, f64)| {
            println!(
                "| {name} | {} | {path} | {step} | {allocations:.1} | {bytes:.0} |",
                request.len()
            );
        };
        let decoded = steps.prost_decode(&request);
        let response = steps.prost_check(decoded.clone());
        assert!(allows(&response), "{name}: the Check allows");
        row(
            "prost",
            "whole Check",
            count(|| {
                let response = steps.prost_check(steps.prost_decode(&request));
                steps.encode(&response);
                assert!(allows(&response));
            }),
        );
        row(
            "prost",
            "decoding",
            count(|| drop(steps.prost_decode(&request))),
        );
        row(
            "prost",
            "check and encoding",
            count_with(&decoded, |decoded| {
                let response = steps.prost_check(decoded);
                steps.encode(&response);
            }),
        );
        assert_eq!(
            steps.bytes_check(&request),
            response,
            "{name}: the same answer"
        );
        row(
            "bytes",
            "whole Check",
            count(|| {
                let response = steps.bytes_check(&request);
                steps.encode(&response);
                assert!(allows(&response));
            }),
        );
        row(
            "bytes",
            "decoding",
            count(|| {
                jwt_authz::wire::grpc::decode(&request).expect("the request reads");
            }),
        );
    }
    cache_bytes(&rt);
    replay_bytes(&rt);
}

/// Proofs recorded per row of the replay-store table (a few when run as a test).
fn proofs() -> u64 {
    if measuring() { 200_000 } else { 2_000 }
}

/// Whether this is a measured run (`cargo bench` passes `--bench`), not `cargo test`
/// running every target once: then the tables use few tokens and proofs.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Heap the in-memory replay store holds per recorded proof (its map and expiry queue, and
/// the per-key quota's count), for proofs of one key and of many.
fn replay_bytes(rt: &tokio::runtime::Runtime) {
    use jwt_authz::replay::{ProofUse, ProofWindow, ReplayStore, Use};
    let count = proofs();
    println!("\nin-memory replay store: heap per recorded proof ({count} proofs per row)");
    println!("| proof keys | heap per proof | 1,000,000 proofs |\n| --- | ---: | ---: |");
    for keys in [1u64, 100, count] {
        let store = ReplayStore::memory(count as usize).with_holder_quota(count as usize);
        let window = ProofWindow {
            max_age_ms: 65_000,
            skew_ms: 5_000,
        };
        store.adopt(window, 1_000_000);
        let region = Region::new(GLOBAL);
        for n in 0..count {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&n.to_be_bytes());
            let mut holder = [0u8; 32];
            holder[..8].copy_from_slice(&(n % keys).to_be_bytes());
            let used = ProofUse {
                key,
                holder,
                iat_ms: 1_000_000,
            };
            let first = rt.block_on(store.record(&used, 1_000_000));
            assert_eq!(first, Ok(Use::First));
        }
        let stats = region.change();
        let heap = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64
            + stats.bytes_reallocated as f64;
        let per = heap / count as f64;
        println!(
            "| {keys} | {per:.0} | {:.0} MiB |",
            per * 1_000_000.0 / f64::from(1u32 << 20)
        );
    }
}

/// Tokens per row of the cache table (a few when run as a test).
fn tokens() -> usize {
    if measuring() { 20_000 } else { 50 }
}

/// Heap a cached token holds: the net heap change over Checks of [`tokens`] new tokens with
/// the cache, less the same without it (what every Check leaves behind whatever the cache,
/// as these counts see it), per cached entry; beside what the cache counts against
/// `token_cache.max_bytes` at the default budget.
fn cache_bytes(rt: &tokio::runtime::Runtime) {
    let count = tokens();
    println!("\ntoken cache memory per entry ({count} distinct tokens per row)");
    println!(
        "| token | upstream | request bytes | entries | heap per entry | counted per entry |\n| --- | --- | ---: | ---: | ---: | ---: |"
    );
    for (label, pad) in [("typical", 0usize), ("7.4 KB", 5_300), ("700 objects", 700)] {
        let requests: Vec<_> = (0..count)
            .map(|i| {
                let mut claims = jwt_authz::testkit::claims(common::ISSUER);
                claims["sub"] = "auth0|bench-user".into();
                claims["jti"] = format!("token-{i}").into();
                if label == "700 objects" {
                    // A claim of many one-member objects: the metadata tree's worst shape.
                    claims["groups"] = (0..pad).map(|_| serde_json::json!({"a": 1})).collect();
                } else if pad > 0 {
                    claims["groups"] = "g".repeat(pad).into();
                }
                let token = jwt_authz::testkit::mint_with(
                    &jwt_authz::testkit::key("rsa-1"),
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &claims,
                );
                common::encoded_request(&token, Shape::Small)
            })
            .collect();
        let variants: &[(&str, &str)] = if label == "700 objects" {
            &[(
                "metadata_claims",
                "upstream:\n  metadata_claims: [groups]\n",
            )]
        } else {
            &[
                ("none", "{}"),
                (
                    "forward_payload_header",
                    "upstream:\n  forward_payload_header: x-jwt-payload\n",
                ),
            ]
        };
        for (forward, text) in variants {
            let mut heap = [0.0; 2];
            let mut gauges = (0.0, 0.0);
            for (i, cache) in [false, true].into_iter().enumerate() {
                let config = common::config_with(cache, text);
                let replay = std::sync::Arc::new(jwt_authz::replay::ReplayStore::memory(1_000));
                let service = AuthzService::from_config(&config, common::verifier(&config), replay);
                let region = Region::new(GLOBAL);
                for request in &requests {
                    let response = rt
                        .block_on(service.check_encoded(request, None))
                        .expect("Check answers");
                    assert!(allows(&response));
                }
                let stats = region.change();
                heap[i] = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64
                    + stats.bytes_reallocated as f64;
                let metrics = service
                    .metrics()
                    .render(jwt_authz::metrics::Exposition::Text);
                let gauge = |name: &str| {
                    metrics
                        .lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                        .and_then(|v| v.parse::<f64>().ok())
                };
                if let (Some(entries), Some(bytes)) = (
                    gauge("jwt_authz_token_cache_entries"),
                    gauge("jwt_authz_token_cache_bytes"),
                ) {
                    gauges = (entries, bytes);
                }
            }
            let (entries, counted) = gauges;
            println!(
                "| {label} | {forward} | {} | {entries} | {:.0} | {:.0} |",
                requests[0].len(),
                (heap[1] - heap[0]) / entries,
                counted / entries
            );
        }
    }
}

/// [`count`] for a step that takes its input by value: the clones of `input` are made
/// outside the count.
fn count_with<T: Clone>(input: &T, mut f: impl FnMut(T)) -> (f64, f64) {
    f(input.clone());
    let inputs: Vec<T> = (0..CHECKS).map(|_| input.clone()).collect();
    let region = Region::new(GLOBAL);
    for input in inputs {
        f(input);
    }
    let stats = region.change();
    let calls = CHECKS as f64;
    (
        (stats.allocations + stats.reallocations) as f64 / calls,
        stats.bytes_allocated as f64 / calls,
    )
}
