//! A token's claims: the JSON object type, its strict parsing, dot-path lookup and
//! NumericDate reading. Policy, upstream headers and verification all read claims through
//! here, so a claim path or a date means the same thing everywhere.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The payload of a token (or a JOSE header): a JSON object.
pub type Claims = Map<String, Value>;

/// Parses a JSON object that has no duplicate top-level names.
///
/// RFC 7515 §4 and RFC 7519 §4 let a parser either reject duplicates or keep the last; two
/// parsers picking differently (an upstream reading the forwarded payload, say) would
/// disagree on what the token says, so reject.
pub fn parse_object(json: &[u8]) -> Option<Claims> {
    serde_json::from_slice::<StrictObject>(json)
        .ok()
        .map(|o| o.0)
}

/// Looks a claim up by exact name first, then as a dot path into nested objects
/// (`org.id`). The exact name wins because Auth0's namespaced claims contain dots.
pub fn claim<'c>(claims: &'c Claims, path: &str) -> Option<&'c Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// A NumericDate as issuers write it: whole seconds, from 0 to 2^53.
///
/// RFC 7519 allows fractions, but no mainstream issuer emits them, and refusing them, like
/// numbers past 2^53, leaves no two readings of when a token expires.
pub fn numeric_date(value: &Value) -> Option<u64> {
    const MAX: u64 = 1 << 53;
    value.as_u64().filter(|&n| n <= MAX)
}

struct StrictObject(Claims);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Claims;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Claims, A::Error> {
                let mut claims = Claims::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if claims.insert(name, value).is_some() {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                }
                Ok(claims)
            }
        }
        deserializer.deserialize_map(Visitor).map(StrictObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_claims_are_refused() {
        let parse = |s: &str| parse_object(s.as_bytes());
        assert!(parse(r#"{"sub":"a","sub":"b"}"#).is_none());
        assert!(parse(r#"[1,2]"#).is_none());
        assert!(parse(r#""text""#).is_none());
        assert_eq!(parse(r#"{"sub":"a","n":{"x":1}}"#).unwrap().len(), 2);
    }

    #[test]
    fn exact_names_win_over_dot_paths() {
        let c =
            json!({"org": {"id": 7}, "https://x.example/roles": ["a"], "a.b": 1, "a": {"b": 2}});
        let c = c.as_object().unwrap();
        assert_eq!(claim(c, "org.id"), Some(&json!(7)));
        assert_eq!(claim(c, "https://x.example/roles"), Some(&json!(["a"])));
        assert_eq!(claim(c, "a.b"), Some(&json!(1)));
        assert_eq!(claim(c, "org.id.x"), None);
        assert_eq!(claim(c, "missing"), None);
    }

    #[test]
    fn numeric_dates_are_whole_seconds_up_to_2_pow_53() {
        assert_eq!(numeric_date(&json!(1_800_000_000)), Some(1_800_000_000));
        assert_eq!(numeric_date(&json!(1u64 << 53)), Some(1 << 53));
        for bad in [
            json!((1u64 << 53) + 1),
            json!(1.5),
            json!(-5),
            json!("1"),
            json!(1e300),
        ] {
            assert_eq!(numeric_date(&bad), None, "{bad}");
        }
    }
}
