use super::*;

fn parts(exp: u64) -> EntryParts<'static> {
    EntryParts {
        config_fingerprint: 0,
        alg: Algorithm::RS256,
        key_fingerprint: 1,
        exp,
        nbf: None,
        leeway_ms: 0,
        iss: "i",
        kid: None,
        sub: None,
        ids: Default::default(),
        scopes: Vec::new(),
        payload: None,
        binding: crate::binding::Confirmation::default(),
        header_values: Vec::new(),
        audiences: vec!["api"],
        conditions: Vec::new(),
        metadata: None,
    }
}

fn entry(exp: u64) -> Arc<CachedToken> {
    Arc::new(CachedToken::new(parts(exp)))
}

#[test]
fn fields_round_trip_through_the_shared_buffer() {
    let e = CachedToken::new(EntryParts {
        kid: Some("rsa-1"),
        sub: None,
        ids: crate::revocation::TokenIds {
            jti: Some("j-1"),
            sid: None,
            client_id: Some("c"),
            email: Some("a@example.com"),
            iat: Some(1_700_000_000),
        },
        scopes: vec![
            "read:a",
            "",
            "bad scope",
            "write:b",
            "x\u{7}",
            "read:messages\tadmin",
        ],
        payload: Some("cGF5"),
        header_values: vec![Some("u1".into()), None, Some("v3".into())],
        binding: crate::binding::Confirmation {
            jkt: Some("thumb"),
            x5t_s256: None,
        },
        ..parts(10)
    });
    assert_eq!(e.jkt(), Some("thumb"));
    assert_eq!(e.x5t_s256(), None);
    assert_eq!(e.iss(), "i");
    assert_eq!(e.kid(), Some("rsa-1"));
    assert_eq!(e.sub(), None);
    assert_eq!(e.scopes().collect::<Vec<_>>(), ["read:a", "write:b"]);
    assert_eq!(e.payload(), "cGF5");
    assert_eq!(e.header_value(0), Some("u1"));
    assert_eq!(e.header_value(1), None);
    assert_eq!(e.header_value(2), Some("v3"));
    assert_eq!(e.header_value(3), None);
    assert_eq!(e.audiences().collect::<Vec<_>>(), ["api"]);
    let ids = e.ids();
    assert_eq!(
        (ids.jti, ids.sid, ids.client_id, ids.email, ids.iat),
        (
            Some("j-1"),
            None,
            Some("c"),
            Some("a@example.com"),
            Some(1_700_000_000)
        )
    );
}

#[test]
fn audiences_and_conditions_round_trip() {
    let mut flags = vec![false; 130];
    flags[0] = true;
    flags[64] = true;
    flags[129] = true;
    let e = CachedToken::new(EntryParts {
        audiences: vec!["a", "", "https://b"],
        conditions: flags,
        header_values: vec![Some("h".into())],
        ..parts(10)
    });
    assert_eq!(e.audiences().collect::<Vec<_>>(), ["a", "", "https://b"]);
    assert_eq!(e.header_value(0), Some("h"));
    assert_eq!(e.header_value(1), None);
    let held: Vec<usize> = (0..200).filter(|&i| e.condition(i)).collect();
    assert_eq!(held, [0, 64, 129]);
}

#[test]
fn keys_are_sha256_of_the_token() {
    let key = TokenCache::key("abc");
    assert_eq!(key[..4], [0xba, 0x78, 0x16, 0xbf]);
    assert_ne!(TokenCache::key("abd"), key);
}

#[test]
fn hits_and_misses_are_counted() {
    let cache = TokenCache::new(10);
    let key = TokenCache::key("t");
    assert!(cache.get(&key).is_none());
    cache.insert(key, entry(100), 0);
    assert!(cache.get(&key).is_some());
    assert_eq!(cache.hits.load(Ordering::Relaxed), 1);
    assert_eq!(cache.misses.load(Ordering::Relaxed), 1);
    cache.remove(&key);
    assert!(cache.is_empty());
}

#[test]
fn size_is_bounded() {
    let cache = TokenCache::new(160);
    for i in 0..10_000 {
        cache.insert(TokenCache::key(&i.to_string()), entry(100), 0);
    }
    assert!(cache.len() <= 160, "{}", cache.len());
    assert!(cache.len() >= 100, "{}", cache.len());
}

#[test]
fn expired_entries_are_evicted_first() {
    let cache = TokenCache::new(16); // one entry per shard
    let old = TokenCache::key("old");
    cache.insert(old, entry(10), 0);
    // A key in the same shard.
    let new = (0..)
        .map(|i: u32| TokenCache::key(&i.to_string()))
        .find(|k| k[0] % 16 == old[0] % 16)
        .unwrap();
    cache.insert(new, entry(100), 50_000);
    assert!(cache.get(&old).is_none());
    assert!(cache.get(&new).is_some());
}

#[test]
fn freshness_applies_leeway_to_exp_and_nbf() {
    let e = CachedToken::new(EntryParts {
        leeway_ms: 10_000,
        nbf: Some(50),
        ..parts(100)
    });
    assert!(e.is_fresh(109_000));
    assert!(!e.is_fresh(110_000));
    assert!(e.is_fresh(40_000));
    assert!(!e.is_fresh(39_000));
}

#[test]
fn debug_prints_no_claim_values() {
    let e = CachedToken::new(EntryParts {
        sub: Some("auth0|secret-user"),
        ids: Default::default(),
        scopes: vec!["read:secret"],
        payload: Some("cGF5bG9hZA"),
        header_values: vec![Some("header-value".into())],
        ..parts(10)
    });
    let text = format!("{e:?}");
    for value in ["secret-user", "read:secret", "cGF5bG9hZA", "header-value"] {
        assert!(!text.contains(value), "{text}");
    }
}

#[test]
fn the_footprint_counts_what_an_entry_holds() {
    let small = CachedToken::new(parts(10));
    let payload = "p".repeat(7_000);
    let large = CachedToken::new(EntryParts {
        payload: Some(&payload),
        ..parts(10)
    });
    assert!(small.footprint() >= std::mem::size_of::<CachedToken>() + ENTRY_OVERHEAD);
    assert_eq!(large.footprint() - small.footprint(), 7_000);
    let metadata = prost_types::Struct {
        fields: [(
            "sub".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("u".repeat(100))),
            },
        )]
        .into_iter()
        .collect(),
    };
    let with_metadata = CachedToken::new(EntryParts {
        metadata: Some(metadata),
        ..parts(10)
    });
    assert!(with_metadata.footprint() > small.footprint() + 100 + 3);
}

#[test]
fn the_byte_budget_evicts_before_it_is_exceeded() {
    let payload = "p".repeat(1_000);
    let sized = || {
        Arc::new(CachedToken::new(EntryParts {
            payload: Some(&payload),
            ..parts(100)
        }))
    };
    let each = sized().footprint();
    // Room for about 5 entries per shard by bytes, 1,000 by count.
    let budget = (SHARDS * 5 * each) as u64;
    let cache = TokenCache::with_budget(16_000, budget);
    for i in 0..2_000 {
        cache.insert(TokenCache::key(&i.to_string()), sized(), 0);
        assert!(
            cache.bytes() as u64 <= budget,
            "{} > {budget}",
            cache.bytes()
        );
    }
    assert!(cache.len() <= SHARDS * 5, "{}", cache.len());
    assert!(cache.len() >= SHARDS * 3, "{}", cache.len());
    assert_eq!(cache.bytes(), cache.len() * each);
    // Replacing and removing keep the count exact.
    let key = TokenCache::key("0");
    cache.insert(key, sized(), 0);
    cache.insert(key, sized(), 0);
    cache.remove(&key);
    assert_eq!(cache.bytes(), cache.len() * each);
}

#[test]
fn an_entry_larger_than_a_shard_budget_is_not_cached() {
    let payload = "p".repeat(10_000);
    let cache = TokenCache::with_budget(100, (SHARDS * 5_000) as u64);
    cache.insert(
        TokenCache::key("big"),
        Arc::new(CachedToken::new(EntryParts {
            payload: Some(&payload),
            ..parts(100)
        })),
        0,
    );
    assert!(cache.is_empty());
    assert_eq!(cache.bytes(), 0);
}
