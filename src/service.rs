//! The tonic `Authorization` service: translates a `CheckRequest` into the domain (bearer
//! token, required scopes), asks [`Verifier`] and [`ScopeRule`], and translates the
//! outcome back into a `CheckResponse`. It owns no decision of its own.
//!
//! A denial is always a successful RPC with a non-OK `CheckResponse.status`: a gRPC error
//! would count as a failure in Envoy, which `failure_mode_allow` turns into an allow.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::bearer::{self, TokenSource};
use crate::config::Config;
use crate::deny_log::DenyLog;
use crate::error::AuthError;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::policy::{self, Action, Policy, REQUIRED_SCOPES_KEY, TokenRule, granted_scopes};
use crate::proto::envoy::service::auth::v3::attribute_context::HttpRequest;
use crate::proto::google::rpc;
use crate::proto::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use crate::token_cache::{CachedToken, EntryParts, TokenCache};
use crate::upstream::UpstreamConfig;
use crate::verify::{IssuerConfig, TokenFacts, Verified, Verifier, accept_audience};

/// What the decision log line carries besides the outcome.
#[derive(Debug, Default)]
struct LogFields<'s> {
    token: TokenFacts,
    rule: Option<&'s str>,
    /// The token's entry, when it verified now or earlier.
    entry: Option<Arc<CachedToken>>,
}

/// The token of one request, verified at most once however many rules (shadow and
/// deciding) ask for it.
type TokenOutcome = Option<Result<Arc<CachedToken>, AuthError>>;

/// Method-override headers some frameworks obey; a request carrying one could be read as
/// either method.
const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Settings the Check path reads on every request.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub scope_claims: Vec<String>,
    pub max_header_bytes: usize,
    pub realm: String,
    /// Seconds sent in `retry-after` while keys are unavailable.
    pub retry_after_secs: u64,
    pub policy: Policy,
    pub upstream: UpstreamConfig,
    /// Denial log lines per code per second; 0 logs every denial.
    pub deny_log_rate: u32,
    /// Where the token may be, tried in order.
    pub token_sources: Vec<TokenSource>,
}

/// Which wire a request came over: what its answer can change upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// gRPC `Check`: every mutation, query parameters included.
    Grpc,
    /// The HTTP endpoint: headers only; a query parameter cannot be removed.
    Http,
}

/// What the service answers, before it is put on a wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow(Allow),
    Deny(Deny),
}

/// An allowed request's changes upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Allow {
    /// Headers set (overwritten) on the upstream request.
    pub set: Vec<(String, String)>,
    /// Headers removed from the upstream request, after `set`.
    pub remove: Vec<String>,
    /// Query parameters removed (gRPC only).
    pub remove_query: Vec<String>,
    pub metadata: Option<prost_types::Struct>,
}

/// A denial, with everything the client is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub http_status: u16,
    pub grpc_code: i32,
    pub code: &'static str,
    /// `content-type`, `www-authenticate`, `retry-after`.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// The server, not the client, failed (keys unavailable).
    pub server_error: bool,
}

/// The state a reload carries over from one configuration's service to the next.
pub struct Shared {
    pub cache: Option<Arc<TokenCache>>,
    pub metrics: Arc<Metrics>,
    pub deny_log: Arc<DenyLog>,
}

impl CheckSettings {
    /// The Check settings of `config`.
    pub fn from_config(config: &Config) -> CheckSettings {
        CheckSettings {
            scope_claims: config.scope_claims.clone(),
            max_header_bytes: config.max_header_bytes,
            realm: config.realm.clone(),
            retry_after_secs: config.jwks.cooldown.as_secs().max(1),
            policy: config.policy.clone(),
            upstream: config.upstream.clone(),
            deny_log_rate: config.log_deny_rate,
            token_sources: config.token_sources.clone(),
        }
    }
}

/// A fingerprint of what a cache entry of `issuer`'s tokens is built from under
/// `settings`. `Debug` text is enough: it is compared within one process only.
fn entry_fingerprint(issuer: &IssuerConfig, settings: &CheckSettings) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{issuer:?}").hash(&mut hasher);
    format!("{:?}", settings.upstream).hash(&mut hasher);
    settings.scope_claims.hash(&mut hasher);
    for condition in settings.policy.conditions() {
        format!("{condition:?}").hash(&mut hasher);
    }
    hasher.finish()
}

/// The `envoy.service.auth.v3.Authorization` implementation for one configuration. A
/// reload builds a new one that shares the token cache and the metrics
/// ([`AuthzService::with_shared`]).
#[derive(Clone)]
pub struct AuthzService {
    verifier: Arc<Verifier>,
    settings: Arc<CheckSettings>,
    cache: Option<Arc<TokenCache>>,
    metrics: Arc<Metrics>,
    /// Per issuer, a fingerprint of every setting a cache entry was built from (the
    /// issuer's, the claim headers, scope claims, claim conditions): an entry made under
    /// other settings is verified afresh instead of being trusted.
    entry_fingerprints: Arc<HashMap<String, u64>>,
    deny_log: Arc<DenyLog>,
}

/// Why a request was allowed.
enum Allowed {
    /// A token that verified (now or, cached, earlier) and satisfied the route.
    Token(Arc<CachedToken>),
    /// A route open to anonymous requests.
    Anonymous,
    /// A CORS preflight let through without a token.
    Preflight,
}

impl AuthzService {
    /// The service, with a verified-token cache when `cache` is given.
    pub fn new(
        verifier: Arc<Verifier>,
        settings: CheckSettings,
        cache: Option<Arc<TokenCache>>,
    ) -> Self {
        let shared = Shared {
            metrics: Arc::new(Metrics::new(
                verifier.caches().cloned().collect(),
                cache.clone(),
                Vec::new(),
            )),
            deny_log: Arc::new(DenyLog::new(settings.deny_log_rate)),
            cache,
        };
        AuthzService::with_shared(verifier, settings, shared)
    }

    /// The service for new settings and keys that keeps the state of a running one
    /// ([`AuthzService::shared`]), as a configuration reload does. The metrics learn the new
    /// issuers' caches and shadow rules.
    pub fn with_shared(verifier: Arc<Verifier>, settings: CheckSettings, shared: Shared) -> Self {
        let Shared {
            cache,
            metrics,
            deny_log,
        } = shared;
        metrics.set_caches(verifier.caches().cloned().collect());
        metrics.add_shadow_rules(settings.policy.shadow_rules().map(|r| r.name.as_str()));
        let entry_fingerprints = Arc::new(
            verifier
                .issuer_configs()
                .map(|issuer| (issuer.issuer.clone(), entry_fingerprint(issuer, &settings)))
                .collect(),
        );
        AuthzService {
            verifier,
            deny_log,
            settings: Arc::new(settings),
            cache,
            metrics,
            entry_fingerprints,
        }
    }

    /// The settings cache entries of `iss` must have been built under.
    fn entry_fingerprint(&self, iss: &str) -> Option<u64> {
        self.entry_fingerprints.get(iss).copied()
    }

    /// The service for `config`, verifying with `verifier`.
    pub fn from_config(config: &Config, verifier: Arc<Verifier>) -> Self {
        let cache = config
            .token_cache
            .enabled
            .then(|| Arc::new(TokenCache::new(config.token_cache.max_entries)));
        AuthzService::new(verifier, CheckSettings::from_config(config), cache)
    }

    /// What every configuration of a running server shares: the token cache, the metrics
    /// and the denial log limit.
    pub fn shared(&self) -> Shared {
        Shared {
            cache: self.cache.clone(),
            metrics: Arc::clone(&self.metrics),
            deny_log: Arc::clone(&self.deny_log),
        }
    }

    /// The verifier, with the issuers and keys of this configuration.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The metrics this service records.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The denial log limit, whose summaries [`DenyLog::run_summaries`] writes.
    pub fn deny_log(&self) -> Arc<DenyLog> {
        Arc::clone(&self.deny_log)
    }

    /// The decision for `request`, from whichever wire: decided, counted and logged once.
    /// Both adapters call this, so gRPC and HTTP answer alike.
    pub async fn authorize(&self, request: &Inbound<'_>, wire: Wire) -> Verdict {
        let started = Instant::now();
        let mut fields = LogFields::default();
        let outcome = self.decide(request, wire, &mut fields).await;
        self.finish(request, outcome, &fields, started)
    }

    /// Refuses `request` before any rule is read (the HTTP endpoint's forwarded headers
    /// were missing or contradictory): counted and logged like any decision.
    pub fn refuse(&self, request: &Inbound<'_>, error: AuthError) -> Verdict {
        self.finish(request, Err(error), &LogFields::default(), Instant::now())
    }

    fn finish(
        &self,
        request: &Inbound<'_>,
        outcome: Result<Allowed, AuthError>,
        fields: &LogFields<'_>,
        started: Instant,
    ) -> Verdict {
        let verdict = match &outcome {
            Ok(allowed) => Verdict::Allow(self.allow(allowed, request)),
            Err(error) => Verdict::Deny(self.deny(error)),
        };
        let elapsed = started.elapsed();
        self.metrics.record(outcome.as_ref().err(), elapsed);
        log_decision(request, &outcome, fields, elapsed, &self.deny_log);
        verdict
    }

    async fn decide<'s>(
        &'s self,
        request: &Inbound<'_>,
        wire: Wire,
        log: &mut LogFields<'s>,
    ) -> Result<Allowed, AuthError> {
        let view = request_view(request);
        let requirement = self
            .settings
            .policy
            .requirement(&view, request.required_scopes);
        log.rule = requirement.rule;
        let mut token: TokenOutcome = None;
        for shadow in &requirement.shadows {
            let outcome = self
                .evaluate(&shadow.action, request, wire, &mut token, log)
                .await;
            self.metrics
                .record_shadow(&shadow.name, outcome.as_ref().err());
            log_shadow(&shadow.name, &outcome);
        }
        if let Some(why) = requirement.ambiguity {
            return Err(AuthError::AmbiguousRequest(why.reason()));
        }
        self.evaluate(&requirement.action, request, wire, &mut token, log)
            .await
    }

    /// What `action` gives this request. The token is read and verified only when the
    /// action needs it, and only once per request (`token` keeps the outcome).
    async fn evaluate(
        &self,
        action: &Action,
        request: &Inbound<'_>,
        wire: Wire,
        token: &mut TokenOutcome,
        log: &mut LogFields<'_>,
    ) -> Result<Allowed, AuthError> {
        let rule = match action {
            Action::Deny => return Err(AuthError::RouteDenied),
            Action::Anonymous => return Ok(Allowed::Anonymous),
            Action::Preflight => return Ok(Allowed::Preflight),
            Action::Token(rule) => rule,
        };
        let entry = match token {
            Some(outcome) => outcome.clone(),
            None => {
                let outcome = self.token_entry(request, wire, log).await;
                *token = Some(outcome.clone());
                outcome
            }
        }?;
        self.check_route(&entry, rule)?;
        Ok(Allowed::Token(entry))
    }

    /// The request's token, verified (or found in the cache).
    async fn token_entry(
        &self,
        request: &Inbound<'_>,
        wire: Wire,
        log: &mut LogFields<'_>,
    ) -> Result<Arc<CachedToken>, AuthError> {
        let sources = &self.settings.token_sources;
        let found = bearer::find_token(sources, request, self.settings.max_header_bytes)?;
        let from_query = matches!(sources.get(found.source), Some(TokenSource::Query(_)));
        if from_query && wire == Wire::Http && self.settings.upstream.strip_authorization {
            return Err(AuthError::QueryTokenNotRemovable);
        }
        let entry = self.verified_entry(found.token(), log).await?;
        log.entry = Some(Arc::clone(&entry));
        Ok(entry)
    }

    /// Checks a verified token against the route it is used on, whether it verified now or
    /// came from the cache: issuers, audiences, scopes, claim conditions, in that order.
    fn check_route(&self, entry: &CachedToken, rule: &TokenRule) -> Result<(), AuthError> {
        if !rule.issuers.is_empty() && !rule.issuers.iter().any(|i| i == entry.iss()) {
            return Err(AuthError::WrongIssuer);
        }
        let accepted = match &rule.audiences {
            Some(audiences) => audiences.as_slice(),
            None => self.verifier.audiences(entry.iss()).unwrap_or_default(),
        };
        accept_audience(entry.audiences(), accepted)?;
        rule.scopes.check_granted(entry.scopes())?;
        let conditions = rule.first_condition..rule.first_condition + rule.conditions.len();
        if !conditions.into_iter().all(|i| entry.condition(i)) {
            return Err(AuthError::ClaimsNotSatisfied);
        }
        Ok(())
    }

    /// The entry of a token that verifies: from the cache when it holds one that is still
    /// fresh and whose key is still published, else by full verification (then cached).
    async fn verified_entry(
        &self,
        token: bearer::BearerToken<'_>,
        log: &mut LogFields<'_>,
    ) -> Result<Arc<CachedToken>, AuthError> {
        let key = self.cache.as_ref().map(|_| TokenCache::key(token.as_str()));
        if let (Some(cache), Some(key)) = (&self.cache, &key)
            && let Some(hit) = cache.get(key)
        {
            let current = hit.is_fresh(self.verifier.clock().now_millis())
                && self.entry_fingerprint(hit.iss()) == Some(hit.config_fingerprint)
                && self
                    .verifier
                    .key_is_current(hit.iss(), hit.kid(), hit.alg, hit.key_fingerprint);
            if current {
                return Ok(hit);
            }
            // Expired, or its key left the JWKS: verify afresh, which says why.
            cache.remove(key);
        }
        let verified = self.verifier.verify(token, &mut log.token).await?;
        let payload = token
            .as_str()
            .get(verified.payload.clone())
            .unwrap_or_default();
        let entry = Arc::new(self.entry(&verified, payload));
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            cache.insert(key, Arc::clone(&entry), self.verifier.clock().now_millis());
        }
        Ok(entry)
    }

    fn entry(&self, verified: &Verified, payload: &str) -> CachedToken {
        let claims = &verified.claims;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
        let upstream = &self.settings.upstream;
        let iss = text("iss").unwrap_or_default();
        CachedToken::new(EntryParts {
            config_fingerprint: self.entry_fingerprint(iss).unwrap_or_default(),
            alg: verified.alg,
            key_fingerprint: verified.key_fingerprint,
            exp: verified.exp,
            nbf: verified.nbf,
            leeway_ms: verified.leeway_ms,
            iss,
            kid: verified.kid.as_deref(),
            sub: text("sub"),
            scopes: granted_scopes(claims, &self.settings.scope_claims).collect(),
            payload: upstream.forward_payload_header.is_some().then_some(payload),
            header_values: upstream.header_values(claims),
            audiences: verified.audiences.iter().map(String::as_str).collect(),
            conditions: self
                .settings
                .policy
                .conditions()
                .map(|c| c.holds(claims))
                .collect(),
            metadata: upstream.metadata(claims),
        })
    }

    fn allow(&self, allowed: &Allowed, request: &Inbound<'_>) -> Allow {
        let upstream = &self.settings.upstream;
        let (mutations, metadata) = match allowed {
            Allowed::Token(entry) => (
                upstream.mutations(|i| entry.header_value(i), entry.payload()),
                entry.metadata.as_deref().cloned(),
            ),
            Allowed::Anonymous | Allowed::Preflight => (upstream.for_anonymous(), None),
        };
        let own = |s: &str| s.to_owned();
        let mut allow = Allow {
            set: mutations
                .set
                .iter()
                .map(|(k, v)| (own(k), own(v)))
                .collect(),
            remove: mutations.remove.iter().map(|r| own(r)).collect(),
            remove_query: Vec::new(),
            metadata,
        };
        if upstream.strip_authorization {
            self.strip_cookies_and_query(request, &mut allow);
        }
        allow
    }

    /// With `strip_authorization`, the token cookies leave the `cookie` header (only those
    /// cookies) and the token query parameters leave the path, on every route.
    fn strip_cookies_and_query(&self, request: &Inbound<'_>, allow: &mut Allow) {
        let mut cookies = Vec::new();
        for source in &self.settings.token_sources {
            match source {
                TokenSource::Cookie(name) => cookies.push(name.as_str()),
                TokenSource::Query(name) => allow.remove_query.push(name.clone()),
                TokenSource::Header { .. } => {}
            }
        }
        if cookies.is_empty() {
            return;
        }
        match bearer::cookie_without(request.values("cookie"), &cookies) {
            Some(rest) if rest.is_empty() => allow.remove.push("cookie".into()),
            Some(rest) => allow.set.push(("cookie".into(), rest)),
            None => {}
        }
    }

    fn deny(&self, error: &AuthError) -> Deny {
        let code = error.code();
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if let Some(challenge) = error.www_authenticate(&self.settings.realm) {
            headers.push(("www-authenticate", challenge));
        }
        let server_error = code.is_server_error();
        if server_error {
            headers.push(("retry-after", self.settings.retry_after_secs.to_string()));
        }
        Deny {
            http_status: code.http_status(),
            grpc_code: code.grpc_code(),
            code: code.as_str(),
            headers,
            body: error.json_body(),
            server_error,
        }
    }
}

/// The `CheckResponse` for a verdict.
pub fn check_response(verdict: Verdict) -> CheckResponse {
    match verdict {
        Verdict::Allow(allow) => {
            let ok = OkHttpResponse {
                headers: allow.set.iter().map(|(k, v)| header(k, v)).collect(),
                headers_to_remove: allow.remove,
                query_parameters_to_remove: allow.remove_query,
                ..Default::default()
            };
            CheckResponse {
                status: Some(rpc::Status {
                    code: 0,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(ok)),
                dynamic_metadata: allow.metadata,
            }
        }
        Verdict::Deny(deny) => {
            let body = DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(deny.http_status),
                }),
                headers: deny.headers.iter().map(|(k, v)| header(k, v)).collect(),
                body: deny.body,
            };
            CheckResponse {
                status: Some(rpc::Status {
                    code: deny.grpc_code,
                    message: deny.code.to_owned(),
                    details: Vec::new(),
                }),
                // Keys unavailable is the server's failure, not the client's: Envoy 1.37+
                // treats `error_response` as an error (status_on_error / failure_mode_allow
                // apply); older Envoys ignore the unknown field and see a plain denial.
                http_response: Some(if deny.server_error {
                    HttpResponse::ErrorResponse(body)
                } else {
                    HttpResponse::DeniedResponse(body)
                }),
                dynamic_metadata: None,
            }
        }
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let request = request.into_inner();
        let attributes = request.attributes.as_ref();
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let mut inbound = inbound(http);
        inbound.required_scopes = attributes
            .and_then(|a| a.context_extensions.get(REQUIRED_SCOPES_KEY))
            .map(String::as_str);
        let verdict = self.authorize(&inbound, Wire::Grpc).await;
        Ok(Response::new(check_response(verdict)))
    }
}

/// The request as the decision sees it, from Envoy's HTTP attributes: every header of
/// `headers` (lower-case keys, repeats joined by a comma) and of `header_map` (raw
/// headers, repeats kept apart, sent instead of `headers` with `encode_raw_headers`).
pub fn inbound(http: Option<&HttpRequest>) -> Inbound<'_> {
    let Some(h) = http else {
        return Inbound::default();
    };
    let joined = h.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let raw = h
        .header_map
        .as_ref()
        .into_iter()
        .flat_map(|m| m.headers.iter())
        .map(|h| {
            let value = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                h.raw_value.as_slice()
            };
            (h.key.as_str(), value)
        });
    Inbound {
        method: &h.method,
        host: &h.host,
        path: &h.path,
        headers: joined.chain(raw).collect(),
        required_scopes: None,
    }
}

/// The parts of the request that select a rule.
pub fn request_view<'a>(request: &Inbound<'a>) -> policy::Request<'a> {
    let preflight_method = request
        .first("origin")
        .and_then(|_| request.first("access-control-request-method"));
    let method_override = METHOD_OVERRIDE_HEADERS
        .iter()
        .find_map(|name| request.first(name));
    policy::Request {
        method: request.method,
        host: request.host,
        path: request.path,
        preflight_method,
        method_override,
    }
}

/// A header option set the portable way: `append` unset, overwrite-or-add.
fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        // `append` (deprecated) stays unset: Envoy versions disagree on how it combines
        // with `append_action`, and unset + overwrite behaves the same in all of them.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// One line per decision. Never the token or the header: only the route (without its
/// query string, which may carry credentials), rule, code, `kid`, `iss`, `sub` and latency.
/// Denials go through `deny_log`'s per-code rate limit: a flood is summarised, not
/// logged line by line (the metrics count it exactly).
fn log_decision(
    request: &Inbound<'_>,
    outcome: &Result<Allowed, AuthError>,
    fields: &LogFields<'_>,
    elapsed: std::time::Duration,
    deny_log: &DenyLog,
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
    let (kid, iss) = (kid.map(clip), iss.map(clip));
    let sub = fields.entry.as_ref().and_then(|e| e.sub()).map(clip);
    match outcome {
        Ok(Allowed::Token(_)) => {
            tracing::debug!(decision = "allow", method = ?clip(method), path = ?clip(path), rule, ?kid, ?iss, ?sub, latency_us);
        }
        Ok(Allowed::Anonymous) => {
            tracing::debug!(decision = "allow", method = ?clip(method), path = ?clip(path), rule, anonymous = true, latency_us);
        }
        Ok(Allowed::Preflight) => {
            tracing::debug!(decision = "allow", method = ?clip(method), path = ?clip(path), rule, preflight = true, latency_us);
        }
        Err(error) => {
            let code = error.code().as_str();
            tracing::info!(decision = "deny", code, reason = %error, method = ?clip(method), path = ?clip(path), rule, ?kid, ?iss, ?sub, latency_us);
        }
    }
}

/// The rule name logged for a request that matched no rule.
const DEFAULT_RULE: &str = "default";

/// The would-be decision of a shadow rule: logged, never sent.
fn log_shadow(rule: &str, outcome: &Result<Allowed, AuthError>) {
    match outcome {
        Ok(_) => tracing::info!(shadow = true, rule, decision = "allow", code = "ok"),
        Err(error) => {
            tracing::info!(shadow = true, rule, decision = "deny", code = error.code().as_str(), reason = %error)
        }
    }
}

/// Attacker-controlled strings are logged with `Debug` (escaped) and clipped.
fn clip(s: &str) -> &str {
    const MAX: usize = 128;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
