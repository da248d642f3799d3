//! The trust boundary, attacked as a host on the phone network would: other phones' MACs,
//! other source addresses (127.0.0.0/8), abandoned requests, shared-password sweeps, a store
//! that goes away. Each test is one reproduced attack that must fail.

mod support;

use std::time::Duration;

use support::phone::{AASTRA_6737I, Phone, SANGOMA_S500, View, YEALINK_T46S};
use support::{Server, USER_PASSWORD, connect_from, request_from};
use tokio::io::AsyncWriteExt;

const VICTIM_MAC: &str = "00085d30a6ce";

fn message(view: &View) -> (&str, &str) {
    match view {
        View::Message { title, text, .. } => (title, text),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// Waits (bounded) until `check` holds; for effects of work the server finishes on its own
/// after the client has gone, which no response can tell us about.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

async fn victim_logged_in(server: &Server) -> Phone {
    let victim = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        message(&victim.login("Internal", "1001", "73915").await).0,
        "Logged in"
    );
    victim
}

#[tokio::test]
async fn no_other_host_gets_a_logged_in_phones_sip_secret() {
    let server = Server::start("").await;
    let _victim = victim_logged_in(&server).await;
    let thief = ip("127.0.0.2");
    let file = format!("/provision/{}.cfg", VICTIM_MAC.to_uppercase());
    let attempts = [
        // a) a User-Agent without a MAC naming the victim's file
        (file.clone(), Some("Yealink SIP-T46S 66.86.0.15")),
        (
            format!("/provision/cfg{VICTIM_MAC}.xml"),
            Some(SANGOMA_S500),
        ),
        // b) another phone's UA (with its MAC) plus ?vendor= of another family
        (
            "/provision/805ec02f3c2e.cfg?vendor=yealink".to_owned(),
            Some(AASTRA_6737I),
        ),
        // c) no User-Agent at all on the live push
        (
            format!("/app/push?vendor=aastra&mac={VICTIM_MAC}&page=1"),
            None,
        ),
        (format!("/app/push?vendor=aastra&mac={VICTIM_MAC}"), None),
    ];
    for (url, ua) in &attempts {
        let headers: Vec<(&str, &str)> = ua.iter().map(|u| ("User-Agent", *u)).collect();
        let r = request_from(thief, server.addr, "GET", url, &headers).await;
        assert!(
            !r.text().contains("sip-secret"),
            "{url} {ua:?} leaked: {}",
            r.text()
        );
        assert!(r.status == 403 || r.status == 400, "{url}: {}", r.status);
    }
    // The victim's own phone could also be asked from the victim's address with a forged
    // push: without the apply's grant it is refused there too.
    let r = request_from(
        ip("127.0.0.1"),
        server.addr,
        "GET",
        "/app/push?page=1",
        &[("User-Agent", AASTRA_6737I)],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    // Nothing above made the login look applied, and the refusals are audited.
    assert_eq!(server.logins().await[0]["applied"], false);
    let audit = server.audit().await;
    assert!(
        audit.iter().any(|e| e["kind"] == "provision-refused"
            && e["source_ip"] == "127.0.0.2"
            && e["mac"] == VICTIM_MAC),
        "{audit:?}"
    );
    // The phone itself, from the address it logged in from, gets its file.
    let own = request_from(
        ip("127.0.0.1"),
        server.addr,
        "GET",
        &file,
        &[("User-Agent", AASTRA_6737I)],
    )
    .await;
    assert_eq!(own.status, 200);
    assert!(own.text().contains("sip-secret-1001"));
    assert_eq!(server.logins().await[0]["applied"], true);
}

#[tokio::test]
async fn a_mac_sweep_is_rate_limited_per_source() {
    let server = Server::start("").await;
    let sweeper = ip("127.0.0.3");
    let mut limited = 0;
    for i in 0..40 {
        let url = format!("/provision/00085d00{i:04x}.cfg");
        let r = request_from(
            sweeper,
            server.addr,
            "GET",
            &url,
            &[("User-Agent", "Yealink SIP-T46S 66.86.0.15")],
        )
        .await;
        if r.status == 429 {
            assert_eq!(r.header("retry-after"), Some("1"));
            limited += 1;
        }
    }
    // 40 in a burst against a burst of 20 at 2/s.
    assert!(limited >= 15, "only {limited} of 40 limited");
    // Another source is not slowed by it.
    let r = request_from(
        ip("127.0.0.4"),
        server.addr,
        "GET",
        "/provision/00085d000001.cfg",
        &[("User-Agent", "Yealink SIP-T46S 66.86.0.15")],
    )
    .await;
    assert_eq!(r.status, 200);
}

/// Sends a wrong PIN and closes the socket at once, without reading an answer.
async fn abandon(server: &Server, source: &str, ext: &str, pin: &str) {
    let mut s = connect_from(ip(source), server.addr).await;
    let req = format!(
        "GET /app/login?net=internal&ext={ext}&pin={pin} HTTP/1.1\r\nHost: x\r\nUser-Agent: {AASTRA_6737I}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    drop(s);
}

#[tokio::test]
async fn abandoned_guesses_still_count_and_cannot_test_a_pin() {
    let server = Server::start("").await;
    // max_failures = 3 in the test config: three abandoned guesses from one address ...
    for pin in ["00001", "00002", "00003"] {
        abandon(&server, "127.0.0.5", "1001", pin).await;
    }
    // ... are each counted although nobody waited for an answer ...
    eventually("the abandoned guesses lock 1001 for 127.0.0.5", || async {
        let r = server.admin("GET", "/api/v1/lockouts").await;
        r.text().contains("extension-from:1001@127.0.0.5")
    })
    .await;
    // ... so the right PIN from there is refused, and was never testable by abandoning.
    let phone = Phone::new(server.addr, AASTRA_6737I).connecting_from("127.0.0.5");
    let answer = phone.login("Internal", "1001", "73915").await;
    assert_eq!(message(&answer).0, "Login locked", "{answer:?}");
    assert!(server.logins().await.is_empty());
}

#[tokio::test]
async fn an_abandoned_login_is_in_memory_and_on_disk_alike() {
    let server = Server::start("").await;
    let mut s = connect_from(ip("127.0.0.6"), server.addr).await;
    let req = format!(
        "GET /app/login?net=internal&ext=1002&pin=86420 HTTP/1.1\r\nHost: x\r\nUser-Agent: {AASTRA_6737I}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    drop(s);
    eventually("the abandoned login completes", || async {
        server.logins().await.len() == 1
    })
    .await;
    let server = server.restart().await;
    let logins = server.logins().await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0]["extension"], "1002");
}

#[tokio::test]
async fn nobody_locks_a_user_out_of_every_phone() {
    let server = Server::start("").await;
    // Wrong PINs for 1001 from five addresses, one each: nothing is locked for anyone else.
    for i in 10..15 {
        let p = Phone::new(server.addr, YEALINK_T46S).connecting_from(&format!("127.0.0.{i}"));
        assert_eq!(
            message(&p.login("Internal", "1001", "00000").await).0,
            "Login failed"
        );
    }
    // Three from one address lock 1001 for that address only.
    let attacker = Phone::new(server.addr, YEALINK_T46S).connecting_from("127.0.0.20");
    for _ in 0..3 {
        attacker.login("Internal", "1001", "00000").await;
    }
    assert_eq!(
        message(&attacker.login("Internal", "1001", "73915").await).0,
        "Login locked"
    );
    let owner = Phone::new(server.addr, AASTRA_6737I).connecting_from("127.0.0.21");
    assert_eq!(
        message(&owner.login("Internal", "1001", "73915").await).0,
        "Logged in"
    );
}

#[tokio::test]
async fn lockouts_survive_a_restart_and_the_admin_can_clear_them() {
    let server = Server::start("").await;
    let attacker = Phone::new(server.addr, YEALINK_T46S).connecting_from("127.0.0.30");
    for _ in 0..3 {
        attacker.login("Internal", "1002", "00000").await;
    }
    let server = server.restart().await;
    let attacker = Phone::new(server.addr, YEALINK_T46S).connecting_from("127.0.0.30");
    assert_eq!(
        message(&attacker.login("Internal", "1002", "86420").await).0,
        "Login locked"
    );
    let list = server.admin("GET", "/api/v1/lockouts").await;
    assert!(
        list.text().contains("extension-from:1002@127.0.0.30"),
        "{}",
        list.text()
    );
    let bad = server.admin("DELETE", "/api/v1/lockouts").await;
    assert_eq!(bad.status, 400, "clearing needs to say what");
    let cleared = server
        .admin("DELETE", "/api/v1/lockouts?source=127.0.0.30")
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.text());
    assert_eq!(
        message(&attacker.login("Internal", "1002", "86420").await).0,
        "Logged in"
    );
    let audit = server.audit().await;
    assert!(audit.iter().any(|e| e["kind"] == "lockout-cleared"));
    // And the cleared row is gone from the store too.
    let server = server.restart().await;
    let list = server.admin("GET", "/api/v1/lockouts").await;
    assert_eq!(list.text(), "[]");
}

#[tokio::test]
async fn the_shared_user_password_has_a_global_budget() {
    let server = Server::start(
        "[login]\nuser_password = \"24681357\"\nmax_failures = 3\nshared_max_failures = 4\n",
    )
    .await;
    // 1003 has no voicemail PIN, so the user password is what is being guessed: four wrong
    // guesses from four addresses on four phones use the budget up.
    for i in 40..44 {
        let p = Phone::new(server.addr, YEALINK_T46S).connecting_from(&format!("127.0.0.{i}"));
        assert_eq!(
            message(&p.login("Internal", "1003", "11111111").await).0,
            "Login failed"
        );
    }
    // Now even the right password, from a fresh address, does not work.
    let p = Phone::new(server.addr, AASTRA_6737I).connecting_from("127.0.0.50");
    assert_eq!(
        message(&p.login("Internal", "1003", USER_PASSWORD).await).0,
        "Login failed"
    );
    let list = server.admin("GET", "/api/v1/lockouts").await;
    assert!(list.text().contains("\"user-password\""), "{}", list.text());
    let audit = server.audit().await;
    assert!(
        audit.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("user-password"))),
        "{audit:?}"
    );
}

#[tokio::test]
async fn logging_in_on_a_desk_from_elsewhere_cannot_log_its_user_out() {
    let server = Server::start("").await;
    let _victim = victim_logged_in(&server).await;
    // The attacker names the victim's MAC (its UA) from another address, with a valid login.
    let attacker = Phone::new(server.addr, AASTRA_6737I).connecting_from("127.0.0.60");
    let answer = attacker
        .go("/app/login?net=internal&ext=1002&pin=86420")
        .await;
    assert_eq!(message(&answer).0, "Login refused", "{answer:?}");
    let logins = server.logins().await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0]["extension"], "1001");
}

#[tokio::test]
async fn head_changes_nothing() {
    let server = Server::start("").await;
    let head = request_from(
        ip("127.0.0.1"),
        server.addr,
        "HEAD",
        "/app/login?net=internal&ext=1002&pin=86420",
        &[("User-Agent", AASTRA_6737I)],
    )
    .await;
    assert_eq!(head.status, 405);
    assert_eq!(head.header("allow"), Some("GET"));
    assert!(server.logins().await.is_empty());
    let entry = request_from(
        ip("127.0.0.1"),
        server.addr,
        "HEAD",
        "/app",
        &[("User-Agent", AASTRA_6737I)],
    )
    .await;
    assert_eq!(entry.status, 200);
}

#[tokio::test]
async fn client_text_cannot_forge_lines() {
    let server = Server::start("").await;
    for url in [
        "/app?vendor=x%0a2026-11-23T00:00:00Z%20ERROR%20forged",
        "/app?vendor=aastra&mac=%0aERROR%20forged%1b%5b31m",
        "/provision/x.cfg?vendor=%0d%0aERROR",
    ] {
        let r = request_from(ip("127.0.0.1"), server.addr, "GET", url, &[]).await;
        assert!(r.status >= 400, "{url}");
        let text = r.text();
        let text = text.trim_end_matches('\n');
        assert!(
            !text.contains('\n') && !text.contains('\r') && !text.contains('\u{1b}'),
            "{url}: {text:?}"
        );
    }
    // Extensions that are not dialable never reach the directory.
    let p = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        message(&p.login("Internal", "..", "00000").await).0,
        "Login failed"
    );
}

#[tokio::test]
async fn a_store_that_disappears_is_not_ready_and_refuses_logins() {
    let server = Server::start("").await;
    let ready = |addr| async move {
        request_from(ip("127.0.0.1"), addr, "GET", "/readyz", &[])
            .await
            .status
    };
    assert_eq!(ready(server.addr).await, 200);
    std::fs::remove_dir_all(server.dir.join("state")).unwrap();
    // SQLite would go on writing to the unlinked file: the login must not be acknowledged.
    let phone = Phone::new(server.addr, AASTRA_6737I);
    let answer = phone.login("Internal", "1001", "73915").await;
    assert_eq!(message(&answer).0, "Please try later", "{answer:?}");
    assert!(server.logins().await.is_empty());
    assert_eq!(ready(server.addr).await, 503);
    let health = request_from(ip("127.0.0.1"), server.addr, "GET", "/healthz", &[]).await;
    assert_eq!(health.status, 200, "liveness stays up");
}

/// Sends `GET uri` as the Yealink with a Digest answer to the challenge it got.
async fn fetch_with_digest(
    server: &Server,
    uri: &str,
    user: &str,
    password: &str,
) -> support::Response {
    let first = request_from(
        ip("127.0.0.1"),
        server.addr,
        "GET",
        uri,
        &[("User-Agent", YEALINK_T46S)],
    )
    .await;
    assert_eq!(first.status, 401, "{}", first.text());
    let challenge = first.header("www-authenticate").unwrap().to_owned();
    assert!(
        challenge.starts_with("Digest realm=\"hotdesk\", qop=\"auth\""),
        "{challenge}"
    );
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let answer = hotdesk::server::digest::client_response(
        user, "hotdesk", password, "GET", uri, nonce, "0a4f113b",
    );
    request_from(
        ip("127.0.0.1"),
        server.addr,
        "GET",
        uri,
        &[("User-Agent", YEALINK_T46S), ("Authorization", &answer)],
    )
    .await
}

#[tokio::test]
async fn digest_mode_needs_each_phones_own_credentials() {
    let server = Server::start("[provision]\nauth = \"digest\"\n").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        message(&phone.login("Internal", "1002", "86420").await).0,
        "Logged in"
    );
    let uri = "/provision/805ec02f3c2e.cfg";
    // No credentials made yet: nothing, whatever is sent.
    let none = fetch_with_digest(&server, uri, "hd-805ec02f3c2e", "guess").await;
    assert_eq!(none.status, 401);
    let made = server
        .admin("POST", "/api/v1/phones/805ec02f3c2e/credentials")
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let made: serde_json::Value = serde_json::from_slice(&made.body).unwrap();
    let (user, password) = (
        made["username"].as_str().unwrap(),
        made["password"].as_str().unwrap(),
    );
    let other = server
        .admin("POST", "/api/v1/phones/00085d30a6ce/credentials")
        .await;
    let other: serde_json::Value = serde_json::from_slice(&other.body).unwrap();

    let ok = fetch_with_digest(&server, uri, user, password).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let body = ok.text();
    assert!(body.contains("sip-secret-1002"));
    assert!(body.contains(&format!("static.auto_provision.server.username = {user}")));
    // A wrong password, or another phone's valid credentials, get nothing.
    assert_eq!(
        fetch_with_digest(&server, uri, user, "wrong").await.status,
        401
    );
    let theirs = fetch_with_digest(
        &server,
        uri,
        other["username"].as_str().unwrap(),
        other["password"].as_str().unwrap(),
    )
    .await;
    assert_eq!(theirs.status, 401);
    assert!(!theirs.text().contains("sip-secret"));
    // Revoked: the old password no longer works; the store forgets it too.
    let gone = server
        .admin("DELETE", "/api/v1/phones/805ec02f3c2e/credentials")
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(
        fetch_with_digest(&server, uri, user, password).await.status,
        401
    );
    let audit = server.audit().await;
    assert!(
        audit
            .iter()
            .filter(|e| e["kind"] == "credentials-changed")
            .count()
            == 3
    );
    assert!(!serde_json::to_string(&audit).unwrap().contains(password));
}

#[tokio::test]
async fn known_and_unknown_extensions_cost_the_same_upstream_work() {
    let up = support::upstream::Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    let server = Server::start_with(support::http_directory(&up.url()), "").await;
    let a = Phone::new(server.addr, YEALINK_T46S);
    let before = up.lookups();
    let known = a.go("/app/login?net=internal&ext=1001&pin=00000").await;
    let known_calls = up.lookups() - before;
    let b = Phone::new(server.addr, AASTRA_6737I).connecting_from("127.0.0.70");
    let before = up.lookups();
    let unknown = b.go("/app/login?net=internal&ext=4040&pin=00000").await;
    let unknown_calls = up.lookups() - before;
    assert_eq!(message(&known), message(&unknown));
    assert_eq!(
        known_calls, unknown_calls,
        "the same upstream calls either way"
    );
}

#[tokio::test]
async fn a_wrong_pin_while_the_upstream_hangs_waits_one_deadline_not_two() {
    let up = support::upstream::Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    // deadline 700 ms, fresh 300 ms (support::http_directory).
    let server = Server::start_with(support::http_directory(&up.url()), "").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        message(&phone.login("Internal", "1001", "73915").await).0,
        "Logged in"
    );
    up.latency(Duration::from_secs(5));
    // Let the cached entry go stale (a lower bound on a timeout, not a wait for an event).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let other = Phone::new(server.addr, AASTRA_6737I).connecting_from("127.0.0.71");
    let started = std::time::Instant::now();
    let wrong = other.go("/app/login?net=internal&ext=1001&pin=00000").await;
    let took = started.elapsed();
    assert_eq!(message(&wrong).0, "Login failed");
    assert!(
        took < Duration::from_millis(1300),
        "a wrong PIN took {took:?}: the lookup and the refetch waited one deadline each"
    );
}
