use super::*;

#[test]
fn every_code_is_listed_once_in_order() {
    for (i, code) in Code::ALL.iter().enumerate() {
        assert_eq!(code.index(), i);
    }
    let mut labels: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), Code::ALL.len());
}

/// The README's error table is part of the API: each row's HTTP status and
/// `CheckResponse.status` must be what [`Code`] gives its `code`, and every code
/// must have a row.
#[test]
fn readme_error_table_agrees_with_the_codes() {
    let readme = include_str!("../../../docs/error-codes.md");
    let section = readme
        .split("# Error codes\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/error-codes.md has an `# Error codes` section");
    let grpc_name = |code: i32| match code {
        UNAUTHENTICATED => "UNAUTHENTICATED",
        PERMISSION_DENIED => "PERMISSION_DENIED",
        UNAVAILABLE => "UNAVAILABLE",
        other => panic!("no name for gRPC code {other}"),
    };
    let mut seen = std::collections::HashSet::new();
    let rows = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // the header and the `---` line
        .collect::<Vec<_>>();
    assert!(rows.len() >= Code::ALL.len(), "{rows:?}");
    for row in rows {
        // The condition may hold `|` only inside backticks; the last three cells don't.
        let cells: Vec<&str> = row
            .trim_matches('|')
            .rsplitn(4, '|')
            .map(str::trim)
            .collect();
        let [status, code, http, condition] = cells[..] else {
            panic!("malformed row: {row}");
        };
        let name = code.trim_matches('`');
        let code = Code::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or_else(|| panic!("README names unknown code `{name}`: {row}"));
        assert_eq!(
            http,
            code.http_status().to_string(),
            "HTTP status of {condition}"
        );
        assert_eq!(
            status,
            grpc_name(code.grpc_code()),
            "gRPC status of {condition}"
        );
        seen.insert(code);
    }
    for code in Code::ALL {
        assert!(
            seen.contains(&code),
            "README's error table has no row for {code:?}"
        );
    }
}
