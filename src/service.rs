//! The Check service: one request, from whichever wire, through the route policy, the
//! token's verification (or the verified-token cache) and the route's checks, to a
//! [`Verdict`]; counted and logged once. The wires' adapters live beside it: [`grpc`] for
//! Envoy's `Check` (its request read by [`lean`]), and the HTTP endpoint
//! (`crate::wire::http`). Decisions are made by `policy` and `verify`; this module puts
//! them in order.

mod log;
mod verdict;

mod steps;

use log::{log_decision, log_shadow};

pub use verdict::{Allow, Denial, Verdict, Wire};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::binding::{
    self,
    dpop::{self, CheckedProof, DpopMode, DpopSettings, ProofTarget},
};
use crate::config::Config;
use crate::deny_log::DenyLog;
use crate::error::AuthError;
use crate::inbound::{Inbound, spelled_as};
use crate::metrics::Metrics;
use crate::policy::{self, Action, Ambiguity, Policy, ScopeRule, TokenRule, granted_scopes};
use crate::replay::{ProofUse, ReplayError, ReplayStore, Use};
use crate::resource_metadata::ResourceMetadata;
use crate::token_cache::{CachedToken, EntryParts, TokenCache};
use crate::token_source::{self, TokenSource};
use crate::trace::{self, Trace, step};
use crate::upstream::UpstreamConfig;
use crate::verify::{IssuerConfig, TokenFacts, Verified, Verifier, accept_audience};

/// What the decision log line carries besides the outcome, and the trace when someone
/// asked for one.
#[derive(Debug, Default)]
struct LogFields<'s> {
    token: TokenFacts,
    rule: Option<&'s str>,
    /// The token's entry, when it verified now or earlier.
    entry: Option<Arc<CachedToken>>,
    /// The step the decision is at: on a denial, the one that refused.
    at: &'static str,
    /// The step the token's outcome was decided at, for the rules that reuse it.
    token_at: &'static str,
    /// Every step with what it found: built for `explain` only.
    trace: Option<Box<Trace>>,
}

impl LogFields<'_> {
    /// Marks `step` reached and, when tracing, records how it ended; passes `result` on.
    fn step<T>(
        &mut self,
        step: &'static str,
        result: Result<T, AuthError>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<T, AuthError> {
        self.at = step;
        if let Some(trace) = &mut self.trace {
            trace.record(step, trace::label(step), result.as_ref().map(detail));
        }
        result
    }
}

/// The token of one request, verified at most once however many rules (shadow and
/// deciding) ask for it, with its checked DPoP proof, which only the deciding rule
/// records.
type TokenOutcome = Option<Result<(Arc<CachedToken>, Option<CheckedProof>), AuthError>>;

/// Which rule a token is evaluated for.
#[derive(Debug, Clone, Copy)]
enum Role<'a> {
    /// A shadow rule: its outcome is counted and logged, and changes nothing.
    Shadow,
    /// The rule that decides, with the `required_scopes` value when it decides too.
    Deciding { context_scopes: Option<&'a str> },
}

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
    /// The same, with the `authorization` header's scheme `DPoP`: read for a request that
    /// uses that scheme. `None` when no issuer accepts DPoP or that reading changes no
    /// source: worked out once, not on every Check.
    pub dpop_sources: Option<Vec<TokenSource>>,
    pub dpop: DpopSettings,
    /// The `algs` of DPoP challenges; `None` when no issuer accepts DPoP.
    pub dpop_algs: Option<String>,
    /// Room for an allow's headers set and removed
    /// ([`UpstreamConfig::most_mutations`], and the `cookie` and `dpop` removals when the
    /// token is stripped): made once per allow, worked out once here.
    pub allow_room: (usize, usize),
    /// RFC 9728 metadata, served by the Check and named in challenges.
    pub resource_metadata: Option<ResourceMetadata>,
    /// [`UpstreamConfig::dotted_spelling_keys`], worked out once.
    pub dotted_keys: Vec<String>,
}

/// The state a reload carries over from one configuration's service to the next.
pub struct Shared {
    pub cache: Option<Arc<TokenCache>>,
    pub metrics: Arc<Metrics>,
    pub deny_log: Arc<DenyLog>,
    /// DPoP proofs seen: kept across reloads, so a reload never lets a proof be replayed.
    pub replay: Arc<ReplayStore>,
}

impl CheckSettings {
    /// The Check settings of `config`.
    pub fn from_config(config: &Config) -> CheckSettings {
        let dpop_accepted = config
            .settings
            .issuers
            .iter()
            .any(|i| i.dpop != DpopMode::Off);
        CheckSettings {
            scope_claims: config.settings.scope_claims.clone(),
            max_header_bytes: config.settings.max_header_bytes,
            realm: config.settings.realm.clone(),
            retry_after_secs: config.startup.jwks.cooldown.as_secs().max(1),
            policy: config.settings.policy.clone(),
            upstream: config.settings.upstream.clone(),
            deny_log_rate: config.startup.log_deny_rate,
            token_sources: config.settings.token_sources.clone(),
            dpop_sources: dpop_accepted.then(|| dpop_sources(config)).flatten(),
            dpop: config.settings.dpop.clone(),
            dpop_algs: dpop_accepted.then(|| config.settings.dpop.algs()),
            allow_room: allow_room(&config.settings.upstream),
            resource_metadata: config.settings.resource_metadata.clone(),
            dotted_keys: config.settings.upstream.dotted_spelling_keys(),
        }
    }

    /// Whether a header name with a `.` reads, to PHP, as a header the decision reads or
    /// sets (`x.jwt.sub`, `x.http.method.override`).
    fn dotted_spelling(&self, request: &Inbound<'_>) -> bool {
        request.headers.iter().any(|(name, _)| {
            name.contains('.') && self.dotted_keys.iter().any(|key| spelled_as(name, key))
        })
    }

    /// Whether `request` uses the `DPoP` authorization scheme where DPoP is accepted.
    fn is_dpop_request(&self, request: &Inbound<'_>) -> bool {
        self.dpop_sources.is_some()
            && request.values("authorization").next().is_some_and(|value| {
                value
                    .split(|b| *b == b' ')
                    .next()
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"dpop"))
            })
    }
}

/// Room for an allow's headers set and removed under `upstream` (see
/// [`CheckSettings::allow_room`]).
pub fn allow_room(upstream: &UpstreamConfig) -> (usize, usize) {
    let (set, removed) = upstream.most_mutations();
    let stripped = if upstream.strip_authorization { 2 } else { 0 };
    (set, removed + stripped)
}

/// The token sources of a request with the `DPoP` scheme: `config`'s, with the scheme of
/// `authorization` read as `DPoP`. `None` when that reading changes no source.
fn dpop_sources(config: &Config) -> Option<Vec<TokenSource>> {
    let sources: Vec<TokenSource> = config
        .settings
        .token_sources
        .iter()
        .map(|source| match source {
            TokenSource::Header {
                name,
                scheme: Some(_),
            } if name == "authorization" => TokenSource::Header {
                name: name.clone(),
                scheme: Some("DPoP".into()),
            },
            other => other.clone(),
        })
        .collect();
    (sources != config.settings.token_sources).then_some(sources)
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
    replay: Arc<ReplayStore>,
}

/// Why a request was allowed.
enum Allowed {
    /// A token that verified (now or, cached, earlier) and satisfied the route.
    Token(Arc<CachedToken>),
    /// A route open to anonymous requests.
    Anonymous,
    /// A CORS preflight let through without a token.
    Preflight,
    /// A request for the RFC 9728 metadata, answered by the service itself.
    ResourceMetadata,
}

impl AuthzService {
    /// The service, with a verified-token cache when `cache` is given.
    pub fn new(
        verifier: Arc<Verifier>,
        settings: CheckSettings,
        cache: Option<Arc<TokenCache>>,
        replay: Arc<ReplayStore>,
    ) -> Self {
        let shared = Shared {
            replay,
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
            replay,
        } = shared;
        metrics.set_caches(verifier.caches().cloned().collect());
        metrics.set_replay(Arc::clone(&replay));
        replay.adopt(settings.dpop.window(), verifier.clock().now_millis());
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
            replay,
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

    /// The service for `config`, verifying with `verifier`, remembering DPoP proofs in
    /// `replay`.
    pub fn from_config(config: &Config, verifier: Arc<Verifier>, replay: Arc<ReplayStore>) -> Self {
        let cache = config.startup.token_cache.enabled.then(|| {
            Arc::new(TokenCache::with_budget(
                config.startup.token_cache.max_entries,
                config.startup.token_cache.max_bytes,
            ))
        });
        AuthzService::new(verifier, CheckSettings::from_config(config), cache, replay)
    }

    /// The RFC 9728 metadata of this configuration, when it publishes one.
    pub fn resource_metadata(&self) -> Option<&ResourceMetadata> {
        self.settings.resource_metadata.as_ref()
    }

    /// The settings this service decides with.
    pub fn settings(&self) -> &CheckSettings {
        &self.settings
    }

    /// The replay store DPoP proofs are recorded in.
    pub fn replay_store(&self) -> &Arc<ReplayStore> {
        &self.replay
    }

    /// What every configuration of a running server shares: the token cache, the metrics
    /// and the denial log limit.
    pub fn shared(&self) -> Shared {
        Shared {
            cache: self.cache.clone(),
            metrics: Arc::clone(&self.metrics),
            deny_log: Arc::clone(&self.deny_log),
            replay: Arc::clone(&self.replay),
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
        self.finish(request, outcome, &mut fields, started)
    }

    /// [`AuthzService::authorize`], recording each step of the decision (`explain`).
    pub async fn authorize_traced(&self, request: &Inbound<'_>, wire: Wire) -> (Verdict, Trace) {
        let started = Instant::now();
        let mut fields = LogFields {
            trace: Some(Box::default()),
            ..LogFields::default()
        };
        let outcome = self.decide(request, wire, &mut fields).await;
        let verdict = self.finish(request, outcome, &mut fields, started);
        (verdict, fields.trace.map(|t| *t).unwrap_or_default())
    }

    /// Refuses `request` before any rule is read (the HTTP endpoint's forwarded headers
    /// were missing or contradictory): counted and logged like any decision.
    pub fn refuse(&self, request: &Inbound<'_>, error: AuthError) -> Verdict {
        self.finish(
            request,
            Err(error),
            &mut LogFields {
                at: step::FORWARDED_HEADERS,
                ..LogFields::default()
            },
            Instant::now(),
        )
    }

    fn finish(
        &self,
        request: &Inbound<'_>,
        outcome: Result<Allowed, AuthError>,
        fields: &mut LogFields<'_>,
        started: Instant,
    ) -> Verdict {
        if let Some(trace) = &mut fields.trace {
            let answer = match &outcome {
                Ok(Allowed::ResourceMetadata) => "the RFC 9728 metadata document".to_owned(),
                Ok(_) => "allow".to_owned(),
                Err(error) => format!(
                    "deny: {} {}",
                    error.code().http_status(),
                    error.code().as_str()
                ),
            };
            trace.info(step::ANSWER, trace::label(step::ANSWER), answer);
        }
        let verdict = match &outcome {
            Ok(Allowed::ResourceMetadata) => Verdict::ResourceMetadata,
            Ok(allowed) => Verdict::Allow(self.allow(allowed, request)),
            Err(error) => Verdict::Deny(Denial {
                error: error.clone(),
                dpop_request: self.settings.is_dpop_request(request),
            }),
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
        // Envoy sends the Check's answer as the response; the HTTP endpoint can only allow
        // or deny, so there the document comes from the admin port.
        if wire == Wire::Grpc
            && let Some(metadata) = &self.settings.resource_metadata
            && metadata.is_request(request.method, request.path)
        {
            log.rule = Some(RESOURCE_METADATA_RULE);
            if let Some(trace) = &mut log.trace {
                trace.info(step::RULE, "rule", RESOURCE_METADATA_RULE.to_owned());
            }
            return Ok(Allowed::ResourceMetadata);
        }
        let view = request_view(request);
        let requirement = self
            .settings
            .policy
            .requirement(&view, request.required_scopes.is_some());
        log.rule = requirement.rule;
        let role = Role::Deciding {
            context_scopes: request
                .required_scopes
                .filter(|_| requirement.context_scopes),
        };
        // Shadow rules' outcomes go before the deciding rule's planned steps.
        let shadows_at = match &mut log.trace {
            Some(trace) => {
                steps::reading(trace, &self.settings.policy, &view, &requirement);
                let at = trace.steps.len();
                self.plan(trace, &requirement.action, role, request);
                at
            }
            None => 0,
        };
        let mut token: TokenOutcome = None;
        // The token steps a shadow rule takes fill the deciding rule's plan when that rule
        // reads the token too; otherwise they are no step of this decision.
        let deciding_reads_token = matches!(requirement.action.as_ref(), Action::Token(_));
        let mut trace = log.trace.take_if(|_| !deciding_reads_token);
        for (i, shadow) in requirement.shadows.iter().enumerate() {
            let outcome = self
                .evaluate(&shadow.action, Role::Shadow, request, wire, &mut token, log)
                .await;
            self.metrics
                .record_shadow(&shadow.name, outcome.as_ref().err());
            log_shadow(&shadow.name, &outcome);
            if let Some(trace) = log.trace.as_mut().or(trace.as_mut()) {
                steps::shadow(trace, shadows_at + i, &shadow.name, &outcome);
            }
        }
        if trace.is_some() {
            log.trace = trace;
        }
        let unambiguous = match requirement.ambiguity {
            // The proof's `htu` names an origin this host cannot be read as.
            Some(Ambiguity::Host) if self.settings.is_dpop_request(request) => Err(
                AuthError::DpopProof("the request host is not a plain name or address"),
            ),
            Some(why) => Err(AuthError::AmbiguousRequest(why.reason())),
            None => Ok(()),
        };
        log.step(step::UNAMBIGUOUS, unambiguous, |()| String::new())?;
        let spelling = if self.settings.dotted_spelling(request) {
            Err(AuthError::AmbiguousRequest(
                "a header name with a dot reads as a header the decision reads or sets",
            ))
        } else {
            Ok(())
        };
        log.step(step::HEADER_SPELLING, spelling, |()| String::new())?;
        if self.settings.upstream.strip_authorization {
            // Strip means gone: a token copy the answer cannot remove is refused, on
            // every route.
            let removable = token_source::check_removable(
                &self.settings.token_sources,
                request,
                wire == Wire::Grpc,
            );
            log.step(step::TOKEN_REMOVABLE, removable, |()| String::new())?;
        }
        self.evaluate(&requirement.action, role, request, wire, &mut token, log)
            .await
    }

    /// Lays out the steps the deciding `action` takes, for a trace.
    fn plan(&self, trace: &mut Trace, action: &Action, role: Role<'_>, request: &Inbound<'_>) {
        trace.plan(step::UNAMBIGUOUS, trace::label(step::UNAMBIGUOUS));
        trace.plan(step::HEADER_SPELLING, trace::label(step::HEADER_SPELLING));
        if self.settings.upstream.strip_authorization {
            trace.plan(step::TOKEN_REMOVABLE, trace::label(step::TOKEN_REMOVABLE));
        }
        trace.plan(step::ACTION, trace::label(step::ACTION));
        let Action::Token(rule) = action else {
            return;
        };
        trace.plan(step::TOKEN_SOURCE, trace::label(step::TOKEN_SOURCE));
        if self.cache.is_some() {
            trace.plan(step::TOKEN_CACHE, trace::label(step::TOKEN_CACHE));
        }
        trace.plan_token_checks();
        for name in [step::CONFIRMATION, step::CERTIFICATE, step::DPOP] {
            trace.plan(name, trace::label(name));
        }
        if !rule.issuers.is_empty() {
            trace.plan(step::ROUTE_ISSUERS, trace::label(step::ROUTE_ISSUERS));
        }
        trace.plan(step::AUDIENCE, trace::label(step::AUDIENCE));
        trace.plan(step::SCOPES, trace::label(step::SCOPES));
        for condition in &rule.conditions {
            trace.plan(step::CONDITION, steps::condition_label(condition));
        }
        if let Role::Deciding {
            context_scopes: Some(_),
        } = role
        {
            trace.plan(step::CONTEXT_SCOPES, trace::label(step::CONTEXT_SCOPES));
        }
        if rule.dpop_required {
            trace.plan(step::DPOP_REQUIRED, trace::label(step::DPOP_REQUIRED));
        }
        if self.settings.is_dpop_request(request) {
            trace.plan(step::REPLAY, trace::label(step::REPLAY));
        }
    }

    /// What `action` gives this request in `role`. The token is read and verified only
    /// when the action needs it, and only once per request (`token` keeps the outcome).
    /// For the deciding rule, a `required_scopes` value that decides is checked, and a
    /// DPoP proof is recorded as used last, once everything else allows the request: a
    /// refused request spends no replay-store space, and a shadow rule none at all. Only
    /// the deciding rule's steps are recorded.
    async fn evaluate(
        &self,
        action: &Action,
        role: Role<'_>,
        request: &Inbound<'_>,
        wire: Wire,
        token: &mut TokenOutcome,
        log: &mut LogFields<'_>,
    ) -> Result<Allowed, AuthError> {
        let deciding = matches!(role, Role::Deciding { .. });
        let chosen = match action {
            Action::Deny => Err(AuthError::RouteDenied),
            Action::Anonymous => Ok("anonymous: no token needed"),
            Action::Preflight => Ok("CORS preflight: no token needed"),
            Action::Token(_) => Ok("token required"),
        };
        let chosen = if deciding {
            log.step(step::ACTION, chosen, |what| (*what).to_owned())?
        } else {
            chosen?
        };
        let rule = match action {
            Action::Token(rule) => rule,
            Action::Preflight => return Ok(Allowed::Preflight),
            _ => {
                debug_assert_eq!(chosen, "anonymous: no token needed");
                return Ok(Allowed::Anonymous);
            }
        };
        let (entry, proof) = match token {
            Some(outcome) => {
                log.at = log.token_at;
                outcome.clone()
            }
            None => {
                let outcome = self.token_entry(request, wire, log).await;
                log.token_at = log.at;
                *token = Some(outcome.clone());
                outcome
            }
        }?;
        // A DPoP request got here with its proof checked; a bearer one did not.
        let dpop_required = if rule.dpop_required && !self.settings.is_dpop_request(request) {
            Err(AuthError::DpopRequired)
        } else {
            Ok(())
        };
        let Role::Deciding { context_scopes } = role else {
            self.check_route(&entry, rule, None)?;
            dpop_required?;
            return Ok(Allowed::Token(entry));
        };
        self.check_route(&entry, rule, Some(log))?;
        if let Some(value) = context_scopes {
            let checked = ScopeRule::check_context_extension(value, entry.scopes());
            log.step(step::CONTEXT_SCOPES, checked, |()| {
                format!("requires {value}")
            })?;
        }
        if rule.dpop_required {
            log.step(step::DPOP_REQUIRED, dpop_required, |()| String::new())?;
        }
        if let Some(proof) = &proof {
            let recorded = self.record_proof(proof).await;
            log.step(step::REPLAY, recorded, |()| {
                "first use of this jti".to_owned()
            })?;
        }
        Ok(Allowed::Token(entry))
    }

    /// Records a checked proof's first use, last: a replay, a proof the store cannot
    /// vouch for, a key over its quota or a store that cannot answer refuses the request.
    async fn record_proof(&self, proof: &CheckedProof) -> Result<(), AuthError> {
        let now_ms = self.verifier.clock().now_millis();
        let used = ProofUse {
            key: proof.replay_key,
            holder: proof.holder(),
            iat_ms: proof.iat_ms,
        };
        match self.replay.record(&used, now_ms).await {
            Ok(Use::First) => Ok(()),
            Ok(Use::Replay) => Err(AuthError::DpopProof("jti was used before")),
            Ok(Use::Unproven(why)) => Err(AuthError::DpopProof(why)),
            Err(ReplayError::HolderFull) => Err(AuthError::DpopProof(
                "the proof key holds its maximum of unexpired proofs",
            )),
            Err(ReplayError::Unavailable | ReplayError::Full) => {
                Err(AuthError::ReplayStoreUnavailable)
            }
        }
    }

    /// The request's token, verified (or found in the cache), with its binding checked.
    async fn token_entry(
        &self,
        request: &Inbound<'_>,
        wire: Wire,
        log: &mut LogFields<'_>,
    ) -> Result<(Arc<CachedToken>, Option<CheckedProof>), AuthError> {
        let dpop = self.settings.is_dpop_request(request);
        let sources = match &self.settings.dpop_sources {
            Some(dpop_sources) if dpop => dpop_sources,
            _ => &self.settings.token_sources,
        };
        let found = token_source::find_token(sources, request, self.settings.max_header_bytes)
            .and_then(|found| {
                let from_query = matches!(sources.get(found.source), Some(TokenSource::Query(_)));
                if from_query && wire == Wire::Http && self.settings.upstream.strip_authorization {
                    return Err(AuthError::QueryTokenNotRemovable);
                }
                Ok(found)
            });
        let found = log.step(step::TOKEN_SOURCE, found, |found| {
            steps::source(&sources[found.source], found.token().as_str().len())
        })?;
        let entry = self.verified_entry(found.token(), log).await?;
        log.entry = Some(Arc::clone(&entry));
        let proof = self.check_binding(&entry, found.token().as_str(), dpop, request, log)?;
        Ok((entry, proof))
    }

    /// A sender-constrained token is used by its holder only: a certificate-bound one
    /// with its certificate (RFC 8705 §3), a DPoP-bound one with a fresh proof by its key
    /// (RFC 9449 §7), never as a bearer token. Checked on every request, cached or not.
    /// The checked proof is returned, to be recorded once the request is allowed.
    fn check_binding(
        &self,
        entry: &CachedToken,
        token: &str,
        dpop: bool,
        request: &Inbound<'_>,
        log: &mut LogFields<'_>,
    ) -> Result<Option<CheckedProof>, AuthError> {
        let certificate = entry
            .x5t_s256()
            .map(|bound_to| binding::check_certificate(bound_to, request.peer_certificate))
            .transpose();
        log.step(step::CERTIFICATE, certificate, |checked| match checked {
            Some(()) => "the client certificate is the one the token is bound to".to_owned(),
            None => "not certificate-bound".to_owned(),
        })?;
        let proof = self.check_dpop(entry, token, dpop, request);
        log.step(step::DPOP, proof, |proof| match proof {
            Some(_) => "a fresh proof by the key the token is bound to".to_owned(),
            None => "not DPoP-bound, sent as a bearer token".to_owned(),
        })
    }

    /// The DPoP side of [`AuthzService::check_binding`].
    fn check_dpop(
        &self,
        entry: &CachedToken,
        token: &str,
        dpop: bool,
        request: &Inbound<'_>,
    ) -> Result<Option<CheckedProof>, AuthError> {
        let mode = self
            .verifier
            .issuer(entry.iss())
            .map_or(DpopMode::Off, |i| i.config.dpop);
        let jkt = match (dpop, entry.jkt()) {
            (false, Some(_)) => return Err(AuthError::BoundTokenAsBearer),
            (false, None) if mode == DpopMode::Required => return Err(AuthError::DpopRequired),
            (false, None) => return Ok(None),
            (true, _) if mode == DpopMode::Off => return Err(AuthError::NotBearer),
            (true, None) => return Err(AuthError::TokenNotDpopBound),
            (true, Some(jkt)) => jkt,
        };
        let settings = &self.settings.dpop;
        let now_ms = self.verifier.clock().now_millis();
        let target = ProofTarget {
            method: request.method,
            scheme: request.scheme,
            host: request.host,
            path: request.path,
            access_token: token,
        };
        let proof = dpop::check_proof(
            request.values("dpop"),
            &target,
            settings,
            self.settings.max_header_bytes,
            now_ms,
        )?;
        if proof.jkt != jkt {
            return Err(AuthError::DpopProof(
                "the proof key is not the key the token is bound to",
            ));
        }
        Ok(Some(proof))
    }

    /// Checks a verified token against the route it is used on, whether it verified now or
    /// came from the cache: issuers, audiences, scopes, claim conditions, in that order.
    /// `log` records each step (the deciding rule's only).
    fn check_route(
        &self,
        entry: &CachedToken,
        rule: &TokenRule,
        mut log: Option<&mut LogFields<'_>>,
    ) -> Result<(), AuthError> {
        let mut step = |name, result: Result<(), AuthError>, detail: &dyn Fn() -> String| match log
            .as_deref_mut()
        {
            Some(log) => log.step(name, result, |()| detail()),
            None => result,
        };
        if !rule.issuers.is_empty() {
            let admitted = if rule.issuers.iter().any(|i| i == entry.iss()) {
                Ok(())
            } else {
                Err(AuthError::WrongIssuer)
            };
            step(step::ROUTE_ISSUERS, admitted, &|| {
                format!("route admits {}", rule.issuers.join(", "))
            })?;
        }
        let (accepted, whose) = match &rule.audiences {
            Some(audiences) => (audiences.as_slice(), "route"),
            None => (
                self.verifier.audiences(entry.iss()).unwrap_or_default(),
                "issuer",
            ),
        };
        step(
            step::AUDIENCE,
            accept_audience(entry.audiences(), accepted),
            &|| format!("{whose} accepts {}", accepted.join(", ")),
        )?;
        step(
            step::SCOPES,
            rule.scopes.check_granted(entry.scopes()),
            &|| format!("granted: {}", entry.scopes().collect::<Vec<_>>().join(" ")),
        )?;
        for (i, condition) in rule.conditions.iter().enumerate() {
            let holds = if entry.condition(rule.first_condition + i) {
                Ok(())
            } else {
                Err(AuthError::ClaimsNotSatisfied)
            };
            match log.as_deref_mut() {
                Some(log) => {
                    log.at = step::CONDITION;
                    if let Some(trace) = &mut log.trace {
                        let detail = holds.as_ref().map(|()| "holds".to_owned());
                        trace.record(step::CONDITION, steps::condition_label(condition), detail);
                    }
                    holds?;
                }
                None => holds?,
            }
        }
        Ok(())
    }

    /// The entry of a token that verifies: from the cache when it holds one that is still
    /// fresh and whose key is still published, else by full verification (then cached).
    async fn verified_entry(
        &self,
        token: token_source::AccessToken<'_>,
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
                if let Some(trace) = &mut log.trace {
                    trace.record(
                        step::TOKEN_CACHE,
                        trace::label(step::TOKEN_CACHE),
                        Ok("hit: verified earlier".to_owned()),
                    );
                    trace.record_token_checks(trace::TokenCheck::AudienceClaim, None);
                    trace.record(
                        step::CONFIRMATION,
                        trace::label(step::CONFIRMATION),
                        Ok(String::new()),
                    );
                }
                return Ok(hit);
            }
            // Expired, or its key left the JWKS: verify afresh, which says why.
            cache.remove(key);
        }
        if let Some(trace) = &mut log.trace
            && self.cache.is_some()
        {
            trace.record(
                step::TOKEN_CACHE,
                trace::label(step::TOKEN_CACHE),
                Ok("miss: verified now".to_owned()),
            );
        }
        let verified = self.verifier.verify(token, &mut log.token).await;
        log.at = log.token.reached.id();
        if let Some(trace) = &mut log.trace {
            trace.record_token_checks(log.token.reached, verified.as_ref().err());
        }
        let verified = verified?;
        let payload = token
            .as_str()
            .get(verified.payload.clone())
            .unwrap_or_default();
        let entry = self.entry(&verified, payload);
        let entry = Arc::new(log.step(step::CONFIRMATION, entry, |_| String::new())?);
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            cache.insert(key, Arc::clone(&entry), self.verifier.clock().now_millis());
        }
        Ok(entry)
    }

    fn entry(&self, verified: &Verified, payload: &str) -> Result<CachedToken, AuthError> {
        let claims = &verified.claims;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
        let upstream = &self.settings.upstream;
        let iss = text("iss").unwrap_or_default();
        let binding = binding::confirmation(claims)?;
        Ok(CachedToken::new(EntryParts {
            binding,
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
        }))
    }
}

/// The rule name logged for a request answered with the resource metadata.
const RESOURCE_METADATA_RULE: &str = "resource_metadata";

/// The parts of the request that select a rule.
fn request_view<'a>(request: &Inbound<'a>) -> policy::Request<'a> {
    let preflight_method = request
        .first("origin")
        .and_then(|_| request.first("access-control-request-method"));
    let overrides = policy::method_overrides(
        request.method,
        request.headers.iter().copied(),
        request.query(),
        request.values("content-type").next(),
    );
    policy::Request {
        method: request.method,
        host: request.host,
        path: request.path,
        preflight_method,
        overrides,
    }
}
