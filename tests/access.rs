//! Allow-lists for the phone and admin route groups, and X-Forwarded-For from trusted
//! proxies only.

mod support;

use support::phone::*;
use support::{API_KEY, Server, request};

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
        "/api/v1/audit?limit=1",
        &[("Authorization", &format!("Bearer {API_KEY}"))],
    )
    .await
    .text();
    assert!(audit.contains("admin API (key pbx-hook)"), "{audit}");
}
