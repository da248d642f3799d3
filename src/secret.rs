//! A string that must never be printed: PINs, passwords, API keys, SIP secrets.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Holds a secret; `Debug` and `Display` print `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The raw value, for the few places that must send it (provisioning) or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality. Both sides are hashed first so that the comparison
    /// leaks neither content nor length.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(candidate.as_bytes());
        a.ct_eq(&b).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("4711");
        assert_eq!(format!("{s:?}"), "[redacted]");
    }

    #[test]
    fn matches_exactly() {
        let s = Secret::new("4711");
        assert!(s.matches("4711"));
        assert!(!s.matches("4712"));
        assert!(!s.matches("47110"));
        assert!(!s.matches(""));
    }
}
