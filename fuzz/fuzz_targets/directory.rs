//! Invariant: any directory file is accepted or explained; accepted extensions are valid.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(users) = hotdesk::directory::file::parse(text, std::path::Path::new("fuzz.toml"))
    {
        for ext in users.keys() {
            assert!(hotdesk::directory::valid_extension(ext));
        }
    }
});
