//! The request model: the one place that turns Envoy's `:path` and `:authority` into the
//! path and host the route rules see, or refuses them as ambiguous.
//!
//! An ambiguous request is one that servers behind the proxy could resolve to a different
//! resource than the one the rules matched: dot segments in any spelling, encoded
//! separators, empty segments, `;` path parameters, control or non-ASCII bytes. Such a
//! request is refused (403 `access_denied`), never guessed at. What every reader agrees on
//! is normalised instead (RFC 3986 §6.2.2): percent-encoded unreserved characters are
//! decoded (`%61` is `a`), other escapes are upper-cased, and a trailing slash does not
//! change which rule matches. The path is cut at the first `?` or `#` by hand: it is never
//! run through a URL parser, which could read `//x` as an authority.

use std::borrow::Cow;

/// How `;` path parameters (`/a;jsessionid=1/b`) are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParameters {
    /// Refuse any path with a `;` in it: servers disagree on what it means.
    #[default]
    Reject,
    /// Drop `;...` from each segment before matching, as Tomcat, Jetty and Spring do.
    Strip,
}

/// Why a request was refused as ambiguous. The reason is logged, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// The path does not start with `/` (`*`, an absolute URI, or nothing).
    NotOriginForm,
    /// A raw control, space or non-ASCII byte.
    RawByte,
    /// A raw backslash, which some servers read as `/`.
    Backslash,
    /// `%2F`, `%5C` or `%00`: an encoded separator or NUL.
    EncodedSeparator,
    /// An encoded control character.
    EncodedControl,
    /// `%25` followed by two hex digits: decoded twice, it is another path.
    DoubleEncoding,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `//`: an empty segment, which servers may merge.
    EmptySegment,
    /// A `.` or `..` segment, in any spelling (`%2e`, `.;x`).
    DotSegment,
    /// A `;` path parameter while they are refused.
    PathParameter,
    /// The path matches other rules when compared case-insensitively.
    Case,
    /// A method-override header names a method that selects another rule.
    MethodOverride,
    /// The host is not a plain DNS name or IP literal with an optional port.
    Host,
}

impl Ambiguity {
    /// A short reason for the decision log.
    pub const fn reason(self) -> &'static str {
        match self {
            Ambiguity::NotOriginForm => "path is not origin-form",
            Ambiguity::RawByte => "control, space or non-ascii byte in path",
            Ambiguity::Backslash => "backslash in path",
            Ambiguity::EncodedSeparator => "encoded slash, backslash or nul in path",
            Ambiguity::EncodedControl => "encoded control character in path",
            Ambiguity::DoubleEncoding => "double percent-encoding in path",
            Ambiguity::BadEscape => "malformed percent-escape in path",
            Ambiguity::EmptySegment => "empty path segment",
            Ambiguity::DotSegment => "dot segment in path",
            Ambiguity::PathParameter => "path parameter in path",
            Ambiguity::Case => "path matches other rules case-insensitively",
            Ambiguity::MethodOverride => "method override selects another rule",
            Ambiguity::Host => "host is not a plain name or address",
        }
    }
}

/// The path the rules see: `raw` without query or fragment, percent-normalised, without
/// a trailing slash (except `/` itself), `;` parameters stripped when `params` says so.
/// Borrows `raw` when nothing needed rewriting.
pub fn normalize_path(raw: &str, params: PathParameters) -> Result<Cow<'_, str>, Ambiguity> {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = &raw[..end];
    if !path.starts_with('/') {
        return Err(Ambiguity::NotOriginForm);
    }
    let decoded = decode(path)?;
    let body = &decoded[1..];
    let count = body.split('/').count();
    let mut strip = false;
    for (i, segment) in body.split('/').enumerate() {
        let kept = match (segment.find(';'), params) {
            (None, _) => segment,
            (Some(_), PathParameters::Reject) => return Err(Ambiguity::PathParameter),
            (Some(at), PathParameters::Strip) => {
                strip = true;
                &segment[..at]
            }
        };
        if kept == "." || kept == ".." {
            return Err(Ambiguity::DotSegment);
        }
        if kept.is_empty() && i + 1 != count {
            return Err(Ambiguity::EmptySegment);
        }
    }
    let normal = if strip {
        let mut text = String::with_capacity(decoded.len());
        for segment in body.split('/') {
            text.push('/');
            text.push_str(segment.split(';').next().unwrap_or(""));
        }
        Cow::Owned(text)
    } else {
        decoded
    };
    Ok(trim_trailing_slash(normal))
}

fn trim_trailing_slash(path: Cow<'_, str>) -> Cow<'_, str> {
    if path.len() <= 1 || !path.ends_with('/') {
        return path;
    }
    match path {
        Cow::Borrowed(p) => Cow::Borrowed(&p[..p.len() - 1]),
        Cow::Owned(mut p) => {
            p.pop();
            Cow::Owned(p)
        }
    }
}

/// Checks raw bytes and normalises percent-escapes: unreserved characters decoded, other
/// escapes upper-cased, separators and controls refused.
fn decode(path: &str) -> Result<Cow<'_, str>, Ambiguity> {
    let bytes = path.as_bytes();
    let mut out: Option<String> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(Ambiguity::BadEscape);
                };
                let (Some(h), Some(l)) = (hex(hi), hex(lo)) else {
                    return Err(Ambiguity::BadEscape);
                };
                let value = h << 4 | l;
                let text = out.get_or_insert_with(|| path[..i].to_owned());
                match value {
                    b'/' | b'\\' | 0 => return Err(Ambiguity::EncodedSeparator),
                    0x01..=0x1f | 0x7f => return Err(Ambiguity::EncodedControl),
                    v if is_unreserved(v) => text.push(char::from(v)),
                    v => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        text.push('%');
                        text.push(char::from(HEX[usize::from(v >> 4)]));
                        text.push(char::from(HEX[usize::from(v & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(Ambiguity::Backslash),
            0..=0x20 | 0x7f.. => return Err(Ambiguity::RawByte),
            _ => {
                if let Some(text) = &mut out {
                    text.push(char::from(b));
                }
                i += 1;
            }
        }
    }
    let normal = out.map_or(Cow::Borrowed(path), Cow::Owned);
    // Checked on the result, so that `%25%61a` (decoding to `%25aa`) is caught as well.
    let double = normal
        .as_bytes()
        .windows(5)
        .any(|w| w[..3].eq_ignore_ascii_case(b"%25") && hex(w[3]).is_some() && hex(w[4]).is_some());
    if double {
        return Err(Ambiguity::DoubleEncoding);
    }
    Ok(normal)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The host the rules see: lower case, without port and without one trailing dot. Empty
/// stays empty (it matches only rules without a host).
pub fn normalize_host(raw: &str) -> Result<Cow<'_, str>, Ambiguity> {
    let name = if let Some(rest) = raw.strip_prefix('[') {
        // An IPv6 literal: `[...]` then an optional port.
        let close = rest.find(']').ok_or(Ambiguity::Host)?;
        let (literal, port) = (&raw[..close + 2], &rest[close + 1..]);
        if !literal[1..literal.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(Ambiguity::Host);
        }
        check_port(port)?;
        literal
    } else {
        let (name, port) = match raw.find(':') {
            Some(i) => (&raw[..i], &raw[i..]),
            None => (raw, ""),
        };
        check_port(port)?;
        let name = name.strip_suffix('.').unwrap_or(name);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name.is_empty() && !name.split('.').all(label_ok) {
            return Err(Ambiguity::Host);
        }
        name
    };
    Ok(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

/// An empty port, or `:` and 1 to 5 digits.
fn check_port(port: &str) -> Result<(), Ambiguity> {
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(()),
        Some(digits)
            if (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(())
        }
        _ => Err(Ambiguity::Host),
    }
}

#[cfg(test)]
mod tests;
