//! Credential checks and lockouts.
//!
//! Credentials are accepted in the order FreePBX EPM and the Aastra scripts use: the admin
//! password logs in any existing extension; otherwise the user's voicemail PIN; the global
//! user password only for users without a voicemail PIN.

mod hasher;
pub mod lockouts;

pub use hasher::{Busy, Hasher};
pub use lockouts::{Attempt, Limits, Lockouts, Subject};

use std::net::IpAddr;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, phc::PasswordHash};

use crate::directory::User;
use crate::secret::Secret;

/// Which credential let the user in; recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    VoicemailPin,
    UserPassword,
    AdminPassword,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::VoicemailPin => "voicemail-pin",
            Tier::UserPassword => "user-password",
            Tier::AdminPassword => "admin-password",
        }
    }
}

/// Checks that `phc` is an argon2 PHC string.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| e.to_string())?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm `{}` is not argon2",
            parsed.algorithm.as_str()
        ));
    }
    Ok(())
}

/// Hashes a password as an argon2id PHC string (for `hotdesk hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// `sha256:<hex>` of an admin API key, as the config stores it.
pub fn hash_api_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    format!("sha256:{}", crate::hex::lower(&digest))
}

/// The 32 digest bytes of a `sha256:<hex>` string.
pub fn parse_key_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The name of the configured key that `candidate` is, if it may be used from `source`.
/// Every key is compared, in constant time, whatever matches.
pub fn match_api_key<'a>(
    keys: &'a [crate::config::ApiKey],
    candidate: &str,
    source: IpAddr,
) -> Option<&'a str> {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let digest = Sha256::digest(candidate.as_bytes());
    let mut found = None;
    for key in keys {
        let Some(stored) = parse_key_hash(&key.hash) else {
            continue;
        };
        let same: bool = stored.ct_eq(digest.as_slice()).into();
        let place_ok =
            key.from.is_empty() || key.from.iter().any(|n| n.contains(&source.to_canonical()));
        if same && place_ok && found.is_none() {
            found = Some(key.name.as_str());
        }
    }
    found
}

/// A PHC string that authenticates nothing, verified for an unknown extension when an admin
/// password is configured, so that known and unknown extensions cost the same time.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4vR8RkqL4JGHj3r4mYw5m2kq0a6s9y0Jc6mG0y2b9gk";

/// Which of the shared credentials a check may try (their own budgets decide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub user_password: bool,
    pub admin_password: bool,
}

impl Offer {
    pub const ALL: Offer = Offer {
        user_password: true,
        admin_password: true,
    };
    pub const OWN_PIN_ONLY: Offer = Offer {
        user_password: false,
        admin_password: false,
    };
}

/// Verifies credentials. argon2 runs on [`Hasher`]'s fixed threads.
pub struct Verifier {
    admin_phc: Option<Arc<str>>,
    user_password: Option<Secret>,
    hasher: Hasher,
    /// The directory keeps PINs hashed: every PIN check costs one argon2, for unknown
    /// extensions and users without a PIN too, so timing does not tell who exists.
    hashed_pins: bool,
}

impl Verifier {
    pub fn new(admin_phc: Option<String>, user_password: Option<Secret>, hasher: Hasher) -> Self {
        Self {
            admin_phc: admin_phc.map(Arc::from),
            user_password: user_password.filter(|p| !p.is_empty()),
            hasher,
            hashed_pins: false,
        }
    }

    /// For a directory whose PINs are argon2 hashes (`kind = "embedded"`).
    pub fn with_hashed_pins(mut self, hashed: bool) -> Self {
        self.hashed_pins = hashed;
        self
    }

    /// Whether a check of `user` would try the shared user password.
    pub fn would_try_user_password(&self, user: Option<&User>) -> bool {
        self.user_password.is_some()
            && user.is_some_and(|u| u.voicemail_pin.is_none() && u.pin_hash.is_none())
    }

    /// The admin password's PHC string (`[login] admin_password_hash`), if any.
    pub fn admin_phc(&self) -> Option<Arc<str>> {
        self.admin_phc.clone()
    }

    /// Checks `secret` against `phc` on the argon2 threads; an unknown account (`None`) is
    /// checked against a PHC that matches nothing, so unknown names cost the same time.
    pub async fn check_password(&self, phc: Option<Arc<str>>, secret: &str) -> Result<bool, Busy> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| Arc::from(DUMMY_PHC));
        Ok(self.hasher.verify(phc, secret).await? && known)
    }

    /// Whether an admin password is configured at all.
    pub fn has_admin_password(&self) -> bool {
        self.admin_phc.is_some()
    }

    /// Which tier `secret` satisfies for `user`, if any, trying only what `offer` allows.
    /// Unknown and known extensions take the same path and the same time.
    pub async fn verify(
        &self,
        user: Option<&User>,
        secret: &str,
        offer: Offer,
    ) -> Result<Option<Tier>, Busy> {
        // A hashed PIN: one argon2, against a PHC that matches nothing when the user or their
        // PIN is missing, so that costs the same.
        let pin_hash = user.and_then(|u| u.pin_hash.clone());
        if self.hashed_pins || pin_hash.is_some() {
            let known = pin_hash.is_some();
            let phc = pin_hash.unwrap_or_else(|| Arc::from(DUMMY_PHC));
            if self.hasher.verify(phc, secret).await? && known {
                return Ok(Some(Tier::VoicemailPin));
            }
        }
        // The cheap checks first; they accept exactly what the documented order accepts.
        let cheap = user.and_then(|u| match &u.voicemail_pin {
            Some(pin) => pin.matches(secret).then_some(Tier::VoicemailPin),
            None if u.pin_hash.is_some() => None,
            None => self
                .user_password
                .as_ref()
                .filter(|p| offer.user_password && p.matches(secret))
                .map(|_| Tier::UserPassword),
        });
        if cheap.is_some() || !offer.admin_password {
            return Ok(cheap);
        }
        let Some(admin) = &self.admin_phc else {
            return Ok(None);
        };
        let phc = match user {
            Some(_) => admin.clone(),
            None => Arc::from(DUMMY_PHC),
        };
        let ok = self.hasher.verify(phc, secret).await?;
        Ok((ok && user.is_some()).then_some(Tier::AdminPassword))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(pin: Option<&str>) -> User {
        User {
            extension: "1001".into(),
            name: "Ada".into(),
            voicemail_pin: pin.map(Secret::new),
            sip_password: Secret::new("sip-secret"),
            sip_username: None,
            template: None,
            pin_hash: None,
        }
    }

    #[tokio::test]
    async fn credential_order() {
        let admin = hash_password("999000").unwrap();
        let v = Verifier::new(Some(admin), Some(Secret::new("2468")), Hasher::new(1, 8));
        let with_pin = user(Some("4711"));
        let without_pin = user(None);
        let cases = [
            (Some(&with_pin), "4711", Some(Tier::VoicemailPin)),
            (Some(&with_pin), "2468", None), // user password only without a voicemail PIN
            (Some(&with_pin), "999000", Some(Tier::AdminPassword)),
            (Some(&with_pin), "", None),
            (Some(&without_pin), "2468", Some(Tier::UserPassword)),
            (Some(&without_pin), "4711", None),
            (Some(&without_pin), "999000", Some(Tier::AdminPassword)),
            (None, "999000", None), // admin password needs an existing extension
            (None, "4711", None),
        ];
        for (u, secret, want) in cases {
            assert_eq!(
                v.verify(u, secret, Offer::ALL).await,
                Ok(want),
                "{secret:?}"
            );
        }
        // What the offer leaves out is not tried.
        let none = Offer::OWN_PIN_ONLY;
        assert_eq!(v.verify(Some(&without_pin), "2468", none).await, Ok(None));
        assert_eq!(v.verify(Some(&with_pin), "999000", none).await, Ok(None));
        assert_eq!(
            v.verify(Some(&with_pin), "4711", none).await,
            Ok(Some(Tier::VoicemailPin))
        );
    }

    #[tokio::test]
    async fn hashed_pins_keep_the_order_and_cost_one_check_for_everyone() {
        let admin = hash_password("999000").unwrap();
        let v = Verifier::new(Some(admin), Some(Secret::new("2468")), Hasher::new(1, 8))
            .with_hashed_pins(true);
        let mut hashed = user(None);
        hashed.pin_hash = Some(Arc::from(hash_password("583920").unwrap()));
        let without_pin = user(None);
        assert!(!v.would_try_user_password(Some(&hashed)));
        let cases = [
            (Some(&hashed), "583920", Some(Tier::VoicemailPin)),
            (Some(&hashed), "2468", None), // a user with a PIN never takes the user password
            (Some(&hashed), "999000", Some(Tier::AdminPassword)),
            (Some(&hashed), "583921", None),
            (Some(&without_pin), "2468", Some(Tier::UserPassword)),
            (None, "583920", None),
        ];
        for (u, secret, want) in cases {
            assert_eq!(
                v.verify(u, secret, Offer::ALL).await,
                Ok(want),
                "{secret:?}"
            );
        }
        // Unknown extensions and known ones with a wrong PIN take comparable time: both run
        // argon2 (a one-thread hasher runs them one after the other).
        let t = std::time::Instant::now();
        v.verify(None, "1", Offer::OWN_PIN_ONLY).await.unwrap();
        let unknown = t.elapsed();
        let t = std::time::Instant::now();
        v.verify(Some(&hashed), "1", Offer::OWN_PIN_ONLY)
            .await
            .unwrap();
        let known = t.elapsed();
        assert!(
            unknown * 3 > known && known * 3 > unknown,
            "{unknown:?} vs {known:?}"
        );
    }

    #[tokio::test]
    async fn no_admin_hash_means_no_admin_login() {
        let v = Verifier::new(None, None, Hasher::new(1, 8));
        assert_eq!(
            v.verify(Some(&user(None)), "anything", Offer::ALL).await,
            Ok(None)
        );
    }

    #[test]
    fn phc_check() {
        assert!(check_phc(&hash_password("x").unwrap()).is_ok());
        assert!(check_phc("plain").is_err());
        assert!(check_phc(DUMMY_PHC).is_ok());
    }
}
