//! The decision's order: the rule, shadow rules, the request's reading, then the deciding
//! rule's checks, the route's checks on the token, and the proof's use, last.

use super::*;
use crate::binding::dpop::CheckedProof;
use crate::error::AuthError;
use crate::inbound::Inbound;
use crate::policy::{self, Action, Ambiguity, ScopeRule, TokenRule};
use crate::replay::{ProofUse, ReplayError, Use};
use crate::token_cache::CachedToken;
use crate::token_source;
use crate::trace::{self, Trace, step};
use crate::verify::accept_audience;

impl AuthzService {
    pub(super) async fn decide<'s>(
        &'s self,
        request: &Inbound<'_>,
        wire: Wire,
        log: &mut LogFields<'s>,
    ) -> Result<Allowed, AuthError> {
        // Envoy sends the Check's answer as the response; the HTTP endpoint can only allow
        // or deny, so there the document comes from the admin port.
        if wire == Wire::Grpc
            && let Some(document) =
                self.settings
                    .resources
                    .document(request.method, request.path, request.host)
        {
            log.rule = Some(RESOURCE_METADATA_RULE);
            if let Some(trace) = &mut log.trace {
                trace.info(step::RULE, "rule", RESOURCE_METADATA_RULE.to_owned());
            }
            return Ok(Allowed::ResourceMetadata(document));
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
    pub(super) fn plan(
        &self,
        trace: &mut Trace,
        action: &Action,
        role: Role<'_>,
        request: &Inbound<'_>,
    ) {
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
        let introspects = self.verifier.introspectors().next().is_some();
        if introspects {
            trace.plan(step::INTROSPECTION, trace::label(step::INTROSPECTION));
            trace.plan(
                step::INTROSPECTED_CLAIMS,
                trace::label(step::INTROSPECTED_CLAIMS),
            );
        }
        trace.plan_token_checks();
        trace.plan(step::CONFIRMATION, trace::label(step::CONFIRMATION));
        if self.revocations.is_some() {
            trace.plan(step::REVOCATION, trace::label(step::REVOCATION));
        }
        for name in [step::CERTIFICATE, step::DPOP] {
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
    pub(super) async fn evaluate(
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
            self.check_resource(&entry, request)?;
            dpop_required?;
            return Ok(Allowed::Token(entry));
        };
        self.check_route(&entry, rule, Some(log))?;
        let resource = self.check_resource(&entry, request);
        if self.settings.resources.enforced {
            log.step(step::RESOURCE, resource, |()| String::new())?;
        }
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
    pub(super) async fn record_proof(&self, proof: &CheckedProof) -> Result<(), AuthError> {
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

    /// A token used on one of several protected resources is for that resource: one of its
    /// audiences (RFC 8707), from one of its authorization servers. A request for none of
    /// them is refused: its resource cannot be told.
    pub(super) fn check_resource(
        &self,
        entry: &CachedToken,
        request: &Inbound<'_>,
    ) -> Result<(), AuthError> {
        let resources = &self.settings.resources;
        if !resources.enforced {
            return Ok(());
        }
        let index = resources
            .for_request(request.host, request.path, self.settings.policy.grammar())
            .ok_or(AuthError::AmbiguousRequest(
                "the request is for no protected resource",
            ))?;
        let Some(resource) = resources.get(index) else {
            return Ok(());
        };
        if !resource.issuers.is_empty() && !resource.issuers.iter().any(|i| i == entry.iss()) {
            return Err(AuthError::WrongIssuer);
        }
        if !resource.audiences.is_empty() {
            accept_audience(entry.audiences(), &resource.audiences)?;
        }
        Ok(())
    }

    /// Checks a verified token against the route it is used on, whether it verified now or
    /// came from the cache: issuers, audiences, scopes, claim conditions, in that order.
    /// `log` records each step (the deciding rule's only).
    pub(super) fn check_route(
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
}

/// The rule name logged for a request answered with the resource metadata.
pub(super) const RESOURCE_METADATA_RULE: &str = "resource_metadata";

/// The parts of the request that select a rule.
pub(super) fn request_view<'a>(request: &'a Inbound<'a>) -> policy::Selector<'a> {
    let preflight_method = request
        .first("origin")
        .and_then(|_| request.first("access-control-request-method"));
    let overrides = policy::method_overrides(
        request.method,
        request.headers.iter().copied(),
        request.query(),
        request.values("content-type").next(),
    );
    policy::Selector {
        method: request.method,
        host: request.host,
        path: request.path,
        preflight_method,
        overrides,
        headers: &request.headers,
        body: request.body,
    }
}
