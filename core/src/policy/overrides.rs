//! Method overrides: the other methods a server behind the proxy may run for a request.
//!
//! Frameworks let a `POST` stand for another method: Express `method-override`, Rails
//! (`Rack::MethodOverride`), Laravel and Symfony read an override header or a `_method`
//! parameter. Every one of them is read here, in every spelling: the three header names in
//! any case and with `-`, `_` or `.` (CGI, WSGI and PHP read `x_http_method_override`,
//! and PHP `x.http.method.override`, as `HTTP_X_HTTP_METHOD_OVERRIDE`), every value of each (repeats, header-map entries and
//! comma lists), and `_method` in the query under any name PHP reads as it (percent- and
//! `+`-decoded, with `.`, ` ` and `[` read as `_`). A `POST` whose body is a form, or that
//! names no content type (Rack treats it as a form), may carry `_method` in its body, which
//! the proxy does not show: it could be any method. A value that is not a method could be
//! read as any method too. The policy then refuses the request when any of these methods
//! selects another rule than the request's own ([`super::route`]).

use super::route::Overrides;
use crate::inbound::spelled_as;

/// The override header names, lower-case with `-`.
pub const HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The query and form parameter frameworks read.
const PARAMETER: &str = "_method";

/// The longest method read as one; longer values are "any method".
const MAX_METHOD: usize = 32;

/// The most override values read one by one; more are "any method".
const MAX_VALUES: usize = 16;

/// Whether `name` is one of the override headers in some spelling.
fn is_override_header(name: &str) -> bool {
    HEADERS.iter().any(|h| spelled_as(name, h))
}

/// A method token (RFC 9110 §9.1, `tchar`s), bounded in length.
fn method_token(value: &str) -> Option<&str> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!value.is_empty() && value.len() <= MAX_METHOD && value.bytes().all(tchar)).then_some(value)
}

/// Every override `method`, `headers`, `query` and `content_type` carry.
pub fn method_overrides<'a>(
    method: &str,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    query: Option<&'a str>,
    content_type: Option<&[u8]>,
) -> Overrides<'a> {
    let mut methods = Vec::new();
    for (name, value) in headers {
        if !is_override_header(name) {
            continue;
        }
        let Ok(value) = std::str::from_utf8(value) else {
            return Overrides::Any;
        };
        for item in value.split(',') {
            match method_token(item.trim_matches([' ', '\t'])) {
                Some(m) if methods.len() < MAX_VALUES => methods.push(m),
                // Past the bound, the values are not read one by one.
                _ => return Overrides::Any,
            }
        }
    }
    for (name, value) in query
        .into_iter()
        .flat_map(|q| q.split(['&', ';']))
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    {
        match parameter_name(name) {
            Some(true) => {}
            Some(false) => continue,
            None => {
                // A name that does not decode could be read as `_method` by someone.
                if name.contains('%') {
                    return Overrides::Any;
                }
                continue;
            }
        }
        match crate::percent::decode_utf8(value)
            .as_deref()
            .and_then(|v| method_token(v).map(str::len))
        {
            // Borrowed only when the value has no escape: then it is the method itself.
            Some(_) if !value.contains('%') && methods.len() < MAX_VALUES => methods.push(value),
            _ => return Overrides::Any,
        }
    }
    if method.eq_ignore_ascii_case("POST") && may_be_form(content_type) {
        return Overrides::Any;
    }
    if methods.is_empty() {
        Overrides::None
    } else {
        Overrides::Methods(methods)
    }
}

/// Whether a query name reads as `_method` to some server
/// ([`crate::percent::lenient_names`]): `Some(true)` when it does.
fn parameter_name(raw: &str) -> Option<bool> {
    Some(
        raw == PARAMETER
            || crate::percent::lenient_names(raw)
                .iter()
                .any(|key| key == PARAMETER.as_bytes()),
    )
}

/// Whether a `POST` with this content type may carry a form body: a form type, or none.
fn may_be_form(content_type: Option<&[u8]>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let Ok(text) = std::str::from_utf8(value) else {
        return true;
    };
    // PHP cuts the type at `;`, `,` or a space; Rack parses every `multipart/` type.
    let media = text
        .trim_start_matches([' ', '\t'])
        .split([';', ',', ' ', '\t'])
        .next()
        .unwrap_or("");
    media.is_empty()
        || media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        || media
            .get(..10)
            .is_some_and(|m| m.eq_ignore_ascii_case("multipart/"))
        || text.contains(',')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<'a>(
        method: &str,
        headers: &[(&'a str, &'a str)],
        query: Option<&'a str>,
        content_type: Option<&str>,
    ) -> Overrides<'a> {
        method_overrides(
            method,
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            query,
            content_type.map(str::as_bytes),
        )
    }

    #[test]
    fn every_header_spelling_and_value_is_read() {
        for name in [
            "X-HTTP-Method-Override",
            "x-http-method-override",
            "X_HTTP_METHOD_OVERRIDE",
            "x-http_method-override",
            "X-HTTP-Method",
            "x-method-override",
            "X_Method_Override",
        ] {
            assert_eq!(
                read("POST", &[(name, "DELETE")], None, Some("application/json")),
                Overrides::Methods(vec!["DELETE"]),
                "{name}"
            );
        }
        assert_eq!(
            read(
                "POST",
                &[
                    ("x-http-method-override", "DELETE, POST"),
                    ("X-HTTP-Method-Override", "put"),
                    ("x-method-override", "PATCH"),
                ],
                Some("a=1&_method=GET"),
                Some("application/json"),
            ),
            Overrides::Methods(vec!["DELETE", "POST", "put", "PATCH", "GET"])
        );
        assert_eq!(
            read("GET", &[("x-http-method-overrides", "DELETE")], None, None),
            Overrides::None
        );
    }

    #[test]
    fn unreadable_values_and_forms_could_be_any_method() {
        let json = Some("application/json");
        let delete = || Overrides::Methods(vec!["DELETE"]);
        for (headers, query, content_type, expected) in [
            (
                vec![("x-http-method-override", "")],
                None,
                json,
                Overrides::Any,
            ),
            (
                vec![("x-http-method-override", "DEL ETE")],
                None,
                json,
                Overrides::Any,
            ),
            (
                vec![("x-http-method-override", "DELETE,")],
                None,
                json,
                Overrides::Any,
            ),
            (vec![], Some("_method=DEL%45TE"), json, Overrides::Any),
            (vec![], Some("_method=%zz"), json, Overrides::Any),
            // PHP reads a malformed escape as it is: another name.
            (vec![], Some("_method%zz=DELETE"), json, Overrides::None),
            // Names other servers read as `_method`.
            (vec![], Some("%5Fmethod=DELETE"), json, delete()),
            (vec![], Some(".method=DELETE"), json, delete()),
            (vec![], Some("+_method=DELETE"), json, delete()),
            (vec![], Some("[method=DELETE"), json, delete()),
            (
                vec![],
                Some("_method=DELETE&_method=PUT"),
                json,
                Overrides::Methods(vec!["DELETE", "PUT"]),
            ),
            (
                vec![],
                Some("_methods=DELETE&method=PUT"),
                json,
                Overrides::None,
            ),
            // A POST that may have a form body.
            (vec![], None, None, Overrides::Any),
            (vec![], None, Some(""), Overrides::Any),
            (
                vec![],
                None,
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                Overrides::Any,
            ),
            (
                vec![],
                None,
                Some("Multipart/Form-Data; boundary=x"),
                Overrides::Any,
            ),
            (
                vec![],
                None,
                Some("application/json, application/x-www-form-urlencoded"),
                Overrides::Any,
            ),
            (vec![], None, json, Overrides::None),
        ] {
            assert_eq!(
                read("POST", &headers, query, content_type),
                expected,
                "{headers:?} {query:?} {content_type:?}"
            );
        }
        // Only a POST carries a body override.
        assert_eq!(read("GET", &[], None, None), Overrides::None);
        assert_eq!(
            read("PUT", &[], None, Some("application/x-www-form-urlencoded")),
            Overrides::None
        );
    }
}
