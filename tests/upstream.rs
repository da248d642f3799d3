//! The HTTP upstream directory under faults: coalescing, stale-if-error, the breaker,
//! malformed and oversized replies, a PIN changed at the PBX.

mod support;

use std::time::{Duration, Instant};

use support::phone::*;
use support::upstream::{Fault, Upstream};
use support::{Server, http_directory};

fn title(view: &View) -> String {
    match view {
        View::Message { title, .. } => title.clone(),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn setup(extra: &str) -> (Upstream, Server) {
    let up = Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    up.user("1002", "Grace Hopper", Some("86420"));
    let server = Server::start_with(http_directory(&up.url()), extra).await;
    (up, server)
}

#[tokio::test]
async fn a_hundred_concurrent_logins_of_one_extension_make_one_upstream_call() {
    let (up, server) = setup(&format!(
        "[login]\npolicy = \"concurrent\"\nmax_devices = 200\nadmin_password_hash = \"{}\"\n",
        support::admin_hash_for_tests()
    ))
    .await;
    up.latency(Duration::from_millis(50));
    let phones: Vec<_> = (0..100)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let ua = format!("Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:01:{i:02x}");
                let phone = Phone::new(addr, &ua);
                let url = "/app/login?net=internal&ext=1001&pin=73915";
                title(&phone.go(url).await)
            })
        })
        .collect();
    for p in phones {
        assert_eq!(p.await.unwrap(), "Logged in");
    }
    assert_eq!(up.lookups(), 1);
    assert_eq!(server.logins().await.len(), 100);
    assert_eq!(up.auth_seen()[0], "Bearer upstream-token-123");
}

#[tokio::test]
async fn upstream_down_cached_users_still_log_in_and_out() {
    let (up, server) = setup("").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        title(&a.login("Internal", "1001", "73915").await),
        "Logged in"
    );
    tokio::time::sleep(Duration::from_millis(400)).await; // past fresh_ttl

    for fault in [
        Fault::Status(503),
        Fault::Reset,
        Fault::Malformed,
        Fault::Oversized,
    ] {
        up.fault(fault);
        let b = Phone::new(server.addr, YEALINK_T46S);
        let start = Instant::now();
        let known = b.go("/app/login?net=internal&ext=1001&pin=73915").await;
        assert_eq!(title(&known), "Logged in", "{fault:?}: stale entry used");
        // An extension never seen gets a clear screen, well within a phone's patience.
        let unknown = b.go("/app/login?net=internal&ext=1002&pin=86420").await;
        assert_eq!(title(&unknown), "Please try later", "{fault:?}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{fault:?} took {:?}",
            start.elapsed()
        );
    }
    // Logging out needs no directory at all.
    let bye = Phone::new(server.addr, YEALINK_T46S)
        .go("/app/logout")
        .await;
    assert_eq!(title(&bye), "Logged out");
}

#[tokio::test]
async fn slow_upstream_is_answered_from_stale_within_the_deadline() {
    let (up, server) = setup("").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    a.login("Internal", "1001", "73915").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    up.latency(Duration::from_secs(5));
    let start = Instant::now();
    let b = Phone::new(server.addr, SNOM_D785);
    assert_eq!(
        title(&b.login("Internal", "1001", "73915").await),
        "Logged in"
    );
    // Two screens (extension, PIN) and one lookup bounded by the 700 ms deadline.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn the_breaker_opens_and_closes() {
    let (up, server) = setup("").await;
    up.fault(Fault::Status(500));
    let phone = Phone::new(server.addr, AASTRA_6737I);
    for _ in 0..3 {
        assert_eq!(
            title(&phone.go("/app/login?net=internal&ext=1002&pin=1").await),
            "Please try later"
        );
    }
    let calls = up.lookups();
    // Open: fail fast, no upstream traffic.
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(
            title(&phone.go("/app/login?net=internal&ext=1002&pin=1").await),
            "Please try later"
        );
        assert!(start.elapsed() < Duration::from_millis(200));
    }
    assert_eq!(up.lookups(), calls, "no calls while open");
    // After the cool-down one trial goes out; the upstream is back, so it closes.
    up.fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        title(&phone.go("/app/login?net=internal&ext=1002&pin=86420").await),
        "Logged in"
    );
    assert_eq!(up.lookups(), calls + 1);
}

#[tokio::test]
async fn a_pin_changed_at_the_pbx_works_at_once() {
    let (up, server) = setup("").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    a.login("Internal", "1001", "73915").await; // cached with the old PIN
    tokio::time::sleep(Duration::from_millis(1100)).await; // older than the refetch guard
    up.user("1001", "Ada Lovelace", Some("11111"));
    let b = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        title(&b.login("Internal", "1001", "11111").await),
        "Logged in"
    );
}

#[tokio::test]
async fn invalidate_endpoint_drops_cached_entries() {
    let up = Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    // A long fresh window, so only invalidation can cause a second call.
    let directory =
        http_directory(&up.url()).replace("fresh_ttl = \"300ms\"", "fresh_ttl = \"1h\"");
    let server = Server::start_with(directory, "").await;
    let login = "/app/login?net=internal&ext=1001&pin=73915";
    Phone::new(server.addr, AASTRA_6737I).go(login).await;
    Phone::new(server.addr, YEALINK_T46S).go(login).await;
    assert_eq!(up.lookups(), 1);

    let post = |body: &'static str| {
        let addr = server.addr;
        async move {
            support::request_with_body(addr, "POST", "/api/v1/directory/invalidate", body).await
        }
    };
    assert_eq!(post(r#"{"extension":"1001"}"#).await.status, 204);
    Phone::new(server.addr, SNOM_D785)
        .go("/app/login?net=internal&ext=1001&pin=73915")
        .await;
    assert_eq!(up.lookups(), 2);
    assert_eq!(post("{}").await.status, 204);
    Phone::new(server.addr, HTEK_UC903).go(login).await;
    assert_eq!(up.lookups(), 3);
    assert_eq!(post(r#"{"ext":1}"#).await.status, 400);
}
