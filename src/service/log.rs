//! The decision log: one line per decision (denials rate-limited per code), and the would-be
//! decisions of shadow rules. Never the token, the header or the signature: only the route
//! (without its query string), rule, code, `kid`, `iss`, `sub` and latency.

use opentelemetry::trace::{SpanId, TraceId};

use super::{Allowed, LogFields};
use crate::deny_log::DenyLog;
use crate::error::AuthError;
use crate::inbound::Inbound;

/// One line per decision. Never the token or the header: only the route (without its
/// query string, which may carry credentials), rule, code, `kid`, `iss`, `sub` and latency.
/// Denials go through `deny_log`'s per-code rate limit: a flood is summarised, not
/// logged line by line (the metrics count it exactly).
pub(super) fn log_decision(
    request: &Inbound<'_>,
    outcome: &Result<Allowed, AuthError>,
    fields: &LogFields<'_>,
    elapsed: std::time::Duration,
    deny_log: &DenyLog,
    trace: Option<(TraceId, SpanId)>,
) {
    if let Err(error) = outcome
        && !deny_log.admit(error.code())
    {
        return;
    }
    let method = request.method;
    let path = request.path.split('?').next().unwrap_or("");
    let latency_us = elapsed.as_micros() as u64;
    let rule = fields.rule.unwrap_or(DEFAULT_RULE);
    // Verified facts when the token verified; else the unverified ones, for debugging.
    let (kid, iss) = match &fields.entry {
        Some(entry) => (entry.kid(), Some(entry.iss())),
        None => (fields.token.kid.as_deref(), fields.token.iss.as_deref()),
    };
    // Optional fields are recorded when present and left out when not: a log line never
    // says `Some(...)`.
    let (kid, iss) = (kid.map(clip), iss.map(clip));
    let sub = fields.entry.as_ref().and_then(|e| e.sub()).map(clip);
    let (method, path) = (clip(method), clip(path));
    // With traces on, the line names its Check's span.
    let trace_id = trace.map(|(t, _)| tracing::field::display(t));
    let span_id = trace.map(|(_, s)| tracing::field::display(s));
    match outcome {
        Ok(Allowed::Token(_)) => {
            tracing::debug!(
                decision = "allow",
                method,
                path,
                rule,
                kid,
                iss,
                sub,
                trace_id,
                span_id,
                latency_us
            );
        }
        Ok(Allowed::Anonymous) => {
            tracing::debug!(
                decision = "allow",
                method,
                path,
                rule,
                anonymous = true,
                trace_id,
                span_id,
                latency_us
            );
        }
        Ok(Allowed::ResourceMetadata(_)) => {
            tracing::debug!(
                decision = "answer",
                method,
                path,
                rule,
                trace_id,
                span_id,
                latency_us
            );
        }
        Ok(Allowed::Preflight) => {
            tracing::debug!(
                decision = "allow",
                method,
                path,
                rule,
                preflight = true,
                trace_id,
                span_id,
                latency_us
            );
        }
        Err(error) => {
            let code = error.code().as_str();
            let step = fields.at;
            tracing::info!(decision = "deny", code, step, reason = %error, method, path, rule, kid, iss, sub, trace_id, span_id, latency_us);
        }
    }
}

/// The rule name logged for a request that matched no rule.
pub(super) const DEFAULT_RULE: &str = "default";

/// The would-be decision of a shadow rule: logged, never sent.
pub(super) fn log_shadow(rule: &str, outcome: &Result<Allowed, AuthError>) {
    match outcome {
        Ok(_) => tracing::info!(shadow = true, rule, decision = "allow", code = "ok"),
        Err(error) => {
            tracing::info!(shadow = true, rule, decision = "deny", code = error.code().as_str(), reason = %error)
        }
    }
}

/// Attacker-controlled strings are clipped; the formatters escape them (the human format
/// writes every string field quoted and escaped, the JSON format as a JSON string).
fn clip(s: &str) -> &str {
    crate::telemetry::clip(s, 128)
}
