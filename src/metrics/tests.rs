use super::*;

#[test]
fn decisions_and_latency_are_rendered() {
    let metrics = Metrics::new(
        Vec::new(),
        Some(Arc::new(TokenCache::new(10))),
        vec!["new-admin-rule".into()],
    );
    metrics.record_shadow("new-admin-rule", Some(&AuthError::ClaimsNotSatisfied));
    metrics.record(None, Duration::from_micros(30), None);
    metrics.record(Some(&AuthError::Expired), Duration::from_millis(2), None);
    metrics.record(Some(&AuthError::Expired), Duration::from_secs(3), None);
    let text = metrics.render(Exposition::Text);
    assert!(
        text.contains("jwt_authz_decisions_total{decision=\"allow\",code=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("jwt_authz_decisions_total{decision=\"deny\",code=\"token_expired\"} 2"));
    assert!(
        text.contains("jwt_authz_check_duration_seconds_bucket{le=\"0.00005\"} 1"),
        "{text}"
    );
    assert!(text.contains("jwt_authz_check_duration_seconds_bucket{le=\"0.0025\"} 2"));
    assert!(text.contains("jwt_authz_check_duration_seconds_bucket{le=\"+Inf\"} 3"));
    assert!(text.contains("jwt_authz_check_duration_seconds_count 3"));
    assert!(text.contains("jwt_authz_token_cache_entries 0"));
    assert!(
            text.contains(
                "jwt_authz_shadow_decisions_total{rule=\"new-admin-rule\",decision=\"deny\",code=\"insufficient_claims\"} 1"
            ),
            "{text}"
        );
    assert!(text.contains(
            "jwt_authz_shadow_decisions_total{rule=\"new-admin-rule\",decision=\"deny\",code=\"insufficient_claims\"} 1"
        ), "{text}");
}

#[test]
fn every_wire_code_has_a_counter() {
    let text = Metrics::new(Vec::new(), None, Vec::new()).render(Exposition::Text);
    for error in [
        AuthError::MissingHeader,
        AuthError::Malformed,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::WrongAudience,
        AuthError::InsufficientScope {
            required: String::new(),
        },
        AuthError::RouteDenied,
        AuthError::JwksUnavailable,
    ] {
        let line = format!(
            "jwt_authz_decisions_total{{decision=\"deny\",code=\"{}\"}} 0",
            error.code().as_str()
        );
        assert!(text.contains(&line), "{line}");
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

/// OpenMetrics: counter families without `_total` (every counter here has it), the
/// exemplar of a sampled Check on its bucket, and `# EOF` last; the text exposition has no
/// exemplar.
#[test]
fn openmetrics_names_counters_by_family_and_carries_exemplars() {
    let metrics = Metrics::new(Vec::new(), Some(Arc::new(TokenCache::new(10))), Vec::new());
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    metrics.record(None, Duration::from_micros(30), Some((trace, span)));
    metrics.record(None, Duration::from_micros(30), None);
    let text = metrics.render(Exposition::Text);
    for line in text.lines().filter(|l| l.ends_with(" counter")) {
        assert!(line.ends_with("_total counter"), "{line}");
    }
    assert!(!text.contains("trace_id"));
    let open = metrics.render(Exposition::OpenMetrics);
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# TYPE jwt_authz_decisions counter\n"),
        "{open}"
    );
    assert!(open.contains("# HELP jwt_authz_decisions Check"), "{open}");
    assert!(open.contains("jwt_authz_decisions_total{decision=\"allow\",code=\"ok\"} 2\n"));
    assert!(!open.contains("# TYPE jwt_authz_decisions_total"));
    let bucket = open
        .lines()
        .find(|l| l.starts_with("jwt_authz_check_duration_seconds_bucket{le=\"0.00005\"}"))
        .unwrap();
    let (sample, exemplar) = bucket.split_once(" # ").unwrap();
    assert!(sample.ends_with(" 2"), "{bucket}");
    assert!(
        exemplar.starts_with(
            "{trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\"} 0.00003 "
        ),
        "{bucket}"
    );
    assert_eq!(open.matches(" # {").count(), 1, "{open}");
    assert_eq!(
        Exposition::for_accept(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )),
        Exposition::OpenMetrics
    );
    assert_eq!(Exposition::for_accept(Some("text/plain")), Exposition::Text);
    assert_eq!(Exposition::for_accept(None), Exposition::Text);
}
