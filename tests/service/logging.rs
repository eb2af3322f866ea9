//! Denial logging under a flood: at most `--log-deny-rate` lines per code per second, the
//! first of each code always, a summary of the rest, and metrics that count every one.

use std::io::Write;
use std::sync::{Arc, Mutex};

use jwt_authz::testkit::*;

/// Log output captured in memory.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures this thread's log lines up to `level` until the guard drops.
///
/// Other tests of this binary hit the same callsites on other threads with no subscriber
/// at all. A process-wide subscriber that wants every level up to DEBUG (and writes
/// nowhere) keeps each callsite enabled, so this thread's capturing subscriber sees every
/// event, whichever thread registered the callsite first.
pub(crate) fn capture(level: tracing::Level) -> (Captured, tracing::subscriber::DefaultGuard) {
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(level)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

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
