//! Invariant: identifying a phone from any User-Agent, `?vendor=` and `?mac=` never panics,
//! and a recognised phone always has a MAC of 12 lowercase hex digits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1f}');
    let ua = parts.next().unwrap_or("");
    let vendor = parts.next();
    let mac = parts.next();
    let _ = hotdesk::vendor::parse_user_agent(ua);
    if let Ok(h) = hotdesk::vendor::identify(Some(ua), vendor, mac) {
        let m = h.mac.to_string();
        assert!(
            m.len() == 12
                && m.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
});
