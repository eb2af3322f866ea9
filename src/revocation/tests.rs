use super::*;

const ISS: &str = "https://idp.example/";
const HOUR_MS: u64 = 3_600_000;

fn settings() -> RevocationSettings {
    RevocationSettings {
        max_token_lifetime: Duration::from_secs(24 * 3600),
        max_entries: 3,
    }
}

fn revocation(kind: Kind, value: &str, cutoff_ms: u64) -> Revocation {
    Revocation {
        kind,
        issuer: ISS.into(),
        value: value.into(),
        cutoff_ms,
        expires_ms: cutoff_ms + 24 * HOUR_MS,
    }
}

fn ids(iat_s: u64) -> TokenIds<'static> {
    TokenIds {
        jti: Some("j1"),
        sid: Some("s1"),
        client_id: Some("c1"),
        email: Some("a@example.com"),
        iat: Some(iat_s),
    }
}

fn token(sub: Option<&'static str>, ids: TokenIds<'static>, exp: u64) -> RevocableToken<'static> {
    RevocableToken {
        iss: ISS,
        sub,
        ids,
        exp,
        leeway_ms: 0,
    }
}

#[tokio::test]
async fn each_kind_covers_tokens_issued_up_to_its_cutoff() {
    let t0 = 1_700_000_000_000;
    for (kind, value) in [
        (Kind::Sub, "u1"),
        (Kind::Sid, "s1"),
        (Kind::ClientId, "c1"),
        (Kind::Email, "a@example.com"),
    ] {
        let store = RevocationStore::memory(settings());
        let now = t0 + 1000;
        let check = |iat_ms: u64| {
            store.check(
                &token(Some("u1"), ids(iat_ms / 1000), iat_ms / 1000 + 600),
                now,
            )
        };
        assert_eq!(check(t0), Ok(()), "{kind:?}: nothing revoked yet");
        store
            .revoke(revocation(kind, value, t0), now)
            .await
            .unwrap();
        assert_eq!(
            check(t0),
            Err(AuthError::Revoked),
            "{kind:?} at the cut-off"
        );
        assert_eq!(
            check(t0 - HOUR_MS),
            Err(AuthError::Revoked),
            "{kind:?} before"
        );
        assert_eq!(
            check(t0 + 1000),
            Ok(()),
            "{kind:?}: issued after the cut-off"
        );
        // Another issuer's token with the same value is not covered.
        let other = RevocableToken {
            iss: "https://other/",
            ..token(Some("u1"), ids(t0 / 1000), t0 / 1000 + 600)
        };
        assert_eq!(store.check(&other, now), Ok(()));
        // Once the entry expires, no token it covered can be valid: it covers nothing.
        let later = t0 + 24 * HOUR_MS + 1;
        let old = token(Some("u1"), ids(t0 / 1000), t0 / 1000 + 600);
        assert_eq!(store.check(&old, later), Ok(()));
    }
}

#[tokio::test]
async fn a_jti_entry_covers_its_token_whenever_issued() {
    let store = RevocationStore::memory(settings());
    let t0 = 1_700_000_000_000;
    store
        .revoke(revocation(Kind::Jti, "j1", t0), t0)
        .await
        .unwrap();
    let later_iat = (t0 + HOUR_MS) / 1000;
    assert_eq!(
        store.check(&token(None, ids(later_iat), later_iat + 60), t0 + HOUR_MS),
        Err(AuthError::Revoked)
    );
    let other = TokenIds {
        jti: Some("j2"),
        ..ids(later_iat)
    };
    assert_eq!(
        store.check(&token(None, other, later_iat + 60), t0 + HOUR_MS),
        Ok(())
    );
}

#[tokio::test]
async fn tokens_no_revocation_can_outlive_are_refused() {
    let store = RevocationStore::memory(settings());
    let now = 1_700_000_000_000;
    let iat = now / 1000;
    let no_iat = TokenIds {
        iat: None,
        ..ids(iat)
    };
    assert_eq!(
        store.check(&token(None, no_iat, iat + 60), now),
        Err(AuthError::MissingClaim)
    );
    assert_eq!(
        store.check(&token(None, ids(iat), iat + 24 * 3600 + 1), now),
        Err(AuthError::LifetimeTooLong)
    );
    assert_eq!(
        store.check(&token(None, ids(iat), iat + 24 * 3600), now),
        Ok(())
    );
    // The leeway counts: the token is accepted until exp plus the leeway.
    let lenient = RevocableToken {
        leeway_ms: 60_000,
        ..token(None, ids(iat), iat + 24 * 3600)
    };
    assert_eq!(store.check(&lenient, now), Err(AuthError::LifetimeTooLong));
    // Issued in the future, beyond the leeway: no cut-off could be trusted to cover it.
    let future = RevocableToken {
        leeway_ms: 60_000,
        ..token(None, ids(iat + 61), iat + 600)
    };
    assert_eq!(store.check(&future, now), Err(AuthError::NotYetValid));
}

#[tokio::test]
async fn emails_are_compared_in_lower_case() {
    let store = RevocationStore::memory(settings());
    let t0 = 1_700_000_000_000;
    store
        .revoke(revocation(Kind::Email, "A@Example.COM", t0), t0)
        .await
        .unwrap();
    assert_eq!(store.list(t0)[0].value, "a@example.com");
    assert_eq!(
        store.check(&token(None, ids(t0 / 1000), t0 / 1000 + 60), t0),
        Err(AuthError::Revoked)
    );
}

#[tokio::test]
async fn merging_keeps_the_later_cutoff_and_expiry_and_the_store_is_bounded() {
    let store = RevocationStore::memory(settings());
    let t0 = 1_700_000_000_000;
    store
        .revoke(revocation(Kind::Sub, "u1", t0 + 5000), t0)
        .await
        .unwrap();
    store
        .revoke(revocation(Kind::Sub, "u1", t0), t0)
        .await
        .unwrap();
    let listed = store.list(t0);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].cutoff_ms, t0 + 5000);
    store
        .revoke(revocation(Kind::Sub, "u2", t0), t0)
        .await
        .unwrap();
    store
        .revoke(revocation(Kind::Sub, "u3", t0), t0)
        .await
        .unwrap();
    assert_eq!(
        store.revoke(revocation(Kind::Sub, "u4", t0), t0).await,
        Err(RevokeError::Full(3))
    );
    // Expired entries make room.
    let later = t0 + 25 * HOUR_MS;
    store
        .revoke(revocation(Kind::Sub, "u4", later), later)
        .await
        .unwrap();
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn values_outside_the_one_form_are_refused() {
    let store = RevocationStore::memory(settings());
    for value in ["", "a\nb", &"x".repeat(1025)] {
        assert!(matches!(
            store.revoke(revocation(Kind::Sub, value, 1), 1).await,
            Err(RevokeError::Invalid(_))
        ));
    }
    assert!(store.is_empty());
}
