//! Sender-constrained tokens: a token bound to a key (DPoP, RFC 9449) or to a client
//! certificate (mutual TLS, RFC 8705) is useless to whoever steals it without that key or
//! certificate. The binding is the token's `cnf` claim (RFC 7800); this module reads it
//! and checks the certificate side. The DPoP proof is checked in [`dpop`].
//!
//! Pure: no I/O. The replay store a proof's `jti` goes to is the service's.

pub mod dpop;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::claims::Claims;
use crate::error::AuthError;

/// What a token's `cnf` claim binds it to, borrowed from its claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confirmation<'a> {
    /// `jkt`: the RFC 7638 SHA-256 thumbprint of the DPoP key.
    pub jkt: Option<&'a str>,
    /// `x5t#S256`: the SHA-256 thumbprint of the client certificate (DER).
    pub x5t_s256: Option<&'a str>,
}

/// Reads `cnf`. Absent is no binding. A `cnf` that is not an object, is empty, or names a
/// confirmation method this service cannot check (`jwk`, `jku`, `kid`, anything unknown)
/// is refused: accepting it would treat a bound token as a bearer token.
pub fn confirmation(claims: &Claims) -> Result<Confirmation<'_>, AuthError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(Confirmation::default());
    };
    let Value::Object(members) = cnf else {
        return Err(AuthError::UnsupportedConfirmation);
    };
    let mut found = Confirmation::default();
    for (name, value) in members {
        let text = value
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::UnsupportedConfirmation)?;
        match name.as_str() {
            "jkt" => found.jkt = Some(text),
            "x5t#S256" => found.x5t_s256 = Some(text),
            _ => return Err(AuthError::UnsupportedConfirmation),
        }
    }
    if found == Confirmation::default() {
        return Err(AuthError::UnsupportedConfirmation);
    }
    Ok(found)
}

/// RFC 8705 §3: a token bound to a certificate is accepted only with that certificate.
/// `forwarded` is the client certificate as Envoy forwards it (URL-encoded PEM, one
/// certificate); the proxy has already verified the TLS handshake.
pub fn check_certificate(bound_to: &str, forwarded: Option<&str>) -> Result<(), AuthError> {
    let pem = forwarded.ok_or(AuthError::CertificateBinding("no client certificate"))?;
    let thumbprint = certificate_thumbprint(pem).ok_or(AuthError::CertificateBinding(
        "the forwarded client certificate is not one PEM certificate",
    ))?;
    if thumbprint == bound_to {
        Ok(())
    } else {
        Err(AuthError::CertificateBinding(
            "the client certificate is not the one the token is bound to",
        ))
    }
}

/// `x5t#S256` of a URL-encoded PEM certificate: base64url SHA-256 of its DER. `None`
/// unless it is exactly one well-formed `CERTIFICATE` block.
pub fn certificate_thumbprint(url_encoded_pem: &str) -> Option<String> {
    let pem = crate::percent::decode(url_encoded_pem)?;
    let pem = std::str::from_utf8(&pem).ok()?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let (before, rest) = pem.split_once(BEGIN)?;
    let (body, after) = rest.split_once(END)?;
    if !before.trim().is_empty() || !after.trim().is_empty() {
        // A chain, or text around the certificate: which one is the client's is not ours
        // to guess.
        return None;
    }
    let base64: String = body.split_ascii_whitespace().collect();
    let der = STANDARD.decode(base64).ok()?;
    Some(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &der)))
}

#[cfg(test)]
mod tests;
