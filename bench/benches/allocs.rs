//! Heap allocations per Check on a token-cache hit, counted by a global allocator of this
//! bench binary (the service's own binary never has it). A Check here is what the server does
//! between the transport's bytes: the encoded `CheckRequest` in, the encoded
//! `CheckResponse` out (into a buffer kept across Checks, as tonic keeps its own), for the
//! full browser request and the small one Envoy sends with `allowed_headers`.
//!
//! - `prost`: the request decoded by prost into a `CheckRequest`, then
//!   `Authorization::check`, as tonic's generated server does;
//! - `lean`: `AuthzService::check_encoded`, the server's path: the lean reader, then the
//!   same decision.
//!
//! Each row is the mean over many Checks after a first one that fills the cache. Prints a
//! table and asserts only that every Check was allowed: counts are shown, not tested.
//!
//! ```text
//! cargo bench -p jwt-authz-bench --bench allocs
//! ```

mod common;

use std::alloc::System;

use bytes::Bytes;
use jsonwebtoken::Algorithm;
use jwt_authz::proto::{Authorization, CheckRequest, CheckResponse};
use jwt_authz::service::AuthzService;
use jwt_authz::testkit::{Shape, allows};
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

    fn lean_check(&self, request: &Bytes) -> CheckResponse {
        self.rt
            .block_on(self.service.check_encoded(request))
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
            steps.lean_check(&request),
            response,
            "{name}: the same answer"
        );
        row(
            "lean",
            "whole Check",
            count(|| {
                let response = steps.lean_check(&request);
                steps.encode(&response);
                assert!(allows(&response));
            }),
        );
        row(
            "lean",
            "decoding",
            count(|| {
                jwt_authz::service::lean::decode(&request).expect("the request reads");
            }),
        );
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
