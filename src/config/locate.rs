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
            Segment::Key(key) => find_key(&lines, start, end, key),
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
            end = block_end(
                &lines,
                line + 1,
                end,
                column,
                matches!(segment, Segment::Key(_)),
            );
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

/// The line, column and flow-ness of `key` among the keys of the node in lines
/// `start..end`: at the column of its first key, or inside it when the node is a flow
/// mapping (`{a: 1, b: 2}`).
fn find_key(lines: &[&str], start: usize, end: usize, key: &str) -> Option<(usize, usize, bool)> {
    let pattern = format!("{key}:");
    // A flow mapping after its key (`log: {level: info}`): the window is its one line.
    if end == start + 1
        && let Some(at) = lines.get(start).and_then(|line| flow_key(line, &pattern))
    {
        return Some((start, at, true));
    }
    let mut column = None;
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        let Some((_, text)) = content(line) else {
            continue;
        };
        let body = text.strip_prefix("- ").unwrap_or(text);
        let at = line.len() - body.len();
        let keys_at = *column.get_or_insert(at);
        if at == keys_at && body.starts_with(&pattern) {
            let flow = body[pattern.len()..].trim_start().starts_with(['{', '[']);
            return Some((i, at, flow));
        }
        if at == keys_at
            && body.starts_with('{')
            && let Some(at) = flow_key(line, &pattern)
        {
            return Some((i, at, true));
        }
        if at < keys_at {
            break;
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

/// Where the block starting at `start` with children deeper than `column` ends. A key's
/// block sequence may sit at the key's own column (`routes:` then `- path: /x`).
fn block_end(lines: &[&str], start: usize, end: usize, column: usize, key: bool) -> usize {
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        if let Some((indent, text)) = content(line) {
            let item = text.starts_with("- ") || text == "-";
            if indent < column || (indent == column && !(key && item)) {
                return i;
            }
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
        // A top-level key is not taken for a nested one of the same name, nor the other
        // way round; a list at its key's own column is read as that key's.
        let text = "http_server:\n  max_header_bytes: 1\nmax_header_bytes: lots\nroutes:\n- path: /a\n- path: /b\n  colour: red\n";
        assert_eq!(locate(text, &segments("max_header_bytes")), Some((3, 1)));
        assert_eq!(
            locate(text, &segments("http_server.max_header_bytes")),
            Some((2, 3))
        );
        assert_eq!(locate(text, &segments("routes[1].colour")), Some((7, 3)));
    }
}
