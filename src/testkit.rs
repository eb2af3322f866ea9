//! The test kit: everything the tests, benches, fuzz targets and the load generator need to
//! drive the service as Envoy and an identity provider would, written once so they all
//! exercise the same shapes. Fixture keys and minting ([`key`], [`mint`]), Envoy-shaped
//! `CheckRequest`s ([`request`]) and the two readings of an encoded one
//! ([`compare_readings`]), a loopback identity provider with faults ([`Idp`]), the
//! real server on a loopback port ([`Authz`]), reading its answers ([`decision`]) and
//! external processes ([`tool`], [`free_port`]), and an upstream that records what a proxy
//! forwards ([`RecordingUpstream`]).
//!
//! Compiled only for the crate's own unit tests and with the `test-util` feature, so the
//! production binary never carries it. Helpers panic on failure: a broken fixture is a
//! failed test, not an error to handle.

#![cfg(any(test, feature = "test-util"))]

mod certs;
mod decision;
mod decoding;
mod dpop;
mod encoded;
mod harness;
mod idp;
mod keys;
mod logs;
mod mint;
mod oidc;
mod redis;
mod request;
mod tools;
mod upstream;

pub use crate::wire::grpc::CHECK_PATH;
pub use certs::{CLIENT_CERT_CN, Certificate, Pki, client_certificate, generate_pki};
pub use decision::{Decision, allows, assert_allowed, assert_denied, decision};
pub use decoding::{Reading, compare_readings};
pub use dpop::{
    ProofKey, ath, certificate_thumbprint, jwk_thumbprint, proof_claims, proof_key, unique_jti,
};
pub use encoded::EncodedCheck;
pub use harness::{Authz, config, config_errors, scrape, wait_serving};
pub use idp::{Idp, IdpState, StreamingServer};
pub use keys::{FIXTURES, TestKey, fixed_verifier, fixture_jwks, key};
pub use logs::{Captured, capture};
pub use mint::{
    AUDIENCE, claims, corrupt_signature, edit_valid, forge, mint, mint_header, mint_with, now,
    sign_raw,
};
pub use oidc::{
    BEARER_CLIENT_ID, INTROSPECTION_CLIENT, OPAQUE_RESOURCE, OidcProvider, TokenResponse, node,
};
pub use redis::RedisServer;
pub use request::{
    Shape, URL, browser_request, http_mut, proxyless_request, raw_request, request, request_at,
    set_authorization, with_certificate, with_proofs,
};
pub use tools::{TempFile, free_port, stderr_lines, tool, unused_addr, wait_until};
pub use upstream::{Forwarded, RecordingUpstream};
