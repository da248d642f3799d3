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
        if map.len() >= MAX_PHONES
            && let Some(oldest) = map.values().min_by_key(|s| s.at).map(|s| s.mac)
        {
            map.remove(&oldest);
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
