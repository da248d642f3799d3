//! The phones that asked for something lately (screens or provisioning), logged in or not:
//! model, firmware, address, last contact. Memory only: it refills within one poll interval
//! after a restart, and a bounded map cannot be grown by a MAC sweep.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::RwLock;

use time::OffsetDateTime;

use crate::phone::{Handset, Mac};

/// Phones kept; past this the longest-silent one is forgotten.
const MAX_PHONES: usize = 20_000;

/// Distinct (vendor, model, firmware) kept; a site has a handful. When a sweep of made-up
/// User-Agents fills them all, the longest-silent phones are forgotten until one is unused.
const MAX_KINDS: usize = 4096;

/// Longest model or firmware text kept (the console shows it; a User-Agent can be long).
const MAX_KIND_TEXT: usize = 64;

/// What a phone said it is, stored once for every phone of that model and firmware: a storm
/// of 10,000 phones of one model keeps one copy, not 20,000 small strings that pin the pages
/// they were allocated between after the storm's own memory is freed.
#[derive(Debug, PartialEq, Eq)]
struct Kind {
    vendor: &'static str,
    model: Box<str>,
    firmware: Box<str>,
}

impl Kind {
    fn of(h: &Handset) -> Self {
        Kind {
            vendor: h.vendor.as_str(),
            model: clip(&h.model).into(),
            firmware: clip(&h.firmware).into(),
        }
    }

    fn is(&self, h: &Handset) -> bool {
        self.vendor == h.vendor.as_str()
            && *self.model == *clip(&h.model)
            && *self.firmware == *clip(&h.firmware)
    }
}

/// At most [`MAX_KIND_TEXT`] bytes, cut on a character boundary.
fn clip(s: &str) -> &str {
    if s.len() <= MAX_KIND_TEXT {
        return s;
    }
    let mut end = MAX_KIND_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One phone's entry: 28 bytes with its key, so 10,000 phones fit a 512 KiB table. Packed
/// to 2-byte alignment (4 bytes less per entry); its fields are copied, never borrowed.
#[derive(Clone, Copy)]
#[repr(C, packed(2))]
struct Contact {
    /// IPv6, or IPv4 mapped into it.
    address: [u8; 16],
    /// Unix seconds.
    at: u32,
    /// Index into `Inner::kinds`.
    kind: u16,
}

impl Contact {
    fn address(&self) -> IpAddr {
        Ipv6Addr::from(self.address).to_canonical()
    }
}

fn packed_address(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn unix_seconds(at: OffsetDateTime) -> u32 {
    at.unix_timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

#[derive(Default)]
struct Inner {
    map: HashMap<Mac, Contact>,
    /// `None`: a slot no phone uses, listed in `free`.
    kinds: Vec<Option<Kind>>,
    free: Vec<u16>,
}

impl Inner {
    fn kind_of(&mut self, h: &Handset) -> u16 {
        if let Some(i) = self
            .kinds
            .iter()
            .position(|k| k.as_ref().is_some_and(|k| k.is(h)))
        {
            return i as u16;
        }
        if self.kinds.len() < MAX_KINDS {
            self.kinds.push(Some(Kind::of(h)));
            return (self.kinds.len() - 1) as u16;
        }
        while self.free.is_empty() {
            self.free_unused_kinds();
            if self.free.is_empty() {
                self.evict_oldest_tenth();
            }
        }
        let i = self.free.pop().unwrap_or_default();
        self.kinds[usize::from(i)] = Some(Kind::of(h));
        i
    }

    /// Lists the kinds no phone uses any more as free: one pass over the phones, needed only
    /// when every kind was taken.
    fn free_unused_kinds(&mut self) {
        let mut used = vec![false; self.kinds.len()];
        for c in self.map.values() {
            used[usize::from(c.kind)] = true;
        }
        for (i, used) in used.into_iter().enumerate() {
            if !used && self.kinds[i].take().is_some() {
                self.free.push(i as u16);
            }
        }
    }

    /// Makes room: the longest-silent tenth goes in one pass, so a storm of new phones pays
    /// one scan per 2,000 of them, not one per phone. Ties at the cut (contacts in the same
    /// second) go only as far as needed.
    fn evict_oldest_tenth(&mut self) {
        let mut times: Vec<u32> = self.map.values().map(|c| c.at).collect();
        let cut = (times.len() / 10).max(1).min(times.len());
        if cut == 0 {
            return;
        }
        let (_, cutoff, _) = times.select_nth_unstable(cut - 1);
        let cutoff = *cutoff;
        let mut ties = cut - times.iter().filter(|&&t| t < cutoff).count();
        self.map.retain(|_, c| match { c.at }.cmp(&cutoff) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal if ties > 0 => {
                ties -= 1;
                false
            }
            _ => true,
        });
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
const RESOLUTION_SECONDS: u32 = 10;

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
        let (address, at) = (packed_address(address), unix_seconds(at));
        let same_kind = |inner: &Inner, c: &Contact| {
            inner.kinds[usize::from(c.kind)]
                .as_ref()
                .is_some_and(|k| k.is(handset))
        };
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if inner.map.get(&handset.mac).is_some_and(|c| {
                at.saturating_sub(c.at) < RESOLUTION_SECONDS
                    && c.address == address
                    && same_kind(&inner, c)
            }) {
                return;
            }
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        match inner.map.get(&handset.mac).copied() {
            Some(c) if same_kind(inner, &c) => {
                inner.map.insert(handset.mac, Contact { address, at, ..c });
            }
            known => {
                if known.is_none() && inner.map.len() >= MAX_PHONES {
                    inner.evict_oldest_tenth();
                }
                let kind = inner.kind_of(handset);
                inner.map.insert(handset.mac, Contact { address, at, kind });
            }
        }
    }

    /// Every phone, most recent contact first.
    pub fn all(&self) -> Vec<Seen> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Seen> = inner
            .map
            .iter()
            .filter_map(|(mac, c)| {
                let kind = inner.kinds[usize::from(c.kind)].as_ref()?;
                Some(Seen {
                    mac: *mac,
                    vendor: kind.vendor,
                    model: kind.model.to_string(),
                    firmware: kind.firmware.to_string(),
                    address: c.address(),
                    at: OffsetDateTime::from_unix_timestamp(i64::from(c.at))
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                })
            })
            .collect();
        v.sort_by(|a, b| b.at.cmp(&a.at).then(a.mac.cmp(&b.mac)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `i`th of many Yealink T46S phones of one firmware.
    fn t46s(i: usize) -> Handset {
        let ua = format!(
            "Yealink SIP-T46S 66.86.0.15 80:5e:c0:{:02x}:{:02x}:{:02x}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        );
        crate::vendor::identify(Some(&ua), None, None).unwrap()
    }

    #[test]
    fn a_full_list_drops_its_oldest_tenth_and_keeps_the_newest() {
        let seen = PhonesSeen::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        for i in 0..=MAX_PHONES {
            seen.saw(&t46s(i), ip, t0 + time::Duration::seconds(i as i64));
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
        // A sweep of made-up kinds stays bounded: the longest-silent phones go to free a
        // kind, and a kind given to a new phone never relabels one still listed.
        for i in 0..(MAX_KINDS * 2) {
            let ua = format!(
                "Yealink SIP-T46S 66.86.{i}.1 80:5e:c0:01:{:02x}:{:02x}",
                i >> 8,
                i & 0xff
            );
            let h = crate::vendor::identify(Some(&ua), None, None).unwrap();
            let at = t0 + time::Duration::seconds(2 + i as i64);
            seen.saw(&h, "10.0.0.7".parse().unwrap(), at);
        }
        assert!(seen.inner.read().unwrap().kinds.len() <= MAX_KINDS);
        let all = seen.all();
        assert!(
            all.len() <= MAX_KINDS && all.len() > MAX_KINDS * 8 / 10,
            "{}",
            all.len()
        );
        assert_eq!(all[0].firmware, format!("66.86.{}.1", MAX_KINDS * 2 - 1));
        for s in &all {
            let hex = s.mac.hex();
            let i = usize::from_str_radix(std::str::from_utf8(&hex[8..]).unwrap(), 16).unwrap();
            assert_eq!(s.firmware, format!("66.86.{i}.1"), "{}", s.mac);
            assert_eq!(s.at, t0 + time::Duration::seconds(2 + i as i64));
        }
    }

    #[test]
    fn an_entry_is_28_bytes_and_gives_back_what_it_was_given() {
        assert_eq!(std::mem::size_of::<(Mac, Contact)>(), 28);
        let seen = PhonesSeen::default();
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let long = "x".repeat(300);
        let ua = format!("Yealink SIP-T46S 66.86.0.15.{long} 80:5e:c0:00:00:03");
        let h = crate::vendor::identify(Some(&ua), None, None).unwrap();
        for ip in ["2001:db8::7", "192.0.2.9", "::ffff:192.0.2.10"] {
            seen.saw(&h, ip.parse().unwrap(), at);
            let all = seen.all();
            let want: IpAddr = ip.parse::<IpAddr>().unwrap().to_canonical();
            assert_eq!((all.len(), all[0].address, all[0].at), (1, want, at));
            assert_eq!(all[0].firmware.len(), MAX_KIND_TEXT, "{}", all[0].firmware);
            assert!(all[0].firmware.starts_with("66.86.0.15.x"));
        }
    }

    #[test]
    fn a_storm_within_one_second_loses_only_a_tenth_when_the_list_is_full() {
        let seen = PhonesSeen::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        for i in 0..=MAX_PHONES {
            seen.saw(&t46s(i), "10.0.0.7".parse().unwrap(), t0);
        }
        assert_eq!(seen.all().len(), MAX_PHONES - MAX_PHONES / 10 + 1);
    }
}
