//! `token_sources`: where the access token may be, parsed into [`TokenSource`]s. Each
//! problem names its entry and key (`token_sources[1].cookie`).

use super::Errors;
use super::file::FileTokenSource;
use crate::token_source::TokenSource;

/// The sources, in order; the default `[{ header: authorization, scheme: Bearer }]` when
/// the file has none.
pub(super) fn parse_token_sources(
    e: &mut Errors,
    file: Option<Vec<FileTokenSource>>,
) -> Vec<TokenSource> {
    let Some(entries) = file else {
        return vec![TokenSource::authorization()];
    };
    if entries.is_empty() {
        e.push("token_sources", "list at least one source");
    }
    let mut sources = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let field = |name: &str| format!("token_sources[{i}].{name}");
        let given = [&entry.header, &entry.cookie, &entry.query]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given != 1 {
            e.push(
                &format!("token_sources[{i}]"),
                "give exactly one of `header`, `cookie` or `query`",
            );
            continue;
        }
        if entry.scheme.is_some() && entry.header.is_none() {
            e.push(&field("scheme"), "only a `header` source has a scheme");
            continue;
        }
        let source = if let Some(name) = &entry.header {
            let name = e.check(&field("header"), header_name(name));
            let scheme = match &entry.scheme {
                Some(s) => e.check(&field("scheme"), scheme(s)).map(Some),
                None => Some(None),
            };
            match (name, scheme) {
                (Some(name), Some(scheme)) => TokenSource::Header { name, scheme },
                _ => continue,
            }
        } else if let Some(name) = &entry.cookie {
            match e.check(&field("cookie"), cookie_name(name)) {
                Some(name) => TokenSource::Cookie(name),
                None => continue,
            }
        } else if let Some(name) = &entry.query {
            match e.check(&field("query"), query_name(name)) {
                Some(name) => TokenSource::Query(name),
                None => continue,
            }
        } else {
            continue;
        };
        if sources.contains(&source) {
            e.push(&format!("token_sources[{i}]"), "is listed twice");
            continue;
        }
        sources.push(source);
    }
    sources
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

fn header_name(value: &str) -> Result<String, String> {
    let name = value.trim().to_ascii_lowercase();
    if !is_token(&name) {
        return Err(format!("`{value}` is not a valid header name"));
    }
    const RESERVED: [&str; 9] = [
        "host",
        "cookie",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "keep-alive",
        "x-forwarded-uri",
    ];
    if RESERVED.contains(&name.as_str()) {
        return Err(format!(
            "`{value}` cannot carry a token (use `cookie:` for cookies)"
        ));
    }
    Ok(name)
}

fn scheme(value: &str) -> Result<String, String> {
    let scheme = value.trim();
    if !is_token(scheme) {
        return Err(format!(
            "`{value}` is not an authentication scheme such as Bearer"
        ));
    }
    Ok(scheme.to_owned())
}

/// RFC 6265 §4.1.1: a cookie name is an RFC 2616 token.
fn cookie_name(value: &str) -> Result<String, String> {
    if !is_token(value) {
        return Err(format!("`{value}` is not a valid cookie name"));
    }
    Ok(value.to_owned())
}

/// Unreserved characters only (RFC 3986 §2.3), so the name has a single spelling.
fn query_name(value: &str) -> Result<String, String> {
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if value.is_empty() || !value.chars().all(unreserved) {
        return Err(format!(
            "`{value}` is not a query parameter name of letters, digits, `-`, `.`, `_` or `~`"
        ));
    }
    Ok(value.to_owned())
}
