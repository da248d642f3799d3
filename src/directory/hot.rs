//! The directory cache's last fresh answers, read before the cache itself: a phone polling
//! its provisioning file looks its users up every time, and the cache's own lookup (hashing,
//! read recording, expiry bookkeeping) was a tenth of that poll's CPU. An answer is kept
//! with the count of cache writes at the time it was read; any later write (a fetch, an
//! invalidation) moves the count and the kept answer is not used again. So a kept answer is
//! what the cache holds, and it is used only while fresh by the cache's own policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::User;
use crate::slots::Slots;

struct Kept {
    ext: Box<str>,
    user: Arc<User>,
    fetched: Instant,
    written: u64,
}

pub(super) struct Hot {
    slots: Slots<Kept>,
    written: AtomicU64,
}

impl Hot {
    pub fn new(slots: usize) -> Self {
        Self {
            slots: Slots::new(slots),
            written: AtomicU64::new(0),
        }
    }

    /// Call after every write to the cache.
    pub fn changed(&self) {
        self.written.fetch_add(1, Ordering::SeqCst);
    }

    /// The writes so far: read before reading the cache, passed to [`Hot::keep`].
    pub fn writes(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// `ext`'s user, if kept since the last write and fetched less than `fresh` ago.
    pub fn get(&self, ext: &str, now: Instant, fresh: Duration) -> Option<Arc<User>> {
        let writes = self.writes();
        self.slots.find(self.slots.hash(ext), |k| {
            (*k.ext == *ext && k.written == writes && now.duration_since(k.fetched) < fresh)
                .then(|| k.user.clone())
        })
    }

    /// Keeps what the cache answered for `ext`, read after `writes` writes.
    pub fn keep(&self, ext: &str, user: &Arc<User>, fetched: Instant, writes: u64) {
        let kept = Kept {
            ext: ext.into(),
            user: user.clone(),
            fetched,
            written: writes,
        };
        self.slots.put(self.slots.hash(ext), kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn user(ext: &str) -> Arc<User> {
        Arc::new(User {
            extension: ext.into(),
            name: "Ada".into(),
            voicemail_pin: None,
            sip_password: Secret::new("s"),
            sip_username: None,
            template: None,
            pin_hash: None,
        })
    }

    #[test]
    fn kept_only_until_the_next_write_and_while_fresh() {
        // One slot: every extension competes for it.
        let hot = Hot::new(1);
        let fresh = Duration::from_secs(60);
        let t0 = Instant::now();
        hot.keep("1001", &user("1001"), t0, hot.writes());
        let got = hot.get("1001", t0, fresh).unwrap();
        assert_eq!(got.extension, "1001");
        assert!(hot.get("1002", t0, fresh).is_none(), "another extension");
        assert!(
            hot.get("1001", t0 + fresh, fresh).is_none(),
            "no longer fresh"
        );
        hot.changed();
        assert!(hot.get("1001", t0, fresh).is_none(), "a write since");
        // Read before a write that landed meanwhile: never used.
        let before = hot.writes();
        hot.changed();
        hot.keep("1001", &user("1001"), t0, before);
        assert!(hot.get("1001", t0, fresh).is_none());
        hot.keep("1002", &user("1002"), t0, hot.writes());
        assert!(hot.get("1001", t0, fresh).is_none(), "slot taken over");
        assert_eq!(hot.get("1002", t0, fresh).unwrap().extension, "1002");
    }
}
