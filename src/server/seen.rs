//! The phones that asked for something lately (screens or provisioning), logged in or not:
//! model, firmware, address, last contact. Memory only: it refills within one poll interval
//! after a restart, and a bounded map cannot be grown by a MAC sweep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

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

#[derive(Default)]
pub struct PhonesSeen {
    map: Mutex<HashMap<Mac, Seen>>,
}

impl PhonesSeen {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Mac, Seen>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a request from `handset` at `address`. Cheap when nothing changed but the time.
    pub fn saw(&self, handset: &Handset, address: IpAddr, at: OffsetDateTime) {
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
        let mut v: Vec<Seen> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| b.at.cmp(&a.at).then(a.mac.cmp(&b.mac)));
        v
    }
}
