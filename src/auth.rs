//! Credential checks and lockouts.
//!
//! Credentials are accepted in the order FreePBX EPM and the Aastra scripts use: the admin
//! password logs in any existing extension; otherwise the user's voicemail PIN; the global
//! user password only for users without a voicemail PIN.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
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

/// `sha256:<hex>` of an admin API key, as the config stores it.
pub fn hash_api_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
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
        self.verify_with(user, secret, true).await
    }

    /// As `verify`; with `admin_allowed` false the admin password is not tried (its own,
    /// stricter limit was reached), which also spares the argon2 work.
    pub async fn verify_with(
        &self,
        user: Option<&User>,
        secret: &str,
        admin_allowed: bool,
    ) -> Option<Tier> {
        // The cheap checks first; they accept exactly what the documented order accepts.
        let cheap = user.and_then(|u| match &u.voicemail_pin {
            Some(pin) => pin.matches(secret).then_some(Tier::VoicemailPin),
            None => self
                .user_password
                .as_ref()
                .filter(|p| p.matches(secret))
                .map(|_| Tier::UserPassword),
        });
        if cheap.is_some() || !admin_allowed {
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
    /// A source address; IPv6 is keyed by its /64 (one host holds a whole /64).
    Source(IpAddr),
}

impl Subject {
    pub fn source(ip: IpAddr) -> Self {
        Subject::Source(match ip.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !0xffff_ffff_ffff_ffff).into()),
            v4 => v4,
        })
    }
}

#[derive(Debug)]
struct Record {
    times: VecDeque<Instant>,
    /// Lockouts so far; each doubles the next one's length.
    strikes: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

/// Failed attempts per subject within a window. `max` failures (`source_max` for source
/// addresses) within `window` lock the subject for `window`, doubling with every further
/// lockout up to a day; a quiet day forgets the history.
pub struct Lockouts {
    max: u32,
    source_max: u32,
    window: Duration,
    records: Mutex<HashMap<Subject, Record>>,
}

/// Subjects tracked at most; beyond this, idle entries are swept before inserting.
const MAX_SUBJECTS: usize = 100_000;
const LONGEST_LOCK: Duration = Duration::from_secs(24 * 3600);

impl Lockouts {
    pub fn new(max: u32, source_max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1),
            source_max: source_max.max(1),
            window,
            records: Mutex::new(HashMap::new()),
        }
    }

    fn max_for(&self, s: &Subject) -> u32 {
        match s {
            Subject::Source(_) => self.source_max,
            _ => self.max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` when any subject is locked, with the longest wait.
    pub fn check(&self, subjects: &[Subject], now: Instant) -> Result<(), Duration> {
        let map = self.lock();
        let wait = subjects
            .iter()
            .filter_map(|s| map.get(s)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Records one failure against every subject; returns the attempts left before a
    /// lockout (the smallest over the subjects; 0 when one is now locked).
    pub fn fail(&self, subjects: &[Subject], now: Instant) -> u32 {
        let mut map = self.lock();
        if map.len() >= MAX_SUBJECTS {
            let window = self.window;
            map.retain(|_, r| {
                r.locked_until.is_some_and(|u| u > now) || now.duration_since(r.last) < window
            });
        }
        let mut left = u32::MAX;
        for s in subjects {
            let max = self.max_for(s);
            let r = map.entry(s.clone()).or_insert_with(|| Record {
                times: VecDeque::new(),
                strikes: 0,
                locked_until: None,
                last: now,
            });
            if now.duration_since(r.last) >= LONGEST_LOCK {
                r.strikes = 0;
            }
            r.last = now;
            while r
                .times
                .front()
                .is_some_and(|&t| now.duration_since(t) >= self.window)
            {
                r.times.pop_front();
            }
            r.times.push_back(now);
            if r.times.len() as u32 >= max {
                r.strikes += 1;
                let factor = 2u32.saturating_pow(r.strikes - 1);
                let lock = self.window.saturating_mul(factor).min(LONGEST_LOCK);
                r.locked_until = Some(now + lock);
                r.times.clear();
                left = 0;
            } else {
                left = left.min(max - r.times.len() as u32);
            }
        }
        if left == u32::MAX { self.max } else { left }
    }

    /// A successful login forgives earlier failures of these subjects.
    pub fn clear(&self, subjects: &[Subject]) {
        let mut map = self.lock();
        for s in subjects {
            map.remove(s);
        }
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
        let l = Lockouts::new(3, 10, Duration::from_secs(60));
        let t0 = Instant::now();
        let ext = [Subject::Extension("1001".into())];
        assert_eq!(l.fail(&ext, t0), 2);
        assert_eq!(l.fail(&ext, t0 + Duration::from_secs(1)), 1);
        assert!(l.check(&ext, t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(l.fail(&ext, t0 + Duration::from_secs(2)), 0);
        let wait = l.check(&ext, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(52));
        assert!(l.check(&ext, t0 + Duration::from_secs(63)).is_ok());
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
    fn repeated_lockouts_back_off_exponentially() {
        let l = Lockouts::new(2, 10, Duration::from_secs(60));
        let ext = [Subject::Extension("1001".into())];
        let mut t = Instant::now();
        for expected in [60, 120, 240] {
            l.fail(&ext, t);
            l.fail(&ext, t);
            assert_eq!(l.check(&ext, t).unwrap_err(), Duration::from_secs(expected));
            t += Duration::from_secs(expected + 1);
        }
    }

    #[test]
    fn sources_have_their_own_limit_and_ipv6_counts_per_64() {
        let l = Lockouts::new(100, 3, Duration::from_secs(60));
        let t = Instant::now();
        let a = Subject::source("2001:db8:1:2::1".parse().unwrap());
        let b = Subject::source("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(a, b, "same /64");
        assert_ne!(a, Subject::source("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            Subject::source("::ffff:192.0.2.1".parse().unwrap()),
            Subject::source("192.0.2.1".parse().unwrap())
        );
        l.fail(std::slice::from_ref(&a), t);
        l.fail(std::slice::from_ref(&b), t);
        assert_eq!(l.fail(std::slice::from_ref(&a), t), 0);
        assert!(l.check(&[b], t).is_err());
    }

    #[test]
    fn the_handset_counts_across_extensions() {
        let l = Lockouts::new(2, 10, Duration::from_secs(60));
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
