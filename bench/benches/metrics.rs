//! What recording one Check costs the metrics, the service's hand-written counters
//! (`Metrics::record`: one atomic add for the decision, one for the latency bucket, one for
//! the sum; a bucket's exemplar under its own lock when the Check is sampled) against the
//! `prometheus-client` crate doing the same (a `Family` counter by decision and code, and a
//! `Histogram`, or a `HistogramWithExemplars` for the sampled case), on one thread and on
//! two at once (the server's two runtime workers). BENCHMARKS.md, "Metrics exposition".

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use jwt_authz::metrics::Metrics;
use opentelemetry::trace::{SpanId, TraceId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The service's latency buckets.
const BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Decision {
    decision: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Trace {
    trace_id: String,
    span_id: String,
}

/// The crate's equivalent of `Metrics::record`.
struct Crate {
    decisions: Family<Decision, Counter>,
    latency: Histogram,
    latency_exemplars: HistogramWithExemplars<Trace>,
}

impl Crate {
    fn new() -> Crate {
        Crate {
            decisions: Family::default(),
            latency: Histogram::new(BUCKETS),
            latency_exemplars: HistogramWithExemplars::new(BUCKETS.into_iter()),
        }
    }

    fn record(&self, elapsed: Duration, trace: Option<(TraceId, SpanId)>) {
        let labels = Decision {
            decision: "allow",
            code: "ok",
        };
        self.decisions.get_or_create(&labels).inc();
        match trace {
            None => self.latency.observe(elapsed.as_secs_f64()),
            Some((t, s)) => self.latency_exemplars.observe(
                elapsed.as_secs_f64(),
                Some(Trace {
                    trace_id: t.to_string(),
                    span_id: s.to_string(),
                }),
                None,
            ),
        }
    }
}

/// `iters` recordings split over `threads` threads at once; the wall time.
fn concurrently(threads: u64, iters: u64, record: Arc<dyn Fn() + Send + Sync>) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let record = Arc::clone(&record);
            std::thread::spawn(move || {
                for _ in 0..iters / threads {
                    record();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn metrics(c: &mut Criterion) {
    let elapsed = Duration::from_micros(40);
    let trace = (
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
    );
    let ours = Arc::new(Metrics::new(Vec::new(), None, Vec::new()));
    let theirs = Arc::new(Crate::new());
    let mut group = c.benchmark_group("metrics_record");
    for (name, sampled) in [("unsampled", None), ("sampled", Some(trace))] {
        let o = Arc::clone(&ours);
        group.bench_function(format!("hand_written_{name}"), |b| {
            b.iter(|| o.record(None, black_box(elapsed), sampled))
        });
        let t = Arc::clone(&theirs);
        group.bench_function(format!("prometheus_client_{name}"), |b| {
            b.iter(|| t.record(black_box(elapsed), sampled))
        });
        // The server's two runtime workers recording at once.
        let threads = 2;
        let o = Arc::clone(&ours);
        let record: Arc<dyn Fn() + Send + Sync> =
            Arc::new(move || o.record(None, black_box(elapsed), sampled));
        group.bench_function(format!("hand_written_{name}_{threads}_threads"), |b| {
            b.iter_custom(|iters| concurrently(threads, iters, Arc::clone(&record)))
        });
        let t = Arc::clone(&theirs);
        let record: Arc<dyn Fn() + Send + Sync> =
            Arc::new(move || t.record(black_box(elapsed), sampled));
        group.bench_function(format!("prometheus_client_{name}_{threads}_threads"), |b| {
            b.iter_custom(|iters| concurrently(threads, iters, Arc::clone(&record)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = metrics
}
criterion_main!(benches);
