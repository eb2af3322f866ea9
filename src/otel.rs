//! OpenTelemetry traces, off unless configured (`tracing`, `OTEL_*`): one server span per
//! Check, child of the caller's trace, and client spans for the work a Check waits on (a
//! JWKS fetch, an introspection call, a Redis round trip), exported over OTLP/gRPC.
//!
//! Spans are built here and nowhere else, each with a fixed set of attributes: the wire,
//! rule, decision, code, step, status, method, the route (the path without its query) and
//! the verified issuer's label. Never a token, a claim value, a header or a query string. With traces off
//! nothing is read or allocated: [`CheckSpan::start`] returns an empty span.
//!
//! The caller's trace context is the W3C `traceparent` (and `tracestate`) of the call
//! itself when it has one (Envoy traces its ext_authz call and puts its own span there),
//! else of the request being authorized. A `traceparent` that is not exactly one
//! well-formed version-00 value is ignored: the Check starts a trace of its own.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{
    FutureExt as _, Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, SamplingResult, SdkTracer,
    SdkTracerProvider, ShouldSample, SpanData, SpanExporter, SpanLimits, SpanProcessor,
};

use crate::config::{TraceSampler, TracesConfig};
use crate::inbound::Inbound;
use crate::service::Wire;

/// The tracer, once traces are started; every span of the process comes from it.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// What became of the sampled spans (`/metrics`): ended (handed to the batch queue),
/// batches sent and refused, spans accepted by the collector.
static SPANS_ENDED: AtomicU64 = AtomicU64::new(0);
static EXPORTS_OK: AtomicU64 = AtomicU64::new(0);
static EXPORTS_FAILED: AtomicU64 = AtomicU64::new(0);
static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);

/// The exporter's counts, all 0 while traces are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCounts {
    /// Sampled spans that ended: queued for export, or dropped when the queue was full.
    pub spans_ended: u64,
    /// Spans the collector accepted.
    pub spans_exported: u64,
    pub batches_ok: u64,
    pub batches_failed: u64,
}

pub fn export_counts() -> ExportCounts {
    ExportCounts {
        spans_ended: SPANS_ENDED.load(Ordering::Relaxed),
        spans_exported: SPANS_EXPORTED.load(Ordering::Relaxed),
        batches_ok: EXPORTS_OK.load(Ordering::Relaxed),
        batches_failed: EXPORTS_FAILED.load(Ordering::Relaxed),
    }
}

/// How long shutdown waits for the last spans, at most: a collector that does not answer
/// must not hold a terminating process past its grace period.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The running exporter: [`Exporter::shutdown`] sends the spans still buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
    timeout: std::time::Duration,
}

/// Starts exporting spans as `config` says. Called once, inside the Tokio runtime (the
/// gRPC channel to the collector runs on it). The connection is made lazily: a collector
/// that is down costs dropped spans, never a Check.
pub fn start(config: &TracesConfig) -> Result<Exporter, String> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in &config.headers {
        // Both were checked when the configuration was read.
        let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
            .map_err(|_| format!("tracing: header `{name}`"))?;
        let value = tonic::metadata::MetadataValue::try_from(value.as_str())
            .map_err(|_| format!("tracing: the value of header `{name}`"))?;
        metadata.insert(name, value);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .with_metadata(metadata)
        .build()
        .map_err(|e| format!("tracing: {e}"))?;
    let sampler = CheckSampler::new(config.sampler);
    let resource = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            config
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_service_name(config.service_name.clone())
        .build();
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(config.batch.schedule_delay)
        .with_max_queue_size(config.batch.max_queue)
        .with_max_export_batch_size(config.batch.max_batch)
        .build();
    let processor = BatchSpanProcessor::builder(Counted(exporter))
        .with_batch_config(batch)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Ended(processor))
        .with_sampler(sampler)
        // Fixed, whatever OTEL_SPAN_* says (configuration refuses those): a limit below
        // a Check span's attributes would silently cut the decision off.
        .with_span_limits(SpanLimits::default())
        .with_resource(resource)
        .build();
    TRACER
        .set(provider.tracer("jwt-authz"))
        .map_err(|_| "tracing: already started in this process".to_owned())?;
    tracing::info!(
        endpoint = %config.endpoint,
        sampler = ?config.sampler,
        "traces exported over OTLP/gRPC"
    );
    Ok(Exporter {
        provider,
        timeout: config.timeout.min(SHUTDOWN_WAIT),
    })
}

impl Exporter {
    /// Exports what is buffered, within the export timeout (5 s at most), and stops.
    pub async fn shutdown(self) {
        let (provider, timeout) = (self.provider, self.timeout);
        // The provider blocks while the batch thread exports: off the runtime's workers.
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await;
        if let Ok(Err(e)) = done {
            tracing::warn!("traces: the last spans were not all exported: {e}");
        }
    }
}

/// The OTLP exporter, counting what it sends.
#[derive(Debug)]
struct Counted<E>(E);

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.0.export(batch).await;
        match &result {
            Ok(()) => {
                EXPORTS_OK.fetch_add(1, Ordering::Relaxed);
                SPANS_EXPORTED.fetch_add(spans, Ordering::Relaxed);
            }
            Err(_) => {
                // Logged by the SDK (its internal log, at error); counted here.
                EXPORTS_FAILED.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// The batch processor, counting the sampled spans handed to it (queued, or dropped by a
/// full queue: the SDK does not count those).
#[derive(Debug)]
struct Ended<P>(P);

impl<P: SpanProcessor> SpanProcessor for Ended<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        SPANS_ENDED.fetch_add(1, Ordering::Relaxed);
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Marks a Check's context whose parent came from the request (a header the client
/// chose), not from a proxy tracing its call.
#[derive(Debug, Clone, Copy)]
struct ClientChosen;

/// Which spans are recorded:
/// - a Check whose proxy traced its call (the call's `traceparent`) follows the proxy's
///   decision (parent-based), or the ratio by trace id (`Ratio`);
/// - a Check whose parent the client chose (the request's `traceparent`) joins that trace
///   but is sampled at the ratio by a keyed hash of its trace id: the client can neither
///   force sampling with its flag nor pick an id the ratio always takes;
/// - a Check without a parent: the ratio, by its fresh random trace id;
/// - a span inside a Check (JWKS fetch, introspection, Redis): as its Check.
#[derive(Debug, Clone)]
struct CheckSampler {
    sampler: TraceSampler,
    by_trace_id: Sampler,
    /// SipHash with this process's random keys: unpredictable to a client.
    key: std::collections::hash_map::RandomState,
}

impl CheckSampler {
    fn new(sampler: TraceSampler) -> CheckSampler {
        let ratio = match sampler {
            TraceSampler::ParentBased(r) | TraceSampler::Ratio(r) => r,
        };
        CheckSampler {
            sampler,
            by_trace_id: Sampler::TraceIdRatioBased(ratio),
            key: std::collections::hash_map::RandomState::new(),
        }
    }

    fn ratio(&self) -> f64 {
        match self.sampler {
            TraceSampler::ParentBased(r) | TraceSampler::Ratio(r) => r,
        }
    }
}

impl ShouldSample for CheckSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent_span = parent
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone());
        let sampled = match &parent_span {
            None => {
                return self
                    .by_trace_id
                    .should_sample(parent, trace_id, name, kind, attributes, links);
            }
            // Inside a Check: as the Check.
            Some(span) if !span.is_remote() => span.is_sampled(),
            Some(_) if parent.is_some_and(|cx| cx.get::<ClientChosen>().is_some()) => {
                use std::hash::BuildHasher as _;
                let draw = self.key.hash_one(trace_id.to_bytes()) >> 11;
                (draw as f64) < self.ratio() * (1u64 << 53) as f64
            }
            Some(span) => match self.sampler {
                TraceSampler::ParentBased(_) => span.is_sampled(),
                TraceSampler::Ratio(_) => {
                    return self
                        .by_trace_id
                        .should_sample(parent, trace_id, name, kind, attributes, links);
                }
            },
        };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: parent_span
                .map(|span| span.trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

/// The span of one Check; empty when traces are off.
pub struct CheckSpan(Option<Live>);

struct Live {
    cx: Context,
    /// The parent came from the request: no exemplar names this trace.
    client_chosen: bool,
    /// Whether [`CheckSpan::end`] ended it; else dropping it does (a cancelled Check).
    ended: AtomicBool,
}

/// How a Check ended, for its span.
pub struct Decided<'a> {
    /// `allow`, `deny` or `answer` (the service answered itself).
    pub decision: &'static str,
    /// The JSON `code` of a denial.
    pub code: Option<&'static str>,
    /// The status the answer carries.
    pub status: u16,
    /// The step that decided.
    pub step: &'static str,
    /// The rule's configured name.
    pub rule: &'a str,
    /// The label (redacted) of the issuer of the token that verified.
    pub issuer: Option<&'a str>,
    pub method: &'a str,
    /// The request's path; its query is cut here, never exported.
    pub path: &'a str,
}

/// The gRPC service and method a Check span names.
const CHECK_SERVICE: &str = "envoy.service.auth.v3.Authorization";

impl CheckSpan {
    /// No span.
    pub fn off() -> CheckSpan {
        CheckSpan(None)
    }

    /// Starts the span of a Check of `request` over `wire`, child of the trace context of
    /// `call` (the call's own headers) when it has a `traceparent`, else of the request's
    /// headers.
    pub fn start(wire: Wire, call: Option<&http::HeaderMap>, request: &Inbound<'_>) -> CheckSpan {
        let Some(tracer) = TRACER.get() else {
            return CheckSpan::off();
        };
        // The call's context when it carries one, valid or not: a malformed one is not
        // replaced by the request's, which the client chose.
        let from_call = call.filter(|headers| headers.contains_key("traceparent"));
        let parent = match from_call {
            Some(headers) => {
                remote_parent(|name| headers.get_all(name).iter().map(|v| v.as_bytes()))
            }
            None => remote_parent(|name| request.values(name)),
        };
        // Only a gRPC call's own context is the proxy's; the HTTP endpoint's request is the
        // client's, forwarded (nginx, Traefik).
        let client_chosen = parent.is_some() && (from_call.is_none() || wire == Wire::Http);
        let parent = match parent {
            None => Context::new(),
            Some(parent) if client_chosen => Context::new()
                .with_remote_span_context(parent)
                .with_value(ClientChosen),
            Some(parent) => Context::new().with_remote_span_context(parent),
        };
        let name = match wire {
            Wire::Grpc => "envoy.service.auth.v3.Authorization/Check",
            Wire::Http => "jwt-authz authorize",
        };
        let mut span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        if span.is_recording() {
            match wire {
                Wire::Grpc => span.set_attributes([
                    KeyValue::new("jwt_authz.wire", "grpc"),
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.service", CHECK_SERVICE),
                    KeyValue::new("rpc.method", "Check"),
                ]),
                Wire::Http => span.set_attribute(KeyValue::new("jwt_authz.wire", "http")),
            }
        }
        let cx = parent.with_span(span);
        CheckSpan(Some(Live {
            cx,
            client_chosen,
            ended: AtomicBool::new(false),
        }))
    }

    /// The context to run the Check in (the client spans it starts are the span's
    /// children); `None` when traces are off. The caller awaits its work in one branch or
    /// the other: a wrapper taking the work as an argument would hold it twice in its
    /// future.
    pub fn context(&self) -> Option<&Context> {
        self.0.as_ref().map(|live| &live.cx)
    }

    /// The trace and span ids, for the decision log line; `None` when traces are off.
    pub fn ids(&self) -> Option<(TraceId, SpanId)> {
        let live = self.0.as_ref()?;
        let span = live.cx.span();
        let context = span.span_context();
        context
            .is_valid()
            .then(|| (context.trace_id(), context.span_id()))
    }

    /// [`CheckSpan::ids`] when the span is sampled and its trace not the client's choice:
    /// what a metric's exemplar may name.
    pub fn sampled_ids(&self) -> Option<(TraceId, SpanId)> {
        let live = self.0.as_ref().filter(|live| !live.client_chosen)?;
        live.cx
            .span()
            .span_context()
            .is_sampled()
            .then(|| self.ids())
            .flatten()
    }

    /// Records how the Check ended and ends the span.
    pub fn end<'a>(&self, decided: impl FnOnce() -> Decided<'a>) {
        let Some(live) = &self.0 else {
            return;
        };
        if live.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        let span = live.cx.span();
        if span.is_recording() {
            let d = decided();
            let mut attributes = vec![
                KeyValue::new("jwt_authz.decision", d.decision),
                KeyValue::new("jwt_authz.step", d.step),
                KeyValue::new("jwt_authz.rule", clip(d.rule).to_owned()),
                KeyValue::new("http.request.method", known_method(d.method)),
                KeyValue::new(
                    "url.path",
                    clip(d.path.split('?').next().unwrap_or_default()).to_owned(),
                ),
                KeyValue::new("http.response.status_code", i64::from(d.status)),
            ];
            if let Some(code) = d.code {
                attributes.push(KeyValue::new("jwt_authz.code", code));
            }
            if let Some(issuer) = d.issuer {
                attributes.push(KeyValue::new("jwt_authz.issuer", clip(issuer).to_owned()));
            }
            span.set_attributes(attributes);
            // A denial is the service working; a 503 is the service unable to decide.
            if d.status >= 500 {
                span.set_status(Status::error(d.code.unwrap_or("unavailable")));
            }
        }
        span.end();
    }
}

/// A Check dropped before it decided (the proxy gave up waiting): its span says so.
impl Drop for CheckSpan {
    fn drop(&mut self) {
        let Some(live) = &self.0 else {
            return;
        };
        if live.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        let span = live.cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new("jwt_authz.decision", "cancelled"));
            span.set_status(Status::error("cancelled before a decision"));
        }
        span.end();
    }
}

/// A client span: work a Check waits on, or a background fetch. Empty when traces are off.
/// Dropped without [`ClientSpan::end`] (its Check cancelled), it ends as cancelled.
pub struct ClientSpan(Option<Context>);

impl ClientSpan {
    /// Starts `name`, child of the current Check's span when there is one (else the root
    /// of a trace of its own), with `attributes` (built only when the span records).
    pub fn start(name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) -> ClientSpan {
        let Some(tracer) = TRACER.get() else {
            return ClientSpan(None);
        };
        let parent = Context::current();
        let mut span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .start_with_context(tracer, &parent);
        if span.is_recording() {
            span.set_attributes(attributes());
        }
        let cx = parent.with_span(span);
        ClientSpan(Some(cx))
    }

    /// Ends the span, as failed with `error` when there is one (its text clipped).
    /// `attributes` are added first (built only when the span records).
    pub fn end(
        mut self,
        error: Option<&dyn std::fmt::Display>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) {
        let Some(cx) = self.0.take() else {
            return;
        };
        let span = cx.span();
        if span.is_recording() {
            span.set_attributes(attributes());
            if let Some(error) = error {
                span.set_status(Status::error(clip(&error.to_string()).to_owned()));
            }
        }
        span.end();
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        let Some(cx) = self.0.take() else {
            return;
        };
        let span = cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new("jwt_authz.result", "cancelled"));
            span.set_status(Status::error("cancelled before it ended"));
        }
        span.end();
    }
}

/// `work`, carrying the current trace context into a task of its own: a fetch one Check
/// starts for all is that Check's child.
pub fn in_current_context<F: Future>(work: F) -> impl Future<Output = F::Output> {
    work.with_current_context()
}

/// The remote parent named by the `traceparent` header (the one value of `values`, which
/// yields a header's values by name), with its `tracestate`.
fn remote_parent<'v, I>(values: impl Fn(&'static str) -> I) -> Option<SpanContext>
where
    I: Iterator<Item = &'v [u8]>,
{
    let mut parents = values("traceparent");
    let parent = parents.next()?;
    if parents.next().is_some() {
        return None;
    }
    let (trace_id, span_id, flags) = parse_traceparent(parent)?;
    // Several `tracestate` headers are one list (W3C: joined with commas); over 512 bytes
    // or malformed, it is dropped.
    let mut joined = Vec::new();
    for (i, part) in values("tracestate").enumerate() {
        if i > 0 {
            joined.push(b',');
        }
        joined.extend_from_slice(part);
        if joined.len() > 512 {
            break;
        }
    }
    let state = std::str::from_utf8(&joined)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// A `traceparent`: version `-` 32 lower-case hex `-` 16 lower-case hex `-` 2 hex, neither
/// id all zeros. Version `00` is exactly that; a later version (not `ff`) may add fields
/// after another `-`, which are ignored (W3C: read it as version 00). Anything else is no
/// parent.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    let text = std::str::from_utf8(value).ok()?;
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let (version, rest) = text.split_once('-')?;
    if version.len() != 2 || !lower_hex(version) || version == "ff" {
        return None;
    }
    let head = match rest.get(52..) {
        // `trace-span-flags` is 52 bytes; version 00 has nothing after it.
        Some("") => rest,
        Some(more) if version != "00" && more.starts_with('-') => &rest[..52],
        _ => return None,
    };
    let mut parts = head.split('-');
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
        || ![trace, span, flags].into_iter().all(lower_hex)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

/// The method as the semantic conventions name it: a known method, else `_OTHER`.
fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

/// Attribute values and statuses are at most 256 bytes.
fn clip(s: &str) -> &str {
    crate::telemetry::clip(s, 256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_well_formed_traceparent_is_a_parent() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, span, flags) = parse_traceparent(good.as_bytes()).unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
        assert!(flags.is_sampled());
        // A later version is read as version 00, what follows its fields ignored.
        for later in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-follows",
        ] {
            let (t, s, _) = parse_traceparent(later.as_bytes()).expect(later);
            assert_eq!((t, s), (trace, span), "{later}");
        }
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(
            !parse_traceparent(unsampled.as_bytes())
                .unwrap()
                .2
                .is_sampled()
        );
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad:?}");
        }
        let headers = |values: &'static [&'static str]| {
            move |name: &'static str| {
                values
                    .iter()
                    .filter(move |_| name == "traceparent")
                    .map(|v| v.as_bytes())
            }
        };
        const ONE: &[&str] = &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"];
        const TWO: &[&str] = &[ONE[0], ONE[0]];
        assert!(remote_parent(headers(ONE)).is_some());
        assert!(remote_parent(headers(TWO)).is_none());
        assert!(remote_parent(headers(&[])).is_none());
    }

    #[test]
    fn several_tracestates_are_one_list() {
        let values = |name: &'static str| {
            let list: &'static [&'static str] = match name {
                "traceparent" => &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
                _ => &["a=1", "b=2"],
            };
            list.iter().map(|v| v.as_bytes())
        };
        let parent = remote_parent(values).unwrap();
        assert_eq!(parent.trace_state().header(), "a=1,b=2");
    }

    /// The client's flag and trace id never decide; the proxy's flag does.
    #[test]
    fn the_client_cannot_choose_sampling() {
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let remote = |sampled: bool, client: bool| {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let span = SpanContext::new(
                trace,
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                flags,
                true,
                TraceState::default(),
            );
            let cx = Context::new().with_remote_span_context(span);
            if client {
                cx.with_value(ClientChosen)
            } else {
                cx
            }
        };
        let decide = |sampler: TraceSampler, parent: Option<&Context>, trace: TraceId| {
            CheckSampler::new(sampler)
                .should_sample(parent, trace, "Check", &SpanKind::Server, &[], &[])
                .decision
                == SamplingDecision::RecordAndSample
        };
        let zero = TraceSampler::ParentBased(0.0);
        let one = TraceSampler::ParentBased(1.0);
        assert!(
            decide(zero, Some(&remote(true, false)), trace),
            "the proxy's flag"
        );
        assert!(
            !decide(one, Some(&remote(false, false)), trace),
            "the proxy's flag"
        );
        assert!(
            !decide(zero, Some(&remote(true, true)), trace),
            "not the client's flag"
        );
        assert!(decide(one, Some(&remote(false, true)), trace), "the ratio");
        assert!(!decide(zero, None, trace));
        assert!(decide(one, None, trace));
        // The client's ids at ratio 0.5: about half taken, whatever ids it picks (the
        // trace-id ratio alone takes every id whose low bits are small).
        let half = TraceSampler::ParentBased(0.5);
        let taken = (1..=1000u128)
            .filter(|i| decide(half, Some(&remote(true, true)), TraceId::from(*i)))
            .count();
        assert!((350..=650).contains(&taken), "{taken} of 1000");
    }

    #[test]
    fn methods_are_named_or_other() {
        assert_eq!(known_method("GET"), "GET");
        assert_eq!(known_method("get"), "_OTHER");
        assert_eq!(known_method("PROPFIND"), "_OTHER");
    }
}
