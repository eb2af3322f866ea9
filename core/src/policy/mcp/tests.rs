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
    let methods: Vec<&[u8]> = methods.iter().map(|m| m.as_bytes()).collect();
    let names: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    read(
        &methods,
        &names,
        body.map(str::as_bytes),
        false,
        &settings(BodyCheck::WhenSent),
    )
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
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a b"}}"#;
    let op = read_with(&["resources/read"], &["file:///a b"], Some(read_resource)).unwrap();
    assert_eq!(op.name.as_deref(), Some("file:///a b"));
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
    let methods: [&[u8]; 1] = [b"tools/call"];
    let names: [&[u8]; 1] = [b"admin_reset"];
    let partial = read(
        &methods,
        &names,
        Some(CALL.as_bytes()),
        true,
        &settings(BodyCheck::WhenSent),
    );
    assert!(partial.is_err());
    let missing = read(
        &methods,
        &names,
        None,
        false,
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
