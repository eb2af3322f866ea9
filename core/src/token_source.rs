//! Where a request's access token may be: the configured `token_sources`, tried in order.
//!
//! - `{ header: authorization, scheme: Bearer }` (the default): `<scheme> <token>`, the
//!   scheme compared case-insensitively, with the quickstart's codes.
//! - `{ header: x-api-token }`: the raw token, no scheme.
//! - `{ cookie: access_token }`: a cookie, read with the syntax of RFC 6265 §4.2.1.
//! - `{ query: access_token }`: a query parameter (RFC 6750 §2.3 discourages it).
//!
//! A source that carries nothing is skipped; a source that carries something malformed
//! fails the request. Two sources carrying *different* tokens are refused
//! ([`AuthError::TokenSentTwice`]), never "use the first"; two carrying the same token are
//! accepted, since nothing is ambiguous about one credential sent twice. A cookie name or
//! query parameter that appears twice is refused even when both values agree: whoever reads
//! the request after us may pick the other one. So is a cookie or parameter under another
//! name that some server reads as the token's ([`reads_as`]: `access%5Ftoken`,
//! `access.token` to PHP).

mod scheme;

use std::borrow::Cow;

use crate::error::AuthError;
use crate::inbound::{Inbound, spelled_as};
pub use scheme::AccessToken;

/// One place a token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header; with `scheme`, its value is `<scheme> <token>`, else the raw token.
    Header {
        /// Lower-case header name.
        name: String,
        scheme: Option<String>,
    },
    /// A cookie, by its exact (case-sensitive) name.
    Cookie(String),
    /// A query parameter, by its exact name.
    Query(String),
}

impl TokenSource {
    /// The default and the quickstart's only source: `authorization: Bearer <token>`.
    pub fn authorization() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            scheme: Some("Bearer".into()),
        }
    }
}

/// The token a request carried, and which source it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct FoundToken<'a> {
    text: Cow<'a, str>,
    /// Index in the configured sources of the first source that carried it.
    pub source: usize,
}

impl FoundToken<'_> {
    /// The token, for verification.
    pub fn token(&self) -> AccessToken<'_> {
        AccessToken(&self.text)
    }
}

impl std::fmt::Debug for FoundToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FoundToken(.., source: {})", self.source)
    }
}

/// Finds the request's token in `sources`. `max_len` caps every value read (a header
/// value, a cookie value, a decoded query value).
pub fn find_token<'a>(
    sources: &[TokenSource],
    request: &Inbound<'a>,
    max_len: usize,
) -> Result<FoundToken<'a>, AuthError> {
    let mut found: Option<FoundToken<'a>> = None;
    for (i, source) in sources.iter().enumerate() {
        let Some(text) = read(source, request, max_len)? else {
            continue;
        };
        match &found {
            None => found = Some(FoundToken { text, source: i }),
            Some(first) if first.text == text => {}
            Some(_) => return Err(AuthError::TokenSentTwice),
        }
    }
    found.ok_or(AuthError::MissingHeader)
}

/// What one source carries: `None` when nothing.
fn read<'a>(
    source: &TokenSource,
    request: &Inbound<'a>,
    max_len: usize,
) -> Result<Option<Cow<'a, str>>, AuthError> {
    match source {
        TokenSource::Header { name, scheme } => {
            // `x_api_token` (or `x.api.token`) for `x-api-token`: the same header to CGI,
            // WSGI and PHP.
            if name.contains(['-', '_'])
                && request
                    .headers
                    .iter()
                    .any(|(n, _)| !n.eq_ignore_ascii_case(name) && spelled_as(n, name))
            {
                return Err(AuthError::TokenSentTwice);
            }
            let values = request.values(name);
            let token = match scheme {
                Some(scheme) => AccessToken::from_values_with_scheme(values, scheme, max_len),
                None => raw_header(values, max_len),
            };
            match token {
                Ok(token) => Ok(Some(Cow::Borrowed(token.as_str()))),
                Err(AuthError::MissingHeader) => Ok(None),
                Err(e) => Err(e),
            }
        }
        TokenSource::Cookie(name) => cookie(request.values("cookie"), name, max_len),
        TokenSource::Query(name) => match request.query() {
            Some(query) => query_parameter(query, name, max_len),
            None => Ok(None),
        },
    }
}

/// A header that holds the raw token. Blank is absent; a comma means Envoy joined two
/// headers.
fn raw_header<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    max_len: usize,
) -> Result<AccessToken<'a>, AuthError> {
    let mut found = None;
    for value in values {
        let text = checked(value, max_len)?.trim_matches([' ', '\t']);
        if text.is_empty() {
            continue;
        }
        if found.is_some() || text.contains([',', ' ', '\t']) {
            return Err(AuthError::TokenSentTwice);
        }
        found = Some(AccessToken(text));
    }
    found.ok_or(AuthError::MissingHeader)
}

fn checked(value: &[u8], max_len: usize) -> Result<&str, AuthError> {
    if value.len() > max_len
        || !value
            .iter()
            .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err(AuthError::BadTokenValue);
    }
    std::str::from_utf8(value).map_err(|_| AuthError::BadTokenValue)
}

/// The pairs of every `cookie` header, as `(name, raw value)`.
///
/// RFC 6265 §4.2.1 separates pairs with `; `. Envoy joins two `cookie` headers with `,`
/// in `CheckRequest.headers` (HTTP/2 clients send one header per cookie) or keeps them
/// apart in `header_map`; a `,` is not a cookie-octet, so it separates pairs too. Pairs
/// without `=` are skipped: they name no cookie.
fn cookie_pairs<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split([';', ',']))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((
                name.trim_matches([' ', '\t']),
                value.trim_matches([' ', '\t']),
            ))
        })
}

fn cookie<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    wanted: &str,
    max_len: usize,
) -> Result<Option<Cow<'a, str>>, AuthError> {
    let mut found = None;
    for (name, value) in cookie_pairs(values) {
        if name != wanted {
            if reads_as(name, wanted) {
                return Err(AuthError::TokenSentTwice);
            }
            continue;
        }
        if found.is_some() {
            return Err(AuthError::TokenSentTwice);
        }
        // cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE )
        let inner = match value.strip_prefix('"') {
            Some(rest) => rest.strip_suffix('"').ok_or(AuthError::BadTokenValue)?,
            None => value,
        };
        let octet =
            |b: u8| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e);
        if inner.len() > max_len || !inner.bytes().all(octet) {
            return Err(AuthError::BadTokenValue);
        }
        found = Some(inner);
    }
    Ok(found.filter(|v| !v.is_empty()).map(Cow::Borrowed))
}

fn query_parameter<'a>(
    query: &'a str,
    wanted: &str,
    max_len: usize,
) -> Result<Option<Cow<'a, str>>, AuthError> {
    let mut found = None;
    for chunk in query.split('&') {
        // What follows a `;` is another parameter to Rack, and none to Envoy's removal.
        if chunk
            .split(';')
            .skip(1)
            .any(|pair| reads_as(pair.split_once('=').map_or(pair, |(n, _)| n), wanted))
        {
            return Err(AuthError::TokenSentTwice);
        }
        let pair = chunk;
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        if !reads_as(raw_name, wanted) {
            continue;
        }
        // An encoded spelling of the name (`access%5Ftoken`) is read the same by most
        // servers but may escape `query_parameters_to_remove`: refused.
        if raw_name != wanted || found.is_some() {
            return Err(AuthError::TokenSentTwice);
        }
        if raw_value.len() > max_len.saturating_mul(3) {
            return Err(AuthError::BadTokenValue);
        }
        let value = crate::percent::decode_utf8(raw_value).ok_or(AuthError::BadTokenValue)?;
        if value.len() > max_len || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::BadTokenValue);
        }
        found = Some(value);
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// Whether a cookie or query parameter sent as `raw` is read as `wanted` by some server:
/// the same name, or the same as [`crate::percent::lenient_names`] reads both (decoded,
/// PHP's `_`, `[]` and NUL rules, Rack's brackets, case ignored).
fn reads_as(raw: &str, wanted: &str) -> bool {
    if raw == wanted {
        return true;
    }
    let [php, rack] = crate::percent::lenient_names(raw);
    let [wanted_php, wanted_rack] = crate::percent::lenient_names(wanted);
    php == wanted_php || rack == wanted_rack
}

/// With `strip_authorization`, whether the token could be removed from every place it may
/// be: refused when a cookie or query parameter is sent under another name some server
/// reads as the token's ([`reads_as`]), which the removal (by exact name) would miss, and,
/// over the HTTP endpoint (`query_removable` false), when a query token parameter is sent
/// at all: no proxy there can rewrite the path. Checked on every route.
pub fn check_removable(
    sources: &[TokenSource],
    request: &Inbound<'_>,
    query_removable: bool,
) -> Result<(), AuthError> {
    for source in sources {
        match source {
            TokenSource::Cookie(wanted) => {
                if cookie_pairs(request.values("cookie"))
                    .any(|(name, _)| name != wanted && reads_as(name, wanted))
                {
                    return Err(AuthError::TokenSentTwice);
                }
            }
            TokenSource::Query(wanted) => {
                for chunk in request.query().into_iter().flat_map(|q| q.split('&')) {
                    // Rack also splits on `;`, where Envoy's removal does not.
                    for (k, pair) in chunk.split(';').enumerate() {
                        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                        if !reads_as(name, wanted) {
                            continue;
                        }
                        if !query_removable {
                            return Err(AuthError::QueryTokenNotRemovable);
                        }
                        if k > 0 || name != wanted {
                            return Err(AuthError::TokenSentTwice);
                        }
                    }
                }
            }
            TokenSource::Header { .. } => {}
        }
    }
    Ok(())
}

/// The `cookie` header without the cookies named in `names`, as one value joined by
/// `; `; `None` when the request has no `cookie` header. An empty string means no cookie
/// is left: remove the header. The value is given even when nothing was removed, so a
/// proxy that copies it upstream (nginx `auth_request_set`) never loses other cookies.
pub fn cookie_without<'a>(
    values: impl Iterator<Item = &'a [u8]> + Clone,
    names: &[&str],
) -> Option<String> {
    values.clone().next()?;
    let kept: Vec<String> = values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split([';', ',']))
        .map(|pair| pair.trim_matches([' ', '\t']))
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !names.contains(&name.trim_matches([' ', '\t']))
        })
        .map(str::to_owned)
        .collect();
    Some(kept.join("; "))
}

#[cfg(test)]
mod tests;
