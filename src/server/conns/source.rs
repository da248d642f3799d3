//! The per-source connection limit: one host (an IPv4 address, an IPv6 /64) may hold only
//! its share of the global cap, so it cannot take every phone offline by itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// What a connection is counted against: an IPv4 address, or the /64 of an IPv6 address
/// (one host is routinely given a whole /64). IPv4-mapped addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(ip: IpAddr) -> Self {
        SourceKey(match ip.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !0xffff_ffff_ffff_ffff).into()),
            v4 => v4,
        })
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// Open connections per source, at most `limit` each.
pub struct PerSource {
    limit: usize,
    open: Arc<Mutex<HashMap<SourceKey, usize>>>,
}

/// One connection's place in its source's count; given back when dropped.
#[must_use = "the slot is given back when dropped"]
pub struct SourceSlot {
    key: SourceKey,
    open: Arc<Mutex<HashMap<SourceKey, usize>>>,
}

impl PerSource {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip`, or `None` when its source holds `limit`.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<SourceSlot> {
        let key = SourceKey::of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            key,
            open: self.open.clone(),
        })
    }

    /// Connections `ip`'s source holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&SourceKey::of(ip)).copied().unwrap_or(0)
    }

    /// Sources with at least one connection (the map never keeps empty entries).
    pub fn sources(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keys_are_v4_addresses_and_v6_slash_64s() {
        let cases = [
            ("192.0.2.1", "192.0.2.1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
            ("::1", "::/64"),
        ];
        for (addr, want) in cases {
            assert_eq!(SourceKey::of(ip(addr)).to_string(), want, "{addr}");
        }
        assert_ne!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn each_source_holds_at_most_its_limit_and_gets_slots_back() {
        let p = PerSource::new(2);
        let a1 = p.try_acquire(ip("192.0.2.1")).unwrap();
        let _a2 = p.try_acquire(ip("::ffff:192.0.2.1")).unwrap();
        assert!(
            p.try_acquire(ip("192.0.2.1")).is_none(),
            "third from one host"
        );
        // Another host is not affected; one /64 is one host.
        let _b = p.try_acquire(ip("192.0.2.2")).unwrap();
        let _c1 = p.try_acquire(ip("2001:db8::1")).unwrap();
        let _c2 = p.try_acquire(ip("2001:db8::2")).unwrap();
        assert!(p.try_acquire(ip("2001:db8::ffff:3")).is_none());
        drop(a1);
        assert_eq!(p.held(ip("192.0.2.1")), 1);
        assert!(p.try_acquire(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn sources_without_connections_are_forgotten() {
        let p = PerSource::new(4);
        let slots: Vec<_> = (0..100u8)
            .map(|i| p.try_acquire(IpAddr::from([10, 0, 0, i])).unwrap())
            .collect();
        assert_eq!(p.sources(), 100);
        drop(slots);
        assert_eq!(p.sources(), 0);
    }
}
