//! Prometheus metrics for the admin port's `/metrics`, as Prometheus text or OpenMetrics
//! (what Prometheus asks for first), the one exposition with exemplars.
//!
//! Counters are atomics updated on the Check path with relaxed ordering; nothing here
//! allocates per request, and only a sampled Check (traces on) takes a lock: its latency
//! bucket's exemplar. Label values come from closed sets (decision, code, configured
//! issuer), never from the request. An exemplar names a sampled Check's trace, never one
//! whose parent the client chose.

use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use arc_swap::ArcSwap;
use opentelemetry::trace::{SpanId, TraceId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{AuthError, Code};
use crate::introspection::Introspector;
use crate::jwks::JwksCache;
use crate::replay::ReplayStore;
use crate::revocation::RevocationStore;
use crate::ssf::SsfStats;
use crate::token_cache::TokenCache;

/// Decision counters: index 0 counts allows, index `1 + code.index()` each denial code.
const DECISIONS: usize = 1 + Code::ALL.len();

/// Upper bounds of the Check latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

/// The two expositions: Prometheus text 0.0.4, and OpenMetrics 1.0 (what Prometheus asks
/// for first), which adds the latency histogram's exemplars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    Text,
    OpenMetrics,
}

impl Exposition {
    /// The exposition an HTTP `Accept` header asks for: OpenMetrics when it names it.
    pub fn for_accept(accept: Option<&str>) -> Exposition {
        match accept {
            Some(a)
                if a.to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Exposition::OpenMetrics
            }
            _ => Exposition::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Text => "text/plain; version=0.0.4; charset=utf-8",
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The last sampled Check of a latency bucket: its trace, for the bucket's exemplar.
#[derive(Debug, Clone, Copy)]
struct Exemplar {
    trace_id: TraceId,
    span_id: SpanId,
    seconds: f64,
    /// Unix seconds.
    at: f64,
}

/// The service's metrics.
pub struct Metrics {
    decisions: [AtomicU64; DECISIONS],
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Per bucket, the last sampled Check's trace (written only with traces on).
    exemplars: [Mutex<Option<Exemplar>>; BUCKETS.len() + 1],
    latency_sum_ns: AtomicU64,
    /// The current issuers' key caches; replaced when the configuration is reloaded.
    caches: ArcSwap<Vec<Arc<JwksCache>>>,
    token_cache: Option<Arc<TokenCache>>,
    /// Per shadow rule (by name), one counter per decision label. Rules are added by
    /// reloads, never removed, so a counter never goes backwards.
    shadow: RwLock<Vec<(String, Box<[AtomicU64]>)>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Unix seconds of the last successful reload (or of start-up), 0 before.
    last_reload_success: AtomicU64,
    /// The DPoP replay store, whose own counters are reported.
    replay: arc_swap::ArcSwapOption<ReplayStore>,
    /// The current issuers' introspection clients.
    introspectors: ArcSwap<Vec<Arc<Introspector>>>,
    revocations: arc_swap::ArcSwapOption<RevocationStore>,
    ssf: arc_swap::ArcSwapOption<SsfStats>,
}

impl Metrics {
    /// Metrics over these key caches, token cache and shadow rules (by name).
    pub fn new(
        caches: Vec<Arc<JwksCache>>,
        token_cache: Option<Arc<TokenCache>>,
        shadow_rules: Vec<String>,
    ) -> Metrics {
        let metrics = Metrics {
            decisions: Default::default(),
            buckets: Default::default(),
            exemplars: Default::default(),
            latency_sum_ns: AtomicU64::new(0),
            caches: ArcSwap::from_pointee(caches),
            token_cache,
            shadow: RwLock::new(Vec::new()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload_success: AtomicU64::new(0),
            replay: arc_swap::ArcSwapOption::empty(),
            introspectors: ArcSwap::from_pointee(Vec::new()),
            revocations: arc_swap::ArcSwapOption::empty(),
            ssf: arc_swap::ArcSwapOption::empty(),
        };
        metrics.add_shadow_rules(shadow_rules.iter().map(String::as_str));
        metrics
    }

    /// Reports `replay`'s counters and reachability.
    pub fn set_replay(&self, replay: Arc<ReplayStore>) {
        self.replay.store(Some(replay));
    }

    /// Replaces the introspection clients reported (after a reload).
    pub fn set_introspectors(&self, introspectors: Vec<Arc<Introspector>>) {
        self.introspectors.store(Arc::new(introspectors));
    }

    /// Reports the revocation store.
    pub fn set_revocations(&self, revocations: Option<Arc<RevocationStore>>) {
        self.revocations.store(revocations);
    }

    /// Reports the Shared Signals receiver's counters.
    pub fn set_ssf(&self, stats: Arc<SsfStats>) {
        self.ssf.store(Some(stats));
    }

    /// Replaces the key caches reported (after a reload).
    pub fn set_caches(&self, caches: Vec<Arc<JwksCache>>) {
        self.caches.store(Arc::new(caches));
    }

    /// Starts counting the shadow rules not counted yet.
    pub fn add_shadow_rules<'r>(&self, names: impl Iterator<Item = &'r str>) {
        let mut shadow = self.shadow.write().unwrap_or_else(PoisonError::into_inner);
        for name in names {
            if !shadow.iter().any(|(n, _)| n == name) {
                let counters = (0..DECISIONS).map(|_| AtomicU64::new(0)).collect();
                shadow.push((name.to_owned(), counters));
            }
        }
    }

    /// Records a configuration reload; `at_unix` is when a successful one happened.
    pub fn record_reload(&self, success: bool, at_unix: u64) {
        if success {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            self.last_reload_success.store(at_unix, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records one Check: its outcome (`None` for an allow) and how long it took.
    /// `trace` is the Check's sampled span, kept as its bucket's exemplar.
    pub fn record(
        &self,
        error: Option<&AuthError>,
        elapsed: Duration,
        trace: Option<(TraceId, SpanId)>,
    ) {
        let index = error.map_or(0, |e| 1 + e.code().index());
        self.decisions[index].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        if let Some((trace_id, span_id)) = trace {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            *self.exemplars[bucket]
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Exemplar {
                trace_id,
                span_id,
                seconds: secs,
                at,
            });
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records the would-be decision of shadow rule `rule` (`None` for an allow).
    pub fn record_shadow(&self, rule: &str, error: Option<&AuthError>) {
        let shadow = self.shadow.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counters)) = shadow.iter().find(|(name, _)| name == rule) {
            let index = error.map_or(0, |e| 1 + e.code().index());
            counters[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exposition `format`.
    pub fn render(&self, format: Exposition) -> String {
        let caches = self.caches.load();
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        header(
            &mut out,
            "jwt_authz_decisions_total",
            "counter",
            "Check decisions by result and JSON code.",
        );
        for ((decision, code), count) in labels().zip(&self.decisions) {
            let _ = writeln!(
                out,
                "jwt_authz_decisions_total{{decision=\"{decision}\",code=\"{code}\"}} {}",
                load(count)
            );
        }

        let shadow = self.shadow.read().unwrap_or_else(PoisonError::into_inner);
        if !shadow.is_empty() {
            header(
                &mut out,
                "jwt_authz_shadow_decisions_total",
                "counter",
                "Would-be decisions of shadow (report-only) rules, by rule, result and JSON code.",
            );
            for (rule, counts) in shadow.iter() {
                let rule = escape(rule);
                for ((decision, code), count) in labels().zip(counts.iter()) {
                    let _ = writeln!(
                        out,
                        "jwt_authz_shadow_decisions_total{{rule=\"{rule}\",decision=\"{decision}\",code=\"{code}\"}} {}",
                        load(count)
                    );
                }
            }
        }

        drop(shadow);

        render_introspection(&mut out, &self.introspectors.load());
        if let Some(revocations) = self.revocations.load_full() {
            render_revocations(&mut out, &revocations);
        }
        if let Some(ssf) = self.ssf.load_full() {
            ssf.render(&mut out);
        }
        if let Some(replay) = self.replay.load_full() {
            render_replay(&mut out, &replay);
        }

        header(
            &mut out,
            "jwt_authz_config_reloads_total",
            "counter",
            "Configuration reloads by result.",
        );
        let _ = writeln!(
            out,
            "jwt_authz_config_reloads_total{{result=\"success\"}} {}",
            load(&self.reloads_ok)
        );
        let _ = writeln!(
            out,
            "jwt_authz_config_reloads_total{{result=\"failure\"}} {}",
            load(&self.reloads_failed)
        );
        header(
            &mut out,
            "jwt_authz_config_last_reload_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful configuration load (start-up or reload).",
        );
        let _ = writeln!(
            out,
            "jwt_authz_config_last_reload_success_timestamp_seconds {}",
            load(&self.last_reload_success)
        );

        header(
            &mut out,
            "jwt_authz_check_duration_seconds",
            "histogram",
            "Time to answer a Check, in seconds.",
        );
        let mut cumulative = 0;
        let bounds = BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()]);
        for (i, (bound, count)) in bounds.zip(&self.buckets).enumerate() {
            cumulative += load(count);
            let _ = write!(
                out,
                "jwt_authz_check_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
            if format == Exposition::OpenMetrics {
                let exemplar = *self.exemplars[i]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(e) = exemplar {
                    let _ = write!(
                        out,
                        " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {:.3}",
                        e.trace_id, e.span_id, e.seconds, e.at
                    );
                }
            }
            out.push('\n');
        }
        let sum = load(&self.latency_sum_ns) as f64 / 1e9;
        let _ = writeln!(out, "jwt_authz_check_duration_seconds_sum {sum}");
        let _ = writeln!(out, "jwt_authz_check_duration_seconds_count {cumulative}");

        if let Some(cache) = &self.token_cache {
            header(
                &mut out,
                "jwt_authz_token_cache_hits_total",
                "counter",
                "Checks answered from the verified-token cache.",
            );
            let _ = writeln!(
                out,
                "jwt_authz_token_cache_hits_total {}",
                load(&cache.hits)
            );
            header(
                &mut out,
                "jwt_authz_token_cache_misses_total",
                "counter",
                "Checks whose token was not in the cache.",
            );
            let _ = writeln!(
                out,
                "jwt_authz_token_cache_misses_total {}",
                load(&cache.misses)
            );
            header(
                &mut out,
                "jwt_authz_token_cache_entries",
                "gauge",
                "Verified tokens held in the cache.",
            );
            let _ = writeln!(out, "jwt_authz_token_cache_entries {}", cache.len());
            header(
                &mut out,
                "jwt_authz_token_cache_bytes",
                "gauge",
                "Bytes the verified-token cache's entries hold (bounded by token_cache.max_bytes).",
            );
            let _ = writeln!(out, "jwt_authz_token_cache_bytes {}", cache.bytes());
        }

        header(
            &mut out,
            "jwt_authz_jwks_fetches_total",
            "counter",
            "JWKS fetches by issuer and result.",
        );
        for cache in caches.iter() {
            let issuer = escape(cache.label());
            let _ = writeln!(
                out,
                "jwt_authz_jwks_fetches_total{{issuer=\"{issuer}\",result=\"success\"}} {}",
                load(&cache.stats.fetch_ok)
            );
            let _ = writeln!(
                out,
                "jwt_authz_jwks_fetches_total{{issuer=\"{issuer}\",result=\"error\"}} {}",
                load(&cache.stats.fetch_error)
            );
        }
        header(
            &mut out,
            "jwt_authz_jwks_keys",
            "gauge",
            "Signing keys loaded, by issuer.",
        );
        for cache in caches.iter() {
            let keys = cache.current().map_or(0, |k| k.len());
            let _ = writeln!(
                out,
                "jwt_authz_jwks_keys{{issuer=\"{}\"}} {keys}",
                escape(cache.label())
            );
        }
        header(
            &mut out,
            "jwt_authz_jwks_up",
            "gauge",
            "1 when the last JWKS fetch of the issuer succeeded.",
        );
        for cache in caches.iter() {
            let up = u8::from(!cache.is_failing() && cache.current().is_some());
            let _ = writeln!(
                out,
                "jwt_authz_jwks_up{{issuer=\"{}\"}} {up}",
                escape(cache.label())
            );
        }
        header(
            &mut out,
            "jwt_authz_jwks_last_success_age_seconds",
            "gauge",
            "Seconds since the last successful JWKS fetch, by issuer (absent before the first).",
        );
        for cache in caches.iter() {
            if let Some(age) = cache.stats.last_success_age() {
                let _ = writeln!(
                    out,
                    "jwt_authz_jwks_last_success_age_seconds{{issuer=\"{}\"}} {}",
                    escape(cache.label()),
                    age.as_secs()
                );
            }
        }
        render_traces(&mut out, crate::otel::export_counts());
        match format {
            Exposition::Text => out,
            Exposition::OpenMetrics => openmetrics(&out),
        }
    }
}

/// The `decision` and `code` labels, in counter order.
fn labels() -> impl Iterator<Item = (&'static str, &'static str)> {
    std::iter::once(("allow", "ok")).chain(Code::ALL.iter().map(|c| ("deny", c.as_str())))
}

/// Introspection calls by result and answer-cache hits, per issuer.
fn render_introspection(out: &mut String, introspectors: &[Arc<Introspector>]) {
    if introspectors.is_empty() {
        return;
    }
    header(
        out,
        "jwt_authz_introspection_calls_total",
        "counter",
        "Calls to an issuer's introspection endpoint by result: active, inactive, failed (answered 503 introspection_unavailable).",
    );
    for x in introspectors {
        let issuer = escape(&crate::fetch_url::redact_str(x.issuer()));
        for (result, count) in [
            ("active", &x.stats.active),
            ("inactive", &x.stats.inactive),
            ("failed", &x.stats.failed),
        ] {
            let _ = writeln!(
                out,
                "jwt_authz_introspection_calls_total{{issuer=\"{issuer}\",result=\"{result}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
    header(
        out,
        "jwt_authz_introspection_cache_hits_total",
        "counter",
        "Introspection answers served from the answer cache.",
    );
    for x in introspectors {
        let issuer = escape(&crate::fetch_url::redact_str(x.issuer()));
        let _ = writeln!(
            out,
            "jwt_authz_introspection_cache_hits_total{{issuer=\"{issuer}\"}} {}",
            x.stats.cache_hits.load(Ordering::Relaxed)
        );
    }
}

/// Revocations in force, applied, and whether the store is current.
fn render_revocations(out: &mut String, store: &RevocationStore) {
    header(
        out,
        "jwt_authz_revocations",
        "gauge",
        "Revocations in force held by this replica.",
    );
    let _ = writeln!(out, "jwt_authz_revocations {}", store.len());
    header(
        out,
        "jwt_authz_revocations_applied_total",
        "counter",
        "Revocations this replica applied (command line, Security Event Tokens, other replicas).",
    );
    let _ = writeln!(
        out,
        "jwt_authz_revocations_applied_total {}",
        store.applied()
    );
    header(
        out,
        "jwt_authz_revocation_store_current",
        "gauge",
        "Whether this replica can vouch it holds every revocation (1); 0 refuses every token with revocation_unavailable.",
    );
    let _ = writeln!(
        out,
        "jwt_authz_revocation_store_current{{store=\"{}\"}} {}",
        escape(&store.describe()),
        u8::from(store.is_current())
    );
}

/// The trace exporter, all 0 while traces are off.
fn render_traces(out: &mut String, counts: crate::otel::ExportCounts) {
    header(
        out,
        "jwt_authz_trace_spans_ended_total",
        "counter",
        "Sampled spans that ended: queued for export, or dropped by a full queue.",
    );
    let _ = writeln!(
        out,
        "jwt_authz_trace_spans_ended_total {}",
        counts.spans_ended
    );
    header(
        out,
        "jwt_authz_trace_spans_exported_total",
        "counter",
        "Spans the OTLP collector accepted.",
    );
    let _ = writeln!(
        out,
        "jwt_authz_trace_spans_exported_total {}",
        counts.spans_exported
    );
    header(
        out,
        "jwt_authz_trace_exports_total",
        "counter",
        "Span batches sent to the OTLP collector, by result (failed: not accepted, the spans are lost).",
    );
    let _ = writeln!(
        out,
        "jwt_authz_trace_exports_total{{result=\"ok\"}} {}",
        counts.batches_ok
    );
    let _ = writeln!(
        out,
        "jwt_authz_trace_exports_total{{result=\"failed\"}} {}",
        counts.batches_failed
    );
}

/// The DPoP replay store: whether it answers, what its operations gave, its size.
fn render_replay(out: &mut String, replay: &ReplayStore) {
    let stats = replay.stats();
    let store = stats.kind;
    header(
        out,
        "jwt_authz_dpop_replay_store_up",
        "gauge",
        "Whether the DPoP replay store answered its last operation or probe (1) or not (0).",
    );
    let _ = writeln!(
        out,
        "jwt_authz_dpop_replay_store_up{{store=\"{store}\"}} {}",
        u8::from(replay.reachable())
    );
    header(
        out,
        "jwt_authz_dpop_replay_store_operations_total",
        "counter",
        "DPoP proof jti lookups by result: first_use (accepted), replay (refused), unavailable and full (refused, 503).",
    );
    let first_use = stats
        .operations
        .saturating_sub(stats.replays + stats.unavailable + stats.full);
    for (result, count) in [
        ("first_use", first_use),
        ("replay", stats.replays),
        ("unavailable", stats.unavailable),
        ("full", stats.full),
    ] {
        let _ = writeln!(
            out,
            "jwt_authz_dpop_replay_store_operations_total{{store=\"{store}\",result=\"{result}\"}} {count}"
        );
    }
    header(
        out,
        "jwt_authz_dpop_replay_store_refused_total",
        "counter",
        "DPoP proofs refused before the store was asked: key_quota (the proof key holds its maximum of unexpired proofs), unproven (issued before the store was known complete, or before a reload widened the window).",
    );
    for (reason, count) in [
        ("key_quota", stats.holder_full),
        ("unproven", stats.unproven),
    ] {
        let _ = writeln!(
            out,
            "jwt_authz_dpop_replay_store_refused_total{{store=\"{store}\",reason=\"{reason}\"}} {count}"
        );
    }
    header(
        out,
        "jwt_authz_dpop_replay_store_entries",
        "gauge",
        "jtis held by the in-memory replay store (0 for Redis, which expires them itself).",
    );
    let _ = writeln!(
        out,
        "jwt_authz_dpop_replay_store_entries{{store=\"{store}\"}} {}",
        stats.entries
    );
}

/// The text exposition `text` as OpenMetrics: a counter family is named without its
/// `_total` (its samples keep it), and the exposition ends with `# EOF`. Every counter
/// here is named `..._total` (a unit test checks it).
fn openmetrics(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        let family = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let name = rest.split(' ').next()?;
            counters
                .contains(&name)
                .then_some((*p, name, &rest[name.len()..]))
        });
        match family {
            Some((prefix, name, rest)) => {
                out.push_str(prefix);
                out.push_str(name.strip_suffix("_total").unwrap_or(name));
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, quote, newline) per the exposition format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
