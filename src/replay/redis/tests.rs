use super::*;

#[test]
fn the_description_names_host_port_and_database_only() {
    let (_, shown) = parse_url("redis://user:hunter2@redis.internal/3").unwrap();
    assert_eq!(shown, "redis://redis.internal:6379/3");
    let (_, shown) = parse_url("rediss://:hunter2@10.0.0.1:6380").unwrap();
    assert_eq!(shown, "rediss://10.0.0.1:6380/0");
}

#[test]
fn bad_urls_are_refused_without_their_password() {
    for (url, why) in [
        (
            "http://user:hunter2@redis.internal/",
            "scheme must be redis or rediss",
        ),
        ("redis//user:hunter2@redis.internal", "not a URL"),
        ("rediss://user:hunter2@redis.internal/#insecure", "fragment"),
        ("redis://user:hunter2@redis.internal/zero", "database"),
        ("redis://user:hunter2@0.0.0.0/", "wildcard"),
    ] {
        let err = parse_url(url).err().unwrap();
        assert!(err.contains(why), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn keys_are_the_prefix_and_lowercase_hex() {
    let store = RedisStore::new(
        "redis://127.0.0.1/",
        Duration::from_secs(1),
        "dpop:",
        Arc::default(),
        SharedWindows::default(),
    )
    .unwrap();
    let mut key = [0u8; 32];
    key[0] = 0xab;
    key[31] = 0x0f;
    let name = store.key_name(&key);
    assert_eq!(name.len(), 5 + 64);
    assert!(name.starts_with("dpop:ab00"), "{name}");
    assert!(name.ends_with("000f"), "{name}");
}
