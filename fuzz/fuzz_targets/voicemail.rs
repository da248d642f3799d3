//! Invariant: any voicemail.conf (with includes of itself or of missing files) is read or
//! explained; never a panic, never a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("voicemail.conf");
    std::fs::write(&path, data).unwrap();
    if let Ok((users, _)) = hotdesk::directory::voicemail_parse(&path, None) {
        for ext in users.keys() {
            assert!(hotdesk::directory::valid_extension(ext));
        }
    }
});
