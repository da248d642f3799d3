//! `/metrics` and `/readyz` over real sockets: what a phone does moves exactly the counters
//! it should (parsed with a Prometheus text parser), only `[admin] allow` may scrape, and
//! readiness says when the directory has never answered.

mod support;

use std::net::IpAddr;

use prometheus_parse::{Sample, Scrape, Value};
use support::phone::*;
use support::upstream::{Fault, Upstream};
use support::{Response, Server, http_directory, request, request_from};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A scrape from `source`, parsed; panics unless it is a 200 in the OpenMetrics type.
async fn scrape_from(addr: std::net::SocketAddr, source: &str) -> Vec<Sample> {
    let source: IpAddr = source.parse().unwrap();
    let r = request_from(source, addr, "GET", "/metrics", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap()
        .samples
}

async fn scrape(server: &Server) -> Vec<Sample> {
    scrape_from(server.addr, "127.0.0.1").await
}

/// The value of the one sample named `name` with exactly `labels`; `None` when absent.
/// (OpenMetrics counters end in `_total` under a TYPE line without it, so the 0.0.4 parser
/// reads them as untyped; the number is what counts.)
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} twice: {found:?}");
    found.first().map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(f64::NAN, f64::max),
        Value::Summary(_) => panic!("no summaries here"),
    })
}

/// Every sample named `name`, as (labels, value) text, for exact-set assertions.
fn series(samples: &[Sample], name: &str) -> Vec<String> {
    let mut out: Vec<String> = samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let v = match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => f64::NAN,
            };
            format!("{} {v}", labels.join(","))
        })
        .collect();
    out.sort();
    out
}

fn message_text(view: &View) -> &str {
    match view {
        View::Message { text, .. } => text,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_login_a_wrong_pin_an_unknown_extension_and_a_logout_are_counted() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);

    let wrong = phone.login("Internal", "1001", "00000").await;
    assert!(message_text(&wrong).starts_with("Wrong extension or PIN"));
    let unknown = phone.login("Internal", "4040", "00000").await;
    assert!(message_text(&unknown).starts_with("Wrong extension or PIN"));
    let ok = phone.login("Internal", "1001", "73915").await;
    assert_eq!(ok.title(), "Logged in", "{ok:?}");
    let View::Menu { items, .. } = phone.open().await else {
        panic!("logged-in menu")
    };
    let (_, logout) = items
        .iter()
        .find(|(l, _)| l == "Log out")
        .expect("a Log out item")
        .clone();
    assert_eq!(phone.go(&logout).await.title(), "Logged out");

    let m = scrape(&server).await;
    let yealink = [("vendor", "yealink")];
    assert_eq!(value(&m, "hotdesk_logins_total", &yealink), Some(1.0));
    assert_eq!(value(&m, "hotdesk_logouts_total", &yealink), Some(1.0));
    assert_eq!(
        series(&m, "hotdesk_login_failures_total"),
        [
            "reason=unknown_extension,vendor=yealink 1",
            "reason=wrong_pin,vendor=yealink 1",
        ]
    );
    // 1001 and 4040 were looked up once each (a miss); the login found 1001 fresh. The
    // re-check after each wrong PIN is skipped for entries younger than a second.
    assert_eq!(
        series(&m, "hotdesk_directory_cache_lookups_total"),
        ["result=hit 1", "result=miss 2"]
    );
    let file_lookups = [("adapter", "file"), ("operation", "lookup")];
    assert_eq!(
        value(
            &m,
            "hotdesk_upstream_request_duration_seconds_count",
            &file_lookups
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&m, "hotdesk_upstream_errors_total", &file_lookups),
        None
    );
    // Each login: the entry (network menu), the network's form, the submit. Then the
    // logged-in menu and the logout.
    let requests = |route, status| {
        value(
            &m,
            "hotdesk_http_request_duration_seconds_count",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("app", "2xx"), Some(4.0));
    assert_eq!(requests("app/login", "2xx"), Some(6.0));
    assert_eq!(requests("app/logout", "2xx"), Some(1.0));
    assert_eq!(
        requests("metrics", "2xx"),
        None,
        "observed after it answers"
    );
    // This scrape's own connection is open.
    assert!(value(&m, "hotdesk_connections_open", &[]).unwrap() >= 1.0);
    assert_eq!(
        series(&m, "hotdesk_outbox_rows"),
        ["state=dead 0", "state=pending 0"]
    );

    // Nothing a phone sent becomes a label: no extension, PIN, MAC or address.
    for s in &m {
        for (k, v) in s.labels.iter() {
            for sent in [
                "1001",
                "4040",
                "73915",
                "00000",
                "805ec02f3c2e",
                "127.0.0.1",
            ] {
                assert!(!v.contains(sent), "{} {k}={v}", s.metric);
            }
        }
    }
    // The scrape before this one is in now.
    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            "hotdesk_http_request_duration_seconds_count",
            &[("route", "metrics"), ("status", "2xx")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn lockouts_and_refusals_while_locked_are_counted() {
    // The test config allows 3 failures per extension and source, per phone and source, and
    // (for the admin password, which each wrong PIN is also checked against) per source.
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    for pin in ["00000", "00001", "00002"] {
        phone.login("Internal", "1001", pin).await;
    }
    let locked = phone.login("Internal", "1001", "73915").await;
    assert_eq!(locked.title(), "Login locked", "{locked:?}");

    let m = scrape(&server).await;
    assert_eq!(
        series(&m, "hotdesk_lockouts_total"),
        [
            "scope=admin_from 1",
            "scope=extension_from 1",
            "scope=handset_from 1"
        ]
    );
    assert_eq!(
        series(&m, "hotdesk_login_failures_total"),
        [
            "reason=locked_out,vendor=yealink 1",
            "reason=wrong_pin,vendor=yealink 3",
        ]
    );
    assert_eq!(
        value(&m, "hotdesk_logins_total", &[("vendor", "yealink")]),
        None
    );
}

#[tokio::test]
async fn only_admin_sources_may_scrape_and_refused_connections_are_counted() {
    let addr = support::start_edited(|t| {
        t.replace("[admin]\n", "[admin]\nallow = [\"127.0.0.2/32\"]\n")
            + "[phones]\nallow = [\"127.0.0.1/32\"]\n"
    })
    .await;
    // A phone's address is admitted at accept, and refused for the admin group.
    let r: Response = request(addr, "GET", "/metrics", &[]).await;
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("hotdesk_"), "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // An address in no list is closed at accept, unanswered.
    let mut s = support::connect_from("127.0.0.5".parse().unwrap(), addr).await;
    let mut buf = Vec::new();
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));

    let m = scrape_from(addr, "127.0.0.2").await;
    assert_eq!(
        series(&m, "hotdesk_connections_refused_total"),
        ["reason=not_allowed 1"]
    );
    assert_eq!(
        value(
            &m,
            "hotdesk_http_request_duration_seconds_count",
            &[("route", "metrics"), ("status", "4xx")]
        ),
        Some(1.0)
    );
    // Wrong method: 405 with Allow, as for every route.
    let r = request_from("127.0.0.2".parse().unwrap(), addr, "POST", "/metrics", &[]).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[tokio::test]
async fn readyz_is_503_while_the_directory_never_answered() {
    let up = Upstream::start().await;
    up.fault(Fault::Status(503));
    let url = up.url();
    let server = Server::start_with(http_directory(&url), "").await;
    let ready = || request(server.addr, "GET", "/readyz", &[]);
    // Not asked yet: a fresh install must not wait for a login to become ready.
    assert_eq!(ready().await.status, 200);

    let phone = Phone::new(server.addr, YEALINK_T46S);
    let view = phone.login("Internal", "1001", "73915").await;
    assert!(
        message_text(&view).contains("cannot be reached"),
        "{view:?}"
    );
    let r = ready().await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.text(),
        "not ready: the directory has never answered (see the server log)\n"
    );
    for leak in [url.as_str(), "upstream-token-123", "503"] {
        assert!(!r.text().contains(leak), "{leak}");
    }
    let m = scrape(&server).await;
    let http_lookups = [("adapter", "http"), ("operation", "lookup")];
    assert_eq!(
        value(&m, "hotdesk_upstream_errors_total", &http_lookups),
        Some(1.0)
    );
    assert_eq!(
        series(&m, "hotdesk_login_failures_total"),
        ["reason=directory_unavailable,vendor=yealink 1"]
    );

    // The PBX answers: ready, and the login goes through.
    up.fault(Fault::None);
    up.user("1001", "Ada Lovelace", Some("73915"));
    let view = phone.login("Internal", "1001", "73915").await;
    assert_eq!(view.title(), "Logged in", "{view:?}");
    assert_eq!(ready().await.status, 200);
    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            "hotdesk_upstream_request_duration_seconds_count",
            &http_lookups
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&m, "hotdesk_logins_total", &[("vendor", "yealink")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn outbox_rows_are_read_at_scrape_time_and_write_back_failures_counted() {
    let up = Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    // A 4xx is a refusal for good: the row is kept as dead.
    up.write_status(Some(400));
    let writeback = format!(
        "[writeback]\nkind = \"devices\"\nmax_backoff = \"1s\"\n[writeback.http]\nurl = \"http://{}/hotdesk/v1\"\nauth = \"none\"\nrequest_timeout = \"400ms\"\n",
        up.addr
    );
    let server = Server::start_with(http_directory(&up.url()), &writeback).await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        phone.login("Internal", "1001", "73915").await.title(),
        "Logged in"
    );
    // The worker delivers in the background; the scrape reads the store each time.
    let mut m = scrape(&server).await;
    for _ in 0..200 {
        if value(&m, "hotdesk_outbox_rows", &[("state", "dead")]) == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        m = scrape(&server).await;
    }
    assert_eq!(
        series(&m, "hotdesk_outbox_rows"),
        ["state=dead 1", "state=pending 0"]
    );
    let deliveries = [("adapter", "writeback"), ("operation", "deliver")];
    assert_eq!(
        value(&m, "hotdesk_upstream_errors_total", &deliveries),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "hotdesk_upstream_request_duration_seconds_count",
            &deliveries
        ),
        Some(1.0)
    );
}
