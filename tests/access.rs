//! Allow-lists for the phone and admin route groups, and X-Forwarded-For from trusted
//! proxies only.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::phone::*;
use support::{API_KEY, Response, Server, parse_response, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `addr` from `source` (any 127.0.0.0/8 address works on Linux loopback).
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends `head` (a whole request) from `source`; returns every byte the server sent before
/// it closed the connection, and how long that took.
async fn exchange(source: [u8; 4], addr: SocketAddr, head: &str) -> (Vec<u8>, Duration) {
    let mut s = connect_from(source, addr).await;
    let start = Instant::now();
    let _ = s.write_all(head.as_bytes()).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered or closed within 5 s");
        match read {
            Ok(0) | Err(_) => return (raw, start.elapsed()),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET path` from `source` with `headers` (each header line may repeat a name).
async fn get_from(
    source: [u8; 4],
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let (raw, _) = exchange(source, addr, &head).await;
    parse_response(&raw)
}

#[tokio::test]
async fn phones_outside_the_allow_list_get_403() {
    let server = Server::start("[phones]\nallow = [\"10.0.0.0/8\"]\n").await;
    for path in ["/app", "/provision/805ec02f3c2e.cfg", "/app/push"] {
        let r = request(server.addr, "GET", path, &[("User-Agent", YEALINK_T46S)]).await;
        assert_eq!(r.status, 403, "{path}");
        assert!(
            r.text().contains("not allowed from 127.0.0.1"),
            "{}",
            r.text()
        );
    }
    // The admin API keeps its own list (loopback by default); health is open.
    assert_eq!(server.admin("GET", "/api/v1/logins").await.status, 200);
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[]).await.status,
        200
    );
}

#[tokio::test]
async fn the_admin_api_has_its_own_allow_list() {
    let addr =
        support::start_edited(|t| t.replace("[admin]\n", "[admin]\nallow = [\"192.0.2.0/24\"]\n"))
            .await;
    let auth = format!("Bearer {API_KEY}");
    let r = request(addr, "GET", "/api/v1/logins", &[("Authorization", &auth)]).await;
    assert_eq!(r.status, 403);
    // Phones are unaffected (127.0.0.1 is in the default private ranges).
    let r = request(addr, "GET", "/app", &[("User-Agent", YEALINK_T46S)]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let addr = support::start_edited(|t| {
        t.replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        ) + "[phones]\nallow = [\"198.51.100.0/24\"]\n"
    })
    .await;
    let ua = ("User-Agent", YEALINK_T46S);
    // The proxy (127.0.0.1) forwards a phone from an allowed network.
    let ok = request(
        addr,
        "GET",
        "/app",
        &[ua, ("X-Forwarded-For", "198.51.100.7")],
    )
    .await;
    assert_eq!(ok.status, 200);
    // A spoofed left-most entry does not help: the right-most untrusted hop counts.
    let spoof = request(
        addr,
        "GET",
        "/app",
        &[ua, ("X-Forwarded-For", "198.51.100.7, 203.0.113.5")],
    )
    .await;
    assert_eq!(spoof.status, 403);
    assert!(spoof.text().contains("203.0.113.5"));
    // The proxy itself is not an allowed phone.
    assert_eq!(request(addr, "GET", "/app", &[ua]).await.status, 403);
    // The audit trail records the phone's address, not the proxy's.
    let login = "/app/login?net=internal&ext=1001&pin=73915";
    let r = request(
        addr,
        "GET",
        login,
        &[ua, ("X-Forwarded-For", "198.51.100.7")],
    )
    .await;
    assert!(r.text().contains("Logged in"));
    let auth = format!("Bearer {API_KEY}");
    let audit = request(addr, "GET", "/api/v1/audit", &[("Authorization", &auth)])
        .await
        .text();
    assert!(audit.contains("\"source_ip\":\"198.51.100.7\""), "{audit}");
}

#[tokio::test]
async fn api_keys_are_named_hashed_and_can_be_bound_to_a_source() {
    let hook = hotdesk::auth::hash_api_key("pbx-hook-key-0123456789");
    let elsewhere = hotdesk::auth::hash_api_key("remote-key-0123456789abc");
    let addr = support::start_edited(|t| {
        format!(
            "{t}[[admin.keys]]\nname = \"pbx-hook\"\nhash = \"{hook}\"\nfrom = [\"127.0.0.1/32\"]\n[[admin.keys]]\nname = \"remote\"\nhash = \"{elsewhere}\"\nfrom = [\"192.0.2.0/24\"]\n"
        )
    })
    .await;
    let get = |key: &'static str| async move {
        request(
            addr,
            "GET",
            "/api/v1/logins",
            &[("Authorization", &format!("Bearer {key}"))],
        )
        .await
        .status
    };
    assert_eq!(get("pbx-hook-key-0123456789").await, 200);
    assert_eq!(
        get("remote-key-0123456789abc").await,
        401,
        "bound to another network"
    );
    assert_eq!(get(API_KEY).await, 200);
    assert_eq!(get("pbx-hook-key-012345678").await, 401);
    // The audit names the key that logged a phone out.
    let r = request(
        addr,
        "GET",
        "/app/login?net=internal&ext=1001&pin=73915",
        &[("User-Agent", YEALINK_T46S)],
    )
    .await;
    assert!(r.text().contains("Logged in"));
    let del = request(
        addr,
        "DELETE",
        "/api/v1/logins/805ec02f3c2e",
        &[("Authorization", "Bearer pbx-hook-key-0123456789")],
    )
    .await;
    assert_eq!(del.status, 204);
    let audit = request(
        addr,
        "GET",
        "/api/v1/audit?limit=5",
        &[("Authorization", &format!("Bearer {API_KEY}"))],
    )
    .await
    .text();
    // The logout is recorded with the key's name (a `reload` event for the NOTIFY the logout
    // sends may come after it).
    let events: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let logout = events
        .iter()
        .find(|e| e["kind"] == "admin-logout")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(logout["detail"], "admin API (key pbx-hook)", "{audit}");
}

#[tokio::test]
async fn a_source_outside_every_allow_list_is_closed_at_accept_unanswered() {
    let addr = support::start_edited(|t| {
        t.replace(
            "[server]\n",
            "[server]\nhealthz_allow = [\"127.0.0.6/32\"]\ntrusted_proxies = [\"127.0.0.7/32\"]\n",
        )
        .replace("[admin]\n", "[admin]\nallow = [\"127.0.0.1/32\"]\n")
            + "[phones]\nallow = [\"127.0.0.1/32\"]\n"
    })
    .await;
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // 127.0.0.5 is in no list: not even /healthz (which has no allow-list) is answered.
    for _ in 0..20 {
        let (raw, took) = exchange([127, 0, 0, 5], addr, health).await;
        assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
        assert!(took < Duration::from_secs(1), "closed after {took:?}");
    }
    // healthz_allow admits a monitor, for /healthz only; a trusted proxy is admitted too.
    let r = get_from([127, 0, 0, 6], addr, "/healthz", &[]).await;
    assert_eq!(r.status, 200);
    let r = get_from(
        [127, 0, 0, 6],
        addr,
        "/app",
        &[("User-Agent", YEALINK_T46S)],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        get_from([127, 0, 0, 7], addr, "/healthz", &[]).await.status,
        200
    );
    // The listed phone is served.
    let r = get_from(
        [127, 0, 0, 1],
        addr,
        "/app",
        &[("User-Agent", YEALINK_T46S)],
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn forwarded_for_garbage_never_lets_the_client_choose_its_address() {
    // Proxies at 127.0.0.3 and 127.0.0.4; only 127.0.0.1 may use the admin API.
    let addr = support::start_edited(|t| {
        t.replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.3/32\", \"127.0.0.4/32\"]\n",
        )
        .replace("[admin]\n", "[admin]\nallow = [\"127.0.0.1/32\"]\n")
    })
    .await;
    let auth = format!("Bearer {API_KEY}");
    let proxy = [127, 0, 0, 3];
    // (source, X-Forwarded-For headers, status, the client address a refusal names)
    let cases: &[([u8; 4], &[&str], u16, &str)] = &[
        ([127, 0, 0, 1], &[], 200, ""),
        (proxy, &["127.0.0.1"], 200, ""),
        (proxy, &["127.0.0.1:5060"], 200, ""),
        (proxy, &["127.0.0.1, 127.0.0.4"], 200, ""),
        (proxy, &[], 403, "127.0.0.3"),
        // The client writes the left part; whatever the proxy appends on the right counts.
        (proxy, &["127.0.0.1, 203.0.113.5:4711"], 403, "203.0.113.5"),
        (proxy, &["127.0.0.1, [2001:db8::1]"], 403, "2001:db8::1"),
        (proxy, &["127.0.0.1, [2001:db8::1]:443"], 403, "2001:db8::1"),
        // Entries that do not parse end the walk at the last trusted hop.
        (proxy, &["127.0.0.1, unknown"], 403, "127.0.0.3"),
        (proxy, &["127.0.0.1, "], 403, "127.0.0.3"),
        (proxy, &["127.0.0.1, junk, 127.0.0.4"], 403, "127.0.0.4"),
        (proxy, &["127.0.0.1", "bogus"], 403, "127.0.0.3"),
        // Not a proxy: the header is ignored.
        ([127, 0, 0, 2], &["127.0.0.1"], 403, "127.0.0.2"),
    ];
    for (source, forwarded, status, named) in cases {
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(forwarded.iter().map(|v| ("X-Forwarded-For", *v)));
        let r = get_from(*source, addr, "/api/v1/logins", &headers).await;
        assert_eq!(
            r.status,
            *status,
            "from {source:?} with {forwarded:?}: {}",
            r.text()
        );
        if *status == 403 {
            assert!(
                r.text().contains(&format!("from {named}\n")),
                "from {source:?} with {forwarded:?}: {}",
                r.text()
            );
        }
    }
}
