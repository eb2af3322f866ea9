//! The HTTP authorization endpoint (`--http-listen`): the same decision as gRPC `Check`,
//! for proxies that ask over plain HTTP. It turns the request into an [`Inbound`], calls
//! [`AuthzService::authorize`] (the function `Check` calls) and writes the verdict as
//! HTTP. It owns no decision.
//!
//! Where the original request is read from, for each proxy:
//!
//! - nginx `auth_request`: `X-Original-URI` and `X-Original-Method`, set by the
//!   documented `proxy_set_header` lines;
//! - Traefik `forwardAuth`: `X-Forwarded-Uri` and `X-Forwarded-Method`, whatever path
//!   Traefik calls;
//! - Envoy `http_service`: none of those headers; Envoy sends the original method and
//!   appends the original path to `path_prefix: /ext-authz` ([`ENVOY_PATH_PREFIX`]).
//!
//! The host is `X-Forwarded-Host` when present, else `Host`. Every other header is read
//! as the original request's. A request whose original method or URI is missing or
//! contradictory (two values of one header, an `X-Original-URI` that differs from the
//! `X-Forwarded-Uri`, two methods, a URI not in origin form) is refused with 403
//! `access_denied` rather than guessed: nginx turns any other status than 401/403 into a
//! 500, so 403 reaches the client on every proxy.
//!
//! These headers are trusted: only the proxy may reach this listener (SECURITY.md).

use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::error::AuthError;
use crate::inbound::Inbound;
use crate::service::{AuthzService, Verdict, Wire};
use crate::wire::httpd::{self, HttpResponse};

/// Envoy's `http_service.path_prefix`: Envoy calls `/ext-authz` + the original path.
const ENVOY_PATH_PREFIX: &str = "/ext-authz";

/// The response header listing the headers Envoy's `http_service` removes upstream.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// A denial's JSON body, repeated as a response header: nginx `auth_request` drops the
/// body of the answer, and its `error_page` can send this header's value instead.
const DENY_BODY_HEADER: &str = "x-jwt-authz-body";

/// The original request's method, host and target, as the proxy reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    /// `X-Forwarded-Proto`, when the proxy sent it.
    pub scheme: Option<&'a str>,
}

/// Answers one authorization request.
pub async fn handle(service: &AuthzService, parts: &Parts) -> HttpResponse {
    let headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let verdict = match original(parts.method.as_str(), target, &headers) {
        Ok(original) => {
            let inbound = Inbound {
                method: original.method,
                host: original.host,
                path: original.path,
                headers,
                required_scopes: None,
                scheme: original.scheme,
                peer_certificate: None,
                // The HTTP endpoint reads no body: MCP endpoints decide by their headers.
                body: None,
            };
            service
                .authorize(&inbound, Wire::Http, Some(&parts.headers))
                .await
        }
        Err(why) => {
            // Logged with the path this listener was called on, never the token.
            let inbound = Inbound {
                method: parts.method.as_str(),
                path: target,
                ..Inbound::default()
            };
            service.refuse(
                &inbound,
                AuthError::AmbiguousRequest(why),
                Some(&parts.headers),
            )
        }
    };
    response(service, verdict)
}

/// Reads the original request from the forwarded headers or, without them, from the
/// Envoy prefix. Errors name the reason (logged, never sent).
pub fn original<'a>(
    method: &'a str,
    target: &'a str,
    headers: &[(&'a str, &'a [u8])],
) -> Result<Original<'a>, &'static str> {
    let forwarded_uri = single(headers, "x-forwarded-uri")?;
    let original_uri = single(headers, "x-original-uri")?;
    let forwarded_method = single(headers, "x-forwarded-method")?;
    let original_method = single(headers, "x-original-method")?;
    let host = match single(headers, "x-forwarded-host")? {
        Some(host) => host,
        None => single(headers, "host")?.unwrap_or(""),
    };
    let (method, path) = match (forwarded_uri, original_uri) {
        (None, None) => {
            if forwarded_method.is_some() || original_method.is_some() {
                return Err("forwarded method without a forwarded uri");
            }
            let rest = target
                .strip_prefix(ENVOY_PATH_PREFIX)
                .filter(|rest| rest.starts_with('/'))
                .ok_or("no original uri: no X-Forwarded-Uri, X-Original-URI or Envoy prefix")?;
            (method, rest)
        }
        (Some(a), Some(b)) if a != b => return Err("X-Forwarded-Uri and X-Original-URI differ"),
        (Some(uri), _) | (None, Some(uri)) => {
            let method = match (forwarded_method, original_method) {
                (Some(a), Some(b)) if a != b => {
                    return Err("X-Forwarded-Method and X-Original-Method differ");
                }
                (Some(m), _) | (None, Some(m)) => m,
                (None, None) => return Err("forwarded uri without a forwarded method"),
            };
            (method, uri)
        }
    };
    if !is_origin_form(path) {
        return Err("original uri is not in origin form");
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("original method is not a word");
    }
    let scheme = single(headers, "x-forwarded-proto")?;
    if scheme.is_some_and(|s| !matches!(s, "http" | "https")) {
        return Err("X-Forwarded-Proto is not http or https");
    }
    Ok(Original {
        method,
        host,
        path,
        scheme,
    })
}

/// The one value of header `name`: `None` when absent, an error when repeated (or
/// comma-joined) or not visible ASCII.
fn single<'a>(
    headers: &[(&'a str, &'a [u8])],
    name: &str,
) -> Result<Option<&'a str>, &'static str> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("a forwarded header is repeated");
    }
    if !value.iter().all(|b| b.is_ascii_graphic()) {
        return Err("a forwarded header is not visible ascii");
    }
    let text = std::str::from_utf8(value).map_err(|_| "a forwarded header is not utf-8")?;
    if name != "x-forwarded-uri" && name != "x-original-uri" && text.contains(',') {
        return Err("a forwarded header holds two values");
    }
    Ok(Some(text))
}

/// RFC 9112 §3.2.1 origin form: `/` then no `//` at the start (which some servers read as
/// an authority), and nothing but visible ASCII.
fn is_origin_form(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && path.bytes().all(|b| b.is_ascii_graphic())
}

/// The verdict as an HTTP response: 200 with the claim headers and the list of headers
/// to remove; 401/403/503 with the JSON body and challenge.
pub fn response(service: &AuthzService, verdict: Verdict) -> HttpResponse {
    match verdict {
        Verdict::Allow(allow) => {
            let mut response = httpd::respond(StatusCode::OK, "text/plain", "");
            let headers = response.headers_mut();
            let mut remove = allow.remove;
            for (name, value) in allow.set {
                match (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::from_bytes(value.as_bytes()),
                ) {
                    (Ok(n), Ok(v)) => {
                        headers.insert(n, v);
                    }
                    // Not sendable as a header: removed upstream instead, never forged.
                    _ => remove.push(name),
                }
            }
            if !remove.is_empty()
                && let Ok(v) = HeaderValue::from_str(&remove.join(","))
            {
                headers.insert(HEADERS_TO_REMOVE, v);
            }
            response
        }
        Verdict::Deny(denial) => {
            let deny = super::answer::denial(service, &denial);
            let status = StatusCode::from_u16(deny.http_status).unwrap_or(StatusCode::FORBIDDEN);
            let body_header = HeaderValue::from_str(&deny.body).ok();
            let mut response = httpd::respond(status, "application/json", deny.body);
            if let Some(v) = body_header {
                response.headers_mut().insert(DENY_BODY_HEADER, v);
            }
            for (i, (name, value)) in deny.headers.iter().enumerate() {
                let Ok(v) = HeaderValue::from_str(value) else {
                    continue;
                };
                // Two challenges are two `www-authenticate` lines.
                if deny.headers[..i].iter().any(|(seen, _)| seen == name) {
                    response.headers_mut().append(*name, v);
                } else {
                    response.headers_mut().insert(*name, v);
                }
            }
            response
        }
        // Never produced for this endpoint, whose 200 means "allow": refused, to fail closed.
        Verdict::ResourceMetadata(_) => {
            httpd::respond(StatusCode::FORBIDDEN, "application/json", "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<'a>(
        method: &'a str,
        target: &'a str,
        headers: &[(&'a str, &'a str)],
    ) -> Result<Original<'a>, &'static str> {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        original(method, target, &headers)
    }

    #[test]
    fn envoy_prefix_gives_the_original_path_and_method() {
        let o = read(
            "DELETE",
            "/ext-authz/api/x?y=1",
            &[("host", "api.example.com")],
        )
        .unwrap();
        assert_eq!(
            o,
            Original {
                scheme: None,
                method: "DELETE",
                host: "api.example.com",
                path: "/api/x?y=1"
            }
        );
    }

    #[test]
    fn traefik_headers_win_over_the_called_path() {
        let o = read(
            "GET",
            "/anything",
            &[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/api/private"),
                ("x-forwarded-host", "app.example.com"),
                ("host", "authz:9193"),
            ],
        )
        .unwrap();
        assert_eq!(
            o,
            Original {
                scheme: None,
                method: "POST",
                host: "app.example.com",
                path: "/api/private"
            }
        );
    }

    #[test]
    fn nginx_headers_are_read() {
        let o = read(
            "GET",
            "/auth",
            &[("x-original-method", "PUT"), ("x-original-uri", "/api/a?b")],
        )
        .unwrap();
        assert_eq!((o.method, o.path), ("PUT", "/api/a?b"));
    }

    #[test]
    fn missing_or_contradictory_originals_are_refused() {
        let refused = |target, headers: &[(&str, &str)]| read("GET", target, headers).is_err();
        assert!(refused("/auth", &[]), "no original uri");
        assert!(refused("/ext-authzx/a", &[]), "prefix is a whole segment");
        assert!(refused("/auth", &[("x-original-uri", "/a")]), "no method");
        assert!(
            refused("/auth", &[("x-forwarded-method", "GET")]),
            "method without uri"
        );
        assert!(refused(
            "/auth",
            &[
                ("x-forwarded-uri", "/a"),
                ("x-forwarded-uri", "/b"),
                ("x-forwarded-method", "GET")
            ]
        ));
        assert!(refused(
            "/auth",
            &[
                ("x-forwarded-uri", "/a"),
                ("x-original-uri", "/b"),
                ("x-forwarded-method", "GET")
            ]
        ));
        assert!(refused(
            "/auth",
            &[
                ("x-original-uri", "/a"),
                ("x-original-method", "GET"),
                ("x-forwarded-method", "DELETE")
            ]
        ));
        assert!(refused(
            "/auth",
            &[
                ("x-forwarded-uri", "http://evil/a"),
                ("x-forwarded-method", "GET")
            ]
        ));
        assert!(refused(
            "/auth",
            &[
                ("x-forwarded-uri", "//evil/a"),
                ("x-forwarded-method", "GET")
            ]
        ));
        assert!(refused(
            "/auth",
            &[
                ("x-forwarded-uri", "/a"),
                ("x-forwarded-method", "GET,POST")
            ]
        ));
        assert!(refused(
            "/auth",
            &[
                ("x-forwarded-uri", "/a"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-host", "a,b")
            ]
        ));
    }
}
