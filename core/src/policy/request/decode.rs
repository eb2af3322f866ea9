//! A path's bytes read once: each raw byte classed (refused, allowed, worth noting), each
//! escape decoded to its canonical form, and what the path held besides its text.

use std::borrow::Cow;

use icu_normalizer::ComposingNormalizerBorrowed;

use super::{Ambiguity, PathGrammar};
use crate::percent::hex_value;

/// What a path held besides its text: bits of [`decode`]'s answer. A `;`.
pub(super) const SEMICOLON: u8 = 1;
/// `~` or `:`: a Windows short or stream name may follow.
pub(super) const WINDOWS: u8 = 2;
/// An encoded byte >= 0x80.
pub(super) const UTF8: u8 = 4;

/// A path with its escapes in canonical form, and what it held.
pub(super) struct Decoded<'a> {
    pub(super) text: Cow<'a, str>,
    pub(super) seen: u8,
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
pub(super) fn raw_delimiter(v: u8) -> bool {
    matches!(
        v,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
    )
}

/// Escapes kept as they are (upper-cased): visible ASCII the alphabet does not allow raw,
/// other than a separator, `%` or `;`.
pub(super) fn kept_escape(v: u8) -> bool {
    matches!(
        v,
        b'"' | b'#' | b'<' | b'>' | b'?' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}'
    )
}

/// Checks the bytes of `path` against the grammar and writes escapes in canonical form:
/// unreserved characters and raw-allowed delimiters decoded, kept ones upper-cased, the
/// rest refused.
pub(super) fn decode(path: &str, grammar: PathGrammar) -> Result<Decoded<'_>, Ambiguity> {
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
pub(super) fn escape_at(bytes: &[u8], i: usize) -> Result<u8, Ambiguity> {
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
pub(super) fn canonical_utf8(segment: &str) -> bool {
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
pub(super) fn simple_case(c: char) -> bool {
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

/// RFC 3986 §2.3.
pub(super) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}
