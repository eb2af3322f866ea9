//! OpenTelemetry traces, off unless configured (`tracing`, `OTEL_*`): one server span per
//! Check, child of the caller's trace, and client spans for the work a Check waits on (a
//! JWKS fetch, an introspection call, a Redis round trip), exported over OTLP/gRPC.
//!
//! Spans are built here and nowhere else, each with a fixed set of attributes: the wire,
//! rule, decision, code, step, status, method and the verified issuer. Never a token, a
//! claim value other than the verified `iss`, a header or a query string. With traces off
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
    FutureExt as _, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter,
};

use crate::config::{TraceSampler, TracesConfig};
use crate::inbound::Inbound;
use crate::service::Wire;

/// The tracer, once traces are started; every span of the process comes from it.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// What the exporter did: batches sent and refused, spans sent (`/metrics`).
static EXPORTS_OK: AtomicU64 = AtomicU64::new(0);
static EXPORTS_FAILED: AtomicU64 = AtomicU64::new(0);
static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);

/// Export counts: `(batches sent, batches that failed, spans sent)`, all 0 while traces
/// are off.
pub fn export_counts() -> (u64, u64, u64) {
    (
        EXPORTS_OK.load(Ordering::Relaxed),
        EXPORTS_FAILED.load(Ordering::Relaxed),
        SPANS_EXPORTED.load(Ordering::Relaxed),
    )
}

/// The running exporter: [`Exporter::shutdown`] sends the spans still buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
    timeout: std::time::Duration,
}

/// Starts exporting spans as `config` says. Called once, inside the Tokio runtime (the
/// gRPC channel to the collector runs on it). The connection is made lazily: a collector
/// that is down costs dropped spans, never a Check.
pub fn start(config: &TracesConfig) -> Result<Exporter, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .build()
        .map_err(|e| format!("tracing: {e}"))?;
    let sampler = match config.sampler {
        TraceSampler::ParentBased(ratio) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
        TraceSampler::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
    };
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
        .with_span_processor(processor)
        .with_sampler(sampler)
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
        timeout: config.timeout,
    })
}

impl Exporter {
    /// Exports what is buffered, within the export timeout, and stops.
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
                // Logged by the SDK (its internal log, at warn); counted here.
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

/// The span of one Check; empty when traces are off.
pub struct CheckSpan(Option<Live>);

struct Live {
    cx: Context,
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
        let parent = match call.filter(|headers| headers.contains_key("traceparent")) {
            Some(headers) => {
                remote_parent(|name| headers.get_all(name).iter().map(|v| v.as_bytes()))
            }
            None => remote_parent(|name| request.values(name)),
        };
        let parent = parent.map_or_else(Context::new, |parent| {
            Context::new().with_remote_span_context(parent)
        });
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
            ended: AtomicBool::new(false),
        }))
    }

    /// Runs `work` inside the span: the client spans it starts are the span's children.
    pub async fn run<F: Future>(&self, work: F) -> F::Output {
        match &self.0 {
            Some(live) => work.with_context(live.cx.clone()).await,
            None => work.await,
        }
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

    /// [`CheckSpan::ids`] when the span is sampled: what a metric's exemplar may name.
    pub fn sampled_ids(&self) -> Option<(TraceId, SpanId)> {
        let live = self.0.as_ref()?;
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
        self,
        error: Option<&dyn std::fmt::Display>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) {
        let Some(cx) = self.0 else {
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
    let mut states = values("tracestate");
    let state = match (states.next(), states.next()) {
        (Some(one), None) => std::str::from_utf8(one)
            .ok()
            .filter(|s| s.len() <= 512)
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default(),
        _ => TraceState::default(),
    };
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// A version-00 `traceparent`: `00-` 32 lower-case hex `-` 16 lower-case hex `-` 2 hex,
/// neither id all zeros. Anything else is no parent.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    let text = std::str::from_utf8(value).ok()?;
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mut parts = text.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || version != "00"
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

fn clip(s: &str) -> &str {
    const MAX: usize = 256;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
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
    fn methods_are_named_or_other() {
        assert_eq!(known_method("GET"), "GET");
        assert_eq!(known_method("get"), "_OTHER");
        assert_eq!(known_method("PROPFIND"), "_OTHER");
    }
}
