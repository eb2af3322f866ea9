use super::*;

fn settings(body: BodyCheck) -> McpSettings {
    McpSettings {
        endpoints: vec!["/mcp".into()],
        body,
        max_body_bytes: 1024,
    }
}

fn read_with<'a>(
    methods: &[&'a str],
    names: &[&'a str],
    body: Option<&'a str>,
) -> Result<McpOperation<'a>, Ambiguity> {
    read(
        &headers(methods, names),
        body.map(str::as_bytes),
        &settings(BodyCheck::WhenSent),
    )
}

fn headers<'a>(methods: &[&'a str], names: &[&'a str]) -> McpHeaders<'a> {
    McpHeaders {
        methods: methods.iter().map(|m| m.as_bytes()).collect(),
        names: names.iter().map(|n| n.as_bytes()).collect(),
        content_types: vec![b"application/json"],
        ..McpHeaders::default()
    }
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset","arguments":{"a":1}}}"#;

#[test]
fn headers_and_body_name_one_operation() {
    let op = read_with(&["tools/call"], &["admin_reset"], Some(CALL)).unwrap();
    assert_eq!(op.method, "tools/call");
    assert_eq!(op.name.as_deref(), Some("admin_reset"));
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    assert_eq!(
        read_with(&["tools/list"], &[], Some(list)).unwrap().name,
        None
    );
    let read_resource =
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a%20b"}}"#;
    let op = read_with(&["resources/read"], &["file:///a%20b"], Some(read_resource)).unwrap();
    assert_eq!(op.name.as_deref(), Some("file:///a%20b"));
    // Without a body the headers decide.
    assert!(read_with(&["tools/call"], &["admin_reset"], None).is_ok());
    // A non-ASCII name comes Base64-wrapped.
    let body = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"tööl"}}"#;
    let op = read_with(&["tools/call"], &["=?base64?dMO2w7Zs?="], Some(body)).unwrap();
    assert_eq!(op.name.as_deref(), Some("tööl"));
}

#[test]
fn every_other_reading_is_refused() {
    let long = format!(
        r#"{{"method":"tools/call","params":{{"name":"admin_reset","pad":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let batch = format!("[{CALL}]");
    let cases: Vec<(&[&str], &[&str], Option<&str>)> = vec![
        // Headers missing, repeated, contradictory or not canonical.
        (&[], &["admin_reset"], Some(CALL)),
        (&["tools/call", "tools/call"], &["admin_reset"], Some(CALL)),
        (&["tools/call"], &[], Some(CALL)),
        (&["tools/call"], &["admin_reset", "admin_reset"], Some(CALL)),
        (&["tools/list"], &["admin_reset"], None),
        (&["tools/call "], &["admin_reset"], None),
        (&["tools call"], &["admin_reset"], None),
        (&["tools/call"], &[" admin_reset"], None),
        (&["tools/call"], &["admin\treset"], None),
        (&["tools/call"], &["=?base64?not base64?="], None),
        (&["tools/call"], &["=?base64?YWRtaW4=?"], None),
        (&["tools/call"], &[""], None),
        // Header and body disagree.
        (&["tools/call"], &["safe_tool"], Some(CALL)),
        (&["tools/list"], &[], Some(CALL)),
        // Bodies read strictly: batches, other JSON, repeated members, escapes, no name,
        // over the bound.
        (&["tools/call"], &["admin_reset"], Some(&batch)),
        (&["tools/call"], &["admin_reset"], Some("\"tools/call\"")),
        (&["tools/call"], &["admin_reset"], Some("not json")),
        (
            &["tools/call"],
            &["admin_reset"],
            Some(
                r#"{"method":"tools/call","method":"tools/list","params":{"name":"admin_reset"}}"#,
            ),
        ),
        (
            &["tools/call"],
            &["admin_reset"],
            Some(r#"{"method":"tools/call","params":{"name":"safe","name":"admin_reset"}}"#),
        ),
        (
            &["tools/call"],
            &["admin_reset"],
            Some(r#"{"method":"tools/call","params":{"name":"\u0061dmin_reset"}}"#),
        ),
        (
            &["tools/call"],
            &["admin_reset"],
            Some(r#"{"method":"tools\/call","params":{"name":"admin_reset"}}"#),
        ),
        (
            &["tools/call"],
            &["admin_reset"],
            Some(r#"{"method":"tools/call","params":{"arguments":{}}}"#),
        ),
        (
            &["tools/call"],
            &["admin_reset"],
            Some(r#"{"method":"tools/call","params":{"name":7}}"#),
        ),
        (&["tools/call"], &["admin_reset"], Some(&long)),
    ];
    for (methods, names, body) in cases {
        assert!(
            read_with(methods, names, body).is_err(),
            "{methods:?} {names:?} {body:?}"
        );
    }
}

#[test]
fn a_cut_body_or_a_missing_required_one_is_refused() {
    let partial = McpHeaders {
        partial_body: true,
        ..headers(&["tools/call"], &["admin_reset"])
    };
    let cut = read(
        &partial,
        Some(CALL.as_bytes()),
        &settings(BodyCheck::WhenSent),
    );
    assert!(cut.is_err());
    let missing = read(
        &headers(&["tools/call"], &["admin_reset"]),
        None,
        &settings(BodyCheck::Required),
    );
    assert!(missing.is_err());
}

#[test]
fn rules_match_methods_and_names_by_pattern() {
    let op = |method, name: Option<&'static str>| McpOperation {
        method,
        name: name.map(Cow::Borrowed),
    };
    let admin = McpMatch {
        method: "tools/call".into(),
        name: Some("admin_*".into()),
    };
    assert!(admin.matches(&op("tools/call", Some("admin_reset"))));
    assert!(!admin.matches(&op("tools/call", Some("reset_admin"))));
    assert!(!admin.matches(&op("prompts/get", Some("admin_reset"))));
    assert!(!admin.matches(&op("tools/list", None)));
    let any_tool = McpMatch {
        method: "tools/*".into(),
        name: None,
    };
    assert!(any_tool.matches(&op("tools/list", None)));
    assert!(any_tool.matches(&op("tools/call", Some("x"))));
}

/// The body is read in one encoding: JSON in UTF-8, not compressed. `+AG0-ethod` is
/// `method` to a server that decodes UTF-7.
#[test]
fn the_body_is_json_in_utf8_only() {
    let smuggled = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","+AG0-ethod":"tools/call","params":{"name":"admin_reset"}}"#;
    for (content_type, ok) in [
        ("application/json", true),
        ("application/json; charset=utf-8", true),
        ("Application/JSON;charset=\"UTF-8\"", true),
        ("application/json; charset=utf-7", false),
        ("application/json; charset=utf-7-imap", false),
        ("application/json; charset=utf-8; x=y", false),
        ("text/plain", false),
        ("application/json-patch+json", false),
    ] {
        let h = McpHeaders {
            content_types: vec![content_type.as_bytes()],
            ..headers(&["tools/list"], &[])
        };
        assert_eq!(
            read(
                &h,
                Some(smuggled.as_bytes()),
                &settings(BodyCheck::WhenSent)
            )
            .is_ok(),
            ok,
            "{content_type}"
        );
    }
    let two = McpHeaders {
        content_types: vec![b"application/json", b"application/json"],
        ..headers(&["tools/list"], &[])
    };
    assert!(read(&two, None, &settings(BodyCheck::WhenSent)).is_err());
    let gzip = McpHeaders {
        content_encodings: vec![b"gzip"],
        ..headers(&["tools/list"], &[])
    };
    assert!(read(&gzip, None, &settings(BodyCheck::WhenSent)).is_err());
}

/// Members a case-insensitive reader takes for one (Go's encoding/json), `params` that is
/// not an object, and resource URIs outside their one spelling are refused.
#[test]
fn case_twins_and_uri_spellings_are_refused() {
    for (method, names, body) in [
        (
            "tools/list",
            &[][..],
            r#"{"method":"tools/list","Method":"tools/call","params":{"name":"admin_reset"}}"#,
        ),
        (
            "tools/call",
            &["search"][..],
            r#"{"method":"tools/call","params":{"name":"search","NAME":"admin_reset"}}"#,
        ),
        (
            "tools/call",
            &["search"][..],
            r#"{"method":"tools/call","params":{"name":"search"},"paramſ":{"name":"admin_reset"}}"#,
        ),
        (
            "tools/call",
            &["search"][..],
            r#"{"method":"tools/call","params":["search"]}"#,
        ),
    ] {
        assert!(read_with(&[method], names, Some(body)).is_err(), "{body}");
    }
    let read_uri = |uri: &str| {
        let body = format!(r#"{{"method":"resources/read","params":{{"uri":"{uri}"}}}}"#);
        read_with(&["resources/read"], &[uri], Some(&body)).map(|op| op.name.map(Cow::into_owned))
    };
    assert_eq!(
        read_uri("file:///secrets/key"),
        Ok(Some("file:///secrets/key".to_owned()))
    );
    for uri in [
        "file:///public/../secrets/key",
        "FILE:///secrets/key",
        "file://localhost/secrets/key",
        "file:/secrets/key",
        "file:///%73ecrets/key",
        "file:///secrets%2fkey",
        "not a uri",
    ] {
        assert!(read_uri(uri).is_err(), "{uri}");
    }
}
