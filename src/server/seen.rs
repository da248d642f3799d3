//! The phones that asked for something lately (screens or provisioning), logged in or not:
//! model, firmware, address, last contact. Memory only: it refills within one poll interval
//! after a restart, and a bounded map cannot be grown by a MAC sweep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

use time::OffsetDateTime;

use crate::phone::{Handset, Mac};

/// Phones kept; past this the longest-silent one is forgotten.
const MAX_PHONES: usize = 20_000;

/// Makes room when the list is full: the oldest tenth goes in one pass, so a storm of new
/// phones pays one scan per 2,000 of them, not one per phone.
fn evict_oldest_tenth(map: &mut HashMap<Mac, Seen>) {
    let mut times: Vec<OffsetDateTime> = map.values().map(|s| s.at).collect();
    let cut = times.len() / 10;
    let (_, cutoff, _) = times.select_nth_unstable(cut);
    let cutoff = *cutoff;
    map.retain(|_, s| s.at > cutoff);
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
    map: RwLock<HashMap<Mac, Seen>>,
}

impl PhonesSeen {
    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Mac, Seen>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a request from `handset` at `address`. Cheap when nothing changed but the time.
    pub fn saw(&self, handset: &Handset, address: IpAddr, at: OffsetDateTime) {
        {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            if map.get(&handset.mac).is_some_and(|s| {
                at - s.at < RESOLUTION
                    && s.address == address
                    && s.firmware == handset.firmware
                    && s.model == handset.model
            }) {
                return;
            }
        }
        let mut map = self.lock();
        if let Some(s) = map.get_mut(&handset.mac) {
            s.at = at;
            s.address = address;
            if s.model != handset.model || s.firmware != handset.firmware {
                s.model.clone_from(&handset.model);
                s.firmware.clone_from(&handset.firmware);
            }
            s.vendor = handset.vendor.as_str();
            return;
        }
        if map.len() >= MAX_PHONES {
            evict_oldest_tenth(&mut map);
        }
        map.insert(
            handset.mac,
            Seen {
                mac: handset.mac,
                vendor: handset.vendor.as_str(),
                model: handset.model.clone(),
                firmware: handset.firmware.clone(),
                address,
                at,
            },
        );
    }

    /// Every phone, most recent contact first.
    pub fn all(&self) -> Vec<Seen> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Seen> = map.values().cloned().collect();
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
    }
}
