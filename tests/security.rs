//! Hostile input and a failing identity provider, against the real service over gRPC and a
//! real loopback JWKS. Every case asserts the exact HTTP status and JSON `code` of the
//! answer: never a panic, never an RPC error, never an allow that should be a deny.
//!
//! Distinct hostile inputs covered here: 124. Each `hostile!` row is one; the other tests
//! count one per request shape they send, as their comments say. Rows that
//! `tests/service/check.rs` already covers (`alg: none`, HS256 with the public key,
//! truncations, a flipped signature byte, a payload swapped under a valid signature, one
//! comma-joined or doubled raw `authorization`) are not repeated here.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckRequest;
use jwt_authz::wire::proto::envoy::config::core::v3::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};
use tonic_health::pb::health_check_response::ServingStatus;

/// The JOSE header of an honest token signed by `rsa-1`.
const HEADER: &str = r#"{"alg":"RS256","typ":"JWT","kid":"rsa-1"}"#;

/// A service trusting one loopback issuer that publishes `rsa-1` (RS256) and `ec-256`.
struct Fx {
    idp: Idp,
    authz: Authz,
}

impl Fx {
    async fn start(extra: &[&str]) -> Fx {
        let idp = Idp::start(vec![key("rsa-1").jwk, key("ec-256").jwk]).await;
        let authz = Authz::start_for(&idp, extra).await;
        Fx { idp, authz }
    }

    fn claims(&self) -> Value {
        claims(&self.idp.issuer())
    }

    /// An honest token: would be allowed.
    fn valid(&self) -> String {
        mint(&key("rsa-1"), &self.claims())
    }

    /// `header` and `payload` as written, signed by the trusted `rsa-1`.
    fn signed(&self, header: &str, payload: &str) -> String {
        sign_raw(
            &key("rsa-1"),
            Algorithm::RS256,
            header.as_bytes(),
            payload.as_bytes(),
        )
    }

    /// Honest claims under a hand-written header.
    fn with_header(&self, header: &Value) -> String {
        self.signed(&header.to_string(), &self.claims().to_string())
    }

    /// Honest claims with `extra` (raw JSON members, no braces) written after them.
    fn payload_plus(&self, extra: &str) -> String {
        let honest = self.claims().to_string();
        format!("{},{extra}}}", &honest[..honest.len() - 1])
    }

    /// Honest claims with claim `name` replaced by raw JSON text `raw`.
    fn payload_with(&self, name: &str, raw: &str) -> String {
        let mut claims = self.claims();
        claims.as_object_mut().unwrap().remove(name);
        let honest = claims.to_string();
        format!("{},\"{name}\":{raw}}}", &honest[..honest.len() - 1])
    }

    /// Honest claims with claim `name` set to `value`, signed honestly.
    fn with_claim(&self, name: &str, value: Value) -> String {
        let mut claims = self.claims();
        claims[name] = value;
        mint(&key("rsa-1"), &claims)
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The three segments of a token.
fn segments(token: &str) -> [String; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    [parts[0].into(), parts[1].into(), parts[2].into()]
}

/// `segment` with its last character replaced by one that decodes to the same bytes
/// under a lenient decoder: only the unused low bits differ. `None` when the segment's
/// length leaves no unused bits.
fn with_trailing_bits(segment: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused = match segment.len() % 4 {
        2 => 4,
        3 => 2,
        _ => return None,
    };
    let last = *segment.as_bytes().last()?;
    let value = ALPHABET.iter().position(|&c| c == last)?;
    let changed = ALPHABET[value ^ ((1 << unused) - 1)] as char;
    Some(format!("{}{changed}", &segment[..segment.len() - 1]))
}

/// Asserts the answer to `authorization` (in Envoy's `headers` map) on a default service.
macro_rules! hostile {
    ($($(#[$doc:meta])* $name:ident: |$fx:ident| $value:expr => $status:literal $code:literal;)*) => {$(
        $(#[$doc])*
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let $fx = Fx::start(&[]).await;
            let value: String = $value;
            let response = $fx.authz.check(request(Some(&value), None)).await;
            assert_denied(&response, $status, $code);
        }
    )*};
}

// ------------------------------------------------------------------ the header value

hostile! {
    /// A valid token made larger than the default 8 KiB cap by a padding claim.
    valid_token_over_the_default_header_cap_is_invalid_header:
        |fx| bearer(&fx.with_claim("pad", json!("x".repeat(9000)))) => 401 "invalid_header";
    empty_authorization_value_is_missing:
        |_fx| String::new() => 401 "authorization_header_missing";
    nul_after_a_valid_token_is_invalid_header:
        |fx| format!("Bearer {}\0", fx.valid()) => 401 "invalid_header";
    crlf_header_injection_after_a_valid_token_is_invalid_header:
        |fx| format!("Bearer {}\r\nx-admin: true", fx.valid()) => 401 "invalid_header";
    del_after_a_valid_token_is_invalid_header:
        |fx| format!("Bearer {}\x7f", fx.valid()) => 401 "invalid_header";
    vertical_tab_as_the_separator_is_invalid_header:
        |fx| format!("Bearer\x0b{}", fx.valid()) => 401 "invalid_header";
    non_breaking_space_as_the_separator_is_invalid_header:
        |fx| format!("Bearer\u{a0}{}", fx.valid()) => 401 "invalid_header";
    non_ascii_letter_inside_a_valid_token_is_invalid_header:
        |fx| bearer(&fx.valid().replacen('.', "é.", 1)) => 401 "invalid_header";
    two_headers_joined_by_comma_and_space_are_invalid_header:
        |fx| format!("Bearer {0}, Bearer {0}", fx.valid()) => 401 "invalid_header";
    valid_header_joined_with_an_empty_one_is_invalid_header:
        |fx| format!("Bearer {},", fx.valid()) => 401 "invalid_header";
    /// Never "use the second one" either.
    garbage_header_joined_with_a_valid_one_is_invalid_header:
        |fx| format!("Basic dXNlcjpwYXNz,Bearer {}", fx.valid()) => 401 "invalid_header";
    space_inside_the_token_is_invalid_header:
        |fx| { let t = fx.valid(); format!("Bearer {} {}", &t[..40], &t[40..]) } => 401 "invalid_header";
    tab_inside_the_token_is_invalid_header:
        |fx| { let t = fx.valid(); format!("Bearer {}\t{}", &t[..40], &t[40..]) } => 401 "invalid_header";
}

// ------------------------------------------------------------------ token shape

hostile! {
    /// A JWE compact serialization has five segments.
    five_segment_token_is_invalid_header:
        |fx| { let [h, p, s] = segments(&fx.valid()); bearer(&format!("{h}.{p}.{s}.{p}.{s}")) } => 401 "invalid_header";
    trailing_dot_after_a_valid_token_is_invalid_header:
        |fx| bearer(&format!("{}.", fx.valid())) => 401 "invalid_header";
    token_without_its_header_segment_is_invalid_header:
        |fx| { let [_, p, s] = segments(&fx.valid()); bearer(&format!("{p}.{s}")) } => 401 "invalid_header";
    three_empty_segments_are_invalid_header:
        |_fx| bearer("..") => 401 "invalid_header";
    /// RFC 7515 §5.2 decodes every segment first: a signature segment that is not
    /// base64url makes the token malformed (issue 11), before any key is looked at.
    empty_signature_is_invalid_header:
        |fx| { let [h, p, _] = segments(&fx.valid()); bearer(&format!("{h}.{p}.")) } => 401 "invalid_header";
    signature_with_a_character_outside_base64url_is_invalid_header:
        |fx| { let [h, p, s] = segments(&fx.valid()); bearer(&format!("{h}.{p}.{}=", &s[..s.len() - 1])) } => 401 "invalid_header";
    /// Even for a `kid` the service does not know: no refetch for a malformed token.
    malformed_signature_under_an_unknown_kid_is_invalid_header:
        |fx| {
            let [h, p, s] = segments(&mint_with(&key("rsa-1"), Algorithm::RS256, Some("rsa-9"), &fx.claims()));
            bearer(&format!("{h}.{p}.{}", s.replace(|c: char| c.is_ascii_digit(), "+")))
        } => 401 "invalid_header";
    /// `+` and `/` belong to standard base64, not base64url.
    standard_base64_alphabet_is_invalid_header:
        |fx| {
            // `?` makes `/` in standard base64; find a header where it lands.
            let token = (0..4).find_map(|n| {
                let header = format!(r#"{{"alg":"RS256","kid":"rsa-1","x":"{}???"}}"#, "a".repeat(n));
                let t = fx.signed(&header, &fx.claims().to_string());
                segments(&t)[0].contains('_').then_some(t)
            }).unwrap();
            let [h, p, s] = segments(&token);
            bearer(&format!("{}.{p}.{s}", h.replace('_', "/")))
        } => 401 "invalid_header";
    impossible_base64_length_is_invalid_header:
        |fx| {
            // One character more than whole bytes: no decoder can read it.
            let [h, p, s] = segments(&fx.valid());
            let extra = "A".repeat((5 - p.len() % 4) % 4 + 4 * usize::from(p.len() % 4 == 1));
            bearer(&format!("{h}.{p}{extra}.{s}"))
        } => 401 "invalid_header";
    /// A lenient decoder would read the same claims, so this must fail before the signature.
    non_canonical_trailing_bits_in_the_payload_are_invalid_header:
        |fx| {
            let mut claims = fx.claims();
            let token = (0..4).find_map(|n| {
                claims["sub"] = json!("u".repeat(n + 1));
                let [h, p, s] = segments(&mint(&key("rsa-1"), &claims));
                with_trailing_bits(&p).map(|p| format!("{h}.{p}.{s}"))
            }).unwrap();
            bearer(&token)
        } => 401 "invalid_header";
    non_canonical_trailing_bits_in_the_signature_are_invalid_header:
        |fx| { let [h, p, s] = segments(&fx.valid()); bearer(&format!("{h}.{p}.{}", with_trailing_bits(&s).unwrap())) } => 401 "invalid_header";
    padded_payload_is_invalid_header:
        |fx| { let [h, p, s] = segments(&fx.valid()); bearer(&format!("{h}.{p}==.{s}")) } => 401 "invalid_header";
    padded_signature_is_invalid_header:
        |fx| { let [h, p, s] = segments(&fx.valid()); bearer(&format!("{h}.{p}.{s}==")) } => 401 "invalid_header";
}

// ------------------------------------------------------------------ JSON that is not a claims object

hostile! {
    payload_array_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, "[1,2]")) => 401 "invalid_header";
    payload_string_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, r#""sub""#)) => 401 "invalid_header";
    payload_number_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, "42")) => 401 "invalid_header";
    payload_null_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, "null")) => 401 "invalid_header";
    payload_not_json_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, "sub=admin")) => 401 "invalid_header";
    /// A struct deserializer would happily read `["RS256","rsa-1"]` as `alg` and `kid`.
    header_array_is_invalid_header:
        |fx| bearer(&fx.signed(r#"["RS256","rsa-1"]"#, &fx.claims().to_string())) => 401 "invalid_header";
    header_string_is_invalid_header:
        |fx| bearer(&fx.signed(r#""RS256""#, &fx.claims().to_string())) => 401 "invalid_header";
    duplicate_sub_claim_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_plus(r#""sub":"a","sub":"b""#))) => 401 "invalid_header";
    /// Honest claims carry `exp` already; a second one that would extend it is refused.
    duplicate_exp_claim_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_plus(r#""exp":99999999999"#))) => 401 "invalid_header";
    duplicate_iss_claim_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_plus(r#""iss":"https://evil.example/""#))) => 401 "invalid_header";
    duplicate_claim_spelled_with_an_escape_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_plus(r#""s\u0075b":"admin""#))) => 401 "invalid_header";
    duplicate_alg_in_the_header_is_invalid_header:
        |fx| bearer(&fx.signed(r#"{"alg":"RS256","kid":"rsa-1","alg":"RS256"}"#, &fx.claims().to_string())) => 401 "invalid_header";
    byte_order_mark_before_the_payload_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, &format!("\u{feff}{}", fx.claims()))) => 401 "invalid_header";
    trailing_garbage_after_the_payload_is_invalid_header:
        |fx| bearer(&fx.signed(HEADER, &format!("{}x", fx.claims()))) => 401 "invalid_header";
    two_concatenated_payloads_are_invalid_header:
        |fx| bearer(&fx.signed(HEADER, &format!("{0}{0}", fx.claims()))) => 401 "invalid_header";
    /// Valid JSON (RFC 8259 bounds no number), signed: an `exp` out of range is a claims
    /// problem, like a 20-digit one (issue 11).
    four_hundred_digit_exp_is_invalid_claims:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_with("exp", &"9".repeat(400)))) => 401 "invalid_claims";
}

/// Inputs: 1.
#[tokio::test(flavor = "multi_thread")]
async fn non_utf8_inside_a_signed_payload_is_invalid_header() {
    let fx = Fx::start(&[]).await;
    let mut payload = fx.payload_plus(r#""name":"AB""#).into_bytes();
    let at = payload.len() - 3;
    payload[at] = 0xff;
    let token = sign_raw(&key("rsa-1"), Algorithm::RS256, HEADER.as_bytes(), &payload);
    assert_denied(&fx.authz.check_token(&token).await, 401, "invalid_header");
}

// ------------------------------------------------------------------ numbers and claim types

hostile! {
    exp_beyond_f64_is_invalid_claims:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_with("exp", "1e400"))) => 401 "invalid_claims";
    exp_of_2_pow_64_is_invalid_claims:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_with("exp", "18446744073709551616"))) => 401 "invalid_claims";
    exp_as_float_is_invalid_claims:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_with("exp", &format!("{}.5", now() + 300)))) => 401 "invalid_claims";
    negative_exp_is_invalid_claims:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_with("exp", "-1"))) => 401 "invalid_claims";
    exp_in_the_past_is_token_expired:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_with("exp", "1"))) => 401 "token_expired";
    exp_as_array_is_invalid_claims:
        |fx| bearer(&fx.with_claim("exp", json!([now() + 300]))) => 401 "invalid_claims";
    exp_as_bool_is_invalid_claims:
        |fx| bearer(&fx.with_claim("exp", json!(true))) => 401 "invalid_claims";
    exp_null_is_invalid_claims:
        |fx| bearer(&fx.with_claim("exp", Value::Null)) => 401 "invalid_claims";
    nbf_beyond_f64_is_invalid_claims:
        |fx| bearer(&fx.signed(HEADER, &fx.payload_with("nbf", "1e400"))) => 401 "invalid_claims";
    nbf_as_string_is_invalid_claims:
        |fx| bearer(&fx.with_claim("nbf", json!(now().to_string()))) => 401 "invalid_claims";
    aud_array_with_a_number_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", json!([AUDIENCE, 7]))) => 401 "invalid_claims";
    aud_empty_array_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", json!([]))) => 401 "invalid_claims";
    aud_nested_array_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", json!([[AUDIENCE]]))) => 401 "invalid_claims";
    aud_object_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", json!({ "aud": AUDIENCE }))) => 401 "invalid_claims";
    aud_null_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", Value::Null)) => 401 "invalid_claims";
    aud_with_a_trailing_slash_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", json!(format!("{AUDIENCE}/")))) => 401 "invalid_claims";
    aud_in_another_case_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", json!(AUDIENCE.to_uppercase()))) => 401 "invalid_claims";
    aud_with_leading_space_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", json!(format!(" {AUDIENCE}")))) => 401 "invalid_claims";
    /// `aud` is one value or an array, never a space-separated list.
    aud_as_space_separated_list_is_invalid_claims:
        |fx| bearer(&fx.with_claim("aud", json!(format!("https://other {AUDIENCE}")))) => 401 "invalid_claims";
    /// An ID token's `aud` is the client id; the issuer URL is no audience either.
    aud_naming_the_issuer_is_invalid_claims:
        |fx| { let iss = fx.idp.issuer(); bearer(&fx.with_claim("aud", json!(iss))) } => 401 "invalid_claims";
    iss_as_array_is_invalid_claims:
        |fx| { let iss = fx.idp.issuer(); bearer(&fx.with_claim("iss", json!([iss]))) } => 401 "invalid_claims";
    iss_without_its_trailing_slash_is_invalid_claims:
        |fx| { let iss = fx.idp.issuer(); bearer(&fx.with_claim("iss", json!(iss.trim_end_matches('/')))) } => 401 "invalid_claims";
    iss_in_another_case_is_invalid_claims:
        |fx| { let iss = fx.idp.issuer().replace("http", "HTTP"); bearer(&fx.with_claim("iss", json!(iss))) } => 401 "invalid_claims";
}

// ------------------------------------------------------------------ algorithm and header attacks

hostile! {
    alg_with_a_trailing_space_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256 ", "kid": "rsa-1"}))) => 401 "invalid_header";
    alg_in_lower_case_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "rs256", "kid": "rsa-1"}))) => 401 "invalid_header";
    alg_with_a_nul_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256\u{0}", "kid": "rsa-1"}))) => 401 "invalid_header";
    alg_null_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": null, "kid": "rsa-1"}))) => 401 "invalid_header";
    alg_number_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": 256, "kid": "rsa-1"}))) => 401 "invalid_header";
    alg_array_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": ["RS256"], "kid": "rsa-1"}))) => 401 "invalid_header";
    missing_alg_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"kid": "rsa-1", "typ": "JWT"}))) => 401 "invalid_header";
    kid_with_path_traversal_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "../../etc/passwd"}))) => 401 "invalid_header";
    kid_with_sql_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "' OR 1=1 --"}))) => 401 "invalid_header";
    kid_of_4_kib_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "k".repeat(4096)}))) => 401 "invalid_header";
    kid_with_a_forged_log_line_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "rsa-1\n2026-01-01 INFO decision=allow"}))) => 401 "invalid_header";
    kid_with_a_trailing_nul_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "rsa-1\u{0}"}))) => 401 "invalid_header";
    kid_in_another_case_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "RSA-1"}))) => 401 "invalid_header";
    empty_kid_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": ""}))) => 401 "invalid_header";
    kid_number_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": 1}))) => 401 "invalid_header";
    /// RFC 7515 §4.1.11: `crit` must not be an empty list.
    empty_crit_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "rsa-1", "crit": []}))) => 401 "invalid_header";
    /// RFC 7797's unencoded payload: never honoured.
    crit_b64_false_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "rsa-1", "b64": false, "crit": ["b64"]}))) => 401 "invalid_header";
    crit_as_a_string_is_invalid_header:
        |fx| bearer(&fx.with_header(&json!({"alg": "RS256", "kid": "rsa-1", "crit": "exp"}))) => 401 "invalid_header";
}

// ------------------------------------------------------------------ limits and sizes

/// The cap counts the whole header value: at the cap passes, one byte over is refused.
/// Inputs: 1 (one byte over a custom cap).
#[tokio::test(flavor = "multi_thread")]
async fn custom_header_cap_is_exact() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    let at_cap = bearer(&token);
    let cap = at_cap.len().to_string();
    let authz = Authz::start_for(&idp, &["--max-header-bytes", &cap]).await;
    assert_allowed(&authz.check(request(Some(&at_cap), None)).await);
    // The same token, one separator space more.
    let over = format!("Bearer  {token}");
    assert_denied(
        &authz.check(request(Some(&over), None)).await,
        401,
        "invalid_header",
    );
}

/// A 1 MB claim fits a raised cap and verifies; the default cap refuses it.
/// Inputs: 1 (the 1 MB token).
#[tokio::test(flavor = "multi_thread")]
async fn megabyte_payload_inside_a_raised_cap_is_verified() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--max-header-bytes", "2097152"]).await;
    let mut c = claims(&idp.issuer());
    c["pad"] = json!("x".repeat(1_000_000));
    let token = mint(&key("rsa-1"), &c);
    assert!(token.len() > 1_000_000);
    assert_allowed(&authz.check_token(&token).await);
    let default = Authz::start_for(&idp, &[]).await;
    assert_denied(&default.check_token(&token).await, 401, "invalid_header");
}

/// Nesting far past the JSON parser's depth limit, inside a cap raised so that it reaches
/// the parser. Inputs: 2 (unbalanced payload, deep claim).
#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_json_is_invalid_header() {
    let fx = Fx::start(&["--max-header-bytes", "65536"]).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases = [
        ("unbalanced payload", fx.signed(HEADER, &"[".repeat(10_000))),
        (
            "deep claim",
            fx.signed(HEADER, &fx.payload_plus(&format!(r#""deep":{deep}"#))),
        ),
    ];
    for (name, token) in cases {
        assert!(bearer(&token).len() < 65536, "{name} must fit the cap");
        let response = fx.authz.check_token(&token).await;
        match decision(&response) {
            Decision::Deny {
                http: 401, code, ..
            } => assert_eq!(code, "invalid_header", "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_allowed(&fx.authz.check_token(&fx.valid()).await);
}

/// The same nesting in a header member the service does not read: the header is
/// parsed as strictly as the payload. Inputs: 1.
#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_header_member_is_invalid_header() {
    let fx = Fx::start(&["--max-header-bytes", "65536"]).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let header = format!(r#"{{"alg":"RS256","kid":"rsa-1","x":{deep}}}"#);
    let token = fx.signed(&header, &fx.claims().to_string());
    assert_denied(&fx.authz.check_token(&token).await, 401, "invalid_header");
}

fn with_many_headers(mut req: CheckRequest, count: usize) -> CheckRequest {
    let headers = &mut http_mut(&mut req).headers;
    for i in 0..count {
        headers.insert(format!("x-h-{i}"), format!("v{i}"));
    }
    req
}

/// Inputs: 2 (5,000 headers with a valid token, 5,000 without one).
#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_headers_change_nothing() {
    let fx = Fx::start(&[]).await;
    let auth = bearer(&fx.valid());
    let mut many = with_many_headers(request(Some(&auth), None), 5_000);
    assert_eq!(http_mut(&mut many).headers.len(), 5_006);
    assert_allowed(&fx.authz.check(many).await);
    let none = with_many_headers(request(None, None), 5_000);
    assert_denied(
        &fx.authz.check(none).await,
        401,
        "authorization_header_missing",
    );
}

/// Raw `header_map` entries: key and raw value.
type RawEntries<'a> = Vec<(&'a str, Vec<u8>)>;

fn raw_entries(entries: RawEntries<'_>) -> CheckRequest {
    let mut req = raw_request(&[]);
    http_mut(&mut req).header_map = Some(HeaderMap {
        headers: entries
            .into_iter()
            .map(|(key, raw)| HeaderValue {
                key: key.into(),
                raw_value: raw,
                ..Default::default()
            })
            .collect(),
    });
    req
}

/// Raw headers (`header_map`): thousands of entries, thousands of `authorization`s, bytes
/// that are not UTF-8, control characters, empty values and repeats in another case.
/// Inputs: 9 (one per request below but the last, an honest token as a control).
#[tokio::test(flavor = "multi_thread")]
async fn hostile_raw_header_maps_are_refused() {
    let fx = Fx::start(&[]).await;
    let auth = bearer(&fx.valid()).into_bytes();
    let junk = |n: usize| (0..n).map(|i| ("x-junk", format!("{i}").into_bytes()));

    let mut entries: RawEntries = junk(5_000).collect();
    entries.push(("authorization", auth.clone()));
    assert_allowed(&fx.authz.check(raw_entries(entries)).await);

    let entries = (0..5_000)
        .map(|_| ("authorization", auth.clone()))
        .collect();
    assert_denied(
        &fx.authz.check(raw_entries(entries)).await,
        401,
        "invalid_header",
    );

    let mut not_utf8 = auth.clone();
    let mid = not_utf8.len() / 2;
    not_utf8[mid] = 0x80;
    let cases: Vec<(&str, RawEntries, &str)> = vec![
        (
            "not UTF-8",
            vec![("authorization", not_utf8)],
            "invalid_header",
        ),
        (
            "NUL",
            vec![("authorization", [&auth[..], b"\0"].concat())],
            "invalid_header",
        ),
        (
            "CRLF",
            vec![("authorization", [&auth[..], b"\r\nx-admin: 1"].concat())],
            "invalid_header",
        ),
        (
            "empty",
            vec![("authorization", Vec::new())],
            "authorization_header_missing",
        ),
        (
            "valid then empty",
            vec![
                ("authorization", auth.clone()),
                ("authorization", Vec::new()),
            ],
            "invalid_header",
        ),
        (
            "two spellings",
            vec![
                ("Authorization", auth.clone()),
                ("AUTHORIZATION", auth.clone()),
            ],
            "invalid_header",
        ),
    ];
    for (name, entries, code) in cases {
        let response = fx.authz.check(raw_entries(entries)).await;
        match decision(&response) {
            Decision::Deny {
                http: 401, code: c, ..
            } => assert_eq!(c, code, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }

    // The same header in both `headers` and `header_map`: two values, refused.
    let mut both = raw_entries(vec![("authorization", auth.clone())]);
    http_mut(&mut both).headers.insert(
        "authorization".into(),
        String::from_utf8(auth.clone()).unwrap(),
    );
    assert_denied(&fx.authz.check(both).await, 401, "invalid_header");

    // Control: the honest raw header passes.
    assert_allowed(
        &fx.authz
            .check(raw_entries(vec![("authorization", auth)]))
            .await,
    );
}

// ------------------------------------------------------------------ keys

/// A token without `kid` uses the only key of its type, and never makes the service fetch.
/// Inputs: 2 (kid-less token signed by an unpublished key, kid-less ES384 token).
#[tokio::test(flavor = "multi_thread")]
async fn kidless_tokens_never_fetch() {
    let idp = Idp::start(vec![key("rsa-1").jwk, key("ec-256").jwk]).await;
    let authz = Authz::start_for(
        &idp,
        &["--algorithms", "RS256,ES256", "--jwks-cooldown", "1ms"],
    )
    .await;
    let c = claims(&idp.issuer());
    // Publish a second key the service has not seen: a fetch would make it ambiguous.
    idp.update(|s| s.keys.push(key("rsa-2").jwk));
    let before = idp.jwks_hits();
    for _ in 0..10 {
        let ok = mint_with(&key("rsa-1"), Algorithm::RS256, None, &c);
        assert_allowed(&authz.check_token(&ok).await);
        let ec = mint_with(&key("ec-256"), Algorithm::ES256, None, &c);
        assert_allowed(&authz.check_token(&ec).await);
        let unpublished = mint_with(&key("rsa-2"), Algorithm::RS256, None, &c);
        assert_denied(&authz.check_token(&unpublished).await, 401, "invalid_token");
        let es384 = mint_with(&key("ec-384"), Algorithm::ES384, None, &c);
        assert_denied(&authz.check_token(&es384).await, 401, "invalid_header");
    }
    assert_eq!(idp.jwks_hits(), before, "a kid-less token never fetches");
}

/// A `kid` naming a published key of another type, or a key pinned to another `alg`: no
/// refetch, no verification. Inputs: 3.
#[tokio::test(flavor = "multi_thread")]
async fn kid_of_a_key_that_does_not_fit_the_alg_is_invalid_header() {
    let idp = Idp::start(vec![key("rsa-1").jwk, key("ec-256").jwk]).await;
    let algs = "RS256,PS256,ES256,EdDSA";
    let authz = Authz::start_for(&idp, &["--algorithms", algs, "--jwks-cooldown", "1ms"]).await;
    let c = claims(&idp.issuer());
    let before = idp.jwks_hits();
    let cases = [
        (
            "RS256 naming the EC key",
            mint_with(&key("rsa-1"), Algorithm::RS256, Some("ec-256"), &c),
        ),
        (
            "EdDSA naming the RSA key",
            mint_with(&key("ed-1"), Algorithm::EdDSA, Some("rsa-1"), &c),
        ),
        (
            "PS256 naming the key pinned to RS256",
            mint_with(&key("rsa-1"), Algorithm::PS256, Some("rsa-1"), &c),
        ),
    ];
    for (name, token) in cases {
        let response = authz.check_token(&token).await;
        match decision(&response) {
            Decision::Deny {
                http: 401, code, ..
            } => assert_eq!(code, "invalid_header", "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(idp.jwks_hits(), before, "a known kid never refetches");
    assert_allowed(&authz.check_token(&mint(&key("ec-256"), &c)).await);
}

/// `jku`, `x5u`, `jwk` and `x5c`, each alone, offering the attacker's key: the token is
/// checked against the configured key and the attacker's server hears nothing.
/// Inputs: 4.
#[tokio::test(flavor = "multi_thread")]
async fn key_material_offered_by_the_token_is_never_used_or_fetched() {
    let fx = Fx::start(&[]).await;
    let attacker = Idp::start(vec![key("rsa-2").jwk]).await;
    attacker.update(|s| s.discovery = true);
    let c = fx.claims();
    let url = attacker.jwks_uri();
    let cases = [
        ("jku", json!({"alg": "RS256", "jku": url})),
        ("x5u", json!({"alg": "RS256", "x5u": url})),
        ("jwk", json!({"alg": "RS256", "jwk": key("rsa-2").jwk})),
        (
            "x5c",
            json!({"alg": "RS256", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        ),
    ];
    for (name, header) in cases {
        let token = sign_raw(
            &key("rsa-2"),
            Algorithm::RS256,
            header.to_string().as_bytes(),
            c.to_string().as_bytes(),
        );
        let response = fx.authz.check_token(&token).await;
        match decision(&response) {
            Decision::Deny {
                http: 401, code, ..
            } => assert_eq!(code, "invalid_token", "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        attacker.total_hits(),
        0,
        "the token's URLs are never fetched"
    );
}

/// Every replacement of a segment's last character: only the original token passes.
/// Inputs: 1 (189 variants).
#[tokio::test(flavor = "multi_thread")]
async fn last_character_of_each_segment_is_not_malleable() {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let fx = Fx::start(&[]).await;
    let token = fx.valid();
    assert_allowed(&fx.authz.check_token(&token).await);
    let [h, p, s] = segments(&token);
    for which in 0..3 {
        for c in ALPHABET.chars() {
            let mut parts = [h.clone(), p.clone(), s.clone()];
            let seg = &mut parts[which];
            if seg.ends_with(c) {
                continue;
            }
            seg.pop();
            seg.push(c);
            let variant = parts.join(".");
            let response = fx.authz.check_token(&variant).await;
            assert!(
                matches!(decision(&response), Decision::Deny { http: 401, .. }),
                "segment {which} ending in {c:?} was not a 401: {:?}",
                decision(&response)
            );
        }
    }
}

// ------------------------------------------------------------------ other issuers, audiences and times

/// A valid token from a second identity provider, and that provider's `iss` under the
/// trusted key: the unverified `iss` never makes the service fetch anything. Inputs: 2.
#[tokio::test(flavor = "multi_thread")]
async fn token_of_another_issuer_is_invalid_claims() {
    let fx = Fx::start(&[]).await;
    let other = Idp::start(vec![key("rsa-2").jwk]).await;
    other.update(|s| s.discovery = true);
    let foreign = mint(&key("rsa-2"), &claims(&other.issuer()));
    assert_denied(&fx.authz.check_token(&foreign).await, 401, "invalid_claims");
    let mislabelled = mint(&key("rsa-1"), &claims(&other.issuer()));
    assert_denied(
        &fx.authz.check_token(&mislabelled).await,
        401,
        "invalid_claims",
    );
    assert_eq!(other.total_hits(), 0, "another issuer is never contacted");
}

/// Inputs: 1 (an audience the same issuer serves, not ours).
#[tokio::test(flavor = "multi_thread")]
async fn token_for_another_audience_of_the_same_issuer_is_invalid_claims() {
    let fx = Fx::start(&[]).await;
    let token = fx.with_claim("aud", json!("https://billing.example.com"));
    assert_denied(&fx.authz.check_token(&token).await, 401, "invalid_claims");
}

/// Inputs: 2 (1 s past the default 60 s leeway, 1 s past a zero leeway).
#[tokio::test(flavor = "multi_thread")]
async fn expired_one_second_past_the_leeway_is_token_expired() {
    let fx = Fx::start(&[]).await;
    let token = fx.with_claim("exp", json!(now() - 61));
    assert_denied(&fx.authz.check_token(&token).await, 401, "token_expired");
    // Within the leeway, with margin for a slow run.
    assert_allowed(
        &fx.authz
            .check_token(&fx.with_claim("exp", json!(now() - 50)))
            .await,
    );

    let strict = Fx::start(&["--leeway", "0s"]).await;
    let token = strict.with_claim("exp", json!(now() - 1));
    assert_denied(
        &strict.authz.check_token(&token).await,
        401,
        "token_expired",
    );
}

/// Inputs: 1 (`nbf` 5 s past the leeway).
#[tokio::test(flavor = "multi_thread")]
async fn nbf_ahead_of_the_leeway_is_invalid_claims() {
    let fx = Fx::start(&[]).await;
    let token = fx.with_claim("nbf", json!(now() + 65));
    assert_denied(&fx.authz.check_token(&token).await, 401, "invalid_claims");
    assert_allowed(
        &fx.authz
            .check_token(&fx.with_claim("nbf", json!(now() + 30)))
            .await,
    );
}

/// A valid token whose `sub` tries header injection: allowed, but the claim header is
/// removed rather than forwarded. Inputs: 1.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_a_claim_never_reach_upstream() {
    let fx = Fx::start(&[]).await;
    let token = fx.with_claim("sub", json!("user\r\nx-admin: true"));
    match decision(&fx.authz.check_token(&token).await) {
        Decision::Allow { headers, remove } => {
            assert!(!headers.contains_key("x-jwt-sub"), "{headers:?}");
            assert!(headers.values().all(|v| !v.chars().any(char::is_control)));
            assert!(remove.contains(&"x-jwt-sub".to_owned()));
        }
        deny => panic!("the token is valid: {deny:?}"),
    }
}

// ------------------------------------------------------------------ random mutations

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes from the token's own alphabet reach deeper than arbitrary ones.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.".to_vec()
        ),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<prop::sample::Index>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(token: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = token.to_vec();
    for m in mutations {
        match m {
            Mutation::Flip(i, bit) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            Mutation::Insert(i, byte) => {
                let at = i.index(bytes.len() + 1);
                bytes.insert(at, *byte);
            }
            Mutation::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i.index(bytes.len()));
            }
            _ => {}
        }
    }
    bytes
}

/// `bytes` without leading and trailing spaces and tabs.
fn trim_blanks(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Random flips, inserts and deletes in a valid token, sent as raw header bytes to the
/// real server: never allowed, unless the bytes still spell the original token (surrounding
/// spaces and tabs are part of the header grammar, not the token). Inputs: 1 (64 cases).
#[test]
fn mutated_tokens_are_never_allowed() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fx = runtime.block_on(Fx::start(&[]));
    let token = fx.valid();
    runtime.block_on(async { assert_allowed(&fx.authz.check_token(&token).await) });

    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = prop::collection::vec(mutation(), 1..4);
    let result = runner.run(&strategy, |mutations| {
        let mutated = mutate(token.as_bytes(), &mutations);
        let value = [b"Bearer ".as_slice(), &mutated].concat();
        let response = runtime.block_on(fx.authz.check(raw_request(&[&value])));
        let same = trim_blanks(&mutated) == token.as_bytes();
        match decision(&response) {
            Decision::Allow { .. } => prop_assert!(
                same,
                "mutated token allowed: {:?}",
                String::from_utf8_lossy(&mutated)
            ),
            Decision::Deny { http, .. } => {
                prop_assert_eq!(http, 401);
                prop_assert!(!same, "the original token was refused");
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ------------------------------------------------------------------ a failing identity provider

/// A valid JWKS holding `keys`, padded with whitespace to `size` bytes.
fn padded_jwks(keys: &[Value], size: usize) -> Vec<u8> {
    let mut body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    body.pop(); // the closing brace, written after the padding
    body.resize(size - 1, b' ');
    body.push(b'}');
    assert!(serde_json::from_slice::<Value>(&body).is_ok());
    body
}

const TEN_MB: usize = 10 * 1024 * 1024;

/// A 10 MB JWKS that announces its length: refused whole, so keys never load from it;
/// once the body is sane again the service comes up by itself.
#[tokio::test(flavor = "multi_thread")]
async fn ten_megabyte_jwks_never_loads() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    idp.update(|s| s.jwks_body = Some(padded_jwks(&[key("rsa-1").jwk], TEN_MB)));
    let (issuer, jwks) = (idp.issuer(), idp.jwks_uri());
    let authz = Authz::start_trusting(&issuer, &jwks, &["--jwks-cooldown", "50ms"]).await;
    // A second request means the first one was answered and refused.
    wait_until(Duration::from_secs(10), "two JWKS fetches", || {
        idp.jwks_hits() >= 2
    })
    .await;
    assert_eq!(authz.health().await, ServingStatus::NotServing);
    let token = mint(&key("rsa-1"), &claims(&issuer));
    assert_denied(&authz.check_token(&token).await, 503, "jwks_unavailable");

    idp.update(|s| s.jwks_body = None);
    authz.wait_serving().await;
    assert_allowed(&authz.check_token(&token).await);
}

/// A 10 MB JWKS streamed without `content-length`: reading stops at the 1 MiB cap.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_ten_megabyte_jwks_is_cut_at_the_cap() {
    let idp = Idp::start(vec![]).await;
    let server = StreamingServer::start(padded_jwks(&[key("rsa-1").jwk], TEN_MB)).await;
    let issuer = idp.issuer();
    let jwks = server.url();
    let authz = Authz::start_trusting(&issuer, &jwks, &["--jwks-cooldown", "50ms"]).await;
    wait_until(Duration::from_secs(10), "two JWKS fetches", || {
        server.hits() >= 2
    })
    .await;
    assert_eq!(authz.health().await, ServingStatus::NotServing);
    let token = mint(&key("rsa-1"), &claims(&issuer));
    assert_denied(&authz.check_token(&token).await, 503, "jwks_unavailable");

    // Control: the same body under a cap that fits it loads.
    let roomy = Authz::start_trusting(
        &issuer,
        &jwks,
        &["--jwks-max-bytes", &(TEN_MB + 1).to_string()],
    )
    .await;
    roomy.wait_serving().await;
    assert_allowed(&roomy.check_token(&token).await);
}

/// Serving with cached keys, the IdP starts sending a 10 MB JWKS with a new key: the
/// cached keys keep working and the new key never loads.
#[tokio::test(flavor = "multi_thread")]
async fn ten_megabyte_jwks_keeps_the_cached_keys() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(
        &idp,
        &["--jwks-refresh", "100ms", "--jwks-cooldown", "50ms"],
    )
    .await;
    idp.update(|s| s.jwks_body = Some(padded_jwks(&[key("rsa-2").jwk], TEN_MB)));
    let hits = idp.jwks_hits();
    wait_until(Duration::from_secs(10), "two refreshes", || {
        idp.jwks_hits() >= hits + 2
    })
    .await;
    let c = claims(&idp.issuer());
    assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &c)).await);
    assert_denied(
        &authz.check_token(&mint(&key("rsa-2"), &c)).await,
        401,
        "invalid_header",
    );
    assert_eq!(authz.health().await, ServingStatus::Serving);
}

/// Bad keys of every kind next to good ones: the good ones load and verify, the bad ones
/// never verify anything.
#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_among_good_ones_leave_the_good_ones_working() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let secret = b"a shared secret of thirty-two by";
    let mut short_n = vec![0xc5u8; 128]; // 1024 bits
    short_n[127] |= 1;
    let mut short_ec = key("ec-256").jwk;
    short_ec["kid"] = json!("ec-short");
    short_ec["x"] = json!(URL_SAFE_NO_PAD.encode([7u8; 31]));
    let mut encryption = key("rsa-2").jwk;
    encryption["kid"] = json!("enc-1");
    encryption["use"] = json!("enc");
    let mut mismatched = key("rsa-2").jwk;
    mismatched["kid"] = json!("rsa-as-es");
    mismatched["alg"] = json!("ES256");
    let keys = vec![
        json!({"kty": "oct", "kid": "hs", "k": URL_SAFE_NO_PAD.encode(secret)}),
        json!({"kty": "RSA", "kid": "rsa-short", "n": URL_SAFE_NO_PAD.encode(&short_n), "e": "AQAB"}),
        json!({"kty": "RSA", "kid": "rsa-garbage", "n": "!!!not base64!!!", "e": "AQAB"}),
        json!({"kty": "RSA", "kid": "rsa-no-e", "n": key("rsa-2").jwk["n"]}),
        short_ec,
        encryption,
        mismatched,
        json!({"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": URL_SAFE_NO_PAD.encode([9u8; 32])}),
        json!(42),
        json!("not a key"),
        key("rsa-1").jwk,
        key("ec-256").jwk,
    ];
    let idp = Idp::start(keys).await;
    let authz = Authz::start_for(&idp, &["--algorithms", "RS256,ES256"]).await;
    let c = claims(&idp.issuer());
    assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &c)).await);
    assert_allowed(&authz.check_token(&mint(&key("ec-256"), &c)).await);

    let mut hs = jsonwebtoken::Header::new(Algorithm::HS256);
    hs.kid = Some("hs".into());
    let hmac = mint_header(
        &hs,
        &c,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    );
    assert_denied(&authz.check_token(&hmac).await, 401, "invalid_header");
    for kid in ["enc-1", "rsa-no-e", "rsa-as-es"] {
        let token = mint_with(&key("rsa-2"), Algorithm::RS256, Some(kid), &c);
        match decision(&authz.check_token(&token).await) {
            Decision::Deny {
                http: 401, code, ..
            } => assert_eq!(code, "invalid_header", "{kid}"),
            other => panic!("{kid}: {other:?}"),
        }
    }
}

/// Regression test for issue 11: an Ed25519 key of small order published in the JWKS is
/// a universal key (with the identity point, `R` = identity and `S` = 0 verify any
/// claims). It is refused at load, and the honest keys beside it still work. Inputs: 2.
#[tokio::test(flavor = "multi_thread")]
async fn issue_11_small_order_ed25519_key_never_verifies_forged_claims() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let universal = json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "universal", "x": URL_SAFE_NO_PAD.encode(identity),
    });
    let idp = Idp::start(vec![universal, key("ed-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--algorithms", "EdDSA", "--jwks-cooldown", "50ms"]).await;
    let mut c = claims(&idp.issuer());
    c["scope"] = json!("admin");
    c["sub"] = json!("anyone");
    // The one signature that verifies everything under the identity point.
    let mut signature = [0u8; 64];
    signature[0] = 1;
    let forged = forge(&json!({"alg": "EdDSA", "kid": "universal"}), &c, &signature);
    assert_denied(&authz.check_token(&forged).await, 401, "invalid_header");
    let kidless = forge(&json!({"alg": "EdDSA"}), &c, &signature);
    assert_denied(&authz.check_token(&kidless).await, 401, "invalid_token");
    assert_allowed(
        &authz
            .check_token(&mint(&key("ed-1"), &claims(&idp.issuer())))
            .await,
    );
}

/// Regression test for issue 11: RFC 6749 §3.3 separates scopes by U+0020 only, so a tab
/// is part of a (then invalid) scope and never a separator, on the first verification and
/// from the token cache alike. Inputs: 3.
#[tokio::test(flavor = "multi_thread")]
async fn issue_11_scopes_split_on_space_only() {
    let fx = Fx::start(&[]).await;
    for separator in ["\t", "\n", "\u{a0}"] {
        let token = fx.with_claim("scope", json!(format!("read:messages{separator}admin")));
        for _ in 0..2 {
            let response = fx
                .authz
                .check(request(Some(&bearer(&token)), Some("admin")))
                .await;
            assert_denied(&response, 403, "insufficient_scope");
            let response = fx
                .authz
                .check(request(Some(&bearer(&token)), Some("read:messages")))
                .await;
            assert_denied(&response, 403, "insufficient_scope");
        }
    }
    let spaced = fx.with_claim("scope", json!("read:messages admin"));
    assert_allowed(
        &fx.authz
            .check(request(Some(&bearer(&spaced)), Some("admin")))
            .await,
    );
}

/// Nothing listens where the JWKS should be (connection refused): the service starts
/// NOT_SERVING and answers 503, then recovers by itself when the IdP comes up there.
#[tokio::test(flavor = "multi_thread")]
async fn idp_down_at_start_recovers_when_it_comes_up() {
    let addr = unused_addr();
    let issuer = format!("http://{addr}/");
    let jwks = format!("http://{addr}/jwks.json");
    let authz = Authz::start_trusting(&issuer, &jwks, &["--jwks-cooldown", "50ms"]).await;
    let token = mint(&key("rsa-1"), &claims(&issuer));
    assert_eq!(authz.health().await, ServingStatus::NotServing);
    assert_denied(&authz.check_token(&token).await, 503, "jwks_unavailable");
    // Let several fetches fail before the IdP appears.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_denied(&authz.check_token(&token).await, 503, "jwks_unavailable");

    let idp = Idp::start_at(addr, vec![key("rsa-1").jwk]).await;
    authz.wait_serving().await;
    assert!(idp.jwks_hits() >= 1);
    assert_allowed(&authz.check_token(&token).await);
}
