//! The Check service: one request, from whichever wire, through the route policy, the
//! token's verification (or the verified-token cache) and the route's checks, to a
//! [`Verdict`]; counted and logged once, and recorded step by step when asked
//! ([`crate::trace`]). It knows no wire type: `crate::wire` builds the request and renders
//! the verdict. Decisions are made by `policy`, `verify` and `binding`; [`decide`] puts them
//! in order, [`token`] holds the token's checks.

mod decide;
mod log;
mod settings;
mod token;
mod verdict;

mod steps;

use log::{log_decision, log_shadow};

pub use settings::{CheckSettings, allow_room};
pub use verdict::{Allow, Denial, Verdict, Wire};

use settings::entry_fingerprint;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::trace::FutureExt as _;

use crate::binding::dpop::CheckedProof;
use crate::config::Config;
use crate::deny_log::DenyLog;
use crate::error::AuthError;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::otel::{CheckSpan, Decided};
use crate::replay::ReplayStore;
use crate::resource_metadata::ResourceMetadata;
use crate::revocation::RevocationStore;
use crate::token_cache::{CachedToken, TokenCache};
use crate::trace::{self, Trace, step};
use crate::verify::{TokenFacts, Verifier};

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

/// The state a reload carries over from one configuration's service to the next.
pub struct Shared {
    pub cache: Option<Arc<TokenCache>>,
    pub metrics: Arc<Metrics>,
    pub deny_log: Arc<DenyLog>,
    /// DPoP proofs seen: kept across reloads, so a reload never lets a proof be replayed.
    pub replay: Arc<ReplayStore>,
    /// Revocations checked on every token, when configured.
    pub revocations: Option<Arc<RevocationStore>>,
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
    revocations: Option<Arc<RevocationStore>>,
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
    /// A request for the RFC 9728 metadata of resource `.0`, answered by the service
    /// itself.
    ResourceMetadata(usize),
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
            revocations: None,
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
            revocations,
        } = shared;
        metrics.set_introspectors(verifier.introspectors().cloned().collect());
        metrics.set_revocations(revocations.clone());
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
            revocations,
        }
    }

    /// This service, checking every token against `revocations`.
    pub fn with_revocations(self, revocations: Option<Arc<RevocationStore>>) -> Self {
        self.metrics.set_revocations(revocations.clone());
        AuthzService {
            revocations,
            ..self
        }
    }

    /// The revocations checked, when configured.
    pub fn revocations(&self) -> Option<&Arc<RevocationStore>> {
        self.revocations.as_ref()
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
    pub fn resource_metadata(&self) -> impl Iterator<Item = &ResourceMetadata> {
        self.settings.resources.list.iter().map(|r| &r.metadata)
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
            revocations: self.revocations.clone(),
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
    /// `call` is the call's own headers (gRPC metadata, the HTTP endpoint's request), which
    /// may carry the caller's trace context ([`crate::otel`]).
    pub async fn authorize(
        &self,
        request: &Inbound<'_>,
        wire: Wire,
        call: Option<&http::HeaderMap>,
    ) -> Verdict {
        let span = CheckSpan::start(wire, call, request);
        let started = Instant::now();
        let mut fields = LogFields::default();
        let outcome = match span.context() {
            Some(cx) => {
                let decided = self.decide(request, wire, &mut fields);
                decided.with_context(cx.clone()).await
            }
            None => self.decide(request, wire, &mut fields).await,
        };
        self.finish(request, outcome, &mut fields, started, &span)
    }

    /// [`AuthzService::authorize`], recording each step of the decision (`explain`).
    pub async fn authorize_traced(&self, request: &Inbound<'_>, wire: Wire) -> (Verdict, Trace) {
        let started = Instant::now();
        let mut fields = LogFields {
            trace: Some(Box::default()),
            ..LogFields::default()
        };
        let outcome = self.decide(request, wire, &mut fields).await;
        let verdict = self.finish(request, outcome, &mut fields, started, &CheckSpan::off());
        let mut trace = fields.trace.map(|t| *t).unwrap_or_default();
        trace.close();
        (verdict, trace)
    }

    /// Refuses `request` before any rule is read (the HTTP endpoint's forwarded headers
    /// were missing or contradictory): counted and logged like any decision.
    pub fn refuse(
        &self,
        request: &Inbound<'_>,
        error: AuthError,
        call: Option<&http::HeaderMap>,
    ) -> Verdict {
        let span = CheckSpan::start(Wire::Http, call, request);
        self.finish(
            request,
            Err(error),
            &mut LogFields {
                at: step::FORWARDED_HEADERS,
                ..LogFields::default()
            },
            Instant::now(),
            &span,
        )
    }

    fn finish(
        &self,
        request: &Inbound<'_>,
        outcome: Result<Allowed, AuthError>,
        fields: &mut LogFields<'_>,
        started: Instant,
        span: &CheckSpan,
    ) -> Verdict {
        if let Some(trace) = &mut fields.trace {
            let answer = match &outcome {
                Ok(Allowed::ResourceMetadata(_)) => "the RFC 9728 metadata document".to_owned(),
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
            Ok(Allowed::ResourceMetadata(index)) => Verdict::ResourceMetadata(*index),
            Ok(allowed) => Verdict::Allow(self.allow(allowed, request)),
            Err(error) => Verdict::Deny(Denial {
                error: error.clone(),
                dpop_request: self.settings.is_dpop_request(request),
                grpc_request: request.is_grpc(),
                resource: self.settings.resources.for_request(
                    request.host,
                    request.path,
                    self.settings.policy.grammar(),
                ),
            }),
        };
        let elapsed = started.elapsed();
        self.metrics
            .record(outcome.as_ref().err(), elapsed, span.sampled_ids());
        span.end(|| Decided {
            decision: match &outcome {
                Ok(Allowed::ResourceMetadata(_)) => "answer",
                Ok(_) => "allow",
                Err(_) => "deny",
            },
            code: outcome.as_ref().err().map(|e| e.code().as_str()),
            status: outcome
                .as_ref()
                .err()
                .map_or(200, |e| e.code().http_status()),
            step: fields.at,
            rule: fields.rule.unwrap_or(log::DEFAULT_RULE),
            // The issuer's label, as its metrics name it (redacted once, at start-up).
            issuer: fields
                .entry
                .as_ref()
                .and_then(|e| self.verifier.issuer(e.iss()))
                .map(|issuer| issuer.jwks.label()),
            method: request.method,
            path: request.path,
        });
        log_decision(
            request,
            &outcome,
            fields,
            elapsed,
            &self.deny_log,
            span.ids(),
        );
        verdict
    }
}
