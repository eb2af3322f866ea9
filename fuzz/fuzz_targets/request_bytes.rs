//! Arbitrary bytes read as an encoded `CheckRequest` both ways: by prost (the whole message,
//! then `service::inbound_of`, as the `Authorization` trait does) and by the byte reader
//! the server uses (`wire::grpc::decode`). For any input both must refuse it, or both
//! read the same method, host, path, scheme, `required_scopes`, client certificate and
//! headers (those of `header_map` in order; those of the `headers` map as a set, since
//! prost keeps them in a hash map).

#![no_main]

use jwt_authz::testkit::compare_readings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = compare_readings(data) {
        panic!("the readings differ: {difference}");
    }
});
