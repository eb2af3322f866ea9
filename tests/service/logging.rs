//! Denial logging under a flood: at most `--log-deny-rate` lines per code per second, the
//! first of each code always, a summary of the rest, and metrics that count every one.

use jwt_authz::testkit::*;

// One thread: the server's tasks run where the capturing subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn a_deny_flood_is_logged_at_the_rate_and_summarised_and_counted_exactly() {
    let (captured, _guard) = capture(tracing::Level::INFO);

    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--log-deny-rate", "3"]).await;
    for _ in 0..50 {
        assert_denied(
            &authz.check(request(None, None)).await,
            401,
            "authorization_header_missing",
        );
    }
    let expired = {
        let mut c = claims(&idp.issuer());
        c["exp"] = serde_json::json!(now() - 3600);
        mint(&key("rsa-1"), &c)
    };
    assert_denied(&authz.check_token(&expired).await, 401, "token_expired");
    let metrics = reqwest::get(format!("http://{}/metrics", authz.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "jwt_authz_decisions_total{decision=\"deny\",code=\"authorization_header_missing\"} 50"
        ),
        "{metrics}"
    );
    authz.stop().await.unwrap();

    let log = captured.text();
    let denials = |code: &str| {
        log.lines()
            .filter(|l| l.contains("decision=\"deny\"") && l.contains(&format!("code=\"{code}\"")))
            .count()
    };
    // The flood may straddle a second: 3 lines per second it spans.
    let missing = denials("authorization_header_missing");
    assert!((3..=6).contains(&missing), "{missing} lines:\n{log}");
    assert_eq!(
        denials("token_expired"),
        1,
        "the first of a code is logged:\n{log}"
    );
    // Fields are written as their values, absent ones left out, and the step that refused
    // is named: never `Some(...)`.
    let expired_line = log
        .lines()
        .find(|l| l.contains("code=\"token_expired\""))
        .unwrap();
    for field in ["kid=\"rsa-1\"", "step=\"token_exp\"", "method=\"GET\""] {
        assert!(expired_line.contains(field), "{field}: {expired_line}");
    }
    assert!(!log.contains("Some("), "{log}");
    let missing_line = log
        .lines()
        .find(|l| l.contains("code=\"authorization_header_missing\""))
        .unwrap();
    assert!(
        missing_line.contains("step=\"token_source\"") && !missing_line.contains("kid="),
        "{missing_line}"
    );
    let summary = log
        .lines()
        .find(|l| l.contains("denials not logged"))
        .unwrap_or_else(|| panic!("no summary:\n{log}"));
    assert!(
        summary.contains(&format!("authorization_header_missing={}", 50 - missing)),
        "{summary}"
    );
    assert!(!summary.contains("token_expired"), "{summary}");
}
