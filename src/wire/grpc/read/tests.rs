//! Hand-built encodings through the byte reader, each compared with prost's reading of the
//! same bytes ([`compare_readings`]).

use proptest::prelude::*;
use prost::Message;

use super::decode;
use crate::testkit::{self, Reading, Shape, compare_readings};

// --- a minimal protobuf writer -------------------------------------------------------------

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        if value < 0x80 {
            out.push(value as u8);
            return out;
        }
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
}

fn key(tag: u32, wire: u8) -> Vec<u8> {
    varint(u64::from(tag) << 3 | u64::from(wire))
}

/// A length-delimited field.
fn bytes(tag: u32, data: &[u8]) -> Vec<u8> {
    [key(tag, 2), varint(data.len() as u64), data.to_vec()].concat()
}

/// A message field made of `fields`.
fn message(tag: u32, fields: &[Vec<u8>]) -> Vec<u8> {
    bytes(tag, &fields.concat())
}

/// A map entry (or any two-string message).
fn entry(tag: u32, key: &[u8], value: &[u8]) -> Vec<u8> {
    message(tag, &[bytes(1, key), bytes(2, value)])
}

/// A `CheckRequest` whose `attributes.request.http` holds `fields`.
fn http(fields: &[Vec<u8>]) -> Vec<u8> {
    attributes(&[message(4, &[message(2, fields)])])
}

/// A `CheckRequest` whose `attributes` hold `fields`.
fn attributes(fields: &[Vec<u8>]) -> Vec<u8> {
    message(1, fields)
}

/// The reading both decoders agree on; panics when they differ or refuse it.
fn read(buf: &[u8]) -> Reading {
    match compare_readings(buf) {
        Ok(Some(reading)) => reading,
        Ok(None) => panic!("both refused {buf:?}"),
        Err(difference) => panic!("{difference}"),
    }
}

/// Asserts that both decoders refuse `buf`.
fn refused(buf: &[u8]) {
    match compare_readings(buf) {
        Ok(None) => {}
        Ok(Some(reading)) => panic!("both read {reading:?}"),
        Err(difference) => panic!("{difference}"),
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

// --- requests as Envoy sends them ------------------------------------------------------------

#[test]
fn envoy_requests_read_as_prost_reads_them() {
    let mut full = testkit::browser_request("/api/orders?x=1", Some("read:orders"), Shape::Full);
    testkit::set_authorization(&mut full, "Bearer a.b.c");
    let reading = read(&full.encode_to_vec());
    assert_eq!(reading.method, "GET");
    assert_eq!(reading.host, "api.example.com");
    assert_eq!(reading.path, "/api/orders?x=1");
    assert_eq!(reading.scheme.as_deref(), Some("https"));
    assert_eq!(reading.required_scopes.as_deref(), Some("read:orders"));
    assert_eq!(reading.map_headers.len(), 23);

    let mut small = testkit::browser_request("/api", None, Shape::Small);
    testkit::set_authorization(&mut small, "Bearer a.b.c");
    let reading = read(&small.encode_to_vec());
    assert_eq!(
        reading.map_headers,
        headers(&[("authorization", "Bearer a.b.c")])
    );
    assert_eq!(reading.required_scopes, None);

    let raw = testkit::raw_request(&[b"Bearer \xff", b"Bearer x"]);
    let reading = read(&raw.encode_to_vec());
    assert!(reading.map_headers.is_empty());
    assert_eq!(
        reading.raw_headers,
        [
            (":path".to_owned(), b"/api/private".to_vec()),
            ("authorization".to_owned(), b"Bearer \xff".to_vec()),
            ("authorization".to_owned(), b"Bearer x".to_vec()),
        ]
    );
}

#[test]
fn empty_input_is_an_empty_request() {
    let reading = read(b"");
    assert_eq!(reading.method, "");
    assert_eq!(reading.scheme, None);
    assert!(reading.map_headers.is_empty() && reading.raw_headers.is_empty());
    let inbound = decode(b"").expect("empty is a valid CheckRequest");
    assert_eq!(inbound.headers.capacity(), 0, "no headers, no allocation");
}

#[test]
fn headers_borrow_the_request_buffer() {
    let buf = http(&[entry(3, b"authorization", b"Bearer t")]);
    let inbound = decode(&buf).expect("valid");
    let range = buf.as_ptr_range();
    let (name, value) = inbound.headers[0];
    assert!(range.contains(&name.as_ptr()) && range.contains(&value.as_ptr()));
}

// --- repeated fields: prost's rules ----------------------------------------------------------

#[test]
fn last_occurrence_of_a_string_field_wins() {
    let reading = read(&http(&[
        bytes(2, b"GET"),
        bytes(4, b"/first"),
        bytes(2, b"POST"),
        bytes(6, b"https"),
        bytes(6, b""),
    ]));
    assert_eq!(reading.method, "POST");
    assert_eq!(reading.path, "/first");
    assert_eq!(reading.scheme, None, "an empty last scheme is no scheme");
}

#[test]
fn repeated_messages_are_merged() {
    // `attributes`, `request` and `http` each occur twice: their fields add up.
    let first = attributes(&[
        message(4, &[message(2, &[bytes(2, b"GET"), entry(3, b"a", b"1")])]),
        entry(10, b"required_scopes", b"read"),
    ]);
    let second = attributes(&[
        message(4, &[message(2, &[bytes(4, b"/p")])]),
        message(4, &[message(2, &[entry(3, b"b", b"2")])]),
    ]);
    let reading = read(&[first, second].concat());
    assert_eq!(reading.method, "GET");
    assert_eq!(reading.path, "/p");
    assert_eq!(reading.map_headers, headers(&[("a", "1"), ("b", "2")]));
    assert_eq!(reading.required_scopes.as_deref(), Some("read"));
}

#[test]
fn a_repeated_map_key_keeps_its_last_value() {
    let buf = http(&[
        entry(3, b"x", b"1"),
        entry(3, b"authorization", b"Bearer old"),
        entry(3, b"y", b"2"),
        entry(3, b"authorization", b"Bearer new"),
    ]);
    let reading = read(&buf);
    assert_eq!(
        reading.map_headers,
        headers(&[("authorization", "Bearer new"), ("x", "1"), ("y", "2")])
    );
    let inbound = decode(&buf).expect("valid");
    assert_eq!(inbound.values("authorization").count(), 1);
}

#[test]
fn many_map_keys_keep_the_last_value_of_a_repeat() {
    let mut fields: Vec<Vec<u8>> = (0..200)
        .map(|i| entry(3, format!("x-{i}").as_bytes(), b"first"))
        .collect();
    fields.extend(
        (0..200)
            .step_by(7)
            .map(|i| entry(3, format!("x-{i}").as_bytes(), b"last")),
    );
    fields.push(message(
        13,
        &[message(1, &[bytes(1, b"raw"), bytes(3, b"r")])],
    ));
    fields.push(entry(3, b"x-3", b"later"));
    let reading = read(&http(&fields));
    assert_eq!(reading.map_headers.len(), 200);
    assert_eq!(reading.raw_headers.len(), 1);
    let value = |name: &str| {
        let (_, v) = reading
            .map_headers
            .iter()
            .find(|(k, _)| k == name)
            .expect(name);
        v.as_slice()
    };
    assert_eq!(value("x-0"), b"last");
    assert_eq!(value("x-1"), b"first");
    assert_eq!(value("x-3"), b"later");
    assert_eq!(value("x-196"), b"last");
}

#[test]
fn map_entries_follow_field_rules_too() {
    // A key given twice in one entry, a missing value, an unknown field inside the entry,
    // fields in either order.
    let reading = read(&http(&[
        message(3, &[bytes(1, b"a"), bytes(1, b"b"), bytes(2, b"v")]),
        message(3, &[bytes(1, b"empty")]),
        message(3, &[bytes(2, b"w"), key(7, 0), varint(9), bytes(1, b"c")]),
        message(3, &[]),
    ]));
    assert_eq!(
        reading.map_headers,
        headers(&[("", ""), ("b", "v"), ("c", "w"), ("empty", "")])
    );
}

#[test]
fn required_scopes_is_the_last_value_of_its_key() {
    let reading = read(&attributes(&[
        entry(10, b"required_scopes", b"first"),
        entry(10, b"other", b"x"),
        entry(10, b"required_scopes", b"second"),
    ]));
    assert_eq!(reading.required_scopes.as_deref(), Some("second"));
    let reading = read(&attributes(&[message(10, &[bytes(1, b"required_scopes")])]));
    assert_eq!(reading.required_scopes.as_deref(), Some(""));
}

#[test]
fn the_certificate_is_the_source_peers_when_not_empty() {
    let reading = read(&attributes(&[
        message(2, &[bytes(5, b"destination")]),
        message(1, &[bytes(5, b"pem%20one")]),
        message(1, &[bytes(2, b"service")]),
    ]));
    assert_eq!(reading.peer_certificate.as_deref(), Some("pem%20one"));
    let reading = read(&attributes(&[message(1, &[bytes(5, b"x"), bytes(5, b"")])]));
    assert_eq!(reading.peer_certificate, None);
}

#[test]
fn header_map_prefers_raw_value_and_keeps_repeats_apart() {
    let reading = read(&http(&[
        entry(3, b"from-map", b"1"),
        message(
            13,
            &[
                message(
                    1,
                    &[bytes(1, b"cookie"), bytes(2, b"old"), bytes(3, b"a=\x80")],
                ),
                message(1, &[bytes(1, b"cookie"), bytes(2, b"b=2")]),
                message(1, &[bytes(1, b"x"), bytes(3, b"")]),
            ],
        ),
        entry(3, b"late-map", b"2"),
        message(13, &[message(1, &[bytes(1, b"cookie"), bytes(3, b"c=3")])]),
    ]));
    assert_eq!(
        reading.map_headers,
        headers(&[("from-map", "1"), ("late-map", "2")])
    );
    assert_eq!(
        reading.raw_headers,
        [
            ("cookie".to_owned(), b"a=\x80".to_vec()),
            ("cookie".to_owned(), b"b=2".to_vec()),
            ("x".to_owned(), Vec::new()),
            ("cookie".to_owned(), b"c=3".to_vec()),
        ]
    );
    let buf = http(&[
        message(13, &[message(1, &[bytes(1, b"r"), bytes(3, b"1")])]),
        entry(3, b"m", b"2"),
    ]);
    let inbound = decode(&buf).expect("valid");
    assert_eq!(
        inbound.headers[0],
        ("m", b"2".as_slice()),
        "map headers first"
    );
}

// --- fields the decision does not read -------------------------------------------------------

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let unknown = [
        [key(99, 0), varint(u64::MAX)].concat(),
        [key(98, 1), vec![0; 8]].concat(),
        bytes(97, b"\xff\xfe not UTF-8: unknown bytes are not checked"),
        [
            key(96, 3),
            key(1, 0),
            varint(1),
            key(2, 3),
            key(2, 4),
            key(96, 4),
        ]
        .concat(),
        [key(95, 5), vec![0; 4]].concat(),
    ]
    .concat();
    let buf = [
        unknown.clone(),
        attributes(&[
            unknown.clone(),
            message(
                4,
                &[unknown.clone(), message(2, &[unknown, bytes(2, b"GET")])],
            ),
        ]),
    ]
    .concat();
    assert_eq!(read(&buf).method, "GET");
}

#[test]
fn unread_fields_of_the_schema_are_checked_like_prost() {
    let timestamp = message(
        4,
        &[message(1, &[key(1, 0), varint(5), key(2, 0), varint(7)])],
    );
    let address = message(
        1,
        &[message(
            1,
            &[message(
                1,
                &[
                    key(1, 0),
                    varint(1),
                    bytes(2, b"203.0.113.7"),
                    key(3, 0),
                    varint(443),
                ],
            )],
        )],
    );
    let metadata = message(
        11,
        &[message(
            1,
            &[
                bytes(1, b"filter"),
                message(
                    2,
                    &[message(
                        1,
                        &[
                            bytes(1, b"n"),
                            message(2, &[key(2, 1), 1.5f64.to_le_bytes().to_vec()]),
                        ],
                    )],
                ),
            ],
        )],
    );
    let reading = read(&attributes(&[
        timestamp,
        address,
        metadata,
        message(12, &[bytes(1, b"sni.example")]),
        message(
            4,
            &[message(
                2,
                &[bytes(1, b"id"), key(9, 0), varint(1843), bytes(12, b"\xff")],
            )],
        ),
    ]));
    assert_eq!(reading.method, "");
    // A double as a varint, a size as a string, a socket address port as bytes: the wire
    // type of a known field is checked.
    refused(&attributes(&[message(
        11,
        &[message(
            1,
            &[message(
                2,
                &[message(1, &[message(2, &[key(2, 0), varint(1)])])],
            )],
        )],
    )]));
    refused(&http(&[bytes(9, b"12")]));
    refused(&attributes(&[message(
        1,
        &[message(1, &[message(1, &[bytes(3, b"443")])])],
    )]));
}

#[test]
fn strings_that_are_not_utf8_are_refused_wherever_they_are() {
    let bad = b"caf\xe9";
    refused(&http(&[bytes(2, bad)]));
    refused(&http(&[bytes(1, bad)]));
    refused(&http(&[bytes(10, bad)]));
    refused(&http(&[entry(3, bad, b"v")]));
    refused(&http(&[entry(3, b"k", bad)]));
    refused(&http(&[message(13, &[message(1, &[bytes(1, bad)])])]));
    refused(&http(&[message(13, &[message(1, &[bytes(2, bad)])])]));
    refused(&attributes(&[entry(10, b"k", bad)]));
    refused(&attributes(&[message(2, &[entry(3, b"label", bad)])]));
    refused(&attributes(&[message(12, &[bytes(1, bad)])]));
    refused(&attributes(&[message(13, &[message(1, &[bytes(1, bad)])])]));
    // Bytes fields and unknown fields are not strings.
    read(&http(&[
        bytes(12, bad),
        message(13, &[message(1, &[bytes(3, bad)])]),
    ]));
}

// --- malformed input ----------------------------------------------------------------------

#[test]
fn malformed_input_is_refused() {
    let valid = http(&[bytes(2, b"GET")]);
    for cut in 1..valid.len() {
        refused(&valid[..cut]);
    }
    refused(&[0x0a, 0x80]); // a length varint cut short
    refused(&[0x0a, 0x05, 0x00]); // a length past the end
    refused(&[0x00]); // tag 0
    refused(&[0x0e, 0x00]); // wire type 6
    refused(&[0x0f, 0x00]); // wire type 7
    refused(&key(99, 4)); // a stray end group
    refused(&[key(99, 3), key(98, 4)].concat()); // an end group of another tag
    refused(&key(99, 3)); // a group never closed
    refused(&[
        0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
    ]); // past 64 bits
    refused(&[
        0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0x00,
    ]); // 11 bytes
    refused(&[0xff, 0xff, 0xff, 0xff, 0x7f]); // a key past 32 bits
    refused(&[key(1, 0), varint(1)].concat()); // attributes as a varint
    refused(&http(&[[key(2, 0), varint(1)].concat()])); // method as a varint
    refused(&[key(1, 3), key(1, 4)].concat()); // attributes as a group
    // A field running past its message's end into bytes that would read as its rest.
    refused(
        &[
            message(1, &[vec![0x22, 0x05]]),
            vec![0x12, 0x03, 0x12, 0x01, b'A'],
        ]
        .concat(),
    );
    read(&message(
        1,
        &[vec![0x22, 0x05, 0x12, 0x03, 0x12, 0x01, b'A']],
    ));

    read(&[
        0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]); // 10 bytes, 64 bits
    read(&[0x48, 0x80, 0x00]); // a varint in more bytes than needed
    read(&[key(99, 3), key(99, 4)].concat()); // an empty group
}

/// `depth` lists nested in a struct value of the destination's metadata, the innermost one
/// holding a string.
fn nested_lists(depth: usize) -> Vec<u8> {
    let mut value = bytes(3, b"leaf");
    for _ in 0..depth {
        value = message(6, &[message(1, &[value])]);
    }
    attributes(&[message(
        11,
        &[message(
            1,
            &[message(2, &[message(1, &[message(2, &[value])])])],
        )],
    )])
}

/// `depth` unknown groups nested at the top level.
fn nested_groups(depth: usize) -> Vec<u8> {
    let open: Vec<u8> = (0..depth).flat_map(|_| key(50, 3)).collect();
    let close: Vec<u8> = (0..depth).flat_map(|_| key(50, 4)).collect();
    [open, key(1, 0), varint(0), close].concat()
}

#[test]
fn nesting_is_refused_exactly_where_prost_refuses_it() {
    for (name, nest) in [
        ("lists", nested_lists as fn(usize) -> Vec<u8>),
        ("groups", nested_groups),
    ] {
        let outcomes: Vec<bool> = (1..=120)
            .map(|depth| {
                let buf = nest(depth);
                match compare_readings(&buf) {
                    Ok(reading) => reading.is_some(),
                    Err(difference) => panic!("{name} at depth {depth}: {difference}"),
                }
            })
            .collect();
        let limit = outcomes.iter().position(|read| !read).expect("a limit");
        assert!(limit > 10, "{name}: shallow nesting is read");
        assert!(
            outcomes[limit..].iter().all(|read| !read),
            "{name}: refused past the limit"
        );
    }
}

// --- any input -------------------------------------------------------------------------------

fn envoy_request() -> Vec<u8> {
    let mut request = testkit::browser_request("/api/x", Some("read"), Shape::Full);
    testkit::set_authorization(&mut request, "Bearer a.b.c");
    let mut buf = request.encode_to_vec();
    buf.extend(testkit::raw_request(&[b"Bearer r"]).encode_to_vec());
    buf
}

proptest! {
    #[test]
    fn edited_requests_read_alike(
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..6)
    ) {
        let mut buf = envoy_request();
        for (at, byte, op) in edits {
            let at = usize::from(at) % (buf.len() + 1);
            match op {
                0 if at < buf.len() => buf[at] = byte,
                1 => buf.insert(at, byte),
                _ => buf.truncate(at),
            }
        }
        if let Err(difference) = compare_readings(&buf) {
            prop_assert!(false, "{}", difference);
        }
    }

    #[test]
    fn arbitrary_bytes_read_alike(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Err(difference) = compare_readings(&buf) {
            prop_assert!(false, "{}", difference);
        }
    }
}
