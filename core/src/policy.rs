//! What a route requires, and whether a verified token's claims satisfy it. Pure: no I/O
//! and no protocol types.
//!
//! Envoy names a route's scopes in the per-route `check_settings.context_extensions`
//! under `required_scopes` (space-separated, all required); when present it wins. Without
//! it, the configured route rules ([`route`]) decide, first match wins, on the path and
//! host the request model ([`request`]) normalised; a request that matches no rule gets
//! the default action (deny once rules exist). Scopes granted by a token are read from the
//! configured claims: `scope` (space-separated string, RFC 8693/9068), `scp` (array or
//! string) and `permissions` (Auth0 RBAC array). Claim conditions live in [`condition`].

pub mod condition;
pub mod mcp;
pub mod overrides;
pub mod pattern;
pub mod request;
pub mod route;

use serde_json::Value;

pub use condition::{ClaimCondition, ClaimTest};
pub use overrides::method_overrides;
pub use request::{
    Ambiguity, Authority, PathGrammar, PathParameters, normalize_host, normalize_path,
};
pub use route::{
    AMBIGUOUS_RULE, Action, DefaultAction, HostPattern, Mode, Overrides, PathPattern, Policy,
    PolicySettings, Requirement, Rule, Selector, TokenRule,
};

use crate::claims::Claims;
use crate::error::AuthError;

/// The context-extension key that carries a route's required scopes.
pub const REQUIRED_SCOPES_KEY: &str = "required_scopes";

/// Scopes a route requires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ScopeRule {
    /// Any valid token.
    #[default]
    None,
    /// Every listed scope.
    AllOf(Vec<String>),
    /// At least one listed scope.
    AnyOf(Vec<String>),
}

impl ScopeRule {
    /// Parses a `required_scopes` value: separated by U+0020 (RFC 6749 §3.3), every one
    /// required. Blank means no scope is required. A tab stays inside its scope, which no
    /// token can then grant.
    fn from_context_extension(value: &str) -> ScopeRule {
        let scopes: Vec<String> = value
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            ScopeRule::None
        } else {
            ScopeRule::AllOf(scopes)
        }
    }

    /// Checks a `required_scopes` value against the granted scopes as
    /// [`ScopeRule::from_context_extension`]'s rule would, without building the rule: Envoy
    /// sends the value on every request of a route, so the Check reads it where it is.
    pub fn check_context_extension<'g>(
        value: &str,
        granted: impl Iterator<Item = &'g str> + Clone,
    ) -> Result<(), AuthError> {
        let mut required = value.split(' ').filter(|s| !s.is_empty());
        if required.all(|wanted| granted.clone().any(|g| g == wanted)) {
            Ok(())
        } else {
            ScopeRule::from_context_extension(value).check_granted(granted)
        }
    }

    /// Checks the rule against the scopes a token's claims grant.
    pub fn check(&self, claims: &Claims, scope_claims: &[String]) -> Result<(), AuthError> {
        let granted: Vec<&str> = granted_scopes(claims, scope_claims).collect();
        self.check_granted(granted.iter().copied())
    }

    /// Checks the rule against the granted scopes (iterated once per required scope).
    pub fn check_granted<'g>(
        &self,
        granted: impl Iterator<Item = &'g str> + Clone,
    ) -> Result<(), AuthError> {
        let has = |wanted: &str| granted.clone().any(|g| g == wanted);
        let satisfied = match self {
            ScopeRule::None => true,
            ScopeRule::AllOf(scopes) => scopes.iter().all(|s| has(s)),
            ScopeRule::AnyOf(scopes) => scopes.iter().any(|s| has(s)),
        };
        if satisfied {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: self.describe(),
            })
        }
    }

    /// The scopes, space-separated, for `WWW-Authenticate`.
    fn describe(&self) -> String {
        match self {
            ScopeRule::None => String::new(),
            ScopeRule::AllOf(s) | ScopeRule::AnyOf(s) => s.join(" "),
        }
    }
}

/// Every scope the token grants through the configured claims. A string claim is split
/// on U+0020 only, as RFC 6749 §3.3 separates scopes: `"read:messages\tadmin"` is one
/// scope (not a valid scope-token, so it grants nothing), never `admin`. An array claim
/// contributes its string entries.
pub fn granted_scopes<'c>(
    claims: &'c Claims,
    scope_claims: &'c [String],
) -> impl Iterator<Item = &'c str> + 'c {
    scope_claims
        .iter()
        .filter_map(|name| claims.get(name))
        .flat_map(|value| -> Box<dyn Iterator<Item = &'c str> + 'c> {
            match value {
                Value::String(s) => Box::new(s.split(' ').filter(|s| !s.is_empty())),
                Value::Array(items) => Box::new(items.iter().filter_map(Value::as_str)),
                _ => Box::new(std::iter::empty()),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    fn defaults() -> Vec<String> {
        vec!["scope".into(), "scp".into(), "permissions".into()]
    }

    #[test]
    fn scopes_split_on_space_only() {
        let c = claims(json!({"scope": "read:messages\tadmin  write\nroot \u{a0}x"}));
        let names = defaults();
        let all: Vec<&str> = granted_scopes(&c, &names).collect();
        assert_eq!(all, ["read:messages\tadmin", "write\nroot", "\u{a0}x"]);
        assert!(
            ScopeRule::AllOf(vec!["admin".into()])
                .check(&c, &names)
                .is_err()
        );
        assert_eq!(
            ScopeRule::from_context_extension(" a\tb  c "),
            ScopeRule::AllOf(vec!["a\tb".into(), "c".into()])
        );
        assert_eq!(ScopeRule::from_context_extension("   "), ScopeRule::None);
    }

    #[test]
    fn scopes_come_from_every_configured_claim() {
        let c = claims(json!({
            "scope": "read:messages  write:messages",
            "scp": ["a", 3, "b"],
            "permissions": ["admin"],
            "other": "ignored",
        }));
        let names = defaults();
        let all: Vec<&str> = granted_scopes(&c, &names).collect();
        assert_eq!(all, ["read:messages", "write:messages", "a", "b", "admin"]);
    }

    #[test]
    fn all_listed_scopes_are_required() {
        let c = claims(json!({"scope": "read:messages write:messages"}));
        let rule = ScopeRule::from_context_extension("read:messages write:messages");
        assert_eq!(rule.check(&c, &defaults()), Ok(()));
        let rule = ScopeRule::from_context_extension(" read:messages  admin ");
        assert_eq!(
            rule.check(&c, &defaults()),
            Err(AuthError::InsufficientScope {
                required: "read:messages admin".into()
            })
        );
    }

    #[test]
    fn any_of_needs_one() {
        let c = claims(json!({"permissions": ["b"]}));
        let rule = ScopeRule::AnyOf(vec!["a".into(), "b".into()]);
        assert_eq!(rule.check(&c, &defaults()), Ok(()));
    }

    #[test]
    fn blank_requirement_needs_only_a_valid_token() {
        assert_eq!(ScopeRule::from_context_extension("  "), ScopeRule::None);
        assert_eq!(ScopeRule::None.check(&Claims::new(), &defaults()), Ok(()));
    }

    #[test]
    fn scope_prefixes_do_not_match() {
        let c = claims(json!({"scope": "read:messages-extra read"}));
        let rule = ScopeRule::from_context_extension("read:messages");
        assert!(rule.check(&c, &defaults()).is_err());
    }

    #[test]
    fn unconfigured_claims_are_ignored() {
        let c = claims(json!({"permissions": ["admin"]}));
        let only_scope = vec!["scope".to_owned()];
        assert!(
            ScopeRule::from_context_extension("admin")
                .check(&c, &only_scope)
                .is_err()
        );
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashSet;

        /// Scopes from a small set (so requirements often hit) and arbitrary blank-free ones.
        fn scope() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "read",
                    "write",
                    "READ",
                    "read:messages",
                    "read:messages:all",
                    "admin",
                ])
                .prop_map(str::to_owned),
                "[!-~]{1,8}",
            ]
        }

        fn scopes(max: usize) -> impl Strategy<Value = Vec<String>> {
            prop::collection::vec(scope(), 0..max)
        }

        proptest! {
            #[test]
            fn all_of_holds_iff_every_required_scope_is_granted(
                in_scope in scopes(5),
                in_scp in scopes(4),
                scp_as_string in any::<bool>(),
                in_permissions in scopes(4),
                required in prop::collection::vec(scope(), 1..4),
            ) {
                let scp = if scp_as_string { json!(in_scp.join(" ")) } else { json!(in_scp) };
                let c = claims(json!({
                    "scope": in_scope.join(" "),
                    "scp": scp,
                    "permissions": in_permissions,
                }));
                let granted: HashSet<&String> =
                    in_scope.iter().chain(&in_scp).chain(&in_permissions).collect();

                let all = ScopeRule::from_context_extension(&required.join(" "));
                let expected = required.iter().all(|r| granted.contains(r));
                match all.check(&c, &defaults()) {
                    Ok(()) => prop_assert!(expected),
                    Err(e) => {
                        prop_assert!(!expected);
                        prop_assert_eq!(e, AuthError::InsufficientScope { required: required.join(" ") });
                    }
                }

                // Read in place, the value gives the rule's answer, error included.
                let scope_claims = defaults();
                let granted_now: Vec<&str> = granted_scopes(&c, &scope_claims).collect();
                for value in [required.join(" "), format!("  {}  ", required.join("   "))] {
                    prop_assert_eq!(
                        ScopeRule::check_context_extension(&value, granted_now.iter().copied()),
                        all.check(&c, &defaults())
                    );
                }

                let any = ScopeRule::AnyOf(required.clone());
                let expected = required.iter().any(|r| granted.contains(r));
                prop_assert_eq!(any.check(&c, &defaults()).is_ok(), expected);

                // Only the configured claims count.
                let only_scope = vec!["scope".to_owned()];
                let expected = required.iter().all(|r| in_scope.contains(r));
                prop_assert_eq!(all.check(&c, &only_scope).is_ok(), expected);
            }
        }
    }
}
