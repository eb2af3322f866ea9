//! `jwt-authz explain`: the decision for one request, offline, step by step.
//!
//! It builds the `CheckRequest` Envoy would send, encodes it, and hands the bytes to the
//! server's own gRPC entry ([`AuthzService::check_encoded_traced`]): the same reading, the
//! same decision, the same rendering, with the decision recording its steps
//! ([`crate::trace`]). What it prints is that record and the response: each step with
//! pass or fail, the one that refused marked as the one that decided, and the steps after
//! it as not evaluated. It never prints the token or its signature.
//!
//! Exit status: 0 when the request is allowed (or answered by the service itself), 1 when
//! it is denied, 64 for a usage or configuration error.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use prost::Message as _;
use serde_json::{Value, json};

use crate::config::{Config, ExplainArgs, ServeArgs};
use crate::jwks::KeySet;
use crate::replay::ReplayStore;
use crate::service::AuthzService;
use crate::trace::{Outcome, Trace, step};
use crate::verify::{Issuer, Verifier};
use crate::wire::proto::envoy::config::core::v3::{
    Address, SocketAddress, address, socket_address,
};
use crate::wire::proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use crate::wire::proto::{AttributeContext, CheckRequest, CheckResponse, HttpResponse};

/// Why `explain` could not explain: the flags, a file they name, or the configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExplainError(String);

/// The outcome of one `explain`: what to print and whether the request was allowed.
pub struct Explained {
    pub output: String,
    pub allowed: bool,
}

/// Runs `explain`.
pub async fn run(args: &ExplainArgs) -> Result<Explained, ExplainError> {
    let serve = ServeArgs {
        config: Some(args.config.clone()),
        ..ServeArgs::default()
    };
    let config = Config::load(&serve).map_err(|e| ExplainError(e.to_string()))?;
    let (verifier, keys) = verifier(&config, args).await?;
    // A replay store of its own, which has seen no proof: explaining a request never uses
    // up a proof elsewhere, and says whether a proof would be a first use.
    let replay = ReplayStore::memory(1024);
    replay.adopt(config.settings.dpop.window(), 0);
    let service = AuthzService::from_config(&config, Arc::new(verifier), Arc::new(replay));
    let request = check_request(args)?;
    let (response, trace) = service
        .check_encoded_traced(&request.encode_to_vec())
        .await
        .map_err(|status| {
            ExplainError(format!("the request cannot be read: {}", status.message()))
        })?;
    let allowed = !matches!(
        response.http_response,
        Some(HttpResponse::DeniedResponse(_) | HttpResponse::ErrorResponse(_))
    ) || response
        .status
        .as_ref()
        .is_some_and(|s| s.message == "resource_metadata");
    let output = if args.json {
        let mut text = serde_json::to_string_pretty(&report(keys, &trace, &response))
            .map_err(|e| ExplainError(e.to_string()))?;
        text.push('\n');
        text
    } else {
        text(keys, &trace, &response)
    };
    Ok(Explained { output, allowed })
}

/// A verifier trusting the `--jwks` file for every issuer, or the issuers' own keys; and
/// where the keys came from.
async fn verifier(
    config: &Config,
    args: &ExplainArgs,
) -> Result<(Verifier, &'static str), ExplainError> {
    let fixed = match &args.jwks {
        Some(path) => {
            let body = std::fs::read(path)
                .map_err(|e| ExplainError(format!("cannot read {}: {e}", path.display())))?;
            let parse = move || {
                KeySet::parse(&body)
                    .map(|(keys, _)| keys)
                    .map_err(|e| ExplainError(format!("{}: {e}", path.display())))
            };
            parse()?;
            Some(parse)
        }
        None => None,
    };
    let mut issuers = Vec::new();
    for issuer in &config.settings.issuers {
        let named = |e: &dyn std::fmt::Display| {
            ExplainError(format!(
                "issuer {}: {e}",
                crate::fetch_url::redact_str(&issuer.issuer)
            ))
        };
        let jwks = match &fixed {
            Some(parse) => issuer
                .fixed_jwks_cache(&config.startup.jwks, parse()?)
                .map_err(|e| named(&e))?,
            None => {
                let cache = issuer
                    .jwks_cache(&config.startup.jwks)
                    .map_err(|e| named(&e))?;
                if args.fetch_keys {
                    cache.refresh().await.map_err(|e| named(&e))?;
                }
                // Without keys, token checks answer `jwks_unavailable`, as the service
                // does before its first JWKS load; routes that need no token are still
                // explained.
                cache
            }
        };
        // An opaque token is explained as the service decides it: by asking the issuer's
        // introspection endpoint.
        let introspector = issuer
            .introspector(config.startup.jwks.insecure_allow_http)
            .map_err(|e| named(&e))?;
        issuers.push(Issuer {
            config: issuer.clone(),
            jwks,
            introspector,
        });
    }
    let keys = match (&fixed, args.fetch_keys) {
        (Some(_), _) => "file",
        (None, true) => "fetched",
        (None, false) => "none",
    };
    Ok((Verifier::with_clock(issuers, config.clock.clone()), keys))
}

/// The `CheckRequest` Envoy sends for the request the flags describe.
fn check_request(args: &ExplainArgs) -> Result<CheckRequest, ExplainError> {
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut add = |name: &str, value: &str| {
        headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                // Envoy joins repeated headers with a comma.
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    };
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| ExplainError(format!("--header {header:?}: expected `name: value`")))?;
        add(name.trim(), value.trim());
    }
    let read = |path: &std::path::Path| {
        if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        }
        .map_err(|e| ExplainError(format!("cannot read {}: {e}", path.display())))
    };
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => Some(token.trim().to_owned()),
        (None, Some(path)) => Some(read(path)?.trim().to_owned()),
        (None, None) => None,
    };
    if let Some(token) = token {
        let scheme = args.token_scheme.as_deref().unwrap_or("Bearer");
        add("authorization", &format!("{scheme} {token}"));
    }
    let mut context_extensions = HashMap::new();
    for pair in &args.context_extensions {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            ExplainError(format!(
                "--context-extension {pair:?}: expected `key=value`"
            ))
        })?;
        context_extensions.insert(key.to_owned(), value.to_owned());
    }
    let source = match &args.peer_certificate {
        Some(path) => Some(Peer {
            // As Envoy forwards it (`include_peer_certificate`): URL-encoded PEM.
            certificate: crate::percent::encode_all(&read(path)?),
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "127.0.0.1".into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(0)),
                    ..SocketAddress::default()
                })),
            }),
            ..Peer::default()
        }),
        None => None,
    };
    Ok(CheckRequest {
        attributes: Some(AttributeContext {
            source,
            request: Some(Request {
                http: Some(HttpRequest {
                    method: args.method.clone(),
                    host: args.host.clone(),
                    path: args.path.clone(),
                    scheme: args.scheme.clone().unwrap_or_default(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            context_extensions,
            ..AttributeContext::default()
        }),
    })
}

/// The explanation as text: the reading, each step, the response.
fn text(keys: &str, trace: &Trace, response: &CheckResponse) -> String {
    let mut out = String::new();
    if keys == "none" {
        let _ = writeln!(
            out,
            "keys: none (give --jwks FILE or --fetch-keys to verify tokens)"
        );
    }
    let decided = trace.deciding().map(|s| (s.step, s.label.clone()));
    for s in &trace.steps {
        let _ = match s.result {
            Outcome::Info if s.step == step::ANSWER => Ok(()),
            Outcome::Info => writeln!(out, "{}: {}", s.label, s.detail),
            Outcome::Pass if s.detail.is_empty() => writeln!(out, "  {}: pass", s.label),
            Outcome::Pass => writeln!(out, "  {}: pass ({})", s.label, s.detail),
            Outcome::Fail => {
                let code = s.code.unwrap_or_default();
                let mark = if decided == Some((s.step, s.label.clone())) {
                    "  <- decided"
                } else {
                    ""
                };
                writeln!(out, "  {}: FAIL ({}: {code}){mark}", s.label, s.detail)
            }
            Outcome::NotEvaluated => writeln!(out, "  {}: not evaluated", s.label),
        };
    }
    render_response(&mut out, response);
    out
}

/// The response exactly as the service answered it.
fn render_response(out: &mut String, response: &CheckResponse) {
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            let _ = writeln!(out, "response: allow");
            for h in ok.headers.iter().filter_map(|h| h.header.as_ref()) {
                let _ = writeln!(out, "  upstream header set: {}: {}", h.key, h.value);
            }
            for name in &ok.headers_to_remove {
                let _ = writeln!(out, "  upstream header removed: {name}");
            }
            for name in &ok.query_parameters_to_remove {
                let _ = writeln!(out, "  upstream query parameter removed: {name}");
            }
        }
        Some(HttpResponse::DeniedResponse(denied) | HttpResponse::ErrorResponse(denied)) => {
            let status = denied.status.as_ref().map_or(0, |s| s.code);
            let code = response.status.as_ref().map_or("", |s| s.message.as_str());
            let _ = writeln!(out, "response: {status} {code}");
            for h in denied.headers.iter().filter_map(|h| h.header.as_ref()) {
                let _ = writeln!(out, "  {}: {}", h.key, h.value);
            }
            let _ = writeln!(out, "  body: {}", denied.body);
        }
        None => {
            let _ = writeln!(out, "response: none");
        }
    }
}

/// The explanation as JSON, for scripts.
fn report(keys: &str, trace: &Trace, response: &CheckResponse) -> Value {
    let decided = trace.deciding().map(|s| s.step);
    let (decision, status, headers, body, removed) = match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => (
            "allow",
            200,
            pairs(ok.headers.iter().filter_map(|h| h.header.as_ref())),
            Value::Null,
            json!(ok.headers_to_remove),
        ),
        Some(HttpResponse::DeniedResponse(d) | HttpResponse::ErrorResponse(d)) => (
            if response
                .status
                .as_ref()
                .is_some_and(|s| s.message == "resource_metadata")
            {
                "answer"
            } else {
                "deny"
            },
            d.status.as_ref().map_or(0, |s| s.code),
            pairs(d.headers.iter().filter_map(|h| h.header.as_ref())),
            serde_json::from_str(&d.body).unwrap_or(Value::String(d.body.clone())),
            json!([]),
        ),
        None => ("none", 0, json!([]), Value::Null, json!([])),
    };
    let code = response
        .status
        .as_ref()
        .map(|s| s.message.as_str())
        .filter(|m| !m.is_empty());
    json!({
        "decision": decision,
        "status": status,
        "code": code,
        "decided_by": decided.unwrap_or(step::ANSWER),
        "keys": keys,
        "steps": trace.steps,
        "response": {
            "headers": headers,
            "headers_to_remove": removed,
            "body": body,
        },
    })
}

fn pairs<'a>(
    headers: impl Iterator<Item = &'a crate::wire::proto::envoy::config::core::v3::HeaderValue>,
) -> Value {
    Value::Array(headers.map(|h| json!([h.key, h.value])).collect())
}
