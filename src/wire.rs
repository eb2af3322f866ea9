//! Every wire the decision is asked and answered over, and nothing else that knows one:
//! Envoy's gRPC `Check` ([`grpc`]: the service tonic runs, the reading of a
//! `CheckRequest`'s bytes, the `CheckResponse`), gRPC health ([`health`]), the HTTP
//! authorization endpoint ([`http`]) on the HTTP/1 server ([`httpd`]), the generated
//! protobuf types ([`proto`]), and a denial as the client receives it ([`answer`]: status,
//! JSON body, `WWW-Authenticate`).
//!
//! The decision (`crate::service`) takes an [`crate::inbound::Inbound`] and gives a
//! [`crate::service::Verdict`]; each wire builds the first and renders the second.

pub mod answer;
pub mod grpc;
pub mod health;
pub mod http;
pub mod httpd;
pub mod proto;
