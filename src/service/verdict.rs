//! What the service answers before it goes on a wire: the changes an allow makes
//! upstream, and a denial's status, headers and body. The gRPC adapter ([`super::grpc`])
//! and the HTTP endpoint put a [`Verdict`] on their wire.

use super::{Allowed, AuthzService};
use crate::bearer::{self, TokenSource};
use crate::error::{AuthError, ChallengeTo};
use crate::inbound::Inbound;
use crate::upstream::MutationSink;

/// Which wire a request came over: what its answer can change upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// gRPC `Check`: every mutation, query parameters included.
    Grpc,
    /// The HTTP endpoint: headers only; a query parameter cannot be removed.
    Http,
}

/// What the service answers, before it is put on a wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow(Allow),
    Deny(Deny),
    /// A response the service gives itself in place of the upstream's (the RFC 9728
    /// metadata): sent by Envoy as a local reply, with its own status.
    Answer(Deny),
}

/// An allowed request's changes upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Allow {
    /// Headers set (overwritten) on the upstream request.
    pub set: Vec<(String, String)>,
    /// Headers removed from the upstream request, after `set`.
    pub remove: Vec<String>,
    /// Query parameters removed (gRPC only).
    pub remove_query: Vec<String>,
    pub metadata: Option<prost_types::Struct>,
}

/// The changes are owned here: they move into the wire's answer.
impl<'a> MutationSink<'a> for Allow {
    fn set_header(&mut self, name: &'a str, value: &'a str) {
        self.set.push((name.to_owned(), value.to_owned()));
    }

    fn remove_header(&mut self, name: &'a str) {
        self.remove.push(name.to_owned());
    }
}

/// A denial, with everything the client is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub http_status: u16,
    pub grpc_code: i32,
    pub code: &'static str,
    /// `content-type`, `www-authenticate`, `retry-after`.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// The server, not the client, failed (keys unavailable).
    pub server_error: bool,
}

impl AuthzService {
    pub(super) fn allow(&self, allowed: &Allowed, request: &Inbound<'_>) -> Allow {
        let upstream = &self.settings.upstream;
        // Room for every change at once.
        let (most_set, most_removed) = self.settings.allow_room;
        let mut allow = Allow {
            set: Vec::with_capacity(most_set),
            remove: Vec::with_capacity(most_removed),
            remove_query: Vec::new(),
            metadata: None,
        };
        match allowed {
            Allowed::Token(entry) => {
                upstream.mutations_into(|i| entry.header_value(i), entry.payload(), &mut allow);
                allow.metadata = entry.metadata.as_deref().cloned();
            }
            Allowed::Anonymous | Allowed::Preflight | Allowed::ResourceMetadata => {
                upstream.anonymous_into(&mut allow);
            }
        }
        if upstream.strip_authorization {
            self.strip_cookies_and_query(request, &mut allow);
            // The proof goes with the token it was made for.
            if request.values("dpop").next().is_some() {
                allow.remove.push("dpop".into());
            }
        }
        allow
    }

    /// With `strip_authorization`, the token cookies leave the `cookie` header (only those
    /// cookies) and the token query parameters leave the path, on every route.
    fn strip_cookies_and_query(&self, request: &Inbound<'_>, allow: &mut Allow) {
        let mut cookies = Vec::new();
        for source in &self.settings.token_sources {
            match source {
                TokenSource::Cookie(name) => cookies.push(name.as_str()),
                TokenSource::Query(name) => allow.remove_query.push(name.clone()),
                TokenSource::Header { .. } => {}
            }
        }
        if cookies.is_empty() {
            return;
        }
        match bearer::cookie_without(request.values("cookie"), &cookies) {
            Some(rest) if rest.is_empty() => allow.remove.push("cookie".into()),
            Some(rest) => allow.set.push(("cookie".into(), rest)),
            None => {}
        }
    }

    pub(super) fn deny(&self, error: &AuthError, request: &Inbound<'_>) -> Deny {
        let code = error.code();
        let mut headers = vec![("content-type", "application/json".to_owned())];
        let to = ChallengeTo {
            realm: &self.settings.realm,
            dpop_algs: self.settings.dpop_algs.as_deref(),
            dpop_request: self.settings.is_dpop_request(request),
            resource_metadata: self
                .settings
                .resource_metadata
                .as_ref()
                .map(|m| m.url.as_str()),
        };
        for challenge in error.www_authenticate(&to) {
            headers.push(("www-authenticate", challenge));
        }
        let server_error = code.is_server_error();
        if server_error {
            headers.push(("retry-after", self.settings.retry_after_secs.to_string()));
        }
        Deny {
            http_status: code.http_status(),
            grpc_code: code.grpc_code(),
            code: code.as_str(),
            headers,
            body: error.json_body(),
            server_error,
        }
    }

    /// The RFC 9728 document, as a `200` the proxy sends itself.
    pub(super) fn metadata_answer(&self) -> Deny {
        let body = self
            .settings
            .resource_metadata
            .as_ref()
            .map(|m| m.body.clone())
            .unwrap_or_default();
        Deny {
            http_status: 200,
            // Any status but OK makes Envoy send this response instead of forwarding.
            grpc_code: crate::error::Code::AccessDenied.grpc_code(),
            code: "resource_metadata",
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("cache-control", "max-age=300".to_owned()),
            ],
            body,
            server_error: false,
        }
    }
}
