//! The request being authorized, as the decision sees it, whichever wire it came over: the
//! gRPC `CheckRequest` or the HTTP authorization endpoint (the service crate's `wire`). Both
//! adapters build one [`Inbound`] and hand it to the same decision function, so no rule is
//! written twice.
//!
//! Pure: no I/O and no protocol types. Header names are matched case-insensitively; every
//! value a header had is kept, in order (a repeated header is never folded into one).

/// One request to authorize, borrowed from the adapter's own request.
#[derive(Debug, Default, Clone)]
pub struct Inbound<'a> {
    /// The original method (`GET`).
    pub method: &'a str,
    /// The original host (`:authority`), possibly with a port.
    pub host: &'a str,
    /// The original request target in origin form, query string included.
    pub path: &'a str,
    /// Every header: name and value, repeats kept apart or comma-joined as received.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// Envoy's `required_scopes` context extension, when the route set one.
    pub required_scopes: Option<&'a str>,
    /// The original scheme (`https`), when the proxy said: a DPoP proof's `htu` is
    /// compared with it.
    pub scheme: Option<&'a str>,
    /// The client certificate the proxy verified, URL-encoded PEM as Envoy forwards it
    /// (`include_peer_certificate`): a certificate-bound token is checked against it.
    pub peer_certificate: Option<&'a str>,
    /// The request body, when the proxy sent it (Envoy `with_request_body`: `raw_body`,
    /// else `body`); `None` when it sent none or an empty one.
    pub body: Option<&'a [u8]>,
}

impl<'a> Inbound<'a> {
    /// Every value of header `name`, in order.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + Clone + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The first value of header `name`, when it is UTF-8.
    pub fn first(&self, name: &str) -> Option<&'a str> {
        self.values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether the request is a gRPC call, as Envoy tells one (`Grpc::Common::
    /// isGrpcRequestHeaders`): its one `content-type` is `application/grpc` exactly, or
    /// `application/grpc+` and a codec.
    pub fn is_grpc(&self) -> bool {
        let mut types = self.values("content-type");
        let (Some(value), None) = (types.next(), types.next()) else {
            return false;
        };
        value == b"application/grpc" || value.starts_with(b"application/grpc+")
    }

    /// The query string: what follows the first `?` of the path, up to a `#`.
    pub fn query(&self) -> Option<&'a str> {
        let (_, rest) = self.path.split_once('?')?;
        Some(rest.split('#').next().unwrap_or(""))
    }
}

/// Whether header `name` is a spelling of `key` (lower case, words joined by `-` or `_`)
/// that some server reads as `key`: the same letters in any case, each separator written
/// `-`, `_` or `.` (CGI, WSGI and PHP read `x_jwt_sub`, and PHP `x.jwt.sub`, as
/// `HTTP_X_JWT_SUB`).
pub fn spelled_as(name: &str, key: &str) -> bool {
    name.len() == key.len()
        && name.bytes().zip(key.bytes()).all(|(n, k)| match k {
            b'-' | b'_' => matches!(n, b'-' | b'_' | b'.'),
            k => n.to_ascii_lowercase() == k,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_kept_apart_and_names_ignore_case() {
        let inbound = Inbound {
            headers: vec![("Cookie", b"a=1"), ("cookie", b"b=2"), ("x", b"y")],
            ..Inbound::default()
        };
        let values: Vec<&[u8]> = inbound.values("cookie").collect();
        assert_eq!(values, [b"a=1".as_slice(), b"b=2".as_slice()]);
        assert_eq!(inbound.first("X"), Some("y"));
        assert_eq!(inbound.first("absent"), None);
    }

    #[test]
    fn header_spellings_swap_separators_and_case() {
        for name in ["x-jwt-sub", "X_JWT_SUB", "x.jwt-sub", "X-Jwt.Sub"] {
            assert!(spelled_as(name, "x-jwt-sub"), "{name}");
            assert!(spelled_as(name, "x_jwt_sub"), "{name}");
        }
        for name in ["x-jwt-subs", "xjwt-sub", "x-jwt+sub", "y-jwt-sub"] {
            assert!(!spelled_as(name, "x-jwt-sub"), "{name}");
        }
    }

    #[test]
    fn query_is_cut_at_the_fragment() {
        let q = |path| {
            Inbound {
                path,
                ..Inbound::default()
            }
            .query()
        };
        assert_eq!(q("/a?x=1&y=2#frag"), Some("x=1&y=2"));
        assert_eq!(q("/a?"), Some(""));
        assert_eq!(q("/a"), None);
    }
}
