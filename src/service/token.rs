//! The request's token: found, verified (or taken from the cache) and, when it is
//! sender-constrained, checked against its holder's certificate or proof.

use std::sync::Arc;

use super::*;
use crate::binding::dpop::{CheckedProof, DpopMode, ProofTarget};
use crate::binding::{self, dpop};
use crate::error::AuthError;
use crate::inbound::Inbound;
use crate::policy::granted_scopes;
use crate::token_cache::{CachedToken, EntryParts, TokenCache};
use crate::token_source::{self, TokenSource};
use crate::trace::{self, step};
use crate::verify::Verified;

impl AuthzService {
    /// The request's token, verified (or found in the cache), with its binding checked.
    pub(super) async fn token_entry(
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
        let token = found.token();
        let entry = match self.opaque_issuer(token.as_str()) {
            Some(issuer) => self.introspected_entry(issuer, token.as_str(), log).await?,
            None => {
                let entry = self.verified_entry(token, log).await?;
                self.introspect_jwt(&entry, token.as_str(), log).await?;
                entry
            }
        };
        self.check_revocation(&entry, log)?;
        log.entry = Some(Arc::clone(&entry));
        let proof = self.check_binding(&entry, found.token().as_str(), dpop, request, log)?;
        Ok((entry, proof))
    }

    /// The issuer a token that is not a compact JWS goes to, when one takes opaque tokens.
    /// A token of three segments is always read as a JWS, never introspected instead.
    fn opaque_issuer(&self, token: &str) -> Option<&crate::verify::Issuer> {
        if crate::claims::compact_segments(token).is_some() {
            return None;
        }
        self.verifier.opaque_issuer()
    }

    /// The entry of an opaque token its issuer's introspection endpoint says is active,
    /// judged as a JWT's claims are.
    async fn introspected_entry(
        &self,
        issuer: &crate::verify::Issuer,
        token: &str,
        log: &mut LogFields<'_>,
    ) -> Result<Arc<CachedToken>, AuthError> {
        let Some(introspector) = &issuer.introspector else {
            return Err(AuthError::OpaqueNotAccepted);
        };
        log.token.iss = Some(issuer.config.issuer.clone());
        let now_ms = self.verifier.clock().now_millis();
        let answer = introspector.introspect(token, now_ms).await;
        let answer = log.step(step::INTROSPECTION, answer, |_| "active".to_owned())?;
        let verified = self
            .verifier
            .check_introspected(issuer, &answer, &mut log.token);
        let verified = log.step(step::INTROSPECTED_CLAIMS, verified, |_| String::new())?;
        let entry = self.entry(&verified, "");
        Ok(Arc::new(
            log.step(step::CONFIRMATION, entry, |_| String::new())?,
        ))
    }

    /// A JWT whose issuer introspects its JWTs too (`introspection.jwts`) must also be
    /// active at the authorization server, cached or not.
    async fn introspect_jwt(
        &self,
        entry: &CachedToken,
        token: &str,
        log: &mut LogFields<'_>,
    ) -> Result<(), AuthError> {
        let Some(introspector) = self
            .verifier
            .issuer(entry.iss())
            .and_then(|i| i.introspector.as_ref())
            .filter(|x| x.config().jwts)
        else {
            return Ok(());
        };
        let now_ms = self.verifier.clock().now_millis();
        let answer = introspector
            .introspect(token, now_ms)
            .await
            .and_then(|claims| match claims.get("iss").and_then(|v| v.as_str()) {
                Some(iss) if iss != entry.iss() => Err(AuthError::WrongIssuer),
                _ => Ok(()),
            });
        log.step(step::INTROSPECTION, answer, |()| "active".to_owned())
    }

    /// No revocation in force covers the token, and the store can vouch for that.
    fn check_revocation(
        &self,
        entry: &CachedToken,
        log: &mut LogFields<'_>,
    ) -> Result<(), AuthError> {
        let Some(store) = &self.revocations else {
            return Ok(());
        };
        let now_ms = self.verifier.clock().now_millis();
        let token = crate::revocation::RevocableToken {
            iss: entry.iss(),
            sub: entry.sub(),
            ids: entry.ids(),
            exp: entry.exp,
            leeway_ms: entry.leeway_ms(),
        };
        let checked = store.check(&token, now_ms);
        log.step(step::REVOCATION, checked, |()| String::new())
    }

    /// A sender-constrained token is used by its holder only: a certificate-bound one
    /// with its certificate (RFC 8705 §3), a DPoP-bound one with a fresh proof by its key
    /// (RFC 9449 §7), never as a bearer token. Checked on every request, cached or not.
    /// The checked proof is returned, to be recorded once the request is allowed.
    pub(super) fn check_binding(
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
    pub(super) fn check_dpop(
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

    /// The entry of a token that verifies: from the cache when it holds one that is still
    /// fresh and whose key is still published, else by full verification (then cached).
    pub(super) async fn verified_entry(
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

    pub(super) fn entry(
        &self,
        verified: &Verified,
        payload: &str,
    ) -> Result<CachedToken, AuthError> {
        let claims = &verified.claims;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
        let upstream = &self.settings.upstream;
        let iss = text("iss").unwrap_or_default();
        let binding = binding::confirmation(claims)?;
        if self.revocations.is_some() {
            // What a revocation names must read one way: a claim it keys on that is not a
            // string could never be covered.
            let keyed = ["sub", "jti", "sid", "client_id", "azp", "email"];
            if keyed
                .iter()
                .any(|name| claims.get(*name).is_some_and(|v| !v.is_string()))
            {
                return Err(AuthError::MissingClaim);
            }
        }
        // Emails are compared in ASCII lower case, as revocations store them.
        let email = text("email").map(str::to_ascii_lowercase);
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
            ids: crate::revocation::TokenIds {
                jti: text("jti"),
                sid: text("sid"),
                client_id: text("client_id").or_else(|| text("azp")),
                email: email.as_deref(),
                iat: claims.get("iat").and_then(crate::claims::numeric_date),
            },
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
