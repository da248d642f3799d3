//! SIP secrets sealed at rest: ChaCha20-Poly1305 (ring) with a 256-bit key kept in a file
//! beside the database (`users.key`, owner-only, like `url.key`), a random 96-bit nonce per
//! value stored in front of it, and the extension as associated data, so a sealed value
//! copied onto another user's row does not open.

use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::secret::Secret;

const KEY_LEN: usize = 32;

/// The key that seals and opens SIP secrets.
pub struct SealKey(LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

/// A sealed value that does not open: wrong key, another user's row, or altered bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed SIP secret does not open with users.key (wrong key file, or altered)")]
pub struct Unsealable;

impl SealKey {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("32 bytes is the key size");
        Self(LessSafeKey::new(key))
    }

    /// Reads the key file, or makes one (0600) when there is none and `may_create`.
    pub fn load_or_create(file: &Path, may_create: bool) -> Result<Self, String> {
        match std::fs::read(file) {
            Ok(bytes) => {
                let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    format!(
                        "{} must hold exactly {KEY_LEN} bytes (it has {})",
                        file.display(),
                        bytes.len()
                    )
                })?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                let mut key = [0u8; KEY_LEN];
                getrandom::fill(&mut key).map_err(|e| format!("no randomness for a key: {e}"))?;
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                crate::flow::signing::write_private(file, &key)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) => Err(format!("cannot read {}: {e}", file.display())),
        }
    }

    /// `nonce || ciphertext || tag`, bound to `extension`.
    pub fn seal(&self, extension: &str, secret: &Secret) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness for a nonce: {e}"))?;
        let mut data = secret.expose().as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(extension.as_bytes()),
                &mut data,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// The secret sealed for `extension`.
    pub fn open(&self, extension: &str, sealed: &[u8]) -> Result<Secret, Unsealable> {
        if sealed.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut data = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(extension.as_bytes()), &mut data)
            .map_err(|_| Unsealable)?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealKey {
        SealKey::from_bytes(&[byte; KEY_LEN])
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let k = key(7);
        let s = Secret::new("sip-secret-Ünïcode");
        let a = k.seal("1001", &s).unwrap();
        let b = k.seal("1001", &s).unwrap();
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.windows(10).any(|w| w == &b"sip-secret"[..]));
        assert_eq!(k.open("1001", &a).unwrap(), s);
        assert_eq!(k.open("1001", &b).unwrap(), s);
    }

    #[test]
    fn tampering_another_user_or_another_key_does_not_open() {
        let k = key(7);
        let sealed = k.seal("1001", &Secret::new("s3cret")).unwrap();
        assert_eq!(k.open("1002", &sealed), Err(Unsealable), "associated data");
        assert_eq!(key(8).open("1001", &sealed), Err(Unsealable), "other key");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(k.open("1001", &t), Err(Unsealable), "byte {i}");
        }
        assert_eq!(k.open("1001", &sealed[..sealed.len() - 1]), Err(Unsealable));
        assert_eq!(k.open("1001", &[]), Err(Unsealable));
    }

    #[test]
    fn key_file_is_made_once_owner_only_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.key");
        assert!(SealKey::load_or_create(&file, false).is_err());
        let a = SealKey::load_or_create(&file, true).unwrap();
        let sealed = a.seal("1001", &Secret::new("x")).unwrap();
        let b = SealKey::load_or_create(&file, false).unwrap();
        assert_eq!(b.open("1001", &sealed).unwrap(), Secret::new("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&file, b"short").unwrap();
        assert!(
            SealKey::load_or_create(&file, true)
                .unwrap_err()
                .contains("32 bytes")
        );
    }
}
