//! The phones that asked for something lately (screens or provisioning), logged in or not:
//! model, firmware, address, last contact. Memory only: it refills within one poll interval
//! after a restart, and a bounded map cannot be grown by a MAC sweep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use crate::phone::{Handset, Mac};

/// Phones kept; past this the longest-silent one is forgotten.
const MAX_PHONES: usize = 20_000;

/// Distinct (vendor, model, firmware) kept shared; a site has a handful. Past this (a sweep
/// of made-up User-Agents) a phone's kind is stored on its own.
const MAX_KINDS: usize = 256;

/// What a phone said it is, shared by every phone of that model and firmware: a storm of
/// 10,000 phones of one model keeps one copy, not 20,000 small strings that pin the pages
/// they were allocated between after the storm's own memory is freed.
#[derive(Debug, PartialEq, Eq)]
struct Kind {
    vendor: &'static str,
    model: Box<str>,
    firmware: Box<str>,
}

impl Kind {
    fn is(&self, h: &Handset) -> bool {
        self.vendor == h.vendor.as_str() && *self.model == *h.model && *self.firmware == *h.firmware
    }
}

/// One phone's entry (about 56 bytes with its key).
struct Contact {
    at: OffsetDateTime,
    kind: Arc<Kind>,
    address: IpAddr,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Mac, Contact>,
    kinds: Vec<Arc<Kind>>,
}

impl Inner {
    fn kind_of(&mut self, h: &Handset) -> Arc<Kind> {
        if let Some(k) = self.kinds.iter().find(|k| k.is(h)) {
            return k.clone();
        }
        if self.kinds.len() >= MAX_KINDS {
            self.kinds.retain(|k| Arc::strong_count(k) > 1);
        }
        let kind = Arc::new(Kind {
            vendor: h.vendor.as_str(),
            model: h.model.as_ref().into(),
            firmware: h.firmware.as_ref().into(),
        });
        if self.kinds.len() < MAX_KINDS {
            self.kinds.push(kind.clone());
        }
        kind
    }

    /// Makes room when the list is full: the oldest tenth goes in one pass, so a storm of
    /// new phones pays one scan per 2,000 of them, not one per phone.
    fn evict_oldest_tenth(&mut self) {
        let mut times: Vec<OffsetDateTime> = self.map.values().map(|c| c.at).collect();
        let cut = times.len() / 10;
        let (_, cutoff, _) = times.select_nth_unstable(cut);
        let cutoff = *cutoff;
        self.map.retain(|_, c| c.at > cutoff);
        self.kinds.retain(|k| Arc::strong_count(k) > 1);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub mac: Mac,
    pub vendor: &'static str,
    pub model: String,
    pub firmware: String,
    pub address: IpAddr,
    pub at: OffsetDateTime,
}

/// A contact within this long of the last one noted, from the same place and firmware, is
/// not written: the hot path takes only the shared lock.
const RESOLUTION: time::Duration = time::Duration::seconds(10);

#[derive(Default)]
pub struct PhonesSeen {
    inner: RwLock<Inner>,
}

impl PhonesSeen {
    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a request from `handset` at `address`. Cheap when nothing changed but the time.
    pub fn saw(&self, handset: &Handset, address: IpAddr, at: OffsetDateTime) {
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if inner.map.get(&handset.mac).is_some_and(|c| {
                at - c.at < RESOLUTION && c.address == address && c.kind.is(handset)
            }) {
                return;
            }
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let changed = inner.map.get(&handset.mac).map(|c| !c.kind.is(handset));
        let kind = (changed != Some(false)).then(|| inner.kind_of(handset));
        if let Some(c) = inner.map.get_mut(&handset.mac) {
            c.at = at;
            c.address = address;
            if let Some(kind) = kind {
                c.kind = kind;
            }
            return;
        }
        let Some(kind) = kind else { return };
        if inner.map.len() >= MAX_PHONES {
            inner.evict_oldest_tenth();
        }
        inner.map.insert(handset.mac, Contact { at, kind, address });
    }

    /// Every phone, most recent contact first.
    pub fn all(&self) -> Vec<Seen> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Seen> = inner
            .map
            .iter()
            .map(|(mac, c)| Seen {
                mac: *mac,
                vendor: c.kind.vendor,
                model: c.kind.model.to_string(),
                firmware: c.kind.firmware.to_string(),
                address: c.address,
                at: c.at,
            })
            .collect();
        v.sort_by(|a, b| b.at.cmp(&a.at).then(a.mac.cmp(&b.mac)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_list_drops_its_oldest_tenth_and_keeps_the_newest() {
        let seen = PhonesSeen::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        for i in 0..=MAX_PHONES {
            let ua = format!(
                "Yealink SIP-T46S 66.86.0.15 80:5e:c0:{:02x}:{:02x}:{:02x}",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            );
            let h = crate::vendor::identify(Some(&ua), None, None).unwrap();
            seen.saw(&h, ip, t0 + time::Duration::seconds(i as i64));
        }
        let all = seen.all();
        assert!(
            all.len() <= MAX_PHONES && all.len() > MAX_PHONES * 8 / 10,
            "{}",
            all.len()
        );
        let newest = t0 + time::Duration::seconds(MAX_PHONES as i64);
        assert!(all.iter().any(|s| s.at == newest), "the newest phone stays");
        assert!(
            all.iter().all(|s| s.at > t0 + time::Duration::seconds(100)),
            "the oldest went"
        );
        let inner = seen.inner.read().unwrap();
        assert_eq!(
            inner.kinds.len(),
            1,
            "one model, one firmware: one shared kind"
        );
    }

    #[test]
    fn a_phone_that_changes_firmware_or_address_is_shown_as_it_is_now() {
        let seen = PhonesSeen::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let old = crate::vendor::identify(
            Some("Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:01"),
            None,
            None,
        )
        .unwrap();
        let new = crate::vendor::identify(
            Some("Yealink SIP-T46S 66.86.0.20 80:5e:c0:00:00:01"),
            None,
            None,
        )
        .unwrap();
        let other = crate::vendor::identify(
            Some("Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:02"),
            None,
            None,
        )
        .unwrap();
        seen.saw(&old, "10.0.0.7".parse().unwrap(), t0);
        seen.saw(&other, "10.0.0.8".parse().unwrap(), t0);
        seen.saw(
            &new,
            "10.0.0.9".parse().unwrap(),
            t0 + time::Duration::seconds(1),
        );
        let all = seen.all();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].firmware.as_str(), all[0].address),
            ("66.86.0.20", "10.0.0.9".parse().unwrap())
        );
        assert_eq!(
            (all[1].firmware.as_str(), all[1].model.as_str()),
            ("66.86.0.15", "T46S")
        );
        // Many made-up kinds stay bounded.
        for i in 0..(MAX_KINDS * 2) {
            let ua = format!(
                "Yealink SIP-T46S 66.86.{i}.1 80:5e:c0:01:{:02x}:{:02x}",
                i >> 8,
                i & 0xff
            );
            let h = crate::vendor::identify(Some(&ua), None, None).unwrap();
            seen.saw(&h, "10.0.0.7".parse().unwrap(), t0);
        }
        assert!(seen.inner.read().unwrap().kinds.len() <= MAX_KINDS);
        assert_eq!(seen.all().len(), 2 + MAX_KINDS * 2);
    }
}
