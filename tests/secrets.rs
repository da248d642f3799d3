//! No PIN, user password, admin password, API key or SIP secret appears in the log at
//! RUST_LOG=trace, in any response, or in any URL, except the SIP secret in the one
//! provisioning file of the phone it belongs to.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use support::phone::*;
use support::{ADMIN_PASSWORD, API_KEY, USER_PASSWORD, request};

#[tokio::test]
async fn secrets_stay_out_of_logs_urls_and_responses() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("directory.toml"), support::DIRECTORY).unwrap();
    let config = tmp.path().join("hotdesk.toml");
    let writeback = "[writeback]\nkind = \"webhook\"\n[writeback.http]\nurl = \"http://127.0.0.1:1/e\"\nauth = \"bearer\"\ntoken = \"upstream-token-secret-55\"\n";
    std::fs::write(
        &config,
        support::config_text(tmp.path(), "http://127.0.0.1:1", writeback),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr: std::net::SocketAddr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let mut responses = Vec::new();
    let mut seen = |v: &View| responses.push(format!("{v:?}"));
    // Every credential tier, a wrong PIN, each input style.
    for (ua, ext, pin) in [
        (AASTRA_6731I, "1001", "73915"),
        (YEALINK_T46S, "1003", USER_PASSWORD),
        (SNOM_D785, "1002", ADMIN_PASSWORD),
        (HTEK_UC903, "1002", "00000"),
    ] {
        let phone = Phone::new(addr, ua);
        let v = phone.login("Internal", ext, pin).await;
        seen(&v);
        if let View::Message { next: Some(n), .. } = &v {
            seen(&phone.go(n).await);
        }
    }
    // The user page: PIN, user password, admin password (refused there), a wrong PIN.
    let local = std::net::Ipv4Addr::LOCALHOST.into();
    let mut pages = 0;
    for (ext, pin) in [
        ("1001", "73915"),
        ("1003", USER_PASSWORD),
        ("1002", ADMIN_PASSWORD),
        ("1004", "00000"),
    ] {
        let body = format!("extension={ext}&pin={pin}");
        let r =
            support::form_request_from(local, addr, "POST", "/me/signin", None, Some(&body)).await;
        responses.push(format!("{:?} {}", r.headers, r.text()));
        if let Some(cookie) = r.header("set-cookie").and_then(|c| c.split(';').next()) {
            let page = support::form_request_from(local, addr, "GET", "/me", Some(cookie), None);
            let page = page.await;
            assert_eq!(page.status, 200);
            responses.push(page.text());
            pages += 1;
        }
    }
    assert_eq!(
        pages, 2,
        "the PIN and the user password sign in; the others do not"
    );
    // The admin API with its key; provisioning with the SIP secret.
    let auth = format!("Bearer {API_KEY}");
    for path in ["/api/v1/logins", "/api/v1/audit", "/api/v1/outbox"] {
        responses.push(
            request(addr, "GET", path, &[("Authorization", &auth)])
                .await
                .text(),
        );
    }
    let prov = request(
        addr,
        "GET",
        "/provision/805ec02f3c2e.cfg",
        &[("User-Agent", YEALINK_T46S)],
    )
    .await
    .text();
    assert!(
        prov.contains("sip-secret-1003"),
        "the phone's own file carries its SIP secret"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    log.push_str(&rest);
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log really is at trace level"
    );
    assert!(log.contains("login"), "and it logged the logins");

    let secrets = [
        "73915",
        "86420",
        "55117",
        USER_PASSWORD,
        ADMIN_PASSWORD,
        API_KEY,
        "sip-secret-1001",
        "sip-secret-1002",
        "sip-secret-1003",
        "upstream-token-secret-55",
    ];
    for secret in secrets {
        assert!(!shows(&log, secret), "{secret} is in the log");
        for r in &responses {
            assert!(!shows(r, secret), "{secret} is in a response or URL: {r}");
        }
    }
    // The provisioning file holds that phone's SIP secret and nothing else secret.
    for secret in secrets.iter().filter(|s| **s != "sip-secret-1003") {
        assert!(!shows(&prov, secret), "{secret} in the provisioning file");
    }
}

/// Whether `text` shows `secret`. A PIN counts only as a number of its own: the same digits
/// inside a longer one (a timestamp's nanoseconds, `07:29:02.864205879Z` holding `86420`) are
/// not it.
fn shows(text: &str, secret: &str) -> bool {
    if !secret.bytes().all(|b| b.is_ascii_digit()) {
        return text.contains(secret);
    }
    let digit_at = |i: Option<usize>| {
        i.and_then(|i| text.as_bytes().get(i))
            .is_some_and(u8::is_ascii_digit)
    };
    text.match_indices(secret)
        .any(|(at, _)| !digit_at(at.checked_sub(1)) && !digit_at(Some(at + secret.len())))
}

#[test]
fn a_pin_inside_a_longer_number_is_not_shown() {
    assert!(!shows("\"at\":\"2026-11-24T07:29:02.864205879Z\"", "86420"));
    assert!(shows("pin=86420&x", "86420"));
    assert!(shows("\"86420\"", "86420"));
    assert!(shows("86420", "86420"));
    assert!(shows("x-sip-secret-1001-y", "sip-secret-1001"));
}
