//! Who may call what: the client address (through trusted proxies only) and the allow-lists
//! of the phone-facing and admin route groups.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::Config;

/// The address a request really came from: the peer, or, when the peer is a trusted proxy,
/// the `X-Forwarded-For` entry found by walking from the right past trusted proxies. Entries
/// may be `ip`, `ip:port`, `[v6]` or `[v6]:port`. The first entry that does not parse ends
/// the walk, and the client is then the last trusted hop: everything left of it was written
/// by someone we do not trust, so it never becomes the client address. Always canonical (an
/// IPv4-mapped IPv6 address becomes IPv4).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let mut hop = peer.to_canonical();
    if !allowed(hop, trusted) {
        return hop;
    }
    // Several headers form one list, in order; so the last header's last entry comes first.
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return hop;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_hop(entry) else {
                return hop;
            };
            if !allowed(ip, trusted) {
                return ip;
            }
            hop = ip;
        }
    }
    hop
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// Who may open a connection at all: a source in `[phones]`, `[admin]`, `[users]` or
/// `[activation]` allow, a
/// trusted proxy, or one listed in `[server] healthz_allow`. Anyone else is closed at accept,
/// before any work, so a stranger cannot hold connection slots it could never use.
pub struct Admission {
    sources: Vec<IpNet>,
    proxies: Vec<IpNet>,
}

impl Admission {
    pub fn new(config: &Config) -> Self {
        let lists = [
            &config.phones.allow,
            &config.admin.allow,
            config.users_allow(),
            config.activation_allow(),
            &config.server.trusted_proxies,
            &config.server.healthz_allow,
        ];
        Self {
            sources: lists.into_iter().flatten().copied().collect(),
            proxies: config.server.trusted_proxies.clone(),
        }
    }

    /// Whether a connection from `peer` is accepted.
    pub fn admits(&self, peer: IpAddr) -> bool {
        allowed(peer, &self.sources)
    }

    /// Trusted proxies carry many clients, so the per-source limit does not apply to them.
    pub fn is_proxy(&self, peer: IpAddr) -> bool {
        allowed(peer, &self.proxies)
    }
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
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_walk_stops_at_the_first_entry_that_does_not_parse() {
        let trusted = nets(&["10.0.0.1/32", "10.0.0.2/32", "2001:db8:f::/48"]);
        let proxy = "10.0.0.1";
        // (headers, client): the left part is written by the client and must never win
        // by skipping over something that does not parse.
        let cases: &[(&[&str], &str)] = &[
            (&["192.0.2.1, 203.0.113.5"], "203.0.113.5"),
            (&["192.0.2.1, 203.0.113.5:4711"], "203.0.113.5"),
            (&["192.0.2.1, [2001:db8::1]"], "2001:db8::1"),
            (&["192.0.2.1, [2001:db8::1]:4711"], "2001:db8::1"),
            (&["192.0.2.1, 2001:db8::1"], "2001:db8::1"),
            (&["192.0.2.1, ::ffff:203.0.113.5"], "203.0.113.5"),
            // Garbage on the right: the client is the proxy itself.
            (&["192.0.2.1, unknown"], proxy),
            (&["192.0.2.1, "], proxy),
            (&["192.0.2.1, 203.0.113.5:port"], proxy),
            (&["192.0.2.1, [2001:db8::1"], proxy),
            (&["192.0.2.1, 203.0.113.5 extra"], proxy),
            (&[""], proxy),
            // Past trusted proxies to the first untrusted hop ...
            (&["192.0.2.1, 203.0.113.5, 10.0.0.2"], "203.0.113.5"),
            (&["203.0.113.5, [2001:db8:f::9]:443"], "203.0.113.5"),
            // ... but garbage between them ends the walk at the last trusted hop.
            (&["192.0.2.1, junk, 10.0.0.2"], "10.0.0.2"),
            (&["192.0.2.1, junk, [2001:db8:f::9]:443"], "2001:db8:f::9"),
            // All hops trusted: the left-most trusted one.
            (&["10.0.0.2"], "10.0.0.2"),
            // Several headers are one list; garbage in the last one stops the walk there.
            (&["192.0.2.1", "203.0.113.5"], "203.0.113.5"),
            (&["192.0.2.1", "bogus"], proxy),
            (&["192.0.2.1", "10.0.0.2"], "192.0.2.1"),
        ];
        for (values, want) in cases {
            let got = client_ip(proxy.parse().unwrap(), &xff(values), &trusted);
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{values:?}");
        }
    }

    #[test]
    fn a_header_value_that_is_not_text_ends_the_walk() {
        let trusted = nets(&["10.0.0.1/32"]);
        let mut h = xff(&["192.0.2.1"]);
        h.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"203.0.113.5\xff").unwrap(),
        );
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &trusted),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    fn config(extra_server: &str, tail: &str) -> Result<Config, String> {
        let text = format!(
            "listen = \"127.0.0.1:0\"\nbase_url = \"http://h\"\n[server]\n{extra_server}\n\
             [directory]\nfile = \"d.toml\"\n[store]\npath = \"s.sqlite\"\n\
             [networks.internal]\nlabel = \"I\"\nsip_server = \"10.0.0.5\"\n{tail}"
        );
        Config::parse(&text, std::path::Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn admission_is_the_union_of_the_allow_lists_proxies_and_healthz_allow() {
        let c = config(
            "trusted_proxies = [\"192.0.2.10/32\"]\nhealthz_allow = [\"198.51.100.0/24\"]",
            "[phones]\nallow = [\"10.0.0.0/8\"]\n[admin]\nallow = [\"192.0.2.1/32\"]\n",
        )
        .unwrap();
        let a = Admission::new(&c);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for admitted in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "192.0.2.1",
            "192.0.2.10",
            "198.51.100.9",
        ] {
            assert!(a.admits(ip(admitted)), "{admitted}");
        }
        for refused in ["127.0.0.1", "192.0.2.2", "203.0.113.5", "2001:db8::1"] {
            assert!(!a.admits(ip(refused)), "{refused}");
        }
        assert!(a.is_proxy(ip("192.0.2.10")));
        assert!(!a.is_proxy(ip("192.0.2.1")));
        // The defaults admit loopback and private ranges (phones) and loopback (admin).
        let d = Admission::new(&config("", "").unwrap());
        assert!(d.admits(ip("127.0.0.2")) && d.admits(ip("::1")) && d.admits(ip("192.168.1.5")));
        assert!(!d.admits(ip("203.0.113.5")));
        // `[users] allow` follows `[phones] allow` unless set; set, its sources are admitted.
        assert_eq!(c.users_allow(), c.phones.allow.as_slice());
        let u = config("", "[users]\nallow = [\"203.0.113.0/24\"]\n").unwrap();
        assert!(Admission::new(&u).admits(ip("203.0.113.5")));
    }

    #[test]
    fn connection_limits_must_be_above_zero() {
        for (line, needle) in [
            (
                "max_connections_per_source = 0",
                "max_connections_per_source",
            ),
            ("h2_idle_timeout = \"0s\"", "h2_idle_timeout"),
            ("max_connection_age = \"0s\"", "max_connection_age"),
        ] {
            let err = config(line, "").unwrap_err();
            assert!(err.contains(needle), "{line}: {err}");
        }
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
