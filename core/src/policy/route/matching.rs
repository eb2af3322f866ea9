//! Which rule a request's readings select: the first enforcing rule that matches, and
//! whether a method override would select another.

use super::*;

use crate::policy::mcp::McpHeaders;

impl Policy {
    /// The operation a POST to an MCP endpoint names, read one way or refused.
    pub(super) fn mcp_operation<'a>(
        &self,
        request: &Selector<'a>,
        settings: &McpSettings,
    ) -> Result<McpOperation<'a>, Ambiguity> {
        let values = |name: &str| -> Vec<&'a [u8]> {
            request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .collect()
        };
        let headers = McpHeaders {
            methods: values("mcp-method"),
            names: values("mcp-name"),
            content_types: values("content-type"),
            content_encodings: values("content-encoding"),
            // Envoy marks a body it cut at its bound (`allow_partial_message`).
            partial_body: values("x-envoy-auth-partial-body")
                .iter()
                .any(|v| v.eq_ignore_ascii_case(b"true")),
        };
        crate::policy::mcp::read(&headers, request.body, settings)
    }

    /// The requirement of the rule that `method`, `host` and `path` select, refused when
    /// another reading of the request selects another rule. With `preflight`, a rule that
    /// lets preflights through answers [`Action::Preflight`].
    pub(super) fn matched<'p>(
        &'p self,
        request: &Selector<'_>,
        method: &str,
        readings: &Readings<'_>,
        preflight: bool,
    ) -> Requirement<'p> {
        let (host, path, mcp) = (readings.host, readings.path, readings.mcp);
        let deciding = self.first_enforcing(method, host, path, false, mcp);
        if let Some(escaped) = readings.escaped
            && self.first_enforcing(method, host, escaped, false, mcp) != deciding
        {
            return Requirement::ambiguous(Ambiguity::EscapedReading);
        }
        if self.check_case
            && (self.upper_case_literals || path.bytes().any(|b| b.is_ascii_uppercase()))
            && self.first_enforcing(method, host, path, true, mcp) != deciding
        {
            return Requirement::ambiguous(Ambiguity::Case);
        }
        if self.override_selects_another_rule(&request.overrides, method, readings, deciding) {
            return Requirement::ambiguous(Ambiguity::MethodOverride);
        }
        let utf8_allowed = match deciding {
            Some(i) => self.rules[i].path_utf8.unwrap_or(self.settings.path_utf8),
            None => self.settings.path_utf8,
        };
        if self.grammar.utf8 && !utf8_allowed && has_utf8(path) {
            return Requirement::ambiguous(Ambiguity::NonAscii);
        }
        let end = deciding.unwrap_or(self.rules.len());
        let shadows = self.rules[..end]
            .iter()
            .filter(|r| r.mode == Mode::Shadow && r.matches(method, host, path, false, mcp))
            .collect();
        let mut requirement = match deciding {
            Some(i) => {
                let rule = &self.rules[i];
                // A preflight passes only where a token could: never under `deny: true`.
                let action = if preflight
                    && rule.allows_preflight(&self.settings)
                    && rule.action != Action::Deny
                {
                    Cow::Owned(Action::Preflight)
                } else {
                    Cow::Borrowed(&rule.action)
                };
                Requirement {
                    rule: Some(&rule.name),
                    action,
                    ambiguity: None,
                    shadows: Vec::new(),
                    context_scopes: false,
                }
            }
            None => {
                let mut requirement = self.default_requirement();
                if preflight
                    && self.settings.cors_preflight
                    && self.default_action == DefaultAction::Authenticated
                {
                    requirement.action = Cow::Owned(Action::Preflight);
                }
                requirement
            }
        };
        requirement.shadows = shadows;
        requirement
    }

    /// Whether a method the overrides name selects another rule than `deciding`.
    pub(super) fn override_selects_another_rule(
        &self,
        overrides: &Overrides<'_>,
        method: &str,
        readings: &Readings<'_>,
        deciding: Option<usize>,
    ) -> bool {
        let (host, path, mcp) = (readings.host, readings.path, readings.mcp);
        if !self.method_rules || *overrides == Overrides::None {
            return false;
        }
        // Each other method is read as the request is: exactly and, where case can
        // matter, case-insensitively (Express matches routes either way).
        let fold = self.check_case
            && (self.upper_case_literals || path.bytes().any(|b| b.is_ascii_uppercase()));
        let other = |m: &str| {
            !m.eq_ignore_ascii_case(method)
                && (self.first_enforcing(m, host, path, false, mcp) != deciding
                    || (fold && self.first_enforcing(m, host, path, true, mcp) != deciding))
        };
        match overrides {
            Overrides::None => false,
            Overrides::Methods(methods) => methods.iter().any(|m| other(m)),
            Overrides::Any => self.override_methods.iter().any(|m| other(m)),
        }
    }

    /// Index of the first enforcing rule that matches.
    pub(super) fn first_enforcing(
        &self,
        method: &str,
        host: &str,
        path: &str,
        fold: bool,
        mcp: Option<&McpOperation<'_>>,
    ) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.mode == Mode::Enforce && r.matches(method, host, path, fold, mcp))
    }
}
