use super::*;

fn path(p: &str) -> Result<String, Ambiguity> {
    normalize_path(p, PathParameters::Reject).map(Cow::into_owned)
}

fn stripped(p: &str) -> Result<String, Ambiguity> {
    normalize_path(p, PathParameters::Strip).map(Cow::into_owned)
}

#[test]
fn plain_paths_are_borrowed_unchanged() {
    for p in [
        "/",
        "/api/admin",
        "/a-b_c~d.e/f",
        "/users/JohnDoe",
        "/x:y@z!$&'()*+,=",
    ] {
        assert!(matches!(
            normalize_path(p, PathParameters::Reject),
            Ok(Cow::Borrowed(b)) if b == p
        ));
    }
}

#[test]
fn the_query_is_cut_by_hand_and_a_fragment_refused() {
    assert_eq!(path("/x?y"), Ok("/x".into()));
    assert_eq!(path("/x?/../admin"), Ok("/x".into()));
    // No client sends a fragment; servers that take the target whole read past a `#`.
    assert_eq!(path("/x#/../admin"), Err(Ambiguity::RawByte));
    assert_eq!(path("/x?a=1#f"), Err(Ambiguity::RawByte));
    // `//admin` is a path with an empty segment here, never an authority.
    assert_eq!(path("//admin"), Err(Ambiguity::EmptySegment));
}

#[test]
fn unreserved_escapes_are_decoded_and_others_upper_cased() {
    assert_eq!(path("/api/%61dmin"), Ok("/api/admin".into()));
    assert_eq!(path("/api/%41%44MIN"), Ok("/api/ADMIN".into()));
    assert_eq!(path("/%7euser/%2d"), Ok("/~user/-".into()));
    assert_eq!(path("/a%3ab/%7b%7D%22"), Ok("/a:b/%7B%7D%22".into()));
    // A delimiter allowed raw is one path with its escape (`/users/%40me` is `/users/@me`).
    assert_eq!(path("/%40me/%2b1/%24batch"), Ok("/@me/+1/$batch".into()));
    assert_eq!(path("/a/x%2b"), Ok("/a/x+".into()));
    assert_eq!(path("/a/..%2b/b"), Err(Ambiguity::DotSegment));
}

#[test]
fn dot_segments_are_refused_in_every_spelling() {
    for p in [
        "/.",
        "/..",
        "/...",
        "/a/./b",
        "/a/../b",
        "/a/..",
        "/a/.",
        "/a/.../b",
        "/a/..;/b",
        "/a/.;/b",
        "/a/..;x=1/b",
        // Trailing dots, which Windows servers drop, and `+` padding (a space to some
        // decoders, then trimmed).
        "/admin./x",
        "/admin../x",
        "/api/private-scoped.",
        "/a/..+/b",
        "/a/+../b",
        "/a/+.+/b",
        "/a/x.+",
    ] {
        let expected = if p.contains(';') {
            Err(Ambiguity::PathParameter)
        } else {
            Err(Ambiguity::DotSegment)
        };
        assert_eq!(path(p), expected, "{p}");
        assert_eq!(stripped(p), Err(Ambiguity::DotSegment), "{p}");
    }
    // An encoded dot is refused outright, whatever surrounds it.
    for p in [
        "/%2e/a",
        "/%2E%2E/a",
        "/.%2e/a",
        "/%2e./a",
        "/a/%2e%2E",
        "/a%2eb",
        "/a/%2e%2e;x/b",
    ] {
        assert_eq!(path(p), Err(Ambiguity::EncodedDot), "{p}");
    }
    // Not dot segments.
    assert_eq!(path("/.well-known/x"), Ok("/.well-known/x".into()));
    assert_eq!(path("/a/..b"), Ok("/a/..b".into()));
    assert_eq!(path("/a/b.c"), Ok("/a/b.c".into()));
    assert_eq!(path("/a/+x"), Ok("/a/+x".into()));
}

/// The families of issue 19: each spelling some server reads as `..`, a separator or a
/// near-miss of a protected path is refused, not just the examples.
#[test]
fn issue_19_padded_and_disguised_dot_segments_are_refused() {
    let utf8 = |p: &str| {
        PathGrammar {
            parameters: PathParameters::Reject,
            utf8: true,
        }
        .normalize(p)
        .map(Cow::into_owned)
    };
    for (p, why) in [
        (
            "/api/public/..%20/private-scoped",
            Ambiguity::EncodedControl,
        ),
        (
            "/api/public/%20../private-scoped",
            Ambiguity::EncodedControl,
        ),
        ("/api/public/..%20%20/x", Ambiguity::EncodedControl),
        ("/api/public/..%09/x", Ambiguity::EncodedControl),
        ("/api/public/..%0b/x", Ambiguity::EncodedControl),
        ("/api/public/..%c2%a0/x", Ambiguity::NonAscii),
        ("/api/public/..%c2%85/x", Ambiguity::NonAscii),
        ("/api/public/..%e3%80%80/x", Ambiguity::NonAscii),
        ("/api/public/..%e2%80%83/x", Ambiguity::NonAscii),
        ("/api/public/%ef%bc%8e%ef%bc%8e/x", Ambiguity::NonAscii),
        ("/api/public/%c0%ae%c0%ae/admin", Ambiguity::NonAscii),
        ("/api/public/%e0%80%ae%e0%80%ae/admin", Ambiguity::NonAscii),
        ("/api/public/..%c0%af/admin", Ambiguity::NonAscii),
        ("/api/public/..%3b/x", Ambiguity::EncodedSeparator),
        ("/api/public/..%3Bx=1/x", Ambiguity::EncodedSeparator),
        ("/api/private-scoped%20", Ambiguity::EncodedControl),
        ("/internal%c2%a0/x", Ambiguity::NonAscii),
        ("/internal%20", Ambiguity::EncodedControl),
        ("/api/x%252e%252e", Ambiguity::DoubleEncoding),
        ("/a%2fb", Ambiguity::EncodedSeparator),
        ("/a%5cb", Ambiguity::EncodedSeparator),
        ("/a%00", Ambiguity::EncodedSeparator),
        ("/a%u002e", Ambiguity::BadEscape),
        ("/a\\b", Ambiguity::Backslash),
        ("/a\"b", Ambiguity::RawByte),
        ("/a<b", Ambiguity::RawByte),
        ("/a[b]", Ambiguity::RawByte),
        ("/a{b}", Ambiguity::RawByte),
        ("/a|b", Ambiguity::RawByte),
        ("/a^b", Ambiguity::RawByte),
        ("/a`b", Ambiguity::RawByte),
    ] {
        assert_eq!(path(p), Err(why), "{p}");
    }
    // With UTF-8 paths accepted, every spelling that is not a canonical letter or digit
    // is still refused: whitespace, dots, overlong and surrogate forms, fullwidth and
    // compatibility characters that NFKC folds into ASCII, decomposed accents.
    for p in [
        "/api/public/..%c2%a0/x",
        "/api/public/..%c2%85/x",
        "/api/public/..%e3%80%80/x",
        "/api/public/..%e2%80%83/x",
        "/api/public/%ef%bc%8e%ef%bc%8e/x",
        "/api/public/%e2%80%a4%e2%80%a4/x",
        "/api/public/%c0%ae%c0%ae/admin",
        "/api/public/%e0%80%ae/admin",
        "/api/public/..%c0%af/admin",
        "/api/public/%ed%a0%80/x",
        "/api/public/%c3/x",
        "/api/public/%a9/x",
        "/%ef%bd%81dmin",
        "/%e2%84%aaey",
        "/%ef%ac%81le",
        "/cafe%cc%81",
        "/x%e2%80%8b",
        "/x%e2%80%ae",
        // Letters a server ignoring case reads as ASCII.
        "/adm%c4%b0n",
        "/adm%c4%b1n",
        "/%c5%bfecret",
        // Letters whose case pair servers disagree on.
        "/x%cf%82",
        "/x%e1%b2%80",
        "/x%c8%ba",
    ] {
        assert_eq!(utf8(p), Err(Ambiguity::NonCanonicalUtf8), "{p}");
    }
    assert_eq!(
        utf8("/caf%c3%a9/%e6%97%a5%e6%9c%ac"),
        Ok("/caf%C3%A9/%E6%97%A5%E6%9C%AC".into())
    );
    assert_eq!(path("/caf%c3%a9"), Err(Ambiguity::NonAscii));
    // Windows 8.3 short names.
    assert_eq!(path("/PRIVAT~1/x"), Err(Ambiguity::WindowsName));
    assert_eq!(path("/api/privat~2"), Err(Ambiguity::WindowsName));
    assert_eq!(path("/~user/a~b"), Ok("/~user/a~b".into()));
    // NTFS stream names, raw or escaped.
    assert_eq!(
        path("/admin::$INDEX_ALLOCATION/x"),
        Err(Ambiguity::WindowsName)
    );
    assert_eq!(
        path("/admin:$I30:$INDEX_ALLOCATION/x"),
        Err(Ambiguity::WindowsName)
    );
    assert_eq!(path("/admin%3a%24i30/x"), Err(Ambiguity::WindowsName));
    assert_eq!(path("/privat%7e%31/x"), Err(Ambiguity::WindowsName));
    assert_eq!(path("/v1/jobs:cancel"), Ok("/v1/jobs:cancel".into()));
    // A raw `#` anywhere in the target.
    assert_eq!(
        path("/api/items?x=1#&_method=DELETE"),
        Err(Ambiguity::RawByte)
    );
    assert_eq!(path("/api/items#x"), Err(Ambiguity::RawByte));
}

#[test]
fn path_parameters_are_refused_or_stripped() {
    assert_eq!(path("/a;jsessionid=1/b"), Err(Ambiguity::PathParameter));
    assert_eq!(path("/internal;x"), Err(Ambiguity::PathParameter));
    assert_eq!(stripped("/a;jsessionid=1/b"), Ok("/a/b".into()));
    assert_eq!(stripped("/internal;x"), Ok("/internal".into()));
    assert_eq!(stripped("/a/b;x=1;y=2"), Ok("/a/b".into()));
    assert_eq!(stripped("/a/;x"), Err(Ambiguity::EmptySegment));
    assert_eq!(stripped("/;x/admin"), Err(Ambiguity::EmptySegment));
}

#[test]
fn a_trailing_slash_does_not_change_the_path_rules_see() {
    assert_eq!(path("/api/exact/"), Ok("/api/exact".into()));
    assert_eq!(path("/"), Ok("/".into()));
    assert_eq!(path("/a/?q"), Ok("/a".into()));
}

#[test]
fn hosts_lose_case_port_and_one_trailing_dot() {
    let host = |h: &str| normalize_host(h).map(Cow::into_owned);
    assert_eq!(host("API.Example.com"), Ok("api.example.com".into()));
    assert_eq!(host("api.example.com."), Ok("api.example.com".into()));
    assert_eq!(host("api.example.com.:8443"), Ok("api.example.com".into()));
    assert_eq!(host("api.example.com:443"), Ok("api.example.com".into()));
    assert_eq!(host("[::1]:8080"), Ok("[::1]".into()));
    assert_eq!(host("[2001:DB8::1]"), Ok("[2001:db8::1]".into()));
    assert_eq!(host("127.0.0.1:80"), Ok("127.0.0.1".into()));
    assert_eq!(host(""), Ok("".into()));
    for bad in [
        "api.example.com..",
        "a..b",
        ".a",
        "a b",
        "a/b",
        "user@a",
        "a%2eb",
        "é.example.com",
        "a:b:c",
        "a:",
        "a:123456",
        "[::1",
        "[::1]x",
        "[zz]",
    ] {
        assert_eq!(host(bad), Err(Ambiguity::Host), "{bad:?}");
    }
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "", ".", "..", "%2e", "%2E%2e", "%2f", "%5C", "%00", "%61", "%41", "%25", "%252e",
                "%20", "%c3%a9", ";", ";x=1", "..;", "\\", "api", "Admin", "a", "?", "#", "é",
            ])
            .prop_map(str::to_owned),
            "[ -~]{0,4}",
        ]
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent_and_leaves_nothing_ambiguous(
            pieces in prop::collection::vec(piece(), 0..6),
            strip in any::<bool>(),
        ) {
            let raw = format!("/{}", pieces.concat());
            let params = if strip { PathParameters::Strip } else { PathParameters::Reject };
            if let Ok(normal) = normalize_path(&raw, params) {
                let again = normalize_path(&normal, params).map(Cow::into_owned);
                prop_assert_eq!(again.as_deref(), Ok(&*normal));
                prop_assert!(normal.starts_with('/'));
                prop_assert!(!normal.contains("//"));
                prop_assert!(!normal.contains(['\\', '?', '#', ';']));
                prop_assert!(normal.bytes().all(|b| b.is_ascii_graphic()));
                for segment in normal.split('/') {
                    prop_assert!(segment != "." && segment != "..");
                }
                let lower = normal.to_ascii_lowercase();
                prop_assert!(!lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%5c"));
                prop_assert!(!lower.contains("%25") && !lower.contains("%20") && !lower.contains("%3b"));
                for segment in normal.split('/').skip(1) {
                    prop_assert!(!segment.ends_with('.'), "{}", normal);
                }
            }
        }

        #[test]
        fn hosts_never_panic_and_normalise_idempotently(host in "[ -~]{0,24}") {
            if let Ok(normal) = normalize_host(&host) {
                let again = normalize_host(&normal).map(Cow::into_owned);
                prop_assert_eq!(again.as_deref(), Ok(&*normal));
                prop_assert!(!normal.bytes().any(|b| b.is_ascii_uppercase()));
            }
        }
    }
}

#[test]
fn the_authority_is_one_plain_name_or_address_and_one_port() {
    let read = |raw: &str| Authority::parse(raw).map(|a| (a.host.into_owned(), a.port));
    for (raw, host, port) in [
        ("API.Example.com", "api.example.com", None),
        ("api.example.com.:8443", "api.example.com", Some(8443)),
        ("10.0.0.1:65535", "10.0.0.1", Some(65535)),
        ("[::1]:443", "[::1]", Some(443)),
        ("[2001:DB8::1]", "[2001:db8::1]", None),
        ("svc_internal.local", "svc_internal.local", None),
        ("", "", None),
    ] {
        assert_eq!(read(raw), Ok((host.to_owned(), port)), "{raw}");
    }
    for raw in [
        "x@api.example.com",
        "api.example.com?",
        "api.example.com#",
        "api.example.com/",
        "api.example.com:",
        "api.example.com:0",
        "api.example.com:080",
        "api.example.com:65536",
        "api.example.com:443:443",
        "127.1",
        "0x7f.0.0.1",
        "010.0.0.1",
        "1.2.3.256",
        "example.123",
        "example.0x1",
        "[::1",
        "[::g]",
        "[::1]x",
        "[::1]:0443",
        "api..example.com",
        ".api.example.com",
        "api.example.com..",
        "api example.com",
    ] {
        assert_eq!(read(raw), Err(Ambiguity::Host), "{raw}");
    }
}
