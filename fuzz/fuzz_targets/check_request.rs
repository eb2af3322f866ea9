//! Arbitrary bytes through the real `Authorization::check`, with keys fixed at start so
//! nothing touches the network. The first byte picks how the rest becomes a request:
//!
//! - `0`: the rest is a protobuf `CheckRequest`, decoded with prost (undecodable input is
//!   skipped: tonic refuses it before the service runs);
//! - `1`: the rest is the raw value of one `authorization` header;
//! - `2`: the rest edits one of a few valid tokens minted at start (`[token, op, at_hi,
//!   at_lo, bytes...]`: overwrite, insert or cut-and-append at `at`), so the fuzzer reaches
//!   the signature and claim checks without having to forge a signature.
//!
//! Every answer must carry a status and a well-formed allow or denial, and an allow needs
//! exactly one `authorization` value holding one of the valid tokens, byte for byte.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use jwt_authz::binding::dpop::{DpopMode, DpopSettings};
use jwt_authz::jwks::{JwksSettings, JwksSource};
use jwt_authz::policy::{
    Action, ClaimCondition, ClaimTest, DefaultAction, Mode, PathPattern, Policy, PolicySettings,
    Rule, ScopeRule, TokenRule,
};
use jwt_authz::replay::ReplayStore;
use jwt_authz::service::{AuthzService, CheckSettings};
use jwt_authz::testkit::{self, AUDIENCE};
use jwt_authz::token_cache::TokenCache;
use jwt_authz::token_source::TokenSource;
use jwt_authz::upstream::UpstreamConfig;
use jwt_authz::verify::IssuerConfig;
use jwt_authz::wire::proto::{Authorization, CheckRequest, HttpResponse};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const ISSUER: &str = "https://idp.fuzz.example/";

struct State {
    runtime: tokio::runtime::Runtime,
    service: AuthzService,
    /// Tokens that verify: the only ones an allow may carry.
    valid: Vec<String>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let algorithms = vec![
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ];
        let issuer = IssuerConfig {
            issuer: ISSUER.into(),
            issuer_url: ISSUER.parse().expect("issuer URL"),
            audiences: vec![AUDIENCE.into()],
            jwks: JwksSource::Uri("https://idp.fuzz.example/jwks.json".parse().expect("URL")),
            algorithms,
            leeway: Duration::from_secs(60),
            require_access_token_type: false,
            dpop: DpopMode::Allowed,
            introspection: None,
        };
        let settings = JwksSettings {
            refresh: Duration::from_secs(600),
            cooldown: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
            insecure_allow_http: false,
        };
        let verifier = testkit::fixed_verifier(&issuer, &settings);
        let mut items = Rule::new(
            "items",
            PathPattern::parse_path("/api/{id}/items/**").expect("pattern"),
            Action::Token(TokenRule {
                scopes: ScopeRule::AnyOf(vec!["read:items".into()]),
                conditions: vec![ClaimCondition {
                    claim: "sub".into(),
                    test: ClaimTest::Matches(ClaimCondition::pattern("fuzz\\|.*").expect("re")),
                }],
                ..TokenRule::default()
            }),
        );
        items.methods = vec!["GET".into()];
        let mut shadow = Rule::new(
            "shadow",
            PathPattern::parse_prefix("/api").expect("prefix"),
            Action::Token(TokenRule::scopes(ScopeRule::AllOf(vec!["admin".into()]))),
        );
        shadow.mode = Mode::Shadow;
        // Any valid token by default, so that the fuzzer reaches the allow path often.
        let policy = Policy::with_settings(
            vec![
                Rule::new(
                    "admin",
                    PathPattern::parse_prefix("/admin").expect("prefix"),
                    Action::Deny,
                ),
                shadow,
                items,
            ],
            PolicySettings {
                default_action: Some(DefaultAction::Authenticated),
                ..PolicySettings::default()
            },
        );
        let service = AuthzService::new(
            verifier,
            CheckSettings {
                scope_claims: vec!["scope".into(), "scp".into(), "permissions".into()],
                max_header_bytes: 8192,
                realm: "fuzz".into(),
                retry_after_secs: 5,
                policy,
                upstream: UpstreamConfig::default(),
                deny_log_rate: 10,
                token_sources: vec![TokenSource::authorization()],
                dpop_sources: Some(vec![TokenSource::Header {
                    name: "authorization".into(),
                    scheme: Some("DPoP".into()),
                }]),
                dpop: DpopSettings {
                    algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
                    max_age: Duration::from_secs(60),
                    clock_skew: Duration::from_secs(5),
                    public_base_url: None,
                },
                dpop_algs: Some("ES256 EdDSA RS256".into()),
                allow_room: jwt_authz::service::allow_room(&UpstreamConfig::default()),
                resources: Default::default(),
                dotted_keys: UpstreamConfig::default().dotted_spelling_keys(),
            },
            Some(Arc::new(TokenCache::new(1024))),
            Arc::new(ReplayStore::memory(100_000)),
        );
        let mut claims = testkit::claims(ISSUER);
        claims["sub"] = "fuzz|user".into();
        claims["exp"] = 4_102_444_800u64.into(); // 2100-01-01
        claims["scope"] = "openid read:items".into();
        let sign = |kid: &str, alg: Algorithm, named: bool| {
            testkit::mint_with(&testkit::key(kid), alg, named.then_some(kid), &claims)
        };
        let valid = vec![
            sign("rsa-1", Algorithm::RS256, true),
            sign("rsa-2", Algorithm::PS256, true),
            sign("ec-256", Algorithm::ES256, true),
            sign("ed-1", Algorithm::EdDSA, true),
            sign("ec-256", Algorithm::ES256, false),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        State {
            runtime,
            service,
            valid,
        }
    })
}

/// A GET of `/api/private` as Envoy builds it, with `authorization` in `headers` or, raw,
/// in `header_map`.
fn request_with(authorization: &[u8], raw: bool) -> CheckRequest {
    if raw {
        testkit::raw_request(&[authorization])
    } else {
        // `headers` is a string map: Envoy sends UTF-8 there.
        testkit::request(Some(&String::from_utf8_lossy(authorization)), None)
    }
}

fn edited_token(valid: &[String], data: &[u8]) -> Option<(Vec<u8>, bool)> {
    let (token, op) = testkit::edit_valid(valid, data)?;
    let value = [b"Bearer ".as_slice(), &token].concat();
    Some((value, op & 0x80 != 0))
}

/// Every `authorization` value the request carries, as the service reads them.
fn authorization_values(request: &CheckRequest) -> Vec<Vec<u8>> {
    let Some(http) = request
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return Vec::new();
    };
    let mut values: Vec<Vec<u8>> = http
        .headers
        .get("authorization")
        .map(|v| v.as_bytes().to_vec())
        .into_iter()
        .collect();
    for h in http.header_map.iter().flat_map(|m| &m.headers) {
        if h.key.eq_ignore_ascii_case("authorization") {
            values.push(if h.raw_value.is_empty() {
                h.value.as_bytes().to_vec()
            } else {
                h.raw_value.clone()
            });
        }
    }
    values
}

fn carries_a_valid_token(values: &[Vec<u8>], valid: &[String]) -> bool {
    let [value] = values else {
        return false;
    };
    let words: Vec<&[u8]> = value
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty())
        .collect();
    matches!(words.as_slice(), [scheme, token]
        if scheme.eq_ignore_ascii_case(b"bearer") && valid.iter().any(|v| v.as_bytes() == *token))
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let request = match mode % 3 {
        0 => match CheckRequest::decode(rest) {
            Ok(request) => request,
            Err(_) => return,
        },
        1 => request_with(rest, mode & 0x80 != 0),
        _ => match edited_token(&state.valid, rest) {
            Some((value, raw)) => request_with(&value, raw),
            None => return,
        },
    };
    let values = authorization_values(&request);
    let response = state
        .runtime
        .block_on(state.service.check(tonic::Request::new(request)))
        .expect("Check never fails the RPC")
        .into_inner();
    let status = response.status.as_ref().expect("status is always set");
    match (status.code, response.http_response.as_ref()) {
        (0, Some(HttpResponse::OkResponse(_))) => assert!(
            carries_a_valid_token(&values, &state.valid),
            "allowed without exactly one valid token: {values:?}"
        ),
        (code, Some(HttpResponse::DeniedResponse(d) | HttpResponse::ErrorResponse(d))) => {
            let http = d.status.as_ref().map(|s| s.code);
            let expected = match code {
                16 => Some(401),
                7 => Some(403),
                14 => Some(503),
                other => panic!("unexpected status code {other}"),
            };
            assert_eq!(http, expected, "HTTP status matches the gRPC code");
            let body: serde_json::Value =
                serde_json::from_str(&d.body).expect("the denial body is JSON");
            assert!(body["code"].is_string() && body["description"].is_string());
        }
        (code, other) => panic!("status {code} with http_response {other:?}"),
    }
});
