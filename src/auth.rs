//! Credential checks and lockouts.
//!
//! Credentials are accepted in the order FreePBX EPM and the Aastra scripts use: the admin
//! password logs in any existing extension; otherwise the user's voicemail PIN; the global
//! user password only for users without a voicemail PIN.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use tokio::sync::Semaphore;

use crate::directory::User;
use crate::phone::Mac;
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

/// A PHC string that authenticates nothing, verified when there is no admin hash or no such
/// user, so that every failed attempt costs the same time.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4vR8RkqL4JGHj3r4mYw5m2kq0a6s9y0Jc6mG0y2b9gk";

/// Verifies credentials. argon2 (~19 MiB, tens of ms) runs on the blocking pool behind a
/// small semaphore so that guessing cannot starve the async workers.
pub struct Verifier {
    admin_phc: Option<Arc<str>>,
    user_password: Option<Secret>,
    permits: Semaphore,
}

impl Verifier {
    pub fn new(admin_phc: Option<String>, user_password: Option<Secret>) -> Self {
        Self {
            admin_phc: admin_phc.map(Arc::from),
            user_password: user_password.filter(|p| !p.is_empty()),
            permits: Semaphore::new(2),
        }
    }

    /// Which tier `secret` satisfies for `user`, if any. Unknown users and wrong secrets
    /// take the same path and the same time.
    pub async fn verify(&self, user: Option<&User>, secret: &str) -> Option<Tier> {
        // The cheap checks first; they accept exactly what the documented order accepts.
        let cheap = user.and_then(|u| match &u.voicemail_pin {
            Some(pin) => pin.matches(secret).then_some(Tier::VoicemailPin),
            None => self
                .user_password
                .as_ref()
                .filter(|p| p.matches(secret))
                .map(|_| Tier::UserPassword),
        });
        if cheap.is_some() {
            return cheap;
        }
        let phc = match (&self.admin_phc, user) {
            (Some(phc), Some(_)) => phc.clone(),
            _ => Arc::from(DUMMY_PHC),
        };
        let ok = self.argon2_matches(phc, secret).await;
        (ok && user.is_some() && self.admin_phc.is_some()).then_some(Tier::AdminPassword)
    }

    async fn argon2_matches(&self, phc: Arc<str>, secret: &str) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let secret = Secret::new(secret);
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|h| {
                    Argon2::default()
                        .verify_password(secret.expose().as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

/// What failed attempts are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Extension(String),
    Handset(Mac),
}

/// Failed attempts per subject within a window. `max` failures within `window` lock the
/// subject until the oldest of them leaves the window.
pub struct Lockouts {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<Subject, VecDeque<Instant>>>,
}

/// Subjects tracked at most; beyond this, expired entries are swept before inserting.
const MAX_SUBJECTS: usize = 100_000;

impl Lockouts {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when any subject is locked, with the longest wait.
    pub fn check(&self, subjects: &[Subject], now: Instant) -> Result<(), Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let wait = subjects
            .iter()
            .filter_map(|s| map.get(s))
            .filter_map(|times| self.locked_for(times, now))
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Records one failure against every subject; returns the attempts left before a
    /// lockout (the smallest over the subjects).
    pub fn fail(&self, subjects: &[Subject], now: Instant) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SUBJECTS {
            let window = self.window;
            map.retain(|_, t| {
                t.back()
                    .is_some_and(|&last| now.duration_since(last) < window)
            });
        }
        let mut left = self.max;
        for s in subjects {
            let times = map.entry(s.clone()).or_default();
            while times
                .front()
                .is_some_and(|&t| now.duration_since(t) >= self.window)
            {
                times.pop_front();
            }
            times.push_back(now);
            while times.len() > self.max as usize {
                times.pop_front();
            }
            left = left.min(self.max.saturating_sub(times.len() as u32));
        }
        left
    }

    /// A successful login forgives earlier failures of these subjects.
    pub fn clear(&self, subjects: &[Subject]) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for s in subjects {
            map.remove(s);
        }
    }

    fn locked_for(&self, times: &VecDeque<Instant>, now: Instant) -> Option<Duration> {
        let recent: Vec<&Instant> = times
            .iter()
            .filter(|&&t| now.duration_since(t) < self.window)
            .collect();
        if recent.len() < self.max as usize {
            return None;
        }
        let oldest = **recent.first()?;
        Some(self.window.saturating_sub(now.duration_since(oldest)))
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
            template: None,
        }
    }

    #[tokio::test]
    async fn credential_order() {
        let admin = hash_password("999000").unwrap();
        let v = Verifier::new(Some(admin), Some(Secret::new("2468")));
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
            assert_eq!(v.verify(u, secret).await, want, "{secret:?}");
        }
    }

    #[tokio::test]
    async fn no_admin_hash_means_no_admin_login() {
        let v = Verifier::new(None, None);
        assert_eq!(v.verify(Some(&user(None)), "anything").await, None);
    }

    #[test]
    fn phc_check() {
        assert!(check_phc(&hash_password("x").unwrap()).is_ok());
        assert!(check_phc("plain").is_err());
        assert!(check_phc(DUMMY_PHC).is_ok());
    }

    #[test]
    fn lockout_after_max_failures_then_expires() {
        let l = Lockouts::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let ext = [Subject::Extension("1001".into())];
        assert_eq!(l.fail(&ext, t0), 2);
        assert_eq!(l.fail(&ext, t0 + Duration::from_secs(1)), 1);
        assert!(l.check(&ext, t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(l.fail(&ext, t0 + Duration::from_secs(2)), 0);
        let wait = l.check(&ext, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(l.check(&ext, t0 + Duration::from_secs(61)).is_ok());
        // Another extension from another phone is not affected.
        assert!(
            l.check(
                &[Subject::Extension("1002".into())],
                t0 + Duration::from_secs(10)
            )
            .is_ok()
        );
    }

    #[test]
    fn the_handset_counts_across_extensions() {
        let l = Lockouts::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        let mac: Mac = "00085d000001".parse().unwrap();
        l.fail(&[Subject::Extension("1".into()), Subject::Handset(mac)], t0);
        l.fail(&[Subject::Extension("2".into()), Subject::Handset(mac)], t0);
        assert!(
            l.check(&[Subject::Extension("3".into()), Subject::Handset(mac)], t0)
                .is_err()
        );
        l.clear(&[Subject::Handset(mac)]);
        assert!(l.check(&[Subject::Handset(mac)], t0).is_ok());
    }
}
