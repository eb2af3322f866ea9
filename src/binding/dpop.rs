//! DPoP proofs (RFC 9449 §4.3): the `DPoP` header a client signs for each request with the
//! key its access token is bound to.
//!
//! Checked here, in this order, each failure with its own logged reason: one header, a
//! compact JWS with `typ: dpop+jwt`, an allowed asymmetric `alg`, a public `jwk` (private
//! members refused) whose signature verifies, `htm` and `htu` naming this request, `iat`
//! within the window, `ath` the hash of the token. What stays for the caller: the
//! thumbprint must equal the token's `cnf.jkt`, and the `jti` must be new to the replay
//! store ([`CheckedProof::replay_key`]).

use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use url::Url;

use crate::claims;
use crate::error::AuthError;
use crate::jwks::parse_key;
use crate::policy::Authority;
use crate::replay::ProofWindow;

/// Whether an issuer's tokens may, or must, be DPoP-bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpopMode {
    /// The `DPoP` scheme is refused; a DPoP-bound token is unusable.
    Off,
    /// DPoP-bound tokens are verified as DPoP; plain bearer tokens pass as before.
    #[default]
    Allowed,
    /// Only DPoP-bound tokens with a valid proof are accepted.
    Required,
}

impl DpopMode {
    /// Parses `off`, `allowed` or `required`.
    pub fn parse(text: &str) -> Result<DpopMode, String> {
        match text {
            "off" => Ok(DpopMode::Off),
            "allowed" => Ok(DpopMode::Allowed),
            "required" => Ok(DpopMode::Required),
            other => Err(format!("`{other}` is not off, allowed or required")),
        }
    }
}

/// How proofs are checked, for every issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    /// Proof algorithms accepted; never `none` or HMAC.
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be.
    pub max_age: Duration,
    /// How far `iat` may lie in the future, and the slack added to `max_age`.
    pub clock_skew: Duration,
    /// The public URL the proxy's clients see, when it differs from the scheme and host
    /// the proxy reports (the service sits behind another proxy): `htu` is compared with
    /// it, followed by the request path.
    pub public_base_url: Option<Url>,
}

impl DpopSettings {
    /// The window proofs are accepted in: `iat` at most `max_age + clock_skew` old, and
    /// at most `clock_skew` ahead. The replay store remembers a use for the widest window
    /// any configuration since its start had.
    pub fn window(&self) -> ProofWindow {
        ProofWindow {
            max_age_ms: millis(self.max_age + self.clock_skew),
            skew_ms: millis(self.clock_skew),
        }
    }

    /// The `algs` challenge parameter: the accepted algorithms, space-separated.
    pub fn algs(&self) -> String {
        let names: Vec<&str> = self
            .algorithms
            .iter()
            .map(|a| crate::alg::name(*a))
            .collect();
        names.join(" ")
    }
}

/// A proof that passed every check the proof alone can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// RFC 7638 thumbprint of the proof key, to compare with the token's `cnf.jkt`.
    pub jkt: String,
    /// SHA-256 of the thumbprint and `jti`: the replay store's key, so the store never
    /// holds a client's values.
    pub replay_key: [u8; 32],
    /// The proof's `iat`, in Unix milliseconds: the replay store refuses proofs issued
    /// before it was known complete.
    pub iat_ms: u64,
}

/// The request a proof must name.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    pub method: &'a str,
    /// The scheme the proxy reports (`:scheme`), when it does.
    pub scheme: Option<&'a str>,
    /// The host as the proxy reported it (`:authority`), read by [`Authority::parse`].
    pub host: &'a str,
    /// The request target, query included (cut here).
    pub path: &'a str,
    /// The access token the proof must hash (`ath`).
    pub access_token: &'a str,
}

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The longest `jti` accepted: enough for any random identifier, small enough that a
/// proof cannot make the replay store hash megabytes.
const MAX_JTI_BYTES: usize = 256;

/// Checks the request's `DPoP` header values against `target` at `now_ms` (Unix
/// milliseconds).
pub fn check_proof<'v>(
    mut values: impl Iterator<Item = &'v [u8]>,
    target: &ProofTarget<'_>,
    settings: &DpopSettings,
    max_len: usize,
    now_ms: u64,
) -> Result<CheckedProof, AuthError> {
    let proof = values
        .next()
        .ok_or(AuthError::DpopProof("no DPoP header"))?;
    if values.next().is_some() || proof.contains(&b',') {
        // Two headers, kept apart or joined by Envoy with a comma.
        return Err(AuthError::DpopProof("more than one DPoP header"));
    }
    if proof.len() > max_len {
        return Err(AuthError::DpopProof("DPoP header is too long"));
    }
    let proof = std::str::from_utf8(proof)
        .map_err(|_| AuthError::DpopProof("DPoP header is not a JWS"))?
        .trim_matches([' ', '\t']);
    let Some((header_b64, payload_b64, signature_b64)) = claims::compact_segments(proof) else {
        return Err(AuthError::DpopProof("DPoP header is not a compact JWS"));
    };
    let segment = |text: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .filter(|bytes| !bytes.is_empty())
            .ok_or(AuthError::DpopProof("a proof segment is not base64url"))
    };
    let header = claims::parse_object(&segment(header_b64)?)
        .ok_or(AuthError::DpopProof("proof header is not a JSON object"))?;
    let payload = claims::parse_object(&segment(payload_b64)?)
        .ok_or(AuthError::DpopProof("proof claims are not a JSON object"))?;
    let signature = segment(signature_b64)?;

    let typ = header.get("typ").and_then(Value::as_str);
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(AuthError::DpopProof("typ is not dpop+jwt"));
    }
    if header.contains_key("crit") {
        return Err(AuthError::DpopProof("unsupported critical header"));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(crate::alg::asymmetric_algorithm)
        .filter(|alg| settings.algorithms.contains(alg))
        .ok_or(AuthError::DpopProof(
            "alg is not an accepted proof algorithm",
        ))?;
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(AuthError::DpopProof("no jwk header"));
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(AuthError::DpopProof("jwk holds a private key"));
    }
    let jkt = jwk_thumbprint(jwk).ok_or(AuthError::DpopProof("jwk is not a public key"))?;
    // Parsed for the proof's algorithm only; the JWK's own `alg`, if any, must agree.
    let mut pinned = jwk.clone();
    if pinned
        .get("alg")
        .is_some_and(|a| a.as_str() != Some(crate::alg::name(alg)))
    {
        return Err(AuthError::DpopProof("alg does not fit the jwk"));
    }
    pinned.insert("alg".into(), Value::String(crate::alg::name(alg).into()));
    let key = parse_key(Value::Object(pinned))
        .map_err(|_| AuthError::DpopProof("jwk is not a usable public key"))?;
    let signed = &proof.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    if !key.verify(alg, signed, &signature) {
        return Err(AuthError::DpopProof(
            "signature does not verify with the jwk",
        ));
    }

    let text = |name: &'static str| payload.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or(AuthError::DpopProof("jti is missing or too long"))?;
    if text("htm") != Some(target.method) {
        return Err(AuthError::DpopProof("htm is not the request method"));
    }
    let htu = text("htu").ok_or(AuthError::DpopProof("htu is missing"))?;
    if !same_resource(htu, target, settings.public_base_url.as_ref())
        .map_err(AuthError::DpopProof)?
    {
        return Err(AuthError::DpopProof("htu is not the request URL"));
    }
    let iat = payload
        .get("iat")
        .and_then(claims::numeric_date)
        .ok_or(AuthError::DpopProof("iat is missing or not a whole number"))?;
    let iat_ms = iat.saturating_mul(1000);
    let skew_ms = millis(settings.clock_skew);
    if iat_ms > now_ms.saturating_add(skew_ms) {
        return Err(AuthError::DpopProof("iat is in the future"));
    }
    if iat_ms.saturating_add(millis(settings.max_age) + skew_ms) < now_ms {
        return Err(AuthError::DpopProof("iat is too old"));
    }
    let ath = text("ath").ok_or(AuthError::DpopProof("ath is missing"))?;
    if ath != sha256_b64(target.access_token.as_bytes()) {
        return Err(AuthError::DpopProof(
            "ath is not the hash of the access token",
        ));
    }
    let mut replay = digest::Context::new(&digest::SHA256);
    replay.update(jkt.as_bytes());
    replay.update(b"\0");
    replay.update(jti.as_bytes());
    let replay_key = replay
        .finish()
        .as_ref()
        .try_into()
        .map_err(|_| AuthError::DpopProof("digest length"))?;
    Ok(CheckedProof {
        jkt,
        replay_key,
        iat_ms,
    })
}

impl CheckedProof {
    /// Whose quota the proof counts against in the replay store: a hash of the key's
    /// thumbprint.
    pub fn holder(&self) -> [u8; 32] {
        let mut holder = [0u8; 32];
        holder.copy_from_slice(digest::digest(&digest::SHA256, self.jkt.as_bytes()).as_ref());
        holder
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn sha256_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, bytes))
}

/// RFC 7638 §3: SHA-256 over the key type's required members, in lexicographic order,
/// without whitespace. `None` when a member is missing or not a string, or the type has
/// no thumbprint here.
pub fn jwk_thumbprint(jwk: &serde_json::Map<String, Value>) -> Option<String> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let member = |name: &str| -> Option<String> {
        // Serialized by serde_json, so any character the value holds is escaped as JSON
        // requires; base64url values have nothing to escape.
        Some(format!(
            "\"{name}\":{}",
            Value::String(text(name)?.to_owned())
        ))
    };
    let members = match text("kty")? {
        "RSA" => [member("e")?, member("kty")?, member("n")?].join(","),
        "EC" => [member("crv")?, member("kty")?, member("x")?, member("y")?].join(","),
        "OKP" => [member("crv")?, member("kty")?, member("x")?].join(","),
        _ => return None,
    };
    Some(sha256_b64(format!("{{{members}}}").as_bytes()))
}

/// RFC 9449 §4.3 (9): `htu` names the URL the client addressed, ignoring query and
/// fragment, after syntax- and scheme-based normalisation (RFC 3986 §6.2.2, §6.2.3): case
/// of scheme and host, default ports, dot segments, percent-encoding case and unreserved
/// escapes.
///
/// Compared component by component, never by re-parsing a string built from the request:
/// the request side is the configured public base URL, or the scheme the proxy reported
/// and the host read by [`Authority::parse`] (a plain name or address and a port, so
/// nothing in a `Host` header can become a path, query, fragment or userinfo), then the
/// request path without its query.
fn same_resource(
    htu: &str,
    target: &ProofTarget<'_>,
    public_base: Option<&Url>,
) -> Result<bool, &'static str> {
    let path = target.path.split('?').next().unwrap_or("");
    if !path.starts_with('/') || path.contains('#') {
        return Err("the request path is not origin-form");
    }
    let Ok(proof) = Url::parse(htu) else {
        return Ok(false);
    };
    let proof_fits = matches!(proof.scheme(), "http" | "https")
        && proof.username().is_empty()
        && proof.password().is_none();
    if !proof_fits {
        return Ok(false);
    }
    let proof_path = normalized_path(proof.path());
    Ok(match public_base {
        Some(base) => {
            let base_path = base.path().trim_end_matches('/');
            proof.scheme() == base.scheme()
                && proof.host() == base.host()
                && proof.port_or_known_default() == base.port_or_known_default()
                && proof_path == normalized_path(&format!("{base_path}{path}"))
        }
        None => {
            let scheme = target
                .scheme
                .filter(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
                .ok_or("the request scheme is not known")?;
            let authority = Authority::parse(target.host)
                .map_err(|_| "the request host is not a plain name or address")?;
            let default_port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            proof.scheme().eq_ignore_ascii_case(scheme)
                && same_host(&proof, &authority.host)
                && proof.port_or_known_default() == Some(authority.port.unwrap_or(default_port))
                && proof_path == normalized_path(path)
        }
    })
}

/// Whether the proof URL's host is `host` as [`Authority::parse`] read it: the same name
/// (one trailing dot ignored) or the same address.
fn same_host(proof: &Url, host: &str) -> bool {
    match proof.host() {
        Some(url::Host::Domain(name)) => {
            !host.is_empty() && name.strip_suffix('.').unwrap_or(name) == host
        }
        Some(url::Host::Ipv4(address)) => host.parse() == Ok(address),
        Some(url::Host::Ipv6(address)) => host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse() == Ok(address)),
        None => false,
    }
}

/// Upper-cases percent escapes and decodes those of unreserved characters (RFC 3986
/// §2.3), so equivalent spellings compare equal.
fn normalized_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && hex.iter().all(u8::is_ascii_hexdigit)
        {
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or(0);
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&std::str::from_utf8(hex).unwrap_or("").to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests;
