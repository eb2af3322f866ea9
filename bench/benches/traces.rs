//! What traces cost a cache-hit Check on the server's path (`AuthzService::check_encoded`,
//! the encoded request as Envoy sends it), in one of three modes, chosen by
//! `JWT_AUTHZ_BENCH_TRACES` because the tracer is one per process:
//!
//! - `off` (the default): no `tracing` block; what every Check costs today;
//! - `0`: traces on, parent-based sampling at ratio 0;
//! - `1`: traces on, every Check sampled.
//!
//! Each mode measures the Check without a trace context (`no_parent`) and with the
//! `traceparent` of a sampled caller in the call's metadata, as Envoy sends it when it
//! traces (`sampled_parent`): at ratio 0 that one is still recorded, as parent-based
//! sampling says. Spans go to an OTLP endpoint on a closed loopback port: built, batched
//! and handed to the exporter, whose send fails at once (the export itself runs on the
//! SDK's own thread, never in the Check). `bench/run-traces.sh` runs the three modes
//! alternately and prints the medians.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwt_authz::config::{BatchSettings, TraceSampler, TracesConfig};
use jwt_authz::service::AuthzService;
use jwt_authz::testkit::{Shape, allows, free_port};

fn traces(c: &mut Criterion) {
    let mode = std::env::var("JWT_AUTHZ_BENCH_TRACES").unwrap_or_else(|_| "off".to_owned());
    // The exporter's gRPC channel runs on the runtime: it needs a worker of its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _exporter = match mode.as_str() {
        "off" => None,
        ratio => {
            let ratio: f64 = ratio.parse().expect("JWT_AUTHZ_BENCH_TRACES: off, 0 or 1");
            let config = TracesConfig {
                endpoint: format!("http://127.0.0.1:{}", free_port()),
                headers: Vec::new(),
                sampler: TraceSampler::ParentBased(ratio),
                service_name: "jwt-authz-bench".to_owned(),
                resource: Vec::new(),
                timeout: Duration::from_secs(1),
                batch: BatchSettings::default(),
            };
            Some(
                rt.block_on(async { jwt_authz::otel::start(&config) })
                    .expect("traces start"),
            )
        }
    };
    let token = common::token("rsa-1", Algorithm::RS256);
    let config = common::config(true);
    let replay = std::sync::Arc::new(jwt_authz::replay::ReplayStore::memory(1_000));
    let service = AuthzService::from_config(&config, common::verifier(&config), replay);
    let encoded = common::encoded_request(&token, Shape::Small);
    let mut sampled = http::HeaderMap::new();
    sampled.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let first = rt
        .block_on(service.check_encoded(&encoded, None))
        .expect("Check answers");
    assert!(allows(&first), "a cache-hit Check allows");
    let mut group = c.benchmark_group(format!("traces_{mode}"));
    group.bench_function("no_parent", |b| {
        b.iter(|| {
            rt.block_on(service.check_encoded(black_box(&encoded), None))
                .map(|r| allows(&r))
        })
    });
    group.bench_function("sampled_parent", |b| {
        b.iter(|| {
            rt.block_on(service.check_encoded(black_box(&encoded), Some(&sampled)))
                .map(|r| allows(&r))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = traces
}
criterion_main!(benches);
