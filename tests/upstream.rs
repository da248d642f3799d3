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
        // Every phone comes from 127.0.0.1: the per-source limits on attempts running at
        // once are lifted, this test is about the upstream call.
        "[login]\npolicy = \"concurrent\"\nmax_devices = 200\nmax_failures = 200\nmax_failures_per_source = 200\nextension_max_failures = 200\nadmin_password_hash = \"{}\"\n",
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

/// Config for write-back to the fake PBX with fast retries.
fn writeback(up: &Upstream, kind: &str) -> String {
    let path = if kind == "webhook" {
        "/hotdesk/v1/events"
    } else {
        "/hotdesk/v1"
    };
    format!(
        "[writeback]\nkind = \"{kind}\"\nmax_backoff = \"1s\"\n[writeback.http]\nurl = \"http://{}{path}\"\nauth = \"none\"\nrequest_timeout = \"400ms\"\nbreaker_failures = 100\nbreaker_cooldown = \"1s\"\n",
        up.addr
    )
}

async fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outbox(server: &Server) -> serde_json::Value {
    let r = server.admin("GET", "/api/v1/outbox").await;
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn logins_and_logouts_reach_the_pbx_in_order_after_it_recovers() {
    let (up, server) = setup("").await;
    let server = {
        let mut s = server;
        s.shutdown().await;
        Server::start_with(http_directory(&up.url()), &writeback(&up, "devices")).await
    };
    up.write_status(Some(503));
    let a = Phone::new(server.addr, AASTRA_6737I);
    let b = Phone::new(server.addr, YEALINK_T46S);
    a.go("/app/login?net=internal&ext=1001&pin=73915").await;
    a.go("/app/logout").await;
    a.go("/app/login?net=external&ext=1002&pin=86420").await;
    b.go("/app/login?net=internal&ext=1002&pin=86420").await; // takes 1002 from phone A
    let st = outbox(&server).await;
    assert_eq!(st["pending"], 5, "{st}");
    assert!(st["last_error"].as_str().unwrap_or("").contains("503") || st["pending"] == 5);

    // The PBX comes back: everything is delivered, per phone in order, once.
    up.write_status(None);
    wait_for(|| up.writes().len() >= 5, "5 deliveries").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes: Vec<(String, String)> = up.writes().into_iter().map(|(m, p, _)| (m, p)).collect();
    let for_a: Vec<&str> = writes
        .iter()
        .filter(|w| w.1.ends_with("00085d30a6ce"))
        .map(|w| w.0.as_str())
        .collect();
    assert_eq!(for_a, ["PUT", "DELETE", "PUT", "DELETE"], "{writes:?}");
    let for_b: Vec<&str> = writes
        .iter()
        .filter(|w| w.1.ends_with("805ec02f3c2e"))
        .map(|w| w.0.as_str())
        .collect();
    assert_eq!(for_b, ["PUT"]);
    assert_eq!(writes.len(), 5, "no duplicates: {writes:?}");
    let put = up.writes().into_iter().find(|w| w.0 == "PUT").unwrap();
    let body: serde_json::Value = serde_json::from_str(&put.2).unwrap();
    assert_eq!(body["extension"], "1001");
    assert_eq!(body["network"], "internal");
    assert_eq!(body["vendor"], "aastra");
    assert!(
        !put.2.contains("73915") && !put.2.contains("sip-"),
        "no secrets in write-backs"
    );
    assert_eq!(outbox(&server).await["pending"], 0);
}

#[tokio::test]
async fn the_outbox_survives_a_restart() {
    let up = Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    up.write_status(Some(500));
    let server = Server::start_with(http_directory(&up.url()), &writeback(&up, "devices")).await;
    Phone::new(server.addr, SNOM_D785)
        .go("/app/login?net=internal&ext=1001&pin=73915")
        .await;
    let server = server.restart().await;
    assert_eq!(outbox(&server).await["pending"], 1);
    up.write_status(None);
    wait_for(
        || up.writes().iter().any(|w| w.0 == "PUT"),
        "delivery after restart",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(outbox(&server).await["pending"], 0);
}

#[tokio::test]
async fn webhook_events_and_refused_rows() {
    let up = Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    let server = Server::start_with(http_directory(&up.url()), &writeback(&up, "webhook")).await;
    let phone = Phone::new(server.addr, HTEK_UC903);
    phone.go("/app/login?net=internal&ext=1001&pin=73915").await;
    wait_for(|| up.writes().len() == 1, "the login event").await;
    let (method, path, body) = up.writes()[0].clone();
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/hotdesk/v1/events")
    );
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "hotdesk.login");
    assert_eq!(event["mac"], "001fc11c22a9");
    assert_eq!(event["extension"], "1001");

    // A 4xx is final: the row is kept as dead and later rows still go out.
    up.write_status(Some(422));
    phone.go("/app/logout").await;
    wait_for(|| up.write_attempts() == 2, "the refused logout").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = outbox(&server).await;
    assert_eq!(
        (st["pending"].as_u64(), st["dead"].as_u64()),
        (Some(0), Some(1)),
        "{st}"
    );
}

#[tokio::test]
async fn basic_auth_reaches_the_upstream() {
    let up = Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    let directory = http_directory(&up.url()).replace(
        "auth = \"bearer\"\ntoken = \"upstream-token-123\"",
        "auth = \"basic\"\nusername = \"hotdesk\"\npassword = \"p@ss:word\"",
    );
    assert!(directory.contains("basic"));
    let server = Server::start_with(directory, "").await;
    let phone = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        title(&phone.go("/app/login?net=internal&ext=1001&pin=73915").await),
        "Logged in"
    );
    // base64("hotdesk:p@ss:word")
    assert_eq!(up.auth_seen(), ["Basic aG90ZGVzazpwQHNzOndvcmQ="]);
}

/// An on-site PBX with its own CA: trusted through `ca_file`, refused without it (or with
/// another CA), over a real TLS handshake on 127.0.0.1.
#[tokio::test]
async fn a_private_ca_is_trusted_only_through_ca_file() {
    let tls = |name: &str| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/tls")
            .join(name)
    };
    let up = Upstream::start_tls(&tls("cert-a.pem"), &tls("key-a.pem")).await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    assert!(up.url().starts_with("https://127.0.0.1:"));
    let with_ca = |ca: &str| {
        http_directory(&up.url()).replace(
            "[directory.http]\n",
            &format!("[directory.http]\nca_file = \"{}\"\n", tls(ca).display()),
        )
    };
    let login = "/app/login?net=internal&ext=1001&pin=73915";

    let trusted = Server::start_with(with_ca("ca-a.pem"), "").await;
    let phone = Phone::new(trusted.addr, YEALINK_T46S);
    assert_eq!(title(&phone.go(login).await), "Logged in");

    for directory in [with_ca("ca-b.pem"), http_directory(&up.url())] {
        let server = Server::start_with(directory, "").await;
        let phone = Phone::new(server.addr, YEALINK_T46S);
        assert_eq!(title(&phone.go(login).await), "Please try later");
    }
    assert_eq!(
        up.lookups(),
        1,
        "only the trusting server got a request through"
    );

    // Verification switched off: it works, and check-config says loudly what that means.
    let insecure = http_directory(&up.url()).replace(
        "[directory.http]\n",
        "[directory.http]\ninsecure_skip_verify = true\n",
    );
    let server = Server::start_with(insecure.clone(), "").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(title(&phone.go(login).await), "Logged in");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("hotdesk.toml");
    std::fs::write(
        &config,
        support::config_with(tmp.path(), "http://127.0.0.1:8080", &insecure, ""),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("insecure_skip_verify = true: TLS CERTIFICATES ARE NOT CHECKED"),
        "{stdout}"
    );
}
