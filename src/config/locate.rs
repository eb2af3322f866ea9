//! Where a setting is in the configuration file's text, for error messages: the YAML
//! parser gives the position of the first problem only, and the file is read whole again
//! to report the others ([`super::file::parse`]). Best effort and for messages only: block
//! and flow mappings and block sequences, as people write configuration files.

/// One step of a setting's path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// `routes[2].scopes` as segments. A key that itself holds `.`, `[` or `]` cannot be told
/// apart from the path around it: the segments stop there.
pub fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let Some((digits, tail)) = after.split_once(']') else {
                break;
            };
            let Ok(index) = digits.parse() else {
                break;
            };
            out.push(Segment::Index(index));
            rest = tail;
        } else {
            let rest_key = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_key.find(['.', '[']).unwrap_or(rest_key.len());
            let (key, tail) = rest_key.split_at(end);
            if key.is_empty() || key.contains(']') {
                break;
            }
            out.push(Segment::Key(key.to_owned()));
            rest = tail;
        }
    }
    out
}

/// Line and column (from 1) of the deepest part of `path` found in `text`.
pub fn locate(text: &str, path: &[Segment]) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    // The lines the current node spans, and the column its children are deeper than.
    let (mut start, mut end, mut parent) = (0, lines.len(), None::<usize>);
    let mut found = None;
    for segment in path {
        let hit = match segment {
            Segment::Key(key) => find_key(&lines, start, end, parent, key),
            Segment::Index(i) => find_item(&lines, start, end, parent, *i),
        };
        let Some((line, column, flow)) = hit else {
            break;
        };
        found = Some((line + 1, column + 1));
        if flow {
            // A flow collection (`{a: 1, b: 2}`) on one line: deeper parts are on it too.
            start = line;
            end = line + 1;
        } else {
            end = block_end(&lines, line + 1, end, column);
            // An item's first key is on the item's own line (`- name: x`).
            start = if matches!(segment, Segment::Index(_)) {
                line
            } else {
                line + 1
            };
        }
        parent = Some(column);
    }
    found
}

fn content(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    Some((line.len() - trimmed.len(), trimmed))
}

/// The line, column and flow-ness of `key` in lines `start..end`, deeper than `parent`.
fn find_key(
    lines: &[&str],
    start: usize,
    end: usize,
    parent: Option<usize>,
    key: &str,
) -> Option<(usize, usize, bool)> {
    let pattern = format!("{key}:");
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        let Some((indent, text)) = content(line) else {
            continue;
        };
        let body = text.strip_prefix("- ").unwrap_or(text);
        let column = line.len() - body.len();
        if parent.is_none_or(|p| column > p || (end - start == 1)) && body.starts_with(&pattern) {
            let flow = body[pattern.len()..].trim_start().starts_with(['{', '[']);
            return Some((i, column, flow));
        }
        if let Some(at) = flow_key(line, &pattern)
            && parent.is_none_or(|p| at > p || indent > p)
        {
            return Some((i, at, true));
        }
    }
    None
}

/// A `key:` inside a flow mapping on `line`: after `{`, `,` or a space.
fn flow_key(line: &str, pattern: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = line[from..].find(pattern) {
        let at = from + at;
        let before = line[..at].trim_end();
        if at > 0 && (before.ends_with('{') || before.ends_with(',')) {
            return Some(at);
        }
        from = at + pattern.len();
    }
    None
}

/// The `index`th item (`- `) of the block sequence in lines `start..end`.
fn find_item(
    lines: &[&str],
    start: usize,
    end: usize,
    parent: Option<usize>,
    index: usize,
) -> Option<(usize, usize, bool)> {
    let mut seen = 0;
    let mut item_indent = None;
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        let Some((indent, text)) = content(line) else {
            continue;
        };
        if !(text.starts_with("- ") || text == "-") || parent.is_some_and(|p| indent < p) {
            continue;
        }
        if *item_indent.get_or_insert(indent) != indent {
            continue;
        }
        if seen == index {
            let flow = text[1..].trim_start().starts_with(['{', '[']);
            return Some((i, indent, flow));
        }
        seen += 1;
    }
    None
}

/// Where the block starting at `start` with children deeper than `column` ends.
fn block_end(lines: &[&str], start: usize, end: usize, column: usize) -> usize {
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        if let Some((indent, _)) = content(line)
            && indent <= column
        {
            return i;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_keys_and_indexes_and_odd_keys_stop_them() {
        assert_eq!(
            segments("routes[2].scopes.all_of[0]"),
            [
                Segment::Key("routes".into()),
                Segment::Index(2),
                Segment::Key("scopes".into()),
                Segment::Key("all_of".into()),
                Segment::Index(0),
            ]
        );
        for odd in ["x[0]]", "a[0]é]", "]", "[", "[x]", "a..b", "é[1", ""] {
            let _ = segments(odd);
        }
        assert_eq!(
            segments("x[0]]"),
            [Segment::Key("x".into()), Segment::Index(0)]
        );
    }

    #[test]
    fn keys_are_found_in_block_and_flow_style_with_any_text_around() {
        let text = "issuers:\n  - issuer: é\n    audiences: [x]\n  - {issuer: \"b\", dpop: é}\nlog: {level: info}\n";
        assert_eq!(
            locate(text, &segments("issuers[0].audiences")),
            Some((3, 5))
        );
        assert_eq!(locate(text, &segments("issuers[1].dpop")), Some((4, 19)));
        assert_eq!(locate(text, &segments("log.level")), Some((5, 7)));
        assert_eq!(locate(text, &segments("nowhere.x")), None);
    }
}
