//! The one host grammar: a DNS name (its last label not a number), a dotted-quad IPv4
//! address or a bracketed IPv6 address, then an optional port from 1 to 65535 written
//! without a leading zero. Route matching and the DPoP `htu` check both read hosts here.

use std::borrow::Cow;

use super::Ambiguity;

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
