use super::*;

#[test]
fn decisions_and_latency_are_rendered() {
    let metrics = Metrics::new(
        Vec::new(),
        Some(Arc::new(TokenCache::new(10))),
        vec!["new-admin-rule".into()],
    );
    metrics.record_shadow("new-admin-rule", Some(&AuthError::ClaimsNotSatisfied));
    metrics.record(None, Duration::from_micros(30));
    metrics.record(Some(&AuthError::Expired), Duration::from_millis(2));
    metrics.record(Some(&AuthError::Expired), Duration::from_secs(3));
    let text = metrics.render();
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
    let text = Metrics::new(Vec::new(), None, Vec::new()).render();
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
