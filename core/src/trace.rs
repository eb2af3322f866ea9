//! The decision's record of its own steps: what `jwt-authz explain` prints, and what the
//! decision log names as the step that refused a request.
//!
//! The decision records as it goes (the service crate's `service` module): reading the request, the rule
//! chosen and why, shadow rules, where the token was found, each check of the token
//! ([`TokenCheck`]), its binding, the route's checks, the context extension, the proof's
//! use, the answer. Nobody asking costs a branch per step: a [`Trace`] is only built for
//! `explain`. When a rule needs a token, its steps are laid out first, in the order the
//! decision takes them, so that a step after the one that refused reads "not evaluated".

use std::borrow::Cow;

use serde::Serialize;

use crate::error::AuthError;

/// One check of a token's verification, in the order the service's verifier makes them. Each is named by its place in that order, so a failure names exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenCheck {
    /// Three base64url segments, a JSON header without duplicate members.
    #[default]
    Format,
    /// `alg` names an asymmetric algorithm (never `none` or HMAC).
    Algorithm,
    /// No `crit` extension (none is implemented).
    Critical,
    /// The payload is a JSON object.
    Payload,
    /// The unverified `iss` is a configured issuer.
    Issuer,
    /// `alg` is one the issuer allows.
    AllowedAlgorithm,
    /// `typ` is `at+jwt`, where the issuer requires it.
    TokenType,
    /// A published key matches `kid` and `alg`.
    Key,
    Signature,
    /// `exp` is present and not past.
    Expiry,
    /// `nbf`, when present, is not in the future.
    NotBefore,
    /// `aud` is a string or an array of strings.
    AudienceClaim,
}

impl TokenCheck {
    /// Every check, in order.
    pub const ALL: [TokenCheck; 12] = [
        TokenCheck::Format,
        TokenCheck::Algorithm,
        TokenCheck::Critical,
        TokenCheck::Payload,
        TokenCheck::Issuer,
        TokenCheck::AllowedAlgorithm,
        TokenCheck::TokenType,
        TokenCheck::Key,
        TokenCheck::Signature,
        TokenCheck::Expiry,
        TokenCheck::NotBefore,
        TokenCheck::AudienceClaim,
    ];

    /// The step's name in traces and logs.
    pub const fn id(self) -> &'static str {
        match self {
            TokenCheck::Format => "token_format",
            TokenCheck::Algorithm => "token_alg",
            TokenCheck::Critical => "token_crit",
            TokenCheck::Payload => "token_payload",
            TokenCheck::Issuer => "token_issuer",
            TokenCheck::AllowedAlgorithm => "token_issuer_alg",
            TokenCheck::TokenType => "token_typ",
            TokenCheck::Key => "token_key",
            TokenCheck::Signature => "token_signature",
            TokenCheck::Expiry => "token_exp",
            TokenCheck::NotBefore => "token_nbf",
            TokenCheck::AudienceClaim => "token_aud",
        }
    }

    const fn label(self) -> &'static str {
        match self {
            TokenCheck::Format => "token format (three base64url segments, JSON header)",
            TokenCheck::Algorithm => "alg (asymmetric, never none or HMAC)",
            TokenCheck::Critical => "crit (no unsupported extension)",
            TokenCheck::Payload => "payload and signature segments (base64url, a JSON object)",
            TokenCheck::Issuer => "iss (a configured issuer)",
            TokenCheck::AllowedAlgorithm => "alg (one the issuer allows)",
            TokenCheck::TokenType => "typ (at+jwt where required)",
            TokenCheck::Key => "key (kid and alg in the JWKS)",
            TokenCheck::Signature => "signature",
            TokenCheck::Expiry => "exp",
            TokenCheck::NotBefore => "nbf",
            TokenCheck::AudienceClaim => "aud (present and well-formed)",
        }
    }
}

/// The steps of a decision other than the token's own checks. Their names are stable:
/// scripts read them from `explain --json` and the decision log's `step` field.
pub mod step {
    pub const REQUEST: &str = "request";
    pub const PATH: &str = "path";
    pub const RULE: &str = "rule";
    pub const SHADOW: &str = "shadow_rule";
    pub const FORWARDED_HEADERS: &str = "forwarded_headers";
    pub const UNAMBIGUOUS: &str = "unambiguous";
    pub const HEADER_SPELLING: &str = "header_spelling";
    pub const TOKEN_REMOVABLE: &str = "token_removable";
    pub const ACTION: &str = "action";
    pub const TOKEN_SOURCE: &str = "token_source";
    pub const TOKEN_CACHE: &str = "token_cache";
    pub const INTROSPECTION: &str = "introspection";
    pub const INTROSPECTED_CLAIMS: &str = "introspected_claims";
    pub const CONFIRMATION: &str = "cnf";
    pub const REVOCATION: &str = "revocation";
    pub const RESOURCE: &str = "protected_resource";
    pub const CERTIFICATE: &str = "certificate_binding";
    pub const DPOP: &str = "dpop_binding";
    pub const ROUTE_ISSUERS: &str = "route_issuers";
    pub const AUDIENCE: &str = "audience";
    pub const SCOPES: &str = "scopes";
    pub const CONDITION: &str = "claim_condition";
    pub const CONTEXT_SCOPES: &str = "context_scopes";
    pub const DPOP_REQUIRED: &str = "dpop_required";
    pub const REPLAY: &str = "replay";
    pub const ANSWER: &str = "answer";
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not a check: what the decision read or chose.
    Info,
    Pass,
    /// The step that refused the request: it decided.
    Fail,
    /// After the step that refused: never reached.
    NotEvaluated,
}

/// One step of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub label: Cow<'static, str>,
    pub result: Outcome,
    /// The JSON `code` a failed step answers with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// What the step found, or why it failed; never the token or its signature.
    pub detail: String,
}

/// Every step of one decision, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub steps: Vec<Step>,
}

impl Trace {
    /// Something the decision read or chose.
    pub fn info(
        &mut self,
        step: &'static str,
        label: impl Into<Cow<'static, str>>,
        detail: String,
    ) {
        self.info_at(self.steps.len(), step, label, detail);
    }

    /// [`Trace::info`], put at `at` (or last, when there are fewer steps).
    pub fn info_at(
        &mut self,
        at: usize,
        step: &'static str,
        label: impl Into<Cow<'static, str>>,
        detail: String,
    ) {
        let at = at.min(self.steps.len());
        self.steps.insert(
            at,
            Step {
                step,
                label: label.into(),
                result: Outcome::Info,
                code: None,
                detail,
            },
        );
    }

    /// A step the decision will take if nothing refuses first.
    pub fn plan(&mut self, step: &'static str, label: impl Into<Cow<'static, str>>) {
        self.steps.push(Step {
            step,
            label: label.into(),
            result: Outcome::NotEvaluated,
            code: None,
            detail: String::new(),
        });
    }

    /// The verification steps, in order.
    pub fn plan_token_checks(&mut self) {
        for check in TokenCheck::ALL {
            self.plan(check.id(), check.label());
        }
    }

    /// The outcome of `step`: fills the first planned step of that name and label, or is
    /// added after the others.
    pub fn record(
        &mut self,
        step: &'static str,
        label: impl Into<Cow<'static, str>>,
        outcome: Result<String, &AuthError>,
    ) {
        let label = label.into();
        let (result, code, detail) = match outcome {
            Ok(detail) => (Outcome::Pass, None, detail),
            Err(error) => (
                Outcome::Fail,
                Some(error.code().as_str()),
                error.to_string(),
            ),
        };
        let done = Step {
            step,
            label,
            result,
            code,
            detail,
        };
        match self.steps.iter_mut().find(|s| {
            s.result == Outcome::NotEvaluated && s.step == done.step && s.label == done.label
        }) {
            Some(planned) => *planned = done,
            None => self.steps.push(done),
        }
    }

    /// The outcome of a verification that got as far as `reached`: every check before it
    /// passed, and `reached` passed too unless `error` says it failed.
    pub fn record_token_checks(&mut self, reached: TokenCheck, error: Option<&AuthError>) {
        for check in TokenCheck::ALL {
            let outcome = if check != reached {
                Ok(String::new())
            } else if let Some(error) = error {
                Err(error)
            } else {
                Ok(String::new())
            };
            self.record(check.id(), check.label(), outcome);
            if check == reached {
                break;
            }
        }
    }

    /// Closes the record: the steps after the one that refused were not part of this
    /// decision, even those a shadow rule took on the way (its token checks).
    pub fn close(&mut self) {
        let Some(refused) = self.steps.iter().position(|s| s.result == Outcome::Fail) else {
            return;
        };
        for step in &mut self.steps[refused + 1..] {
            if matches!(step.result, Outcome::Pass | Outcome::Fail) {
                step.result = Outcome::NotEvaluated;
                step.code = None;
                step.detail.clear();
            }
        }
    }

    /// The step that refused the request, if one did.
    pub fn deciding(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.result == Outcome::Fail)
    }
}

/// The label of a step named in [`step`].
pub fn label(step: &'static str) -> &'static str {
    match step {
        step::REQUEST => "request",
        step::PATH => "path",
        step::RULE => "rule",
        step::FORWARDED_HEADERS => "the proxy's forwarded request headers",
        step::UNAMBIGUOUS => "one reading of the request",
        step::HEADER_SPELLING => "header names (no dotted spelling of one the decision reads)",
        step::TOKEN_REMOVABLE => "token removable upstream",
        step::ACTION => "rule action",
        step::TOKEN_SOURCE => "token source",
        step::TOKEN_CACHE => "verified-token cache",
        step::INTROSPECTION => "introspection (RFC 7662): active",
        step::INTROSPECTED_CLAIMS => "introspection answer: iss, exp, nbf, aud",
        step::CONFIRMATION => "cnf (a supported confirmation method)",
        step::REVOCATION => "not revoked",
        step::RESOURCE => "for the protected resource (its audiences and issuers)",
        step::CERTIFICATE => "certificate binding (RFC 8705)",
        step::DPOP => "DPoP proof (RFC 9449)",
        step::ROUTE_ISSUERS => "route issuers",
        step::AUDIENCE => "aud",
        step::SCOPES => "scopes",
        step::CONTEXT_SCOPES => "context extension required_scopes",
        step::DPOP_REQUIRED => "DPoP required by the route",
        step::REPLAY => "proof not used before (replay store)",
        step::ANSWER => "answer",
        _ => step,
    }
}
