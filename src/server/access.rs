//! Who may call what: the client address (through trusted proxies only) and the allow-lists
//! of the phone-facing and admin route groups.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use ipnet::IpNet;

/// The address a request really came from: the peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Always
/// canonical (an IPv4-mapped IPv6 address becomes IPv4).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !allowed(peer, trusted) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !allowed(**ip, trusted))
        .copied()
        .unwrap_or(peer)
}

/// Whether `ip` (canonicalised) is in any of `nets`.
pub fn allowed(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// Logs a refusal at most once per source per minute (a scan must not flood the log).
pub struct RefusalLog {
    last: Mutex<HashMap<IpAddr, Instant>>,
}

const QUIET: Duration = Duration::from_secs(60);
const MAX_SOURCES: usize = 10_000;

impl RefusalLog {
    pub fn new() -> Self {
        Self {
            last: Mutex::new(HashMap::new()),
        }
    }

    /// True when this refusal should be logged.
    pub fn should_log(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() >= MAX_SOURCES {
            last.retain(|_, t| now.duration_since(*t) < QUIET);
        }
        match last.get(&ip) {
            Some(t) if now.duration_since(*t) < QUIET => false,
            _ => {
                last.insert(ip, now);
                true
            }
        }
    }
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn mapped_addresses_match_v4_nets() {
        let n = nets(&["10.0.0.0/8"]);
        assert!(allowed("::ffff:10.1.2.3".parse().unwrap(), &n));
        assert!(!allowed("::ffff:11.1.2.3".parse().unwrap(), &n));
        assert!(allowed("10.9.9.9".parse().unwrap(), &n));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = nets(&["10.0.0.1/32", "10.0.0.2/32"]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.0.0.2".parse().unwrap(),
        );
        // From a stranger the header is ignored.
        assert_eq!(
            client_ip("192.0.2.1".parse().unwrap(), &h, &trusted),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        // From a proxy: the right-most untrusted hop (the left part is client-controlled).
        assert_eq!(
            client_ip("::ffff:10.0.0.1".parse().unwrap(), &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let mut junk = HeaderMap::new();
        junk.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &junk, &trusted),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn refusals_are_logged_once_a_minute() {
        let l = RefusalLog::new();
        let ip = "192.0.2.1".parse().unwrap();
        assert!(l.should_log(ip));
        assert!(!l.should_log(ip));
        assert!(l.should_log("192.0.2.2".parse().unwrap()));
    }

    /// The naive definition: the first `prefix` bits agree.
    fn naive(ip: IpAddr, net: &IpNet) -> bool {
        let (a, b, bits): (u128, u128, u8) = match (ip.to_canonical(), net.network()) {
            (IpAddr::V4(i), IpAddr::V4(n)) => (u32::from(i) as u128, u32::from(n) as u128, 32),
            (IpAddr::V6(i), IpAddr::V6(n)) => (u128::from(i), u128::from(n), 128),
            _ => return false,
        };
        let p = net.prefix_len();
        if p == 0 {
            return true;
        }
        let shift = u32::from(bits - p);
        (a >> shift) == (b >> shift)
    }

    proptest! {
        #[test]
        fn allow_list_agrees_with_the_naive_definition(
            ip4 in any::<u32>(), net4 in any::<u32>(), p4 in 0u8..=32,
            ip6 in any::<u128>(), net6 in any::<u128>(), p6 in 0u8..=128,
            mapped in any::<bool>(),
        ) {
            let n4 = IpNet::new(IpAddr::V4(net4.into()), p4).unwrap().trunc();
            let n6 = IpNet::new(IpAddr::V6(net6.into()), p6).unwrap().trunc();
            let v4 = std::net::Ipv4Addr::from(ip4);
            let ip = if mapped { IpAddr::V6(v4.to_ipv6_mapped()) } else { IpAddr::V4(v4) };
            prop_assert_eq!(allowed(ip, std::slice::from_ref(&n4)), naive(ip, &n4));
            let ip6 = IpAddr::V6(ip6.into());
            prop_assert_eq!(allowed(ip6, std::slice::from_ref(&n6)), naive(ip6, &n6));
        }
    }
}
