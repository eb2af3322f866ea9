//! `jwt-authz explain`: the decision for one request, offline, step by step.
//!
//! It builds the `CheckRequest` Envoy would send, runs it through the real
//! [`AuthzService`] (so the response printed is the one the service sends), and prints
//! beside it each step that led there: the normalised path or why it was refused, the rule,
//! each token check with pass or fail, each route check. It prints the token's claims an
//! operator needs (`iss`, `sub`, `aud`, dates, scopes) but never the token or its signature.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::bearer;
use crate::claims::{self, Claims};
use crate::config::{Config, ExplainArgs, ServeArgs};
use crate::error::AuthError;
use crate::jwks::KeySet;
use crate::policy::{Action, TokenRule, granted_scopes};
use crate::proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use crate::proto::{AttributeContext, Authorization, CheckRequest, CheckResponse, HttpResponse};
use crate::replay::ReplayStore;
use crate::service::{AuthzService, inbound, request_view};
use crate::verify::{Issuer, TokenFacts, Verifier, accept_audience};

/// Runs `explain` and returns the text to print.
pub async fn run(args: &ExplainArgs) -> anyhow::Result<String> {
    let serve = ServeArgs {
        config: Some(args.config.clone()),
        ..ServeArgs::default()
    };
    let config = Config::load(&serve).map_err(|e| anyhow::anyhow!("{e}"))?;
    let verifier = Arc::new(verifier(&config, args).await?);
    // A replay store of its own: explaining a request never uses up a proof elsewhere.
    let replay = Arc::new(ReplayStore::memory(1024));
    let service = AuthzService::from_config(&config, Arc::clone(&verifier), replay);
    let request = check_request(args)?;
    let response = service
        .check(tonic::Request::new(request.clone()))
        .await
        .map_err(|status| anyhow::anyhow!("check failed: {}", status.message()))?
        .into_inner();
    let http = request
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let mut out = String::new();
    if args.jwks.is_none() && !args.fetch_keys {
        let _ = writeln!(
            out,
            "keys: none (give --jwks FILE or --fetch-keys to verify tokens)"
        );
    }
    explain_steps(&mut out, &config, &verifier, http).await;
    render_response(&mut out, &response);
    Ok(out)
}

/// A verifier trusting the `--jwks` file for every issuer, or the issuers' own keys.
async fn verifier(config: &Config, args: &ExplainArgs) -> anyhow::Result<Verifier> {
    let mut issuers = Vec::new();
    for issuer in &config.issuers {
        let jwks = match &args.jwks {
            Some(path) => {
                let body = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let (keys, _) =
                    KeySet::parse(&body).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                issuer.fixed_jwks_cache(&config.jwks, keys)?
            }
            None if args.fetch_keys => {
                let cache = issuer.jwks_cache(&config.jwks)?;
                cache.refresh().await.with_context(|| {
                    format!("issuer {}", crate::fetch_url::redact_str(&issuer.issuer))
                })?;
                cache
            }
            // No keys: token checks answer `jwks_unavailable`, as the service does before
            // its first JWKS load. Routes that need no token are still explained.
            None => issuer.jwks_cache(&config.jwks)?,
        };
        issuers.push(Issuer {
            config: issuer.clone(),
            jwks,
        });
    }
    Ok(Verifier::with_clock(issuers, config.clock.clone()))
}

/// The `CheckRequest` Envoy sends for the request the flags describe.
fn check_request(args: &ExplainArgs) -> anyhow::Result<CheckRequest> {
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
            .with_context(|| format!("--header {header:?}: expected `name: value`"))?;
        add(name.trim(), value.trim());
    }
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => Some(token.trim().to_owned()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            Some(std::io::read_to_string(std::io::stdin())?.trim().to_owned())
        }
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    if let Some(token) = token {
        add("authorization", &format!("Bearer {token}"));
    }
    Ok(CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: args.method.clone(),
                    host: args.host.clone(),
                    path: args.path.clone(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    })
}

/// Writes each step of the decision, as the service takes them.
async fn explain_steps(
    out: &mut String,
    config: &Config,
    verifier: &Verifier,
    http: Option<&HttpRequest>,
) {
    let request = inbound(http);
    let view = request_view(&request);
    let _ = writeln!(
        out,
        "request: {} {} {}",
        view.method,
        if view.host.is_empty() { "-" } else { view.host },
        view.path
    );
    let policy = &config.policy;
    match policy.grammar().normalize(view.path) {
        Ok(path) => {
            let _ = writeln!(out, "path: {path}");
        }
        Err(why) => {
            let _ = writeln!(out, "path: refused ({})", why.reason());
        }
    }
    let requirement = policy.requirement(&view, request.required_scopes.is_some());
    for shadow in &requirement.shadows {
        let _ = writeln!(
            out,
            "shadow rule: {} (reported, does not decide)",
            shadow.name
        );
    }
    let rule_name = requirement.rule.unwrap_or("default");
    let action = match (requirement.ambiguity, requirement.action.as_ref()) {
        (Some(why), _) => format!("refused as ambiguous: {}", why.reason()),
        (None, Action::Deny) => "deny".to_owned(),
        (None, Action::Anonymous) => "anonymous (no token needed)".to_owned(),
        (None, Action::Preflight) => "CORS preflight (no token needed)".to_owned(),
        (None, Action::Token(_)) => "token required".to_owned(),
    };
    let _ = writeln!(out, "rule: {rule_name}: {action}");
    let Action::Token(rule) = requirement.action.as_ref() else {
        return;
    };
    if requirement.ambiguity.is_some() {
        return;
    }
    let found = match bearer::find_token(&config.token_sources, &request, config.max_header_bytes) {
        Ok(found) => found,
        Err(error) => {
            step(out, "bearer token", Err(error));
            return;
        }
    };
    let token = found.token();
    let length = format!("{} bytes", token.as_str().len());
    step::<AuthError>(out, "bearer token", Ok(&length));
    describe_token(out, token.as_str());
    let mut facts = TokenFacts::default();
    match verifier.verify(token, &mut facts).await {
        Ok(verified) => {
            step::<AuthError>(out, "header, key and signature", Ok("verified"));
            step::<AuthError>(out, "exp, nbf and iss", Ok("valid now"));
            route_checks(
                out,
                config,
                verifier,
                rule,
                &verified.claims,
                &verified.audiences,
            );
        }
        Err(error) => {
            let _ = writeln!(out, "verification: stops at the first failed check");
            step(out, verify_step(&error), Err(error));
        }
    }
}

/// The route's own checks on a verified token, in the service's order.
fn route_checks(
    out: &mut String,
    config: &Config,
    verifier: &Verifier,
    rule: &TokenRule,
    claims: &Claims,
    audiences: &[String],
) {
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if !rule.issuers.is_empty() {
        let admitted = rule.issuers.iter().any(|i| i == iss);
        let detail = format!("route admits {}", rule.issuers.join(", "));
        step(
            out,
            "route issuers",
            result(admitted, &detail, AuthError::WrongIssuer),
        );
    }
    let (accepted, whose) = match &rule.audiences {
        Some(a) => (a.as_slice(), "route"),
        None => (verifier.audiences(iss).unwrap_or_default(), "issuer"),
    };
    let aud = accept_audience(audiences.iter().map(String::as_str), accepted);
    let detail = format!("{whose} accepts {}", accepted.join(", "));
    step(out, "aud", aud.as_ref().map(|_| detail.as_str()));
    let scopes = rule.scopes.check(claims, &config.scope_claims);
    let granted: Vec<&str> = granted_scopes(claims, &config.scope_claims).collect();
    let detail = format!("granted: {}", granted.join(" "));
    step(out, "scopes", scopes.as_ref().map(|_| detail.as_str()));
    for condition in &rule.conditions {
        let name = format!("claim {} {}", condition.claim, condition.operator());
        let holds = condition.holds(claims);
        step(
            out,
            &name,
            result(holds, "holds", AuthError::ClaimsNotSatisfied),
        );
    }
}

fn result(ok: bool, detail: &str, error: AuthError) -> Result<&str, AuthError> {
    if ok { Ok(detail) } else { Err(error) }
}

/// The unverified header and a few claims, for the reader: never the signature.
fn describe_token(out: &mut String, token: &str) {
    let mut parts = token.split('.');
    let decode = |segment: Option<&str>| {
        segment
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .and_then(|json| claims::parse_object(&json))
    };
    if let Some(header) = decode(parts.next()) {
        let field = |name: &str| header.get(name).and_then(Value::as_str).unwrap_or("-");
        let _ = writeln!(
            out,
            "token header (unverified): alg {}, kid {}, typ {}",
            field("alg"),
            field("kid"),
            field("typ")
        );
    }
    if let Some(payload) = decode(parts.next()) {
        let _ = write!(out, "token claims (unverified):");
        for name in ["iss", "sub", "aud", "exp", "nbf", "iat", "scope", "scp"] {
            if let Some(value) = payload.get(name) {
                let _ = write!(out, " {name}={value}");
            }
        }
        let _ = writeln!(out);
    }
}

/// Which verification step an error comes from.
fn verify_step(error: &AuthError) -> &'static str {
    match error {
        AuthError::Malformed => "token format (three base64url segments, JSON objects)",
        AuthError::DisallowedAlgorithm => "alg (the issuer's allowed algorithms)",
        AuthError::UnsupportedCritical => "crit",
        AuthError::WrongIssuer => "iss (a configured issuer)",
        AuthError::WrongTokenType => "typ (at+jwt)",
        AuthError::UnknownKey | AuthError::JwksUnavailable => "key (kid and alg in the JWKS)",
        AuthError::BadSignature => "signature",
        AuthError::Expired => "exp",
        AuthError::NotYetValid => "nbf",
        _ => "registered claims (exp, nbf, aud present and well-formed)",
    }
}

fn step<E: std::borrow::Borrow<AuthError>>(out: &mut String, name: &str, outcome: Result<&str, E>) {
    let _ = match outcome.as_ref().map_err(E::borrow) {
        Ok(detail) => writeln!(out, "  {name}: pass ({detail})"),
        Err(error) => writeln!(out, "  {name}: FAIL ({error}: {})", error.code().as_str()),
    };
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
