//! A token's claims: the compact JWS they come in, the JSON object type, its strict
//! parsing, dot-path lookup and NumericDate reading. Policy, upstream headers,
//! verification and DPoP proofs all read claims through here, so a claim path or a date
//! means the same thing everywhere.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The payload of a token (or a JOSE header): a JSON object.
pub type Claims = Map<String, Value>;

/// The header, payload and signature segments of a compact JWS (RFC 7515 §7.1): exactly
/// three, separated by `.`. Tokens and DPoP proofs are split here alike.
pub fn compact_segments(jws: &str) -> Option<(&str, &str, &str)> {
    let mut segments = jws.split('.');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(header), Some(payload), Some(signature), None) => Some((header, payload, signature)),
        _ => None,
    }
}

/// Parses a JSON object that has no duplicate names, at the top level or in any nested
/// object.
///
/// RFC 7515 §4 and RFC 7519 §4 let a parser either reject duplicates or keep the last; two
/// parsers picking differently (an upstream reading the forwarded payload, or a claim
/// condition on `org.id`, say) would disagree on what the token says, so reject.
pub fn parse_object(json: &[u8]) -> Option<Claims> {
    serde_json::from_slice::<StrictObject>(json)
        .ok()
        .map(|o| o.0)
}

/// Why a token payload is not a claims object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectError {
    /// Not a JSON object, or one with a repeated member, or nested too deep.
    Malformed,
    /// Valid JSON (RFC 8259 puts no bound on a number's digits), but a number in it lies
    /// beyond what a double holds, like a 400-digit `exp`: the claims are out of range,
    /// the token's shape is fine.
    NumberOutOfRange,
}

/// [`parse_object`], saying why it failed.
pub fn parse_claims(json: &[u8]) -> Result<Claims, ObjectError> {
    serde_json::from_slice::<StrictObject>(json)
        .map(|o| o.0)
        .map_err(|e| {
            // serde_json has no public error code for it; its message is fixed, and a test
            // below pins it. Should it ever change, the token is still refused.
            let out_of_range = e.classify() == serde_json::error::Category::Syntax
                && e.to_string().starts_with("number out of range");
            if out_of_range {
                ObjectError::NumberOutOfRange
            } else {
                ObjectError::Malformed
            }
        })
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

/// A JSON value whose objects, at any depth, have no duplicate names.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(StrictVisitor)
            .and_then(|v| match v {
                Value::Object(map) => Ok(StrictObject(map)),
                _ => Err(serde::de::Error::custom("not an object")),
            })
    }
}

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// Builds a `Value` like serde_json's own visitor, refusing a repeated object member.
struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Claims::new();
        while let Some(name) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if members.insert(name, value).is_some() {
                return Err(serde::de::Error::custom("duplicate member"));
            }
        }
        Ok(Value::Object(members))
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
    fn numbers_beyond_a_double_are_out_of_range_not_malformed() {
        let huge = format!(r#"{{"sub":"a","exp":{}}}"#, "9".repeat(400));
        assert_eq!(
            parse_claims(huge.as_bytes()),
            Err(ObjectError::NumberOutOfRange)
        );
        assert_eq!(
            parse_claims(br#"{"exp":1e400}"#),
            Err(ObjectError::NumberOutOfRange)
        );
        // Within a double's range: parsed, and `numeric_date` refuses it later.
        let big = parse_claims(format!(r#"{{"exp":{}}}"#, "9".repeat(300)).as_bytes()).unwrap();
        assert_eq!(numeric_date(&big["exp"]), None);
        for malformed in [
            r#"{"exp":1,"exp":2}"#,
            r#"{"exp":01}"#,
            r#"{"exp":}"#,
            "[1]",
            &format!("{}1{}", r#"{"a":["#.repeat(200), "]}".repeat(200)),
        ] {
            assert_eq!(
                parse_claims(malformed.as_bytes()),
                Err(ObjectError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        let parse = |s: &str| parse_object(s.as_bytes());
        assert!(parse(r#"{"org":{"id":"acme","id":"evil"}}"#).is_none());
        assert!(parse(r#"{"a":[{"x":1,"x":2}]}"#).is_none());
        assert!(parse(r#"{"a":{"b":{"c":{"d":1,"d":1}}}}"#).is_none());
        let ok = parse(r#"{"a":[1,"x",true,null,1.5,{"y":[{}]}],"b":{"c":-3}}"#).unwrap();
        assert_eq!(
            serde_json::Value::Object(ok),
            json!({"a":[1,"x",true,null,1.5,{"y":[{}]}],"b":{"c":-3}})
        );
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
