//! Host and path patterns of route rules, and how they match a normalised request.
//!
//! Paths are matched exactly, by segment-aware prefix, or by pattern, where `{name}` or
//! `*` stands for one non-empty segment and a final `**` for any rest. Configured paths are
//! normalised as requests are, so `/api/exact/` and `/api/%61` mean `/api/exact` and
//! `/api/a`.

use std::borrow::Cow;

use super::request::{PathGrammar, PathParameters, decoded_text, has_utf8};

/// A host to match, compared case-insensitively and without the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`: any subdomain (not the apex).
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    One,
    Rest,
}

/// A path to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Any,
    Exact(String),
    /// Segment-aware: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(String),
    Segments(Vec<Segment>),
    /// A gRPC method, `/package.Service/Method` (gRPC over HTTP/2, "Path"): the service
    /// exactly, the method by a pattern where `*` stands for any run of name characters
    /// (`Get*`, `*`). Boxed: most rules are paths, which stay small.
    Grpc(Box<GrpcMethod>),
}

/// The service and method pattern of a [`PathPattern::Grpc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcMethod {
    pub service: String,
    pub method: String,
}

impl HostPattern {
    pub fn parse(value: &str) -> Result<HostPattern, String> {
        let host = value.trim().to_ascii_lowercase();
        let host = host.strip_suffix('.').map(str::to_owned).unwrap_or(host);
        if host.is_empty() || host.contains(['/', ' ', ':']) {
            return Err(format!("`{value}` is not a host name (no scheme or port)"));
        }
        match host.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => {
                Ok(HostPattern::Suffix(format!(".{rest}")))
            }
            Some(_) => Err(format!("`{value}`: use `*.example.com`")),
            None if host.contains('*') => Err(format!("`{value}`: `*` only as `*.domain`")),
            None => Ok(HostPattern::Exact(host)),
        }
    }

    /// Whether the pattern matches `host`. Ports are ignored; the Check path passes hosts
    /// [`normalize_host`] has already lowered and stripped.
    pub fn matches(&self, host: &str) -> bool {
        // Strip a port; IPv6 literals keep their brackets.
        let host = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

impl PathPattern {
    /// `path`: exact, or a pattern with `{name}`, `*` and a final `**`.
    pub fn parse_path(value: &str) -> Result<PathPattern, String> {
        if !value.starts_with('/') {
            return Err(format!("`{value}` must start with `/`"));
        }
        if value.contains('?') || value.contains('#') {
            return Err(format!("`{value}`: query strings are not matched"));
        }
        let value = &*normal_pattern(value)?;
        if !value.contains(['{', '}', '*']) {
            return Ok(PathPattern::Exact(value.to_owned()));
        }
        let parts: Vec<&str> = value[1..].split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = if *part == "**" {
                if i + 1 != parts.len() {
                    return Err(format!("`{value}`: `**` only as the last segment"));
                }
                Segment::Rest
            } else if *part == "*"
                || (part.len() > 2
                    && part.starts_with('{')
                    && part.ends_with('}')
                    && !part[1..part.len() - 1].contains(['{', '}', '*', '/']))
            {
                Segment::One
            } else if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "`{value}`: segment `{part}` must be a literal, `{{name}}`, `*` or a final `**`"
                ));
            } else {
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        Ok(PathPattern::Segments(segments))
    }

    /// `path_prefix`: a literal prefix, matched on segment boundaries.
    pub fn parse_prefix(value: &str) -> Result<PathPattern, String> {
        if !value.starts_with('/') {
            return Err(format!("`{value}` must start with `/`"));
        }
        if value.contains(['{', '}', '*', '?', '#']) {
            return Err(format!(
                "`{value}`: a prefix is literal; use `path` for patterns"
            ));
        }
        Ok(PathPattern::Prefix(normal_pattern(value)?.into_owned()))
    }

    /// `grpc`: `package.Service/Method`, the service a dotted name of identifiers
    /// (`[A-Za-z_][A-Za-z0-9_]*`), the method an identifier in which `*` may stand for any
    /// run of its characters.
    pub fn parse_grpc(value: &str) -> Result<PathPattern, String> {
        let form = || {
            format!(
                "`{value}` is not `package.Service/Method` (the method may use `*`, as in `Get*`)"
            )
        };
        let (service, method) = value.split_once('/').ok_or_else(form)?;
        let identifier = |s: &str| {
            s.as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if !service.split('.').all(identifier) {
            return Err(form());
        }
        let method_ok = !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*')
            && !method.contains("**");
        if !method_ok {
            return Err(form());
        }
        Ok(PathPattern::Grpc(Box::new(GrpcMethod {
            service: service.to_owned(),
            method: method.to_owned(),
        })))
    }

    /// Whether the pattern matches `path`, literals compared exactly.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_with(path, false)
    }

    /// Whether the pattern matches `path` read by a server that ignores case.
    pub fn matches_ignoring_case(&self, path: &str) -> bool {
        self.matches_with(path, true)
    }

    /// Whether the pattern matches `path`; with `fold`, literals are compared
    /// case-insensitively (the reading of a server that ignores case).
    pub(super) fn matches_with(&self, path: &str, fold: bool) -> bool {
        let eq = |a: &str, b: &str| {
            if fold {
                a.eq_ignore_ascii_case(b) || ((has_utf8(a) || has_utf8(b)) && unicode_fold_eq(a, b))
            } else {
                a == b
            }
        };
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(p) => eq(path, p),
            PathPattern::Prefix(p) => {
                path.len() >= p.len()
                    && path.is_char_boundary(p.len())
                    && eq(&path[..p.len()], p)
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
            PathPattern::Segments(segments) => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = rest.split('/');
                for segment in segments {
                    match segment {
                        Segment::Rest => return true,
                        Segment::One => match parts.next() {
                            Some(p) if !p.is_empty() => {}
                            _ => return false,
                        },
                        Segment::Literal(l) => {
                            if !parts.next().is_some_and(|p| eq(p, l)) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
            PathPattern::Grpc(grpc) => {
                let GrpcMethod { service, method } = grpc.as_ref();
                let Some((s, m)) = path.strip_prefix('/').and_then(|rest| rest.split_once('/'))
                else {
                    return false;
                };
                !m.contains('/') && !m.is_empty() && eq(s, service) && glob(method, m, fold)
            }
        }
    }
    /// Whether any literal of the pattern has an upper-case letter.
    pub(super) fn has_upper_case(&self) -> bool {
        let upper = |s: &str| s.bytes().any(|b| b.is_ascii_uppercase());
        match self {
            PathPattern::Any => false,
            PathPattern::Exact(p) | PathPattern::Prefix(p) => upper(p),
            PathPattern::Segments(s) => s
                .iter()
                .any(|s| matches!(s, Segment::Literal(l) if upper(l))),
            PathPattern::Grpc(grpc) => upper(&grpc.service) || upper(&grpc.method),
        }
    }
}

/// Whether `text` matches `pattern`, in which `*` stands for any run of characters
/// (none included); with `fold`, ASCII case is ignored.
pub(super) fn glob(pattern: &str, text: &str, fold: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if fold {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let Some((first, rest_pattern)) = pattern.split_once('*') else {
        return eq(pattern, text);
    };
    // The literal before the first `*` starts the text, the one after the last ends it,
    // and those between are found in order, each as early as it can be.
    let (middle, last) = rest_pattern.rsplit_once('*').unwrap_or(("", rest_pattern));
    let Some(rest) = text
        .get(..first.len())
        .filter(|head| eq(head, first))
        .map(|_| &text[first.len()..])
    else {
        return false;
    };
    let Some(mut rest) = rest.len().checked_sub(last.len()).and_then(|cut| {
        rest.get(cut..)
            .filter(|tail| eq(tail, last))
            .map(|_| &rest[..cut])
    }) else {
        return false;
    };
    for piece in middle.split('*').filter(|p| !p.is_empty()) {
        let found = (0..=rest.len().saturating_sub(piece.len())).find(|&i| {
            rest.get(i..i + piece.len())
                .is_some_and(|window| eq(window, piece))
        });
        match found {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Whether two normal paths read alike to a server that ignores case beyond ASCII
/// (`%C3%A9` and `%C3%89`, é and É).
fn unicode_fold_eq(a: &str, b: &str) -> bool {
    match (decoded_text(a), decoded_text(b)) {
        (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
        _ => false,
    }
}

/// A configured path in the form requests are matched in: escapes normalised, no
/// trailing slash; refused when a request could never have that form (dot segments...).
/// Pattern segments (`{name}`, `*`, `**`) are kept as they are; the literals around them
/// must be in the request grammar (with UTF-8, so rules may name UTF-8 paths).
fn normal_pattern(value: &str) -> Result<Cow<'_, str>, String> {
    let grammar = PathGrammar {
        parameters: PathParameters::Reject,
        utf8: true,
    };
    let refused = |why: super::request::Ambiguity| {
        format!("`{value}` is not a normal path: {}", why.reason())
    };
    if !value.contains(['{', '}', '*']) {
        return grammar.normalize(value).map_err(refused);
    }
    let mut normal = String::with_capacity(value.len());
    for part in value[1..].split('/') {
        let special = part == "*" || part == "**" || (part.starts_with('{') && part.ends_with('}'));
        if special || part.contains(['{', '}', '*']) {
            // Judged by the pattern parser.
            normal.push('/');
            normal.push_str(part);
            continue;
        }
        let literal = grammar.normalize_segment(part).map_err(refused)?;
        normal.push('/');
        normal.push_str(&literal);
    }
    if normal.len() > 1 && normal.ends_with('/') {
        normal.pop();
    }
    Ok(Cow::Owned(normal))
}
