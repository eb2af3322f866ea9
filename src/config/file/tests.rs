use super::*;

fn parsed(text: &str) -> FileConfig {
    match parse(text) {
        (Some(file), errors) if errors.is_empty() => file,
        (_, errors) => panic!("{errors:?}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    parse(text).1.iter().map(ToString::to_string).collect()
}

#[test]
fn documented_example_parses() {
    let file = parsed(
        r#"
issuers:
  - issuer: https://tenant.auth0.com/
    audiences: [https://api.example.com]
    algorithms: [RS256]
routes:
  - path: /api/public
    allow_anonymous: true
  - methods: [GET]
    path: /api/messages/{id}
    scopes: { all_of: [read:messages] }
"#,
    );
    assert_eq!(file.issuers.len(), 1);
    assert_eq!(file.routes.len(), 2);
    assert_eq!(file.routes[1].path.as_deref(), Some("/api/messages/{id}"));
}

#[test]
fn unknown_keys_name_line_and_field() {
    let errors = errors("issuers:\n  - issuer: https://x/\n    audience: [a]\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("line 3, column 5: issuers[0].audience: unknown field `audience`"),
        "{errors:?}"
    );
}

/// Every key the file gets wrong is named in one reading, each with its line and
/// column, block and flow style alike; the rest of the file is still read.
#[test]
fn every_wrong_key_is_reported_at_once() {
    let text = "listen: 127.0.0.1:1\nissuers:\n  - issuer: https://a/\n    audiences: [x]\n    colour: blue\n  - {issuer: \"https://b/\", audience: [y]}\nroutes:\n  - name: one\n    path_prefix: /x\n    scope: {all_of: [a]}\n  - {path: /y, methods: GET}\nlog: {level: info, formt: json}\nmax_header_bytes: many\njwks:\n  refresh: 5m\n  max_byte: 3\n";
    let (file, errors) = parse(text);
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expected = [
        ("issuers[0].colour", (5, 5)),
        ("issuers[1].audience", (6, 28)),
        ("routes[0].scope", (10, 5)),
        ("routes[1].methods", (11, 16)),
        ("log.formt", (12, 20)),
        ("max_header_bytes", (13, 1)),
        ("jwks.max_byte", (16, 3)),
    ];
    assert_eq!(errors.len(), expected.len(), "{lines:#?}");
    for (field, location) in expected {
        let error = errors
            .iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("no error for {field}: {lines:#?}"));
        assert_eq!(error.location, Some(location), "{field}: {lines:#?}");
    }
    // What could be read was: the checks that follow see the rest of the file.
    let file = file.expect("the wrong keys taken out, the rest read");
    assert_eq!(file.listen.as_deref(), Some("127.0.0.1:1"));
    assert_eq!(file.routes.len(), 2);
    assert_eq!(
        file.jwks.and_then(|j| j.refresh),
        Some(Duration::from_secs(300))
    );
}

#[test]
fn a_missing_member_is_named_and_the_rest_read() {
    let (file, errors) = parse("issuers:\n  - audiences: [a]\n    colour: x\n");
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("issuers[0]: missing field `issuer`")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("issuers[0].colour: unknown field")),
        "{lines:?}"
    );
    assert!(file.is_some(), "{lines:?}");
}

#[test]
fn text_that_is_not_yaml_is_one_error() {
    let errors = errors("issuers: [\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("line "), "{errors:?}");
}

#[test]
fn durations_accept_numbers() {
    let file = parsed("leeway: 30\njwks: {refresh: 5m}\n");
    assert_eq!(file.leeway, Some(Duration::from_secs(30)));
    assert_eq!(file.jwks.unwrap().refresh, Some(Duration::from_secs(300)));
}

#[test]
fn empty_file_is_all_defaults() {
    assert!(parsed("").issuers.is_empty());
}

/// A list item of the wrong kind is named once, and the rest of the file is still read:
/// an item that should be a mapping is read as an empty one.
#[test]
fn a_wrong_kind_of_list_item_is_named_once_and_the_rest_read() {
    let (file, errors) = parse(
        "routes:\n  - /api\n  - {path: /x, colour: red}\nissuers:\n  - https://a/\nlog: {formt: x}\n",
    );
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for field in ["routes[0]", "routes[1].colour", "issuers[0]", "log.formt"] {
        assert_eq!(
            errors.iter().filter(|e| e.field == field).count(),
            1,
            "{field}: {lines:#?}"
        );
    }
    assert_eq!(errors.len(), 4, "{lines:#?}");
    assert!(file.is_some(), "{lines:#?}");
}
