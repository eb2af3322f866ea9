//! Route rules: match a request's host, method and path, in order, to an [`Action`].
//!
//! Rules see the path and host that [`super::request`] normalised, never the raw ones, and a
//! request that could be read two ways (its path compared case-insensitively, or a method
//! override, selects another rule) is refused rather than matched to either.
//!
//! Three rules bound what a request can gain: a CORS preflight passes without a token only
//! where a request with a valid token could pass (never under `deny: true` or the default
//! deny); Envoy's `required_scopes` context extension adds scopes to the matched rule and
//! never removes a requirement; and the path grammar applies on every route, anonymous
//! and preflight ones included, with or without rules.

use std::borrow::Cow;

use super::ScopeRule;
use super::condition::ClaimCondition;
use super::mcp::{McpMatch, McpOperation, McpSettings};
pub use super::pattern::{HostPattern, PathPattern, Segment};
use super::request::{Ambiguity, PathGrammar, PathParameters, has_utf8, normalize_host};

/// What a matched rule asks for.
#[derive(Debug, Clone)]
pub enum Action {
    /// No token needed; identity headers are stripped.
    Anonymous,
    /// Refused whatever the token.
    Deny,
    /// A valid token that satisfies these requirements.
    Token(TokenRule),
    /// A CORS preflight let through without a token; identity headers are stripped.
    Preflight,
}

/// What a token must satisfy on a route, beyond a valid signature and dates.
#[derive(Debug, Clone, Default)]
pub struct TokenRule {
    pub scopes: ScopeRule,
    /// Issuers admitted on this route (exact `iss`); empty admits every configured one.
    pub issuers: Vec<String>,
    /// Audiences accepted on this route, replacing the issuer's; `None` keeps the issuer's.
    pub audiences: Option<Vec<String>>,
    /// Claim conditions, all of which must hold.
    pub conditions: Vec<ClaimCondition>,
    /// Index of the first of [`TokenRule::conditions`] in the policy's condition list
    /// ([`Policy::conditions`]); set by [`Policy::new`].
    pub first_condition: usize,
    /// Only a DPoP-bound token with a valid proof, whatever its issuer allows.
    pub dpop_required: bool,
}

impl TokenRule {
    /// A rule that asks for scopes only.
    pub fn scopes(scopes: ScopeRule) -> TokenRule {
        TokenRule {
            scopes,
            ..TokenRule::default()
        }
    }
}

impl PartialEq for Action {
    /// Equal kinds with equal scopes, issuers, audiences and condition positions (patterns
    /// have no equality of their own).
    fn eq(&self, other: &Action) -> bool {
        match (self, other) {
            (Action::Anonymous, Action::Anonymous)
            | (Action::Deny, Action::Deny)
            | (Action::Preflight, Action::Preflight) => true,
            (Action::Token(a), Action::Token(b)) => {
                a.scopes == b.scopes
                    && a.issuers == b.issuers
                    && a.audiences == b.audiences
                    && a.conditions.len() == b.conditions.len()
                    && a.first_condition == b.first_condition
                    && a.dpop_required == b.dpop_required
            }
            _ => false,
        }
    }
}

impl Eq for Action {}

/// Whether a rule decides or only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The rule decides the requests it matches.
    #[default]
    Enforce,
    /// The rule's would-be decision is logged and counted; the request gets what the rules
    /// after it give.
    Shadow,
}

/// What a request that matches no rule gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// 403 `access_denied`: the default once any route rule is configured.
    Deny,
    /// Any valid token: the default without route rules.
    Authenticated,
}

/// One rule of the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Name for logs and metrics; defaults to `routes[i]`.
    pub name: String,
    pub host: Option<HostPattern>,
    /// Upper-case methods; empty matches any. `GET` also matches `HEAD`, which servers
    /// answer with the `GET` handler.
    pub methods: Vec<String>,
    pub path: PathPattern,
    pub action: Action,
    pub mode: Mode,
    /// Whether CORS preflights matching this rule pass without a token; `None` follows the
    /// policy's setting.
    pub cors_preflight: Option<bool>,
    /// Whether paths with encoded UTF-8 letters and digits may be decided by this rule;
    /// `None` follows the policy's setting.
    pub path_utf8: Option<bool>,
    /// The MCP operation the rule is for; it then matches only POSTs to an MCP endpoint
    /// that name one like it. Boxed: most rules have none.
    pub mcp: Option<Box<McpMatch>>,
}

impl Rule {
    /// An enforcing rule with no host or method condition.
    pub fn new(name: impl Into<String>, path: PathPattern, action: Action) -> Rule {
        Rule {
            name: name.into(),
            host: None,
            methods: Vec::new(),
            path,
            action,
            mode: Mode::Enforce,
            cors_preflight: None,
            path_utf8: None,
            mcp: None,
        }
    }
}

/// Policy-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicySettings {
    /// `None`: [`DefaultAction::Deny`] with rules, [`DefaultAction::Authenticated`] without.
    pub default_action: Option<DefaultAction>,
    /// CORS preflights pass without a token (rules may override).
    pub cors_preflight: bool,
    pub path_parameters: PathParameters,
    /// Paths with encoded UTF-8 letters and digits are accepted (rules may override).
    pub path_utf8: bool,
}

/// The ordered route table.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    default_action: DefaultAction,
    settings: PolicySettings,
    /// Some rule matches on a path at all: whether a case-insensitive reading can differ.
    check_case: bool,
    /// Some rule's path literal has an upper-case letter: then even a lower-case request
    /// path can match differently when read case-insensitively. Computed once here, not
    /// per request.
    upper_case_literals: bool,
    /// The grammar paths are read with: UTF-8 when the policy or any rule accepts it (the
    /// deciding rule then says whether a UTF-8 path may pass).
    grammar: PathGrammar,
    /// Methods a method override could name that select different rules: every method a
    /// rule lists, and `""`, which stands for every method no rule lists.
    override_methods: Vec<String>,
    /// Some rule lists methods: only then can an override select another rule.
    method_rules: bool,
    /// MCP endpoints and how their POSTs are read; `None` when none is configured.
    mcp: Option<McpSettings>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new(Vec::new())
    }
}

/// The parts of a request that select a rule, as Envoy forwarded them.
#[derive(Debug, Clone, Default)]
pub struct Selector<'a> {
    pub method: &'a str,
    /// `:authority`, possibly with a port.
    pub host: &'a str,
    /// `:path`, with its query.
    pub path: &'a str,
    /// `access-control-request-method`, when the request also has an `origin` header.
    pub preflight_method: Option<&'a str>,
    /// The methods the upstream could run instead of `method`.
    pub overrides: Overrides<'a>,
    /// Every header, read only for a POST to an MCP endpoint.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body, when the proxy sent it.
    pub body: Option<&'a [u8]>,
}

/// What method overrides a request carries: a server behind the proxy may run one of them
/// instead of the request's method (Express `method-override`, Rails, Laravel, Symfony).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Overrides<'a> {
    /// None.
    #[default]
    None,
    /// These methods, read from every override header and `_method` parameter.
    Methods(Vec<&'a str>),
    /// Any method: a value that is not a method, or a form body that may hold `_method`.
    Any,
}

/// The readings of one request's host and path that rules are matched against.
struct Readings<'a> {
    host: &'a str,
    /// The normal path.
    path: &'a str,
    /// The path with its escapes kept, when it differs ([`PathGrammar::escaped_reading`]).
    escaped: Option<&'a str>,
    /// The MCP operation of a POST to an MCP endpoint.
    mcp: Option<&'a McpOperation<'a>>,
}

/// The outcome of matching a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement<'p> {
    /// The matched rule's name, `None` for the default.
    pub rule: Option<&'p str>,
    pub action: Cow<'p, Action>,
    /// Why the request was refused as ambiguous.
    pub ambiguity: Option<Ambiguity>,
    /// Shadow rules that matched before the deciding one, in order.
    pub shadows: Vec<&'p Rule>,
    /// Envoy's `required_scopes` context extension decides: the action admits any valid
    /// token, and the request's value names the scopes it must grant. The value is read
    /// where the request is ([`ScopeRule::check_context_extension`]), not parsed into an
    /// action per request.
    pub context_scopes: bool,
}

/// The action of a request whose `required_scopes` context extension decides.
static ANY_VALID_TOKEN: Action = Action::Token(TokenRule {
    scopes: ScopeRule::None,
    issuers: Vec::new(),
    audiences: None,
    conditions: Vec::new(),
    first_condition: 0,
    dpop_required: false,
});

/// The rule name logged for a request refused as ambiguous.
pub const AMBIGUOUS_RULE: &str = "ambiguous-path";

impl Requirement<'_> {
    fn ambiguous(why: Ambiguity) -> Requirement<'static> {
        Requirement {
            rule: Some(AMBIGUOUS_RULE),
            action: Cow::Owned(Action::Deny),
            ambiguity: Some(why),
            shadows: Vec::new(),
            context_scopes: false,
        }
    }
}

impl Rule {
    fn matches(
        &self,
        method: &str,
        host: &str,
        path: &str,
        fold: bool,
        mcp: Option<&McpOperation<'_>>,
    ) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host))
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| {
                    m.eq_ignore_ascii_case(method)
                        || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
                }))
            && self.path.matches_with(path, fold)
            // invariant: a rule on MCP operations never matches a request that names none.
            && self
                .mcp
                .as_ref()
                .is_none_or(|m| mcp.is_some_and(|op| m.matches(op)))
    }

    /// Whether CORS preflights for this rule pass without a token.
    fn allows_preflight(&self, policy: &PolicySettings) -> bool {
        self.cors_preflight.unwrap_or(policy.cors_preflight)
    }
}

impl Policy {
    /// The rules with the default settings.
    pub fn new(rules: Vec<Rule>) -> Policy {
        Policy::with_settings(rules, PolicySettings::default())
    }

    /// The rules with `settings`; numbers every rule's claim conditions.
    pub fn with_settings(mut rules: Vec<Rule>, settings: PolicySettings) -> Policy {
        let mut next = 0;
        for rule in &mut rules {
            if let Action::Token(token) = &mut rule.action {
                token.first_condition = next;
                next += token.conditions.len();
            }
        }
        let default_action = settings.default_action.unwrap_or(if rules.is_empty() {
            DefaultAction::Authenticated
        } else {
            DefaultAction::Deny
        });
        let check_case = rules.iter().any(|r| !matches!(r.path, PathPattern::Any));
        let upper_case_literals = rules.iter().any(|r| r.path.has_upper_case());
        let grammar = PathGrammar {
            parameters: settings.path_parameters,
            utf8: settings.path_utf8 || rules.iter().any(|r| r.path_utf8 == Some(true)),
        };
        let mut override_methods: Vec<String> = vec![String::new()];
        for method in rules.iter().flat_map(|r| &r.methods) {
            if !override_methods.contains(method) {
                override_methods.push(method.clone());
            }
        }
        let method_rules = override_methods.len() > 1;
        Policy {
            rules,
            default_action,
            settings,
            check_case,
            upper_case_literals,
            grammar,
            override_methods,
            method_rules,
            mcp: None,
        }
    }

    /// The policy with MCP endpoints: POSTs to them must name their operation one way
    /// ([`super::mcp::read`]).
    pub fn with_mcp(self, mcp: Option<McpSettings>) -> Policy {
        Policy { mcp, ..self }
    }

    /// The MCP settings, when endpoints are configured.
    pub fn mcp(&self) -> Option<&McpSettings> {
        self.mcp.as_ref()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn default_action(&self) -> DefaultAction {
        self.default_action
    }

    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The grammar request paths are read with.
    pub fn grammar(&self) -> PathGrammar {
        self.grammar
    }

    /// Every rule's claim conditions, in rule order: a token's cache entry records which
    /// of them hold, by this position.
    pub fn conditions(&self) -> impl Iterator<Item = &ClaimCondition> {
        self.rules.iter().flat_map(|r| match &r.action {
            Action::Token(t) => t.conditions.as_slice(),
            _ => &[],
        })
    }

    /// Shadow rules, in order: metrics count their would-be decisions by this position.
    pub fn shadow_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.mode == Mode::Shadow)
    }

    fn default_requirement(&self) -> Requirement<'_> {
        let action = match self.default_action {
            DefaultAction::Deny => Action::Deny,
            DefaultAction::Authenticated => Action::Token(TokenRule::default()),
        };
        Requirement {
            rule: None,
            action: Cow::Owned(action),
            ambiguity: None,
            shadows: Vec::new(),
            context_scopes: false,
        }
    }

    /// What a request needs. `context_scopes`: the request has Envoy's `required_scopes`
    /// context extension, which adds its scopes to what the matched rule requires
    /// ([`Requirement::context_scopes`]).
    pub fn requirement<'p>(
        &'p self,
        request: &Selector<'_>,
        context_scopes: bool,
    ) -> Requirement<'p> {
        let mut requirement = self.rule_requirement(request);
        if context_scopes {
            // The extension adds, never removes: a denial stays one, a preflight stays
            // one, and an anonymous rule now needs a token with the extension's scopes.
            match requirement.action.as_ref() {
                Action::Deny | Action::Preflight => {}
                Action::Token(_) => requirement.context_scopes = true,
                Action::Anonymous => {
                    requirement.action = Cow::Borrowed(&ANY_VALID_TOKEN);
                    requirement.context_scopes = true;
                }
            }
        }
        requirement
    }

    /// What the rules (or the default) require of `request`.
    fn rule_requirement<'p>(&'p self, request: &Selector<'_>) -> Requirement<'p> {
        // A browser's preflight carries no method override: an `OPTIONS` that does could
        // run as another method upstream, so it is an ordinary request.
        let preflight = request
            .preflight_method
            .filter(|_| request.method.eq_ignore_ascii_case("OPTIONS"))
            .filter(|_| request.overrides == Overrides::None);
        let (host, path) = match (
            normalize_host(request.host),
            self.grammar.normalize(request.path),
        ) {
            (Ok(host), Ok(path)) => (host, path),
            (Err(why), _) | (_, Err(why)) => return Requirement::ambiguous(why),
        };
        // Without a host, a rule bound to one could neither be chosen nor passed over.
        if host.is_empty() && self.rules.iter().any(|r| r.host.is_some()) {
            return Requirement::ambiguous(Ambiguity::NoHost);
        }
        // An endpoint in another case reads, to a server that ignores case (Express), as
        // the endpoint: its operation would go unread.
        if let Some(settings) = &self.mcp
            && settings
                .endpoints
                .iter()
                .any(|e| *e != *path && e.eq_ignore_ascii_case(&path))
        {
            return Requirement::ambiguous(Ambiguity::Case);
        }
        let mcp = match &self.mcp {
            Some(settings)
                if request.method.eq_ignore_ascii_case("POST")
                    && settings.endpoints.iter().any(|e| *e == *path) =>
            {
                match self.mcp_operation(request, settings) {
                    Ok(op) => Some(op),
                    Err(why) => return Requirement::ambiguous(why),
                }
            }
            _ => None,
        };
        let escaped = if request.path.contains('%') {
            self.grammar.escaped_reading(request.path)
        } else {
            None
        };
        let readings = Readings {
            host: &host,
            path: &path,
            escaped: escaped.as_deref(),
            mcp: mcp.as_ref(),
        };
        // A preflight is matched as the request it announces; where that rule (or the
        // default) does not let preflights through, it is an ordinary OPTIONS request.
        let ordinary = self.matched(request, request.method, &readings, false);
        // The `OPTIONS` request itself decides whether its preflight is read as the request
        // it announces: not under a rule that denies it, nor under a rule written for
        // `OPTIONS` that does not say `cors_preflight: allow` itself.
        // Worked out only for a preflight: a rule scan of its own.
        let announced_decides = || match self
            .first_enforcing(request.method, &host, &path, false, mcp.as_ref())
            .map(|i| &self.rules[i])
        {
            None => ordinary.ambiguity.is_none(),
            Some(rule) => {
                rule.action != Action::Deny
                    && (rule.cors_preflight == Some(true)
                        || !rule
                            .methods
                            .iter()
                            .any(|m| m.eq_ignore_ascii_case("OPTIONS")))
            }
        };
        if let Some(announced) = preflight.filter(|_| announced_decides()) {
            let requirement = self.matched(request, announced, &readings, true);
            if requirement.action.as_ref() == &Action::Preflight || requirement.ambiguity.is_some()
            {
                return requirement;
            }
        }
        ordinary
    }
}

mod matching;

#[cfg(test)]
mod tests;
