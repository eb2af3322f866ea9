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

use icu_normalizer::ComposingNormalizerBorrowed;

use crate::percent::hex_value;

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

/// What a path held besides its text: bits of [`decode`]'s answer. A `;`.
const SEMICOLON: u8 = 1;
/// `~` or `:`: a Windows short or stream name may follow.
const WINDOWS: u8 = 2;
/// An encoded byte >= 0x80.
const UTF8: u8 = 4;

/// A path with its escapes in canonical form, and what it held.
struct Decoded<'a> {
    text: Cow<'a, str>,
    seen: u8,
}

/// How a raw byte of a path is read: refused, allowed, or allowed and worth noting.
const RAW_REFUSED: u8 = 0;
const RAW_ALLOWED: u8 = 1;
const RAW_PERCENT: u8 = 2;
const RAW_BACKSLASH: u8 = 3;
const RAW_SEMICOLON: u8 = 4;
const RAW_WINDOWS: u8 = 5;

/// The class of every byte, worked out at compile time: one lookup per byte.
static RAW_CLASS: [u8; 256] = {
    let mut class = [RAW_REFUSED; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        class[b] = if c.is_ascii_alphanumeric() {
            RAW_ALLOWED
        } else {
            match c {
                b'-' | b'.' | b'_' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
                | b',' | b'=' | b'@' | b'/' => RAW_ALLOWED,
                b'~' | b':' => RAW_WINDOWS,
                b'%' => RAW_PERCENT,
                b'\\' => RAW_BACKSLASH,
                b';' => RAW_SEMICOLON,
                _ => RAW_REFUSED,
            }
        };
        b += 1;
    }
    class
};

/// Delimiters the alphabet allows raw (`;` and `/` aside): their escapes are decoded.
fn raw_delimiter(v: u8) -> bool {
    matches!(
        v,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
    )
}

/// Escapes kept as they are (upper-cased): visible ASCII the alphabet does not allow raw,
/// other than a separator, `%` or `;`.
fn kept_escape(v: u8) -> bool {
    matches!(
        v,
        b'"' | b'#' | b'<' | b'>' | b'?' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}'
    )
}

/// Checks the bytes of `path` against the grammar and writes escapes in canonical form:
/// unreserved characters and raw-allowed delimiters decoded, kept ones upper-cased, the
/// rest refused.
fn decode(path: &str, grammar: PathGrammar) -> Result<Decoded<'_>, Ambiguity> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out: Option<String> = None;
    let mut seen = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match RAW_CLASS[usize::from(b)] {
            RAW_PERCENT => {}
            RAW_REFUSED => return Err(Ambiguity::RawByte),
            RAW_BACKSLASH => return Err(Ambiguity::Backslash),
            class => {
                if class == RAW_SEMICOLON {
                    seen |= SEMICOLON;
                } else if class == RAW_WINDOWS {
                    seen |= WINDOWS;
                }
                if let Some(text) = &mut out {
                    text.push(char::from(b));
                }
                i += 1;
                continue;
            }
        }
        let value = escape_at(bytes, i)?;
        let text = out.get_or_insert_with(|| path[..i].to_owned());
        match value {
            b'/' | b'\\' | b';' | 0 => return Err(Ambiguity::EncodedSeparator),
            0x01..=0x20 | 0x7f => return Err(Ambiguity::EncodedControl),
            b'%' => return Err(Ambiguity::DoubleEncoding),
            b'.' => return Err(Ambiguity::EncodedDot),
            // Unreserved characters, and the delimiters the alphabet allows raw: servers
            // decode `%24batch` to `$batch` before routing, so both are one path.
            v if is_unreserved(v) || raw_delimiter(v) => {
                if v == b'~' || v == b':' {
                    seen |= WINDOWS;
                }
                text.push(char::from(v));
            }
            v if kept_escape(v) => {
                text.push('%');
                text.push(char::from(HEX[usize::from(v >> 4)]));
                text.push(char::from(HEX[usize::from(v & 0xf)]));
            }
            _ if !grammar.utf8 => return Err(Ambiguity::NonAscii),
            _ => {
                seen |= UTF8;
                // A run of encoded bytes >= 0x80 is whole characters, or refused: Rust's
                // UTF-8 check refuses overlong forms, surrogates and truncated sequences.
                let mut run = Vec::new();
                let mut j = i;
                while j < bytes.len() && bytes[j] == b'%' {
                    let v = escape_at(bytes, j)?;
                    if v < 0x80 {
                        break;
                    }
                    run.push(v);
                    j += 3;
                }
                let text_run =
                    std::str::from_utf8(&run).map_err(|_| Ambiguity::NonCanonicalUtf8)?;
                if !text_run.chars().all(char::is_alphanumeric) {
                    return Err(Ambiguity::NonCanonicalUtf8);
                }
                for v in run {
                    text.push('%');
                    text.push(char::from(HEX[usize::from(v >> 4)]));
                    text.push(char::from(HEX[usize::from(v & 0xf)]));
                }
                i = j;
                continue;
            }
        }
        i += 3;
    }
    Ok(Decoded {
        text: out.map_or(Cow::Borrowed(path), Cow::Owned),
        seen,
    })
}

/// The byte the escape at `bytes[i]` (a `%`) encodes.
fn escape_at(bytes: &[u8], i: usize) -> Result<u8, Ambiguity> {
    let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
        return Err(Ambiguity::BadEscape);
    };
    match (hex_value(hi), hex_value(lo)) {
        (Some(h), Some(l)) => Ok(h << 4 | l),
        _ => Err(Ambiguity::BadEscape),
    }
}

/// Whether a segment in normal form that holds encoded UTF-8 is unchanged by NFKC, so
/// that no server normalising Unicode reads it as another segment (fullwidth letters,
/// ligatures, the Kelvin sign, decomposed accents), and has no letter whose case mapping
/// is ASCII (`İ` lower-cases to `i`, `ı` and `ſ` upper-case to `I` and `S`: a server
/// ignoring case reads `/adm%C4%B1n` as `/admin`).
fn canonical_utf8(segment: &str) -> bool {
    let Some(bytes) = crate::percent::decode(segment) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return false;
    };
    ComposingNormalizerBorrowed::new_nfkc().is_normalized(text)
        && text.chars().all(|c| c.is_ascii() || simple_case(c))
}

/// Whether `c` has one simple case pair that every server agrees on: its upper and lower
/// case are one character each, of its own UTF-8 length, mapping back to each other, and
/// neither is ASCII. So `İ` (lower-cases to `i` and a dot), `ı` and `ſ` (upper-case to ASCII),
/// `ς` (upper-cases to `Σ`, whose lower case is `σ`) and `Ⱥ` (its lower case is longer) are
/// refused: servers ignoring case disagree on them.
fn simple_case(c: char) -> bool {
    let one = |mut it: std::iter::Peekable<std::vec::IntoIter<char>>| {
        let first = it.next();
        first.filter(|_| it.peek().is_none())
    };
    let lower = one(c.to_lowercase().collect::<Vec<_>>().into_iter().peekable());
    let upper = one(c.to_uppercase().collect::<Vec<_>>().into_iter().peekable());
    match (lower, upper) {
        (Some(l), Some(u)) => {
            l.len_utf8() == c.len_utf8()
                && u.len_utf8() == c.len_utf8()
                && !l.is_ascii()
                && !u.is_ascii()
                && u.to_lowercase().eq([l])
                && l.to_uppercase().eq([u])
        }
        _ => false,
    }
}

/// The decoded text of a normal path, for comparing case-insensitively beyond ASCII.
pub(super) fn decoded_text(normal: &str) -> Option<String> {
    let bytes = crate::percent::decode(normal)?;
    String::from_utf8(bytes.into_owned()).ok()
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The request's authority, read by the one grammar every check that names the request's
/// origin uses: route host matching and the DPoP `htu` comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority<'a> {
    /// Lower case, without one trailing dot; an IPv6 literal keeps its brackets. Empty when
    /// the request named no host.
    pub host: Cow<'a, str>,
    /// The port, when the authority names one.
    pub port: Option<u16>,
}

impl<'a> Authority<'a> {
    /// Reads `raw` (`:authority` or `Host`): a DNS name of letters, digits, `-` and `_`
    /// labels, a dotted-quad IPv4 address, or a bracketed IPv6 address, then an optional
    /// `:port` (1 to 65535, no leading zero). Anything else (userinfo, a path, `?`, `#`,
    /// a name ending in a numeric label that is not a dotted quad, which URL parsers read
    /// as an IPv4 address in another spelling) is refused.
    pub fn parse(raw: &'a str) -> Result<Authority<'a>, Ambiguity> {
        let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
            let close = rest.find(']').ok_or(Ambiguity::Host)?;
            let literal = &raw[..close + 2];
            rest[..close]
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| Ambiguity::Host)?;
            (literal, parse_port(&rest[close + 1..])?)
        } else {
            let (name, port) = match raw.find(':') {
                Some(i) => (&raw[..i], parse_port(&raw[i..])?),
                None => (raw, None),
            };
            let name = name.strip_suffix('.').unwrap_or(name);
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if !name.is_empty() && !name.split('.').all(label_ok) {
                return Err(Ambiguity::Host);
            }
            // WHATWG URL parsers read a name whose last label is a number (decimal, or
            // `0x` hex) as an IPv4 address: only the dotted-quad spelling is that one
            // reading.
            let last = name.rsplit('.').next().unwrap_or("");
            let numeric = !last.is_empty()
                && (last.bytes().all(|b| b.is_ascii_digit())
                    || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")));
            if numeric && !is_dotted_quad(name) {
                return Err(Ambiguity::Host);
            }
            (name, port)
        };
        let host = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        Ok(Authority { host, port })
    }
}

/// Four decimal octets, none with a leading zero.
fn is_dotted_quad(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            (1..=3).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u8>().is_ok()
        })
}

/// The host the rules see: [`Authority::parse`]'s host.
pub fn normalize_host(raw: &str) -> Result<Cow<'_, str>, Ambiguity> {
    Authority::parse(raw).map(|a| a.host)
}

/// An empty port, or `:` and a number from 1 to 65535 without a leading zero.
fn parse_port(port: &str) -> Result<Option<u16>, Ambiguity> {
    if port.is_empty() {
        return Ok(None);
    }
    let digits = port.strip_prefix(':').ok_or(Ambiguity::Host)?;
    if digits.is_empty()
        || digits.len() > 5
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Ambiguity::Host);
    }
    digits.parse::<u16>().map(Some).map_err(|_| Ambiguity::Host)
}

#[cfg(test)]
mod tests;
