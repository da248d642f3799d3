//! The console's audit, outbox, preview and configuration pages over real sockets, signed in
//! as a browser would be: real content, the CSV export and its filters, CSRF on the retry.

mod support;

use std::time::{Duration, Instant};

use support::phone::*;
use support::upstream::Upstream;
use support::{ADMIN_PASSWORD, Response, Server, http_directory, request};

async fn post_form(addr: std::net::SocketAddr, path: &str, cookie: &str, body: &str) -> Response {
    support::post_form(addr, path, Some(cookie), body).await
}

async fn sign_in(addr: std::net::SocketAddr) -> String {
    support::console_sign_in(addr).await
}

async fn get(addr: std::net::SocketAddr, path: &str, cookie: &str) -> Response {
    request(addr, "GET", path, &[("Cookie", cookie)]).await
}

fn csrf(page: &str) -> String {
    support::csrf_of(page)
}

/// `YYYY-MM-DD` of today plus `days` (UTC, as the audit trail keeps time).
fn day(days: i64) -> String {
    let d = (time::OffsetDateTime::now_utc() + time::Duration::days(days)).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[tokio::test]
async fn every_page_needs_a_session() {
    let server = Server::start("").await;
    for path in [
        "/admin/audit",
        "/admin/audit.csv",
        "/admin/outbox",
        "/admin/preview",
        "/admin/config",
    ] {
        let r = request(server.addr, "GET", path, &[]).await;
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/admin/signin"), "{path}");
    }
    let r = post_form(
        server.addr,
        "/admin/outbox/retry",
        "hotdesk_admin=forged",
        "all=1",
    )
    .await;
    assert_eq!(r.status, 303);
}

#[tokio::test]
async fn a_phones_login_is_in_the_audit_page_and_csv_with_their_filters() {
    let server = Server::start("").await;
    let addr = server.addr;
    let phone = Phone::new(addr, AASTRA_6737I);
    assert_eq!(
        phone.login("Internal", "1001", "73915").await.title(),
        "Logged in"
    );
    // A failed attempt whose extension a spreadsheet would read as a formula.
    phone.go("/app/login?net=internal&ext=%2B4930&pin=0").await;
    let cookie = sign_in(addr).await;

    let page = get(addr, "/admin/audit?extension=1001&kind=login", &cookie).await;
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(
        text.contains("00085d30a6ce") && text.contains("<td>login</td>"),
        "{text}"
    );
    assert!(
        !text.contains("<td>login-failed</td>"),
        "the kind filter: {text}"
    );
    assert!(text.contains("<option value=\"login\" selected>"), "{text}");
    let other = get(addr, "/admin/audit?extension=1002", &cookie)
        .await
        .text();
    assert!(other.contains("No events match.") && !other.contains("00085d30a6ce"));
    // The time range: nothing from tomorrow on, everything before it.
    let future = get(addr, &format!("/admin/audit?from={}", day(1)), &cookie).await;
    assert!(future.text().contains("No events match."));
    let past = get(
        addr,
        &format!("/admin/audit?to={}&mac=00-08-5D-30-A6-CE", day(0)),
        &cookie,
    )
    .await;
    assert!(past.text().contains("00085d30a6ce"), "{}", past.text());
    let range = format!("/admin/audit?from={}T00:00&to={}T00:00", day(0), day(1));
    assert!(
        get(addr, &range, &cookie)
            .await
            .text()
            .contains("00085d30a6ce")
    );
    // Bad filters are a clear 400, not an empty page.
    for bad in ["mac=zz", "kind=nope", "from=yesterday"] {
        let r = get(addr, &format!("/admin/audit?{bad}"), &cookie).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.text().contains("role=\"alert\""), "{bad}");
    }

    let csv = get(addr, "/admin/audit.csv?extension=1001&kind=login", &cookie).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        csv.header("content-disposition"),
        Some("attachment; filename=\"hotdesk-audit.csv\"")
    );
    let text = csv.text();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines[0], "id,at,kind,mac,extension,network,source,detail");
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[1].contains(",login,00085d30a6ce,1001,internal,127.0.0.1,"),
        "{text}"
    );

    let failed = get(addr, "/admin/audit.csv?kind=login-failed", &cookie)
        .await
        .text();
    assert!(failed.contains(",'+4930,"), "{failed}");
    assert!(!failed.contains(",+4930,"), "{failed}");
    // The same selection as the page, so the page links to it.
    assert!(
        get(addr, "/admin/audit?kind=login-failed", &cookie)
            .await
            .text()
            .contains("href=\"/admin/audit.csv?kind=login-failed\"")
    );
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
async fn retry_moves_a_dead_write_back_back_to_the_queue() {
    let up = Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    up.write_status(Some(422));
    let writeback = format!(
        "[writeback]\nkind = \"devices\"\nmax_backoff = \"1s\"\n[writeback.http]\nurl = \"http://{}/hotdesk/v1\"\nauth = \"none\"\nrequest_timeout = \"400ms\"\nbreaker_failures = 100\nbreaker_cooldown = \"1s\"\n",
        up.addr
    );
    let server = Server::start_with(http_directory(&up.url()), &writeback).await;
    let addr = server.addr;
    Phone::new(addr, YEALINK_T46S)
        .go("/app/login?net=internal&ext=1001&pin=73915")
        .await;
    wait_for(|| up.write_attempts() == 1, "the refused write-back").await;
    let mut dead = 0;
    for _ in 0..100 {
        dead = outbox(&server).await["dead"].as_u64().unwrap();
        if dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead, 1);

    let cookie = sign_in(addr).await;
    let page = get(addr, "/admin/outbox", &cookie).await;
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(
        text.contains(">dead<") && text.contains("805ec02f3c2e"),
        "{text}"
    );
    assert!(text.contains("PBX answered 422"), "{text}");
    let token = csrf(&text);
    let id = {
        let at = text.find("name=\"id\" value=\"").expect("a retry form");
        let rest = &text[at + 17..];
        rest[..rest.find('"').unwrap()].to_string()
    };

    // A forged form changes nothing.
    let r = post_form(
        addr,
        "/admin/outbox/retry",
        &cookie,
        &format!("csrf=wrong&id={id}"),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post_form(addr, "/admin/outbox/retry", &cookie, &format!("id={id}")).await;
    assert_eq!(r.status, 403);
    assert_eq!(outbox(&server).await["dead"], 1);

    up.write_status(None);
    let r = post_form(
        addr,
        "/admin/outbox/retry",
        &cookie,
        &format!("csrf={token}&id={id}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/admin/outbox"));
    wait_for(
        || up.writes().iter().any(|w| w.0 == "PUT"),
        "the retried delivery",
    )
    .await;
    let mut st = outbox(&server).await;
    for _ in 0..100 {
        if st["pending"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        st = outbox(&server).await;
    }
    assert_eq!(
        (st["pending"].as_u64(), st["dead"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
    let audit = server.audit().await;
    assert!(
        audit.iter().any(|e| e["kind"] == "outbox-retried"
            && e["detail"].as_str().unwrap().contains("console (admin)")),
        "{audit:?}"
    );
    assert!(
        get(addr, "/admin/outbox", &cookie)
            .await
            .text()
            .contains("Nothing waiting")
    );
}

#[tokio::test]
async fn preview_shows_each_screen_next_to_its_xml() {
    let server = Server::start("").await;
    let addr = server.addr;
    let cookie = sign_in(addr).await;

    let page = get(addr, "/admin/preview?vendor=yealink&model=T46S", &cookie).await;
    assert_eq!(page.status, 200);
    let t46s = page.text();
    // The entry menu with the config's networks, drawn and as XML (escaped).
    assert!(t46s.contains("&lt;YealinkIPPhoneTextMenu"), "{t46s}");
    assert!(t46s.contains("<li class=\"sel\""), "{t46s}");
    // The T46S takes extension and PIN on one form; its Submit is softkey 1.
    assert!(
        t46s.contains("&lt;YealinkIPPhoneInputScreen type=&quot;string&quot;"),
        "{t46s}"
    );
    assert!(t46s.contains("1: Submit"), "{t46s}");
    assert!(t46s.contains("Welcome, Sam Example."), "{t46s}");
    // minijinja escapes `/` too.
    assert!(
        t46s.contains("&lt;Title&gt;Login locked&lt;&#x2f;Title&gt;"),
        "{t46s}"
    );
    assert!(
        !t46s.contains("<YealinkIPPhone"),
        "XML is shown escaped only"
    );

    let page = get(addr, "/admin/preview?vendor=aastra&model=6737i", &cookie).await;
    let aastra = page.text();
    assert!(aastra.contains("&lt;AastraIPPhoneTextMenu"), "{aastra}");
    assert!(aastra.contains("&lt;AastraIPPhoneExecute"), "{aastra}");
    assert!(aastra.contains("Command: ClearCallersList"), "{aastra}");
    assert!(
        aastra.contains("6: Exit") || aastra.contains("6: Cancel"),
        "{aastra}"
    );

    // A two-line Yealink asks one field at a time.
    let t21p = get(addr, "/admin/preview?vendor=yealink&model=T21P_E2", &cookie)
        .await
        .text();
    assert!(t21p.contains("Ask for the PIN") && !t21p.contains("Extension and PIN"));

    for bad in ["vendor=nokia", "vendor=snom&model=%3Cscript%3E"] {
        let r = get(addr, &format!("/admin/preview?{bad}"), &cookie).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(!r.text().contains("<script>"));
    }
}

#[tokio::test]
async fn the_config_page_masks_every_secret_of_the_test_config() {
    let base = "[base]\nextension = \"9999\"\nsecret = \"base-sip-secret-777\"\nlabel = \"Emergency\"\nnetwork = \"internal\"\n";
    let server = Server::start(base).await;
    let cookie = sign_in(server.addr).await;
    let page = get(server.addr, "/admin/config", &cookie).await;
    assert_eq!(page.status, 200);
    let text = page.text();
    let config = std::fs::read_to_string(server.dir.join("directory.toml")).unwrap();
    assert!(!config.is_empty());
    for secret in [
        support::admin_hash_for_tests().to_string(),
        hotdesk::auth::hash_api_key(support::API_KEY),
        support::API_KEY.to_string(),
        support::USER_PASSWORD.to_string(),
        ADMIN_PASSWORD.to_string(),
        "base-sip-secret-777".to_string(),
        "argon2".to_string(),
    ] {
        assert!(!text.contains(&secret), "{secret} is on the config page");
    }
    // What is not secret is there.
    assert!(text.contains("networks.internal.sip_server"), "{text}");
    assert!(text.contains("10.0.0.5"));
    assert!(text.contains("admin.keys[0].name"));
    assert!(text.contains("base.extension"));
    assert!(text.matches("(masked)").count() >= 4, "{text}");
}

#[tokio::test]
async fn audit_events_past_retention_are_pruned_at_start_and_recent_ones_kept() {
    use hotdesk::store::{AuditEvent, Change, EventKind, SqliteStore, Store};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("directory.toml"), support::DIRECTORY).unwrap();
    {
        let store = SqliteStore::open(&tmp.path().join("state/hotdesk.sqlite")).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let event = |days: i64, detail: &str| {
            let mut e = AuditEvent::new(EventKind::Login, detail);
            e.at = now - time::Duration::days(days);
            e
        };
        let change = Change {
            events: vec![
                event(401, "older than 400 days"),
                event(399, "within 400 days"),
            ],
            ..Change::default()
        };
        store.commit(&change).unwrap();
    }
    // The default `[store] audit_retention` is 400 days; the first sweep runs at start.
    let server = Server::start_in(tmp.path().to_owned(), None, String::new()).await;
    let mut details = Vec::new();
    for _ in 0..100 {
        details = server
            .audit()
            .await
            .iter()
            .map(|e| e["detail"].as_str().unwrap().to_owned())
            .collect();
        if !details.iter().any(|d| d == "older than 400 days") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(details, ["within 400 days"]);
}

// --- the Users page ----------------------------------------------------------------------

const EMBEDDED: &str = "[directory]\nkind = \"embedded\"\npoll_interval = \"50ms\"\n";
const LINPHONE_UA: &str = "LinphoneAndroid/5.2.5 (Pixel 7) LinphoneSDK/5.3.47";

/// The text of the page's `<output class="secret">`, the one place a secret is shown.
fn secret_of(page: &str) -> String {
    let marker = "<output class=\"secret\">";
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("no secret in {page}"));
    let rest = &page[at + marker.len()..];
    rest[..rest.find('<').unwrap()].to_string()
}

/// The `src` of the page's QR image.
fn qr_src(page: &str) -> String {
    let marker = "<img class=\"qr\" src=\"";
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("no QR image in {page}"));
    let rest = &page[at + marker.len()..];
    rest[..rest.find('"').unwrap()].replace("&#x2f;", "/")
}

/// The activation link shown on a result page.
fn link_of(page: &str) -> String {
    let marker = "<code class=\"link wrap\">";
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("no link in {page}"));
    let rest = &page[at + marker.len()..];
    rest[..rest.find('<').unwrap()].replace("&#x2f;", "/")
}

/// Every `value="..."` of `name` in the page's forms.
fn values_of(page: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    page.split(&marker)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

/// Everything an admin can read later: the list, the user's page, the audit page and API.
async fn everything_later(server: &Server, cookie: &str, ext: &str) -> String {
    let mut all = String::new();
    for path in [
        "/admin/users".to_string(),
        format!("/admin/users/{ext}"),
        "/admin/audit".to_string(),
        "/admin/audit.csv".to_string(),
    ] {
        all.push_str(&get(server.addr, &path, cookie).await.text());
    }
    all.push_str(&serde_json::to_string(&server.audit().await).unwrap());
    all
}

fn audited(audit: &[serde_json::Value], kind: &str, detail: &str) -> bool {
    audit
        .iter()
        .any(|e| e["kind"] == kind && e["detail"].as_str().unwrap_or("").contains(detail))
}

#[tokio::test]
async fn a_user_made_on_the_users_page_logs_in_with_the_pin_shown_once() {
    let server = Server::start_with(EMBEDDED.into(), "").await;
    let addr = server.addr;
    let cookie = sign_in(addr).await;
    let page = get(addr, "/admin/users", &cookie).await;
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(
        text.contains("href=\"/admin/users\" aria-current=\"page\">Users"),
        "{text}"
    );
    assert!(text.contains("No users yet."), "{text}");
    let token = csrf(&text);

    let r = post_form(
        addr,
        "/admin/users",
        &cookie,
        &format!("csrf={token}&extension=2001&name=Ada+%3Cb%3ELovelace&email=ada%40example.com&enabled=yes"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/admin/users/2001"));
    let list = get(addr, "/admin/users", &cookie).await.text();
    assert!(
        list.contains("href=\"&#x2f;admin&#x2f;users&#x2f;2001\"")
            && list.contains("Ada &lt;b&gt;Lovelace")
            && list.contains("ada@example.com")
            && list.contains("0 of 4"),
        "{list}"
    );
    // A taken extension or a bad one: a clear refusal, nothing added.
    let r = post_form(
        addr,
        "/admin/users",
        &cookie,
        &format!("csrf={token}&extension=2001&name=Again&enabled=yes"),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = post_form(
        addr,
        "/admin/users",
        &cookie,
        &format!("csrf={token}&extension=20x1&name=Bad&enabled=yes"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("role=\"alert\""));

    // A new PIN: shown on the answer to the POST, once.
    let r = post_form(
        addr,
        "/admin/users/2001/pin",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let pin = secret_of(&r.text());
    assert!(
        pin.len() >= 4 && pin.bytes().all(|b| b.is_ascii_digit()),
        "{pin}"
    );

    // A SIP secret, likewise (without one a desk login is refused: no line).
    let r = post_form(
        addr,
        "/admin/users/2001/sip-secret",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sip = secret_of(&r.text());
    assert!(sip.len() >= 16, "{sip}");
    let phone = Phone::new(addr, AASTRA_6737I);
    assert_eq!(
        phone.login("Internal", "2001", &pin).await.title(),
        "Logged in"
    );

    let later = everything_later(&server, &cookie, "2001").await;
    assert!(!later.contains(&pin), "the PIN is shown again somewhere");
    assert!(
        !later.contains(&sip),
        "the SIP secret is shown again somewhere"
    );
    let audit = server.audit().await;
    assert!(
        audited(&audit, "user-changed", "console (admin): user created"),
        "{audit:?}"
    );
    assert!(
        audited(
            &audit,
            "user-changed",
            "console (admin): PIN set (generated)"
        ),
        "{audit:?}"
    );
    assert!(
        audited(
            &audit,
            "user-changed",
            "console (admin): SIP secret set (generated)"
        ),
        "{audit:?}"
    );
    let one = get(addr, "/admin/users/2001", &cookie).await.text();
    assert!(one.contains("<dt>PIN</dt><dd>set</dd>"), "{one}");

    // Disabling ends the login at the desk, as the API does.
    let r = post_form(
        addr,
        "/admin/users/2001/enabled",
        &cookie,
        &format!("csrf={token}&enabled=false"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(server.logins().await.is_empty());
    assert!(
        get(addr, "/admin/users", &cookie)
            .await
            .text()
            .contains(">disabled<")
    );
    assert_ne!(
        phone.login("Internal", "2001", &pin).await.title(),
        "Logged in"
    );
    assert!(audited(
        &server.audit().await,
        "user-changed",
        "console (admin): user changed: disabled"
    ));
    let r = post_form(
        addr,
        "/admin/users/2001/enabled",
        &cookie,
        &format!("csrf={token}&enabled=true"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        phone.login("Internal", "2001", &pin).await.title(),
        "Logged in"
    );

    // Delete asks first; only the confirmed form deletes (and logs out).
    let r = post_form(
        addr,
        "/admin/users/2001/delete",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("name=\"confirm\" value=\"yes\""),
        "{}",
        r.text()
    );
    assert_eq!(server.admin("GET", "/api/v1/users/2001").await.status, 200);
    let r = post_form(
        addr,
        "/admin/users/2001/delete",
        &cookie,
        &format!("csrf={token}&confirm=yes"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/admin/users"))
    );
    assert_eq!(server.admin("GET", "/api/v1/users/2001").await.status, 404);
    assert!(server.logins().await.is_empty());
    assert!(
        get(addr, "/admin/users", &cookie)
            .await
            .text()
            .contains("No users yet.")
    );
    assert_eq!(get(addr, "/admin/users/2001", &cookie).await.status, 404);
}

#[tokio::test]
async fn links_codes_and_the_device_count_on_a_users_page() {
    let server = Server::start_with(EMBEDDED.into(), "[activation]\nmax_devices = 2\n").await;
    let addr = server.addr;
    let cookie = sign_in(addr).await;
    let token = csrf(&get(addr, "/admin/users", &cookie).await.text());
    let r = post_form(
        addr,
        "/admin/users",
        &cookie,
        &format!("csrf={token}&extension=2001&name=Ada&enabled=yes"),
    )
    .await;
    assert_eq!(r.status, 303);
    // No SIP secret yet: the link is refused, saying why.
    let r = post_form(
        addr,
        "/admin/users/2001/link",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("has no SIP secret"), "{}", r.text());
    let r = post_form(
        addr,
        "/admin/users/2001/sip-secret",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 200);

    // Two softphones through two links: the limit is reached and shown.
    for n in 1..=2 {
        let r = post_form(
            addr,
            "/admin/users/2001/link",
            &cookie,
            &format!("csrf={token}"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.text();
        let src = qr_src(&page);
        assert!(
            src.starts_with("/provisioning/") && src.ends_with("/qr.svg"),
            "{src}"
        );
        let img = request(addr, "GET", &src, &[]).await;
        assert_eq!(img.status, 200, "{}", img.text());
        assert_eq!(img.header("content-type"), Some("image/svg+xml"));
        let url = link_of(&page);
        assert_eq!(
            url,
            format!("http://{addr}{}", src.trim_end_matches("/qr.svg"))
        );
        assert!(
            page.contains("Username: <span class=\"mono\">2001</span>"),
            "{page}"
        );
        let xml = request(addr, "GET", &url, &[("User-Agent", LINPHONE_UA)]).await;
        assert_eq!(xml.status, 200, "{}", xml.text());
        let one = get(addr, "/admin/users/2001", &cookie).await.text();
        assert!(one.contains(&format!("{n} of 2")), "{one}");
        // minijinja escapes `/` too.
        assert!(one.contains("LinphoneAndroid&#x2f;5.2.5"), "{one}");
    }
    let list = get(addr, "/admin/users", &cookie).await.text();
    assert!(
        list.contains("2 of 2 <span class=\"limit\">limit reached</span>"),
        "{list}"
    );
    let one = get(addr, "/admin/users/2001", &cookie).await.text();
    assert!(one.contains("Device activation limit reached"), "{one}");

    // Remove one: a place frees up. An id that is not this user's: 404, nothing removed.
    let ids = values_of(&one, "id");
    assert_eq!(ids.len(), 2, "{one}");
    let r = post_form(
        addr,
        "/admin/users/2001/devices/remove",
        &cookie,
        &format!("csrf={token}&id=99999"),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = post_form(
        addr,
        "/admin/users/2001/devices/remove",
        &cookie,
        &format!("csrf={token}&id={}", ids[0]),
    )
    .await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/admin/users/2001"))
    );
    let one = get(addr, "/admin/users/2001", &cookie).await.text();
    assert!(
        one.contains("1 of 2") && !one.contains("limit reached"),
        "{one}"
    );
    // Reset: none left.
    let r = post_form(
        addr,
        "/admin/users/2001/devices/reset",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 303);
    let one = get(addr, "/admin/users/2001", &cookie).await.text();
    assert!(
        one.contains("0 of 2") && one.contains("No softphone activated."),
        "{one}"
    );

    // A one-time login code: 8 digits with its expiry, shown once.
    let r = post_form(
        addr,
        "/admin/users/2001/code",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let code = secret_of(&r.text());
    assert!(
        code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    assert!(r.text().contains("Valid once, until <time"), "{}", r.text());
    let later = everything_later(&server, &cookie, "2001").await;
    assert!(!later.contains(&code), "the code is shown again somewhere");

    let audit = server.audit().await;
    for detail in [
        "console (admin): activation link made",
        "console (admin): one-time login code made",
        &format!("console (admin): device {} removed", ids[0]),
        "console (admin): device count reset",
    ] {
        assert!(
            audit.iter().any(|e| e["detail"].as_str().unwrap().contains(detail)
                && e["extension"] == "2001"),
            "{detail}: {audit:?}"
        );
    }
}

#[tokio::test]
async fn users_from_another_directory_still_get_links_and_codes_by_extension() {
    let server = Server::start("").await;
    let addr = server.addr;
    let cookie = sign_in(addr).await;
    let page = get(addr, "/admin/users", &cookie).await.text();
    assert!(page.contains("come from another directory"), "{page}");
    assert!(!page.contains("Add user"), "{page}");
    let token = csrf(&page);
    // The "open an extension" form.
    let r = get(addr, "/admin/users?ext=1001", &cookie).await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/admin/users/1001"))
    );
    assert_eq!(
        get(addr, "/admin/users?ext=..%2Fx", &cookie).await.status,
        400
    );
    let one = get(addr, "/admin/users/1001", &cookie).await.text();
    assert!(
        one.contains("Ada Lovelace") && one.contains("0 of 4"),
        "{one}"
    );
    assert!(!one.contains("Set a new PIN"), "{one}");
    assert_eq!(get(addr, "/admin/users/4242", &cookie).await.status, 404);

    // What only the embedded directory can do is refused, nothing else happens.
    for path in [
        "/admin/users/1001/pin",
        "/admin/users/1001/sip-secret",
        "/admin/users/1001/delete",
    ] {
        let r = post_form(addr, path, &cookie, &format!("csrf={token}")).await;
        assert_eq!(r.status, 409, "{path}: {}", r.text());
    }
    let r = post_form(
        addr,
        "/admin/users",
        &cookie,
        &format!("csrf={token}&extension=2001&name=X&enabled=yes"),
    )
    .await;
    assert_eq!(r.status, 409);

    let r = post_form(
        addr,
        "/admin/users/1001/code",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(secret_of(&r.text()).len(), 8);
    let r = post_form(
        addr,
        "/admin/users/1001/link",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let xml = request(
        addr,
        "GET",
        &link_of(&r.text()),
        &[("User-Agent", LINPHONE_UA)],
    )
    .await;
    assert_eq!(xml.status, 200, "{}", xml.text());
    assert!(
        get(addr, "/admin/users/1001", &cookie)
            .await
            .text()
            .contains("1 of 4")
    );
}

#[tokio::test]
async fn users_page_forms_need_the_session_its_token_and_the_console_itself() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_with(EMBEDDED.into(), "").await;
    let addr = server.addr;
    let r = request(addr, "GET", "/admin/users", &[]).await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/admin/signin"))
    );
    assert_eq!(
        request(addr, "GET", "/admin/users/1001", &[]).await.status,
        303
    );
    let cookie = sign_in(addr).await;
    let token = csrf(&get(addr, "/admin/users", &cookie).await.text());
    let create = "extension=2001&name=Ada&enabled=yes";
    // No token, another token, no session: nothing is made.
    let r = post_form(addr, "/admin/users", &cookie, create).await;
    assert_eq!(r.status, 403);
    let r = post_form(
        addr,
        "/admin/users",
        &cookie,
        &format!("csrf=forged&{create}"),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = support::post_form(
        addr,
        "/admin/users",
        None,
        &format!("csrf={token}&{create}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/admin/signin"));
    // The right cookie and token, but the browser says another site sent it.
    let body = format!("csrf={token}&{create}");
    let req = format!(
        "POST /admin/users HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\n\
         Sec-Fetch-Site: cross-site\r\nOrigin: https://evil.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    assert_eq!(support::parse_response(&raw).status, 403);
    assert_eq!(server.admin("GET", "/api/v1/users/2001").await.status, 404);
    // The same form from the console itself works.
    let r = post_form(addr, "/admin/users", &cookie, &body).await;
    assert_eq!(r.status, 303, "{}", r.text());
    // A path that is no extension: a clear 400.
    let r = post_form(
        addr,
        "/admin/users/..%2F..%2Fx/pin",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
}
