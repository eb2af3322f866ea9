//! The request model: the one place that turns Envoy's `:path` and `:authority` into the
//! path and host the route rules see, or refuses them.
//!
//! A path is accepted only in one canonical form; anything else is refused (403
//! `access_denied`), whatever the route, so a spelling that some server behind the proxy
//! reads as another resource never reaches a rule. The grammar, on the path as sent (cut at
//! the first `?` or `#` by hand, never run through a URL parser that could read `//x` as an
//! authority):
//!
//! ```text
//! path     = "/" segment *( "/" segment )          ; only the last segment may be empty
//! segment  = *( char / escape )                    ; not ending in "." (nor in "." then "+"s)
//! char     = ALPHA / DIGIT / "-" / "." / "_" / "~" / "!" / "$" / "&" / "'" / "(" / ")"
//!          / "*" / "+" / "," / "=" / ":" / "@"     ; ";" only with `path_parameters: strip`
//! escape   = "%" HEXDIG HEXDIG decoding to
//!            an unreserved character but ".", or ! $ & ' ( ) * + , = : @  -> decoded
//!          / " # < > ? [ ] ^ ` { | }              -> kept, hex upper-cased
//!          / with `path_utf8`: bytes >= 0x80 forming shortest-form UTF-8 letters and
//!            digits, each segment already in NFKC, none case-mapping to ASCII -> kept
//! ```
//!
//! Everything else is refused: raw bytes outside `char` (space, controls, `\`, `"`, `<`,
//! non-ASCII...), escapes of controls, whitespace, `%`, `.`, `/`, `\` and `;`, malformed
//! escapes, non-ASCII without `path_utf8`, empty and dot-only segments, trailing dots, `~`
//! then a digit (a Windows 8.3 short name). So
//! `..%20`, `%c0%ae`, `%ef%bc%8e`, `..%3b`, `/admin./x` and `/api/x%20` cannot exist past
//! this module. A trailing slash does not change which rule matches.

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

/// The path grammar in force: what the module documentation describes, with `;`
/// parameters stripped or refused, and UTF-8 segments accepted or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathGrammar {
    pub parameters: PathParameters,
    /// Percent-encoded UTF-8 letters and digits are accepted (`path_utf8`).
    pub utf8: bool,
}

/// Why a request was refused as ambiguous. The reason is logged, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// The path does not start with `/` (`*`, an absolute URI, or nothing).
    NotOriginForm,
    /// A raw byte outside the path alphabet: control, space, non-ASCII, `"`, `<`, `{`...
    RawByte,
    /// A raw backslash, which some servers read as `/`.
    Backslash,
    /// `%2F`, `%5C`, `%3B` or `%00`: an encoded separator or NUL.
    EncodedSeparator,
    /// An encoded control character or whitespace.
    EncodedControl,
    /// `%25`: decoded twice, it is another path.
    DoubleEncoding,
    /// `%2E`: an encoded dot, which servers fold into dot segments.
    EncodedDot,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// An encoded byte >= 0x80 where UTF-8 paths are not accepted.
    NonAscii,
    /// Encoded bytes that are not shortest-form UTF-8 (`%c0%ae`), or a character that is
    /// not a letter or digit, or a segment that NFKC would change (`%ef%bc%8e`).
    NonCanonicalUtf8,
    /// `//`: an empty segment, which servers may merge.
    EmptySegment,
    /// A dot-only segment, or one ending in a dot (`.`, `..`, `...`, `admin.`).
    DotSegment,
    /// `~` then a digit (`PRIVAT~1`, a Windows 8.3 short name) or `:$` (an NTFS stream,
    /// `admin::$INDEX_ALLOCATION`): another name for another segment.
    WindowsName,
    /// A `;` path parameter while they are refused.
    PathParameter,
    /// The path with its escapes decoded selects another rule than the path as sent,
    /// which servers that route before decoding read.
    EscapedReading,
    /// The path matches other rules when compared case-insensitively.
    Case,
    /// A method override (header, `_method` parameter, form body) could select another
    /// rule than the request's method.
    MethodOverride,
    /// The host is not a plain DNS name or IP literal with an optional port.
    Host,
    /// The request names no host (a proxyless gRPC server's Check, gRFC A92) and a rule
    /// is bound to a host: which rules apply cannot be known.
    NoHost,
    /// A POST to an MCP endpoint whose operation cannot be read one way: its headers
    /// missing, repeated or not canonical, or its body disagreeing with them.
    Mcp(super::mcp::McpRefusal),
}

impl Ambiguity {
    /// A short reason for the decision log.
    pub const fn reason(self) -> &'static str {
        match self {
            Ambiguity::NotOriginForm => "path is not origin-form",
            Ambiguity::RawByte => "byte outside the path alphabet",
            Ambiguity::Backslash => "backslash in path",
            Ambiguity::EncodedSeparator => "encoded slash, backslash, semicolon or nul in path",
            Ambiguity::EncodedControl => "encoded control or whitespace in path",
            Ambiguity::DoubleEncoding => "encoded percent sign in path",
            Ambiguity::EncodedDot => "encoded dot in path",
            Ambiguity::BadEscape => "malformed percent-escape in path",
            Ambiguity::NonAscii => "non-ascii path where utf-8 paths are not accepted",
            Ambiguity::NonCanonicalUtf8 => "utf-8 in path is not canonical letters and digits",
            Ambiguity::EmptySegment => "empty path segment",
            Ambiguity::DotSegment => "dot segment or trailing dot in path",
            Ambiguity::WindowsName => "windows short name or stream name in path",
            Ambiguity::PathParameter => "path parameter in path",
            Ambiguity::EscapedReading => "escaped and decoded path select different rules",
            Ambiguity::Case => "path matches other rules case-insensitively",
            Ambiguity::MethodOverride => "method override could select another rule",
            Ambiguity::Host => "host is not a plain name or address",
            Ambiguity::NoHost => "no host, and a rule is bound to one",
            Ambiguity::Mcp(why) => why.reason(),
        }
    }
}

/// [`PathGrammar::normalize`] with ASCII paths only.
pub fn normalize_path(raw: &str, params: PathParameters) -> Result<Cow<'_, str>, Ambiguity> {
    PathGrammar {
        parameters: params,
        utf8: false,
    }
    .normalize(raw)
}

/// Whether a normal path holds an encoded non-ASCII byte (only [`PathGrammar::utf8`]
/// accepts one).
pub fn has_utf8(normal: &str) -> bool {
    normal.contains('%')
        && normal
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'%' && matches!(w[1], b'8'..=b'9' | b'A'..=b'F'))
}

impl PathGrammar {
    /// The path the rules see: `raw` without query or fragment, in canonical form, without
    /// a trailing slash (except `/` itself), `;` parameters stripped when the grammar says
    /// so. Borrows `raw` when nothing needed rewriting.
    pub fn normalize(self, raw: &str) -> Result<Cow<'_, str>, Ambiguity> {
        let end = raw.find(['?', '#']).unwrap_or(raw.len());
        // A raw `#` is never sent by a client, and servers that take the target whole
        // (Go's `ParseRequestURI`) read what follows it as path or query.
        if raw.as_bytes()[end..].contains(&b'#') {
            return Err(Ambiguity::RawByte);
        }
        let path = &raw[..end];
        if !path.starts_with('/') {
            return Err(Ambiguity::NotOriginForm);
        }
        let Decoded {
            text: decoded,
            seen,
        } = decode(path, self)?;
        if seen & SEMICOLON != 0 && self.parameters == PathParameters::Reject {
            return Err(Ambiguity::PathParameter);
        }
        let body = &decoded[1..];
        let mut strip = false;
        let mut segments = body.split('/').peekable();
        while let Some(segment) = segments.next() {
            let kept = match segment.find(';').filter(|_| seen & SEMICOLON != 0) {
                None => segment,
                Some(at) => {
                    strip = true;
                    &segment[..at]
                }
            };
            if kept.is_empty() {
                if segments.peek().is_some() || segment.len() != kept.len() {
                    return Err(Ambiguity::EmptySegment);
                }
                continue;
            }
            // `..`, `...`, `admin.`: dot segments, and what Windows servers read without
            // their trailing dots; `+` is a space to some decoders, which they trim.
            if kept.ends_with('.') || kept.trim_matches('+').ends_with('.') {
                return Err(Ambiguity::DotSegment);
            }
            if seen & UTF8 != 0 && has_utf8(kept) && !canonical_utf8(kept) {
                return Err(Ambiguity::NonCanonicalUtf8);
            }
            // `PRIVAT~1`: Windows servers read 8.3 short names as the long name, and
            // `admin::$INDEX_ALLOCATION` or `admin:$I30:...` as the directory `admin`.
            if seen & WINDOWS != 0
                && kept.as_bytes().windows(2).any(|w| {
                    (w[0] == b'~' && w[1].is_ascii_digit()) || (w[0] == b':' && w[1] == b'$')
                })
            {
                return Err(Ambiguity::WindowsName);
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
}

impl PathGrammar {
    /// The path as a server that routes before decoding reads it (Express, Rails): every
    /// escape kept, upper-cased, for a `raw` that [`PathGrammar::normalize`] accepted.
    /// `None` when no escape was decoded there, so both readings are one.
    pub fn escaped_reading(self, raw: &str) -> Option<String> {
        let end = raw.find('?').unwrap_or(raw.len());
        let path = &raw[..end];
        let bytes = path.as_bytes();
        let decodes =
            |at: usize| escape_at(bytes, at).is_ok_and(|v| is_unreserved(v) || raw_delimiter(v));
        if !(0..bytes.len()).any(|i| bytes[i] == b'%' && decodes(i)) {
            return None;
        }
        let mut text = String::with_capacity(path.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                text.push('%');
                text.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                text.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                i += 3;
            } else {
                text.push(char::from(bytes[i]));
                i += 1;
            }
        }
        if self.parameters == PathParameters::Strip && text.contains(';') {
            text = text
                .split('/')
                .map(|segment| segment.split(';').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("/");
        }
        Some(trim_trailing_slash(Cow::Owned(text)).into_owned())
    }

    /// One segment (no `/`) in normal form; an empty one stays empty.
    pub fn normalize_segment(self, segment: &str) -> Result<String, Ambiguity> {
        if segment.is_empty() {
            return Ok(String::new());
        }
        if segment.contains(['/', '?', '#']) {
            return Err(Ambiguity::RawByte);
        }
        let path = format!("/{segment}");
        self.normalize(&path).map(|normal| normal[1..].to_owned())
    }
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

/// The decoded text of a normal path, for comparing case-insensitively beyond ASCII.
pub(super) fn decoded_text(normal: &str) -> Option<String> {
    let bytes = crate::percent::decode(normal)?;
    String::from_utf8(bytes.into_owned()).ok()
}

mod authority;
mod decode;

pub use authority::{Authority, normalize_host};
use decode::*;

#[cfg(test)]
mod tests;
