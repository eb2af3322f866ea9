//! What the decision answers, before any wire: the changes an allow makes upstream, or
//! why a request was refused. The wires render a [`Verdict`] ([`crate::wire`]).

use super::{Allowed, AuthzService};
use crate::error::AuthError;
use crate::inbound::Inbound;
use crate::token_source::{self, TokenSource};
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
    Deny(Denial),
    /// The RFC 9728 metadata of resource `.0`, which the service answers itself in place
    /// of the upstream: sent by Envoy as a local reply.
    ResourceMetadata(usize),
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

/// A refused request: why, and whether it used the `DPoP` scheme (which the challenge
/// answers). The wires render it ([`crate::wire::answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub error: AuthError,
    pub dpop_request: bool,
    /// The request is a gRPC call (`content-type: application/grpc...`): the proxy turns
    /// the refusal into a gRPC status, whose message is the body.
    pub grpc_request: bool,
    /// The protected resource the request is for, whose metadata the challenge names.
    pub resource: Option<usize>,
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
            Allowed::Anonymous | Allowed::Preflight | Allowed::ResourceMetadata(_) => {
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
        match token_source::cookie_without(request.values("cookie"), &cookies) {
            Some(rest) if rest.is_empty() => allow.remove.push("cookie".into()),
            Some(rest) => allow.set.push(("cookie".into(), rest)),
            None => {}
        }
    }
}
