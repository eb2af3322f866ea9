//! Parsers for single configuration values: durations, algorithm lists, fetch URLs and
//! header names. Each error names the bad value; the caller prefixes the option name.

use std::time::Duration;

use jsonwebtoken::Algorithm;

/// Parses `500ms`, `60s`, `10m`, `1h`, or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{value}` is not a duration like 60s, 10m or 500ms"))?;
    let duration = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{value}` (use ms, s, m or h)"
            ));
        }
    };
    Ok(duration)
}

/// A size: a whole number of bytes, or one followed by `KiB`, `MiB` or `GiB`; at least 1.
pub fn parse_bytes(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "`{value}` is not a size like 64MiB, 512KiB or 1048576"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{value}` is not a size like 64MiB, 512KiB or 1048576"))
}

/// Parses an algorithm allow-list. Symmetric and unsigned algorithms are refused whatever
/// the configuration says: a public JWKS cannot hold an HMAC secret, and `none` is unsigned.
pub fn parse_algorithms<S: AsRef<str>>(names: &[S]) -> Result<Vec<Algorithm>, String> {
    let mut out = Vec::new();
    for name in names {
        let name = name.as_ref().trim();
        if name.is_empty() {
            continue;
        }
        let alg = match crate::alg::asymmetric_algorithm(name) {
            Some(alg) => alg,
            None if name.eq_ignore_ascii_case("none")
                || name.to_ascii_uppercase().starts_with("HS") =>
            {
                return Err(format!(
                    "`{name}` is never allowed: only asymmetric algorithms verify against a public JWKS"
                ));
            }
            None => {
                return Err(format!(
                    "unknown algorithm `{name}` ({})",
                    crate::alg::names()
                ));
            }
        };
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        return Err("at least one algorithm is required".into());
    }
    Ok(out)
}

/// Checks a URL the service will fetch from: the rule lives in [`crate::fetch_url`], where
/// the JWKS cache applies it to discovered and redirected URLs too.
pub use crate::fetch_url::parse_fetch_url;

/// Checks a header name the service will set on the upstream request and returns it in
/// lower case. Pseudo-headers, `host` and hop-by-hop names are refused, in any spelling
/// with `_` for `-` (the service also removes those spellings): Envoy ignores or rejects
/// mutations of them.
pub fn parse_header_name(value: &str) -> Result<String, String> {
    let name = value.trim().to_ascii_lowercase();
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token_char) {
        return Err(format!("`{value}` is not a valid header name"));
    }
    const RESERVED: [&str; 8] = [
        "host",
        "authorization",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "keep-alive",
    ];
    if RESERVED.contains(&name.replace('_', "-").as_str()) {
        return Err(format!("`{value}` cannot carry a claim"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn none_algorithm_is_refused_in_any_casing() {
        assert!(parse_algorithms(&["NoNe"]).is_err());
        assert!(parse_algorithms(&["hs512"]).is_err());
        assert!(parse_algorithms::<&str>(&[]).is_err());
        assert_eq!(
            parse_algorithms(&["ES256", "EdDSA", "ES256"]).unwrap(),
            vec![Algorithm::ES256, Algorithm::EdDSA]
        );
    }

    #[test]
    fn header_names_are_checked() {
        assert_eq!(parse_header_name("X-JWT-Sub"), Ok("x-jwt-sub".into()));
        assert!(parse_header_name(":path").is_err());
        assert!(parse_header_name("Host").is_err());
        assert!(parse_header_name("bad header").is_err());
        assert!(parse_header_name("").is_err());
    }
}
