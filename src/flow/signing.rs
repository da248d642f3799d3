//! Links the server generates carry an expiry and an HMAC-SHA256 signature over the path and
//! their query, so their state (network, extension, phone, one-time token) cannot be forged
//! or replayed later. The phone may add only its input fields (`ext`, `pin`, `code`) after signing.

use std::path::Path;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::screen::{Link, Screen};

/// Input fields a phone appends to a signed link; not covered by the signature.
const PHONE_INPUTS: [&str; 3] = ["ext", "pin", "code"];

/// A signature as lower-case hex: 64 ASCII bytes.
type Hex = [u8; 64];

pub struct Signer {
    /// The HMAC state with the key already absorbed (ipad/opad blocks), made once: each
    /// link clones it instead of hashing the key again.
    keyed: Hmac<Sha256>,
    ttl_secs: i64,
}

impl Signer {
    pub fn new(key: Vec<u8>, ttl: std::time::Duration) -> Self {
        Self {
            keyed: Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length"),
            ttl_secs: ttl.as_secs() as i64,
        }
    }

    /// The key from `secret`, else the one stored in `file` (created with 32 random bytes,
    /// readable by the owner only, on first use).
    pub fn load_key(secret: Option<&str>, file: &Path) -> Result<Vec<u8>, String> {
        if let Some(s) = secret {
            return Ok(s.as_bytes().to_vec());
        }
        if let Ok(bytes) = std::fs::read(file)
            && bytes.len() >= 32
        {
            return Ok(bytes);
        }
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for the link key: {e}"))?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        write_private(file, &key).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        Ok(key)
    }

    fn mac<'a>(&self, path: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Hex {
        let mut m = self.keyed.clone();
        m.update(path.as_bytes());
        for (k, v) in pairs {
            // Length-prefixed so that no two different queries hash the same.
            m.update(&(k.len() as u32).to_be_bytes());
            m.update(k.as_bytes());
            m.update(&(v.len() as u32).to_be_bytes());
            m.update(v.as_bytes());
        }
        hex(&m.finalize().into_bytes().into())
    }

    /// Adds `exp` and `sig` to `link`.
    pub fn sign(&self, link: &mut Link, now_unix: i64) {
        link.query.retain(|(k, _)| *k != "exp" && *k != "sig");
        link.query
            .push(("exp", (now_unix + self.ttl_secs).to_string()));
        let sig = self.mac(link.path, link.query.iter().map(|(k, v)| (*k, v.as_str())));
        // Hex digits are ASCII.
        let sig = String::from_utf8_lossy(&sig).into_owned();
        link.query.push(("sig", sig));
    }

    /// Signs every link of a screen.
    pub fn sign_screen(&self, screen: &mut Screen, now_unix: i64) {
        use crate::screen::Action;
        match screen {
            Screen::Menu(m) => m
                .items
                .iter_mut()
                .for_each(|i| self.sign(&mut i.link, now_unix)),
            Screen::Input(i) => self.sign(&mut i.submit, now_unix),
            Screen::Message(m) => {
                if let Some(n) = &mut m.next {
                    self.sign(&mut n.link, now_unix);
                }
            }
            Screen::Apply(a) => {
                for action in &mut a.actions {
                    if let Action::Open(link) = action {
                        self.sign(link, now_unix);
                    }
                }
            }
            Screen::Configuration(_) => {}
        }
    }

    /// Whether a request's query (in the order received) carries a valid, unexpired
    /// signature for `path`. Input fields the phone appended are left out of the check.
    pub fn verify(&self, path: &str, query: &[(String, String)], now_unix: i64) -> bool {
        let Some(sig) = query
            .iter()
            .rev()
            .find(|(k, _)| k == "sig")
            .map(|(_, v)| v.as_str())
        else {
            return false;
        };
        let Some(exp) = query
            .iter()
            .find(|(k, _)| k == "exp")
            .and_then(|(_, v)| v.parse::<i64>().ok())
        else {
            return false;
        };
        if exp < now_unix {
            return false;
        }
        // The signed part ends at `sig`; inputs may follow (Aastra appends them) or, for
        // token-replacing phones, sit before it with a server-given name.
        let signed = || {
            query
                .iter()
                .take_while(|(k, _)| k != "sig")
                .map(|(k, v)| (k.as_str(), v.as_str()))
        };
        let with_inputs = self.mac(path, signed());
        let without_inputs = self.mac(path, signed().filter(|(k, _)| !PHONE_INPUTS.contains(k)));
        use subtle::ConstantTimeEq;
        let sig = sig.as_bytes();
        bool::from(with_inputs.ct_eq(sig) | without_inputs.ct_eq(sig))
    }
}

/// `digest` as lower-case hex, written into a stack buffer.
fn hex(digest: &[u8; 32]) -> Hex {
    let mut out = [0u8; 64];
    crate::hex::lower_into(digest, &mut out);
    out
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &str) -> Vec<(String, String)> {
        let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn signed_links_verify_and_tampering_fails() {
        let s = Signer::new(b"k".repeat(32), std::time::Duration::from_secs(600));
        let mut link = Link::new("/app/login")
            .with("net", "internal")
            .with("mac", "000413aabbcc");
        s.sign(&mut link, 1000);
        let url = link.absolute("http://h");
        assert!(s.verify("/app/login", &query(&url), 1000));
        // The phone appends its inputs (Aastra style).
        assert!(s.verify(
            "/app/login",
            &query(&format!("{url}&ext=1001&pin=4711")),
            1000
        ));
        // Expired, another path, a changed value, a missing signature, another key.
        assert!(!s.verify("/app/login", &query(&url), 1601));
        assert!(!s.verify("/app/logout", &query(&url), 1000));
        assert!(!s.verify(
            "/app/login",
            &query(&url.replace("internal", "external")),
            1000
        ));
        assert!(!s.verify(
            "/app/login",
            &query(&url.replace("000413aabbcc", "000413aabbcd")),
            1000
        ));
        assert!(!s.verify("/app/login", &query("/app/login?net=internal"), 1000));
        let other = Signer::new(b"x".repeat(32), std::time::Duration::from_secs(600));
        assert!(!other.verify("/app/login", &query(&url), 1000));
    }

    /// The signature is HMAC-SHA256 over the path and the length-prefixed pairs, in hex:
    /// pinned so that a faster implementation cannot change a link phones already hold.
    #[test]
    fn signatures_are_unchanged_byte_for_byte() {
        let s = Signer::new(b"k".repeat(32), std::time::Duration::from_secs(600));
        let mut link = Link::new("/app/login").with("net", "internal");
        s.sign(&mut link, 1000);
        // Python: hmac.new(b"k" * 32, b"/app/login" + pairs, sha256), each key and value
        // prefixed with its length as a big-endian u32.
        let want = "6e4c4d43dd8a0c09108f0e6cce985b76b6b41a94802e07409136ac7996ddbfee".to_owned();
        assert_eq!(link.query.last().unwrap(), &("sig", want));
        assert_eq!(hex(&[0x00; 32])[..4], *b"0000");
        assert_eq!(hex(&[0xaf; 32])[..4], *b"afaf");
        assert_eq!(hex(&[0x1e; 32])[62..], *b"1e");
    }

    #[test]
    fn a_signature_of_another_length_is_refused() {
        let s = Signer::new(b"k".repeat(32), std::time::Duration::from_secs(600));
        let mut link = Link::new("/app/logout");
        s.sign(&mut link, 1000);
        let url = link.absolute("http://h");
        let mut q = query(&url);
        q.last_mut().unwrap().1.truncate(63);
        assert!(!s.verify("/app/logout", &q, 1000));
        q.last_mut().unwrap().1.clear();
        assert!(!s.verify("/app/logout", &q, 1000));
    }

    #[test]
    fn the_key_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/url.key");
        let a = Signer::load_key(None, &file).unwrap();
        let b = Signer::load_key(None, &file).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            Signer::load_key(Some("configured"), &file).unwrap(),
            b"configured"
        );
    }
}
