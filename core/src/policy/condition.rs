//! Claim conditions a route can require on top of scopes: `equals`, `contains`,
//! `contains_any`, `matches` and `present`, on the same dot paths as claim headers.
//!
//! Values are compared without type coercion: the string `"true"` does not equal the
//! boolean `true`. Space-separated strings (`scope`-like claims) are split on U+0020 only,
//! as RFC 6749 §3.3 separates scope tokens. Patterns run on `regex`, whose finite-automata
//! engine takes linear time in the claim's length whatever the pattern, and must match the
//! whole value.

use regex::Regex;
use serde_json::Value;

use crate::claims::{Claims, claim};

/// One condition on one claim.
#[derive(Debug, Clone)]
pub struct ClaimCondition {
    /// A claim name or dot path (`org.id`).
    pub claim: String,
    pub test: ClaimTest,
}

/// What the claim must satisfy.
#[derive(Debug, Clone)]
pub enum ClaimTest {
    /// The claim is this string, number or boolean.
    Equals(Value),
    /// The claim is an array holding this value, or a space-separated string holding it
    /// as a word.
    Contains(Value),
    /// As [`ClaimTest::Contains`], for at least one of these values.
    ContainsAny(Vec<Value>),
    /// The claim is a string matched whole by this pattern.
    Matches(Regex),
    /// The claim is present (and not `null`), or, with `false`, absent or `null`.
    Present(bool),
}

impl ClaimCondition {
    /// Parses a `matches` pattern; it is anchored at both ends.
    pub fn pattern(pattern: &str) -> Result<Regex, String> {
        regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("`{pattern}` is not a valid pattern: {e}"))
    }

    /// Whether `claims` satisfy the condition.
    pub fn holds(&self, claims: &Claims) -> bool {
        let value = claim(claims, &self.claim).filter(|v| !v.is_null());
        match (&self.test, value) {
            (ClaimTest::Present(wanted), value) => value.is_some() == *wanted,
            (_, None) => false,
            (ClaimTest::Equals(expected), Some(v)) => same_scalar(v, expected),
            (ClaimTest::Contains(item), Some(v)) => contains(v, item),
            (ClaimTest::ContainsAny(items), Some(v)) => items.iter().any(|i| contains(v, i)),
            (ClaimTest::Matches(re), Some(Value::String(s))) => re.is_match(s),
            (ClaimTest::Matches(_), Some(_)) => false,
        }
    }

    /// The operator's name, for `explain` and logs (never the claim's value).
    pub fn operator(&self) -> &'static str {
        match self.test {
            ClaimTest::Equals(_) => "equals",
            ClaimTest::Contains(_) => "contains",
            ClaimTest::ContainsAny(_) => "contains_any",
            ClaimTest::Matches(_) => "matches",
            ClaimTest::Present(true) => "present",
            ClaimTest::Present(false) => "absent",
        }
    }
}

/// Equality of two scalars of the same JSON type; numbers by value (`1` equals `1.0`).
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        _ => false,
    }
}

fn contains(claim: &Value, item: &Value) -> bool {
    match (claim, item) {
        (Value::Array(items), _) => items.iter().any(|v| same_scalar(v, item)),
        (Value::String(words), Value::String(word)) => words.split(' ').any(|w| w == word),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(test: ClaimTest, path: &str, claims: Value) -> bool {
        ClaimCondition {
            claim: path.into(),
            test,
        }
        .holds(claims.as_object().unwrap())
    }

    #[test]
    fn equals_compares_without_coercion() {
        let c = json!({"org": {"id": "acme", "n": 7}, "email_verified": true, "s": "true"});
        assert!(holds(ClaimTest::Equals(json!("acme")), "org.id", c.clone()));
        assert!(!holds(
            ClaimTest::Equals(json!("ACME")),
            "org.id",
            c.clone()
        ));
        assert!(holds(ClaimTest::Equals(json!(7.0)), "org.n", c.clone()));
        assert!(!holds(ClaimTest::Equals(json!("7")), "org.n", c.clone()));
        assert!(holds(
            ClaimTest::Equals(json!(true)),
            "email_verified",
            c.clone()
        ));
        assert!(!holds(ClaimTest::Equals(json!(true)), "s", c.clone()));
        assert!(!holds(ClaimTest::Equals(json!("acme")), "missing", c));
    }

    #[test]
    fn contains_reads_arrays_and_space_separated_words() {
        let c = json!({"groups": ["admin", "dev"], "roles": "a admin\tb", "n": [1, 2]});
        assert!(holds(
            ClaimTest::Contains(json!("admin")),
            "groups",
            c.clone()
        ));
        assert!(!holds(
            ClaimTest::Contains(json!("adm")),
            "groups",
            c.clone()
        ));
        // Words are split on U+0020 only: "admin\tb" is one word.
        assert!(!holds(
            ClaimTest::Contains(json!("admin")),
            "roles",
            c.clone()
        ));
        assert!(holds(ClaimTest::Contains(json!("a")), "roles", c.clone()));
        assert!(holds(ClaimTest::Contains(json!(2)), "n", c.clone()));
        assert!(holds(
            ClaimTest::ContainsAny(vec![json!("mfa"), json!("dev")]),
            "groups",
            c.clone()
        ));
        assert!(!holds(
            ClaimTest::ContainsAny(vec![json!("mfa"), json!("hwk")]),
            "groups",
            c
        ));
    }

    #[test]
    fn patterns_match_the_whole_string_value() {
        let re = |p: &str| ClaimTest::Matches(ClaimCondition::pattern(p).unwrap());
        let c = json!({"sub": "auth0|0123456789abcdef01234567", "n": 5});
        assert!(holds(re(r"auth0\|[0-9a-f]{24}"), "sub", c.clone()));
        assert!(holds(re(r"^auth0\|[0-9a-f]{24}$"), "sub", c.clone()));
        assert!(!holds(re(r"auth0"), "sub", c.clone()));
        assert!(!holds(re(r"a|auth0\|.*"), "n", c));
        assert!(ClaimCondition::pattern("(").is_err());
    }

    #[test]
    fn presence_treats_null_as_absent() {
        let c = json!({"act": {"sub": "x"}, "nothing": null});
        assert!(holds(ClaimTest::Present(true), "act", c.clone()));
        assert!(holds(ClaimTest::Present(true), "act.sub", c.clone()));
        assert!(!holds(ClaimTest::Present(false), "act", c.clone()));
        assert!(holds(ClaimTest::Present(false), "nothing", c.clone()));
        assert!(holds(ClaimTest::Present(false), "missing", c));
    }
}
