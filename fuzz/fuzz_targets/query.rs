//! Invariant: any query string parses without panicking, into at most 32 pairs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let q = hotdesk::server::parse_query(Some(&text));
    assert!(q.len() <= 32);
});
