//! RFC 3986 §2.1 percent-decoding, strict: `%` must be followed by two hex digits, and `+`
//! stays `+`. Query parameters, cookies and the client certificate Envoy forwards are all
//! decoded here, so no two readers can disagree about what a request carries.

use std::borrow::Cow;

/// The bytes `text` encodes; borrowed when it has no escape. `None` for a `%` not followed
/// by two hex digits.
pub fn decode(text: &str) -> Option<Cow<'_, [u8]>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text.as_bytes()));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = hex_value(*bytes.get(i + 1)?)?;
            let low = hex_value(*bytes.get(i + 2)?)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

/// `text` with every byte but RFC 3986's unreserved ones (`A-Z a-z 0-9 - . _ ~`)
/// percent-encoded: how Envoy forwards a client certificate's PEM.
pub fn encode_all(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// [`decode`], when the result is UTF-8.
pub fn decode_utf8(text: &str) -> Option<Cow<'_, str>> {
    match decode(text)? {
        // Borrowed only when there was no escape: the text itself.
        Cow::Borrowed(_) => Some(Cow::Borrowed(text)),
        Cow::Owned(bytes) => String::from_utf8(bytes).ok().map(Cow::Owned),
    }
}

/// A query or cookie name as the most lenient servers read it, lower-cased (ASP.NET Core
/// ignores case): PHP's reading first, Rack's second. Two names that either reads alike
/// have one key in common at the same place.
///
/// - PHP: `urldecode` (`+` a space, a malformed escape left as it is), cut at a NUL,
///   leading spaces dropped, `name[...]` read as `name`, and ` `, `.` and an unclosed `[`
///   read as `_`.
/// - Rack: the same decoding, then `\A[\[\]]*([^\[\]]+)\]*`: brackets around the name
///   dropped (`[access_token]`, `access_token]`).
pub fn lenient_names(raw: &str) -> [Vec<u8>; 2] {
    let bytes = raw.as_bytes();
    let hex = |at: usize| bytes.get(at).and_then(|&b| hex_value(b));
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(high << 4 | low);
                i += 3;
                continue;
            }
            (b'+', ..) => decoded.push(b' '),
            (b, ..) => decoded.push(b),
        }
        i += 1;
    }
    let rack: Vec<u8> = {
        let start = decoded
            .iter()
            .position(|&b| b != b'[' && b != b']')
            .unwrap_or(decoded.len());
        decoded[start..]
            .iter()
            .take_while(|&&b| b != b'[' && b != b']')
            .map(u8::to_ascii_lowercase)
            .collect()
    };
    if let Some(nul) = decoded.iter().position(|&b| b == 0) {
        decoded.truncate(nul);
    }
    let start = decoded
        .iter()
        .position(|&b| b != b' ')
        .unwrap_or(decoded.len());
    let mut name = decoded.split_off(start);
    if let Some(open) = name.iter().position(|&b| b == b'[')
        && name[open..].contains(&b']')
    {
        name.truncate(open);
    }
    let php = name
        .iter()
        .map(|&b| match b {
            b' ' | b'.' | b'[' => b'_',
            b => b.to_ascii_lowercase(),
        })
        .collect();
    [php, rack]
}

/// The value of one hex digit.
pub fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_plain_text_is_borrowed() {
        assert_eq!(decode("a%20b%2Fc%2f").as_deref(), Some(&b"a b/c/"[..]));
        assert!(matches!(
            decode("plain+text"),
            Some(Cow::Borrowed(b"plain+text"))
        ));
        assert_eq!(decode("%00%ff").as_deref(), Some(&[0u8, 0xff][..]));
        assert_eq!(decode_utf8("caf%C3%A9").as_deref(), Some("café"));
    }

    #[test]
    fn malformed_escapes_are_refused() {
        // `%+1` and `%-1` are not escapes, though an integer parser would read them as 1.
        for text in [
            "%", "%2", "a%2", "%zz", "%+1", "%-1", "% 1", "%1 ", "%%41", "%é1",
        ] {
            assert_eq!(decode(text), None, "{text}");
        }
        assert_eq!(decode_utf8("%ff"), None, "not UTF-8");
    }
}
