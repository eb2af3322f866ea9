use super::*;

const MAX: usize = 8192;

fn all() -> Vec<TokenSource> {
    vec![
        TokenSource::authorization(),
        TokenSource::Cookie("access_token".into()),
        TokenSource::Header {
            name: "x-api-token".into(),
            scheme: None,
        },
        TokenSource::Query("access_token".into()),
    ]
}

fn find(path: &str, headers: &[(&str, &str)]) -> Result<(String, usize), AuthError> {
    let request = Inbound {
        method: "GET",
        path,
        headers: headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect(),
        ..Inbound::default()
    };
    find_token(&all(), &request, MAX).map(|f| (f.token().as_str().to_owned(), f.source))
}

#[test]
fn default_source_is_the_authorization_header() {
    let request = Inbound {
        headers: vec![
            ("authorization", b"bearer a.b.c"),
            ("cookie", b"access_token=x.y.z"),
        ],
        ..Inbound::default()
    };
    let found = find_token(&[TokenSource::authorization()], &request, MAX).unwrap();
    assert_eq!(found.token().as_str(), "a.b.c");
    assert_eq!(
        find_token(&[TokenSource::authorization()], &Inbound::default(), MAX),
        Err(AuthError::MissingHeader)
    );
}

#[test]
fn each_source_yields_its_token() {
    let ok = |source| Ok(("a.b.c".to_owned(), source));
    assert_eq!(find("/", &[("authorization", "Bearer a.b.c")]), ok(0));
    assert_eq!(
        find("/", &[("cookie", "theme=dark; access_token=a.b.c")]),
        ok(1)
    );
    assert_eq!(find("/", &[("x-api-token", " a.b.c ")]), ok(2));
    assert_eq!(find("/p?x=1&access_token=a.b.c", &[]), ok(3));
    assert_eq!(find("/p?access_token=a%2Eb.c#f", &[]), ok(3));
}

#[test]
fn no_source_carrying_a_token_is_authorization_header_missing() {
    let missing = Err(AuthError::MissingHeader);
    assert_eq!(
        find(
            "/?other=1",
            &[("cookie", "theme=dark"), ("x-api-token", " ")]
        ),
        missing
    );
    assert_eq!(
        find("/?access_token=", &[("cookie", "access_token=")]),
        missing
    );
}

#[test]
fn different_tokens_in_two_sources_are_refused_and_the_same_token_is_accepted() {
    let two = find("/?access_token=d.e.f", &[("authorization", "Bearer a.b.c")]);
    assert_eq!(two, Err(AuthError::TokenSentTwice));
    let cookie_and_header = find(
        "/",
        &[("cookie", "access_token=d.e.f"), ("x-api-token", "a.b.c")],
    );
    assert_eq!(cookie_and_header, Err(AuthError::TokenSentTwice));
    let same = find(
        "/",
        &[
            ("authorization", "Bearer a.b.c"),
            ("cookie", "access_token=a.b.c"),
        ],
    );
    assert_eq!(same, Ok(("a.b.c".into(), 0)));
}

#[test]
fn a_malformed_source_fails_even_when_another_carries_a_token() {
    assert_eq!(
        find(
            "/",
            &[
                ("authorization", "Basic x"),
                ("cookie", "access_token=a.b.c")
            ]
        ),
        Err(AuthError::NotBearer)
    );
    assert_eq!(
        find("/?access_token=%zz", &[]),
        Err(AuthError::BadTokenValue)
    );
}

#[test]
fn cookies_follow_rfc6265() {
    let ok = Ok(("a.b.c".to_owned(), 1));
    // Several cookie headers, kept apart (raw header_map) or joined by Envoy with a comma.
    assert_eq!(
        find("/", &[("cookie", "a=1"), ("cookie", "access_token=a.b.c")]),
        ok
    );
    assert_eq!(find("/", &[("cookie", "a=1,access_token=a.b.c")]), ok);
    // Quoted values lose their quotes; a lone quote is malformed.
    assert_eq!(find("/", &[("cookie", "access_token=\"a.b.c\"")]), ok);
    assert_eq!(
        find("/", &[("cookie", "access_token=\"a.b.c")]),
        Err(AuthError::BadTokenValue)
    );
    // Names must match whole: no prefix or suffix confusion.
    assert_eq!(
        find("/", &[("cookie", "xaccess_token=d; access_token_2=e")]),
        Err(AuthError::MissingHeader)
    );
    // Another case of the name is the same cookie to ASP.NET Core: a second token.
    assert_eq!(
        find("/", &[("cookie", "Access_Token=a.b.c")]),
        Err(AuthError::TokenSentTwice)
    );
    // Characters outside cookie-octet.
    assert_eq!(
        find("/", &[("cookie", "access_token=a\\b")]),
        Err(AuthError::BadTokenValue)
    );
}

#[test]
fn a_duplicate_token_cookie_is_refused_as_ambiguous() {
    let refused = Err(AuthError::TokenSentTwice);
    assert_eq!(
        find("/", &[("cookie", "access_token=a.b.c; access_token=a.b.c")]),
        refused
    );
    assert_eq!(
        find(
            "/",
            &[
                ("cookie", "access_token=a.b.c"),
                ("cookie", "access_token=d.e.f")
            ]
        ),
        refused
    );
    assert_eq!(
        find("/", &[("cookie", "access_token=a.b.c,access_token=")]),
        refused
    );
}

#[test]
fn a_duplicate_or_encoded_query_parameter_is_refused() {
    let refused = Err(AuthError::TokenSentTwice);
    assert_eq!(
        find("/?access_token=a.b.c&access_token=a.b.c", &[]),
        refused
    );
    assert_eq!(find("/?access%5Ftoken=a.b.c", &[]), refused);
    assert_eq!(
        find("/?access_token=a%20b", &[]),
        Err(AuthError::BadTokenValue)
    );
    // Not escapes: `%` must be followed by two hex digits (`%+4` is no `\x04`).
    for value in ["a%+41.b.c", "a.b.c%4", "a.b%zz.c", "a.b.c%"] {
        assert_eq!(
            find(&format!("/?access_token={value}"), &[]),
            Err(AuthError::BadTokenValue),
            "{value}"
        );
    }
}

/// Issue 19: every name some server reads as the token's is a second token, whether or
/// not it carries the same value; with `strip_authorization` it could not be removed.
#[test]
fn names_other_servers_read_as_the_token_are_refused() {
    let refused = Err(AuthError::TokenSentTwice);
    for cookie in [
        "access%5Ftoken=a.b.c",
        "access%5ftoken=a.b.c",
        "access.token=a.b.c",
        "access+token=a.b.c",
        "access[token=a.b.c",
        "%20access_token=a.b.c",
        "access_token=a.b.c; access.token=x.y.z",
    ] {
        assert_eq!(find("/", &[("cookie", cookie)]), refused, "{cookie}");
    }
    for query in [
        "/?access.token=a.b.c",
        "/?access+token=a.b.c",
        "/?access%5Ftoken=a.b.c",
        "/?+access_token=a",
    ] {
        assert_eq!(find(query, &[]), refused, "{query}");
    }
    for name in ["x_api_token", "X_Api-Token", "x-api_token"] {
        assert_eq!(find("/", &[(name, "a.b.c")]), refused, "{name}");
        assert_eq!(
            find("/", &[(name, "a.b.c"), ("x-api-token", "a.b.c")]),
            refused,
            "{name}"
        );
    }
    // Rack's readings: brackets around the name, and `;` as a separator.
    for query in [
        "/?access_token]=a",
        "/?[access_token]=a",
        "/?x=1;access_token=a",
        "/?access_token%00=a",
    ] {
        assert_eq!(find(query, &[]), refused, "{query}");
    }
    assert_eq!(find("/", &[("cookie", "access_token[]=a.b.c")]), refused);
    // Other names are other cookies and parameters.
    assert_eq!(
        find("/", &[("cookie", "access-token=x; other=y")]),
        Err(AuthError::MissingHeader)
    );
    assert_eq!(
        find("/?access_tokens=a", &[]),
        Err(AuthError::MissingHeader)
    );
    assert!(reads_as("access.token", "access_token"));
    assert!(reads_as("access_token", "access.token"));
    // ASP.NET Core reads names case-insensitively.
    assert!(reads_as("Access_token", "access_token"));
}

#[test]
fn strip_refuses_copies_it_could_not_remove() {
    let request = |path: &'static str, cookie: &'static str| Inbound {
        method: "GET",
        path,
        headers: vec![
            ("authorization", b"Bearer a.b.c"),
            ("cookie", cookie.as_bytes()),
        ],
        ..Inbound::default()
    };
    let sources = all();
    // Over gRPC, Envoy removes the parameter by its exact name.
    assert_eq!(
        check_removable(&sources, &request("/?access_token=a.b.c", "x=1"), true),
        Ok(())
    );
    assert_eq!(
        check_removable(&sources, &request("/?access_token=a.b.c", "x=1"), false),
        Err(AuthError::QueryTokenNotRemovable)
    );
    assert_eq!(
        check_removable(&sources, &request("/?access%5Ftoken=a.b.c", "x=1"), true),
        Err(AuthError::TokenSentTwice)
    );
    assert_eq!(
        check_removable(&sources, &request("/?access.token=a.b.c", "x=1"), false),
        Err(AuthError::QueryTokenNotRemovable)
    );
    assert_eq!(
        check_removable(&sources, &request("/", "access%5Ftoken=a.b.c"), true),
        Err(AuthError::TokenSentTwice)
    );
    assert_eq!(
        check_removable(&sources, &request("/?x=1", "access_token=a.b.c"), false),
        Ok(())
    );
}

#[test]
fn raw_headers_carry_one_token() {
    let twice = Err(AuthError::TokenSentTwice);
    assert_eq!(find("/", &[("x-api-token", "a.b.c,d.e.f")]), twice);
    assert_eq!(
        find("/", &[("x-api-token", "a.b.c"), ("x-api-token", "d")]),
        twice
    );
    assert_eq!(find("/", &[("x-api-token", "a b")]), twice);
    assert_eq!(
        find("/", &[("x-api-token", "a\u{7f}")]),
        Err(AuthError::BadTokenValue)
    );
}

#[test]
fn oversized_values_are_refused() {
    let long = "a".repeat(MAX + 1);
    let bad = Err(AuthError::BadTokenValue);
    assert_eq!(
        find("/", &[("cookie", &format!("access_token={long}"))]),
        bad
    );
    assert_eq!(find(&format!("/?access_token={long}"), &[]), bad);
    assert_eq!(find("/", &[("x-api-token", &long)]), bad);
}

#[test]
fn the_token_cookie_alone_is_removed_from_the_cookie_header() {
    let values: [&[u8]; 2] = [b"theme=dark; access_token=a.b.c", b"lang=en"];
    assert_eq!(
        cookie_without(values.iter().copied(), &["access_token"]).as_deref(),
        Some("theme=dark; lang=en")
    );
    let only: [&[u8]; 1] = [b"access_token=a.b.c"];
    assert_eq!(
        cookie_without(only.iter().copied(), &["access_token"]).as_deref(),
        Some("")
    );
    // Nothing to remove: the value is still given, so nginx keeps the other cookies.
    let other: [&[u8]; 1] = [b"theme=dark"];
    assert_eq!(
        cookie_without(other.iter().copied(), &["access_token"]).as_deref(),
        Some("theme=dark")
    );
    let none: [&[u8]; 0] = [];
    assert_eq!(
        cookie_without(none.iter().copied(), &["access_token"]),
        None
    );
}

#[test]
fn debug_never_prints_the_token() {
    let request = Inbound {
        headers: vec![("authorization", b"Bearer secret.token.value")],
        ..Inbound::default()
    };
    let found = find_token(&all(), &request, MAX).unwrap();
    assert!(!format!("{found:?}").contains("secret"));
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn token_sources_never_panic(
            path in "/[ -~]{0,40}",
            cookie in "[ -~]{0,60}",
            header in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let request = Inbound {
                path: &path,
                headers: vec![("cookie", cookie.as_bytes()), ("x-api-token", &header)],
                ..Inbound::default()
            };
            let _ = find_token(&all(), &request, 64);
            let _ = cookie_without(request.values("cookie"), &["access_token"]);
        }
    }
}
