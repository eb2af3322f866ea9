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
        let entry = self.verified_entry(found.token(), log).await?;
        log.entry = Some(Arc::clone(&entry));
        let proof = self.check_binding(&entry, found.token().as_str(), dpop, request, log)?;
        Ok((entry, proof))
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
