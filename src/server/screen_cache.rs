//! Rendered entry screens, reused for the second their links were signed in. A screen's
//! signed links depend only on the screen and the second (`exp`), and its XML only on the
//! screen, the phone's vendor, model, firmware and limits, the link base and the reload
//! method; so a phone asking for a screen another phone of its model got in the same second
//! (a boot storm, a shift start) gets the same bytes without rendering or signing again.
//! Every field of the key is compared on a hit, never the hash alone, so no phone can be
//! given a document made for a different screen. A fixed number of slots bounds the memory;
//! a newer second or another key simply takes a slot over.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use crate::config::ReloadMethod;
use crate::dialect::Target;
use crate::phone::{Caps, Vendor};
use crate::screen::Shared;

/// Slots in the cache: a site has a handful of models, each with an entry screen and a
/// logged-in menu per phone; a slot holds a document of a few KB at most.
const SLOTS: usize = 256;

/// What a cached document was made from.
pub struct Key<'a> {
    /// The screen before its links were signed.
    pub screen: &'a Shared,
    pub target: Target<'a>,
    /// The second its links were (or would be) signed in.
    pub second: i64,
}

/// A rendered document and its `Refresh` header, ready to send.
#[derive(Clone)]
pub struct Document {
    pub body: Bytes,
    pub refresh: Option<HeaderValue>,
}

struct Slot {
    hash: u64,
    second: i64,
    vendor: Vendor,
    model: Arc<str>,
    firmware: Arc<str>,
    caps: Caps,
    base: String,
    reload: ReloadMethod,
    screen: Shared,
    doc: Document,
}

impl Slot {
    fn holds(&self, hash: u64, key: &Key<'_>) -> bool {
        let h = key.target.handset;
        self.hash == hash
            && self.second == key.second
            && self.vendor == h.vendor
            && self.caps == h.caps
            && self.reload == key.target.reload
            && self.model == h.model
            && self.firmware == h.firmware
            && self.base == key.target.base
            && self.screen.same_as(key.screen)
    }
}

pub struct ScreenCache {
    slots: crate::slots::Slots<Slot>,
}

impl Default for ScreenCache {
    fn default() -> Self {
        Self::with_slots(SLOTS)
    }
}

impl ScreenCache {
    fn with_slots(n: usize) -> Self {
        Self {
            slots: crate::slots::Slots::new(n),
        }
    }

    fn hash(&self, key: &Key<'_>) -> u64 {
        let h = key.target.handset;
        self.slots.hash((
            h.vendor,
            &h.model,
            &h.firmware,
            h.caps,
            key.target.base,
            key.target.reload,
            key.screen.fingerprint,
        ))
    }

    /// The document made from exactly `key`, if one is kept.
    pub fn get(&self, key: &Key<'_>) -> Option<Document> {
        let hash = self.hash(key);
        self.slots
            .find(hash, |s| s.holds(hash, key).then(|| s.doc.clone()))
    }

    /// Keeps `doc` as the document made from `key`, in place of what its slot held.
    pub fn put(&self, key: &Key<'_>, doc: Document) {
        let hash = self.hash(key);
        let h = key.target.handset;
        let fresh = Slot {
            hash,
            second: key.second,
            vendor: h.vendor,
            model: h.model.clone(),
            firmware: h.firmware.clone(),
            caps: h.caps,
            base: key.target.base.to_owned(),
            reload: key.target.reload,
            screen: key.screen.clone(),
            doc,
        };
        self.slots.put(hash, fresh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::Handset;
    use crate::screen::{Field, Input, Link, Screen, Shared};

    fn handset(model: &str) -> Handset {
        crate::vendor::identify(
            Some(&format!("Yealink SIP-{model} 66.86.0.15 805ec0000001")),
            None,
            None,
        )
        .unwrap()
    }

    fn screen(title: &str) -> Shared {
        Shared::new(Screen::Input(Input {
            title: title.into(),
            fields: vec![Field {
                prompt: "PIN:".into(),
                param: "pin",
                numeric: true,
                secret: true,
            }],
            submit: Link::new("/app/login").with("net", "internal"),
        }))
    }

    fn doc(text: &'static str) -> Document {
        Document {
            body: Bytes::from_static(text.as_bytes()),
            refresh: None,
        }
    }

    fn key<'a>(screen: &'a Shared, handset: &'a Handset, base: &'a str, second: i64) -> Key<'a> {
        Key {
            screen,
            target: Target {
                handset,
                base,
                reload: ReloadMethod::CheckSync,
            },
            second,
        }
    }

    #[test]
    fn the_same_screen_in_the_same_second_is_reused() {
        let cache = ScreenCache::default();
        let (s, t46) = (screen("Hot desk login"), handset("T46S"));
        assert!(cache.get(&key(&s, &t46, "http://h", 100)).is_none());
        cache.put(&key(&s, &t46, "http://h", 100), doc("<a/>"));
        let hit = cache.get(&key(&s, &t46, "http://h", 100)).unwrap();
        assert_eq!(hit.body, "<a/>");
    }

    #[test]
    fn an_equal_screen_built_apart_is_the_same_key() {
        let cache = ScreenCache::default();
        let t46 = handset("T46S");
        cache.put(
            &key(&screen("Hot desk login"), &t46, "http://h", 100),
            doc("<a/>"),
        );
        let again = screen("Hot desk login");
        assert_eq!(
            cache.get(&key(&again, &t46, "http://h", 100)).unwrap().body,
            "<a/>"
        );
    }

    #[test]
    fn anything_else_is_a_miss() {
        // One slot: every key collides, so only the full comparison keeps them apart.
        let cache = ScreenCache::with_slots(1);
        let (s, t46, t54) = (screen("Hot desk login"), handset("T46S"), handset("T54W"));
        cache.put(&key(&s, &t46, "http://h", 100), doc("<a/>"));
        assert!(
            cache.get(&key(&s, &t46, "http://h", 101)).is_none(),
            "next second"
        );
        assert!(
            cache.get(&key(&s, &t54, "http://h", 100)).is_none(),
            "other model"
        );
        assert!(
            cache.get(&key(&s, &t46, "https://h", 100)).is_none(),
            "other base"
        );
        let other = screen("Ada Lovelace");
        assert!(
            cache.get(&key(&other, &t46, "http://h", 100)).is_none(),
            "other screen"
        );
        let colliding = Shared {
            screen: other.screen.clone(),
            fingerprint: s.fingerprint,
        };
        assert!(
            cache.get(&key(&colliding, &t46, "http://h", 100)).is_none(),
            "another screen under the same fingerprint"
        );
        let mut k = key(&s, &t46, "http://h", 100);
        k.target.reload = ReloadMethod::Reboot;
        assert!(cache.get(&k).is_none(), "other reload method");
        // A later document takes the slot over.
        cache.put(&key(&other, &t46, "http://h", 100), doc("<b/>"));
        assert!(cache.get(&key(&s, &t46, "http://h", 100)).is_none());
        assert_eq!(
            cache.get(&key(&other, &t46, "http://h", 100)).unwrap().body,
            "<b/>"
        );
    }
}
