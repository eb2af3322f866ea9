//! The demo's development issuer: a freshly generated RS256 key, its JWKS, an OpenID
//! discovery document, and a `/token` endpoint that mints access tokens. For trying the
//! service on loopback only; it has no notion of users or secrets.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::wire::httpd::{self, HttpResponse};

/// The audience of every demo token.
pub const DEMO_AUDIENCE: &str = "https://api.example.com";

/// A signing key and the documents that publish it.
pub struct DemoIssuer {
    /// `iss` of the tokens, with a trailing slash as Auth0 writes it.
    pub issuer: String,
    kid: String,
    key: EncodingKey,
    jwks: Value,
}

impl DemoIssuer {
    /// Generates a new RSA-2048 key for `issuer`.
    pub fn generate(issuer: String) -> anyhow::Result<DemoIssuer> {
        let pair = KeyPair::generate(KeySize::Rsa2048).context("generating the demo RSA key")?;
        let pkcs8 = pair.as_der().context("encoding the demo RSA key")?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        );
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).context("loading the demo RSA key")?;
        let public = pair.public_key();
        let kid = format!(
            "demo-{}",
            &URL_SAFE_NO_PAD.encode(&public.modulus().big_endian_without_leading_zero()[..6])
        );
        let jwks = json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }]});
        Ok(DemoIssuer {
            issuer,
            kid,
            key,
            jwks,
        })
    }

    /// Mints an access token for `sub` with `scope` (space-separated), valid for an hour.
    pub fn token(&self, sub: &str, scope: &str) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        let claims = access_token_claims(&self.issuer, DEMO_AUDIENCE, sub, scope, now, now + 3600);
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }

    /// Answers the issuer's HTTP endpoints.
    pub fn handle(&self, request: &http::request::Parts) -> HttpResponse {
        match request.uri.path() {
            "/.well-known/jwks.json" => httpd::json(StatusCode::OK, &self.jwks),
            "/.well-known/openid-configuration" => httpd::json(
                StatusCode::OK,
                &json!({
                    "issuer": self.issuer,
                    "jwks_uri": format!("{}.well-known/jwks.json", self.issuer),
                    "token_endpoint": format!("{}token", self.issuer),
                    "id_token_signing_alg_values_supported": ["RS256"],
                }),
            ),
            "/token" => {
                let query = request.uri.query().unwrap_or("");
                let param = |name: &str| {
                    url::form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.into_owned())
                };
                let scope = param("scope").unwrap_or_default();
                let sub = param("sub").unwrap_or_else(|| "demo-user".into());
                match self.token(&sub, &scope) {
                    Ok(token) => httpd::json(
                        StatusCode::OK,
                        &json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": scope}),
                    ),
                    Err(e) => httpd::json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"error": e.to_string()}),
                    ),
                }
            }
            _ => httpd::json(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
        }
    }
}

/// The claims of an access token as Auth0 issues them; `scope` is space-separated and
/// `iat`/`exp` are seconds since the Unix epoch. Shared with the test kit, so the tokens the
/// tests mint have the demo's shape.
pub fn access_token_claims(
    issuer: &str,
    audience: &str,
    sub: &str,
    scope: &str,
    iat: u64,
    exp: u64,
) -> Value {
    json!({
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "iat": iat,
        "exp": exp,
        "scope": scope,
    })
}

/// The echo upstream: answers every request with the method, path and headers it got.
pub fn echo(request: &http::request::Parts) -> HttpResponse {
    let headers: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    httpd::json(
        StatusCode::OK,
        &json!({
            "method": request.method.as_str(),
            "path": request.uri.path_and_query().map_or("/", |p| p.as_str()),
            "headers": headers,
        }),
    )
}
