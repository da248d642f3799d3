//! The user page at `/me`, over real HTTP: sign-in with the phone's own credential check
//! (same lockouts and audit), the user's desks, logging out a desk they left, CSRF, and
//! whose desks a form may name.

mod support;

use std::net::IpAddr;

use support::phone::{AASTRA_6737I, Phone, View, YEALINK_T46S};
use support::{ADMIN_PASSWORD, Response, Server, USER_PASSWORD};

const AASTRA_MAC: &str = "00085d30a6ce";
const YEALINK_MAC: &str = "805ec02f3c2e";

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

async fn send(
    server: &Server,
    source: IpAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Response {
    support::form_request_from(source, server.addr, method, path, cookie, form).await
}

async fn get(server: &Server, path: &str, cookie: Option<&str>) -> Response {
    send(server, localhost(), "GET", path, cookie, None).await
}

async fn post(server: &Server, path: &str, cookie: Option<&str>, form: &str) -> Response {
    send(server, localhost(), "POST", path, cookie, Some(form)).await
}

/// Signs in; returns the answer (303 and a cookie on success).
async fn sign_in(server: &Server, ext: &str, pin: &str) -> Response {
    post(
        server,
        "/me/signin",
        None,
        &format!("extension={ext}&pin={pin}"),
    )
    .await
}

/// Signs in and returns the cookie (`name=value`) and the page's CSRF token.
async fn session(server: &Server, ext: &str, pin: &str) -> (String, String) {
    let r = sign_in(server, ext, pin).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/me"));
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = get(server, "/me", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    let csrf = text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned();
    (cookie, csrf)
}

fn kinds_and_details(audit: &[serde_json::Value]) -> Vec<(String, String)> {
    audit
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_owned(),
                e["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_user_signs_in_sees_their_desk_and_logs_it_out() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, AASTRA_6737I);
    let View::Message { title, .. } = phone.login("Internal", "1001", "73915").await else {
        panic!("expected a message")
    };
    assert_eq!(title, "Logged in");

    // Not signed in: the page sends you to the sign-in form, which posts the PIN.
    let r = get(&server, "/me", None).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/me/signin")));
    let form = get(&server, "/me/signin", None).await;
    assert_eq!(form.status, 200);
    let html = form.text();
    assert!(
        html.contains("method=\"post\" action=\"/me/signin\""),
        "{html}"
    );
    assert!(html.contains("autocomplete=\"current-password\""), "{html}");
    assert!(form.header("content-security-policy").is_some());

    let r = sign_in(&server, "1001", "73915").await;
    assert_eq!(r.status, 303, "{}", r.text());
    let set_cookie = r.header("set-cookie").unwrap();
    for flag in ["hotdesk_me=", "HttpOnly", "SameSite=Strict", "Path=/me"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    assert!(!format!("{:?}{}", r.headers, r.text()).contains("73915"));

    let (cookie, csrf) = session(&server, "1001", "73915").await;
    let page = get(&server, "/me", Some(&cookie)).await;
    let html = page.text();
    assert!(html.contains(AASTRA_MAC), "{html}");
    assert!(html.contains("Log out this desk"), "{html}");
    assert!(html.contains("Internal"), "{html}");
    assert!(!html.contains("73915"), "the PIN is never on a page");
    // The recent logins come from the audit trail.
    assert!(html.contains("voicemail-pin"), "{html}");

    // Without the CSRF token, or with another one: refused, nothing changes.
    let logout = format!("mac={AASTRA_MAC}&identity=0");
    let r = post(&server, "/me/logout", Some(&cookie), &logout).await;
    assert_eq!(r.status, 403);
    let r = post(
        &server,
        "/me/logout",
        Some(&cookie),
        &format!("csrf=not-the-token&{logout}"),
    )
    .await;
    assert_eq!(r.status, 403);
    // Without a session: to the sign-in form, nothing changes.
    let r = post(
        &server,
        "/me/logout",
        None,
        &format!("csrf={csrf}&{logout}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(server.logins().await.len(), 1);

    let r = post(
        &server,
        "/me/logout",
        Some(&cookie),
        &format!("csrf={csrf}&{logout}"),
    )
    .await;
    assert_eq!((r.status, r.header("location")), (303, Some("/me")));
    assert!(server.logins().await.is_empty());
    // The phone falls back at its next fetch: the login menu again.
    let View::Menu { title, .. } = phone.open().await else {
        panic!("expected the network menu")
    };
    assert_eq!(title, "Hot desk: log in via");
    let audit = kinds_and_details(&server.audit().await);
    assert!(
        audit.contains(&("logout".into(), "user page (1001)".into())),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|(k, _)| k == "user-page-sign-in"),
        "{audit:?}"
    );
    let page = get(&server, "/me", Some(&cookie)).await.text();
    assert!(
        page.contains("You are not logged in at any desk."),
        "{page}"
    );

    // Signing out ends the session: the cookie no longer opens the page.
    let r = post(
        &server,
        "/me/signout",
        Some(&cookie),
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = get(&server, "/me", Some(&cookie)).await;
    assert_eq!(r.header("location"), Some("/me/signin"));
}

#[tokio::test]
async fn wrong_pins_count_against_the_phones_lockout_and_are_audited() {
    // The test config has max_failures = 3.
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, AASTRA_6737I);
    for wrong in ["00000", "00001"] {
        let View::Message { title, .. } = phone.login("Internal", "1001", wrong).await else {
            panic!("expected a message")
        };
        assert_eq!(title, "Login failed");
    }
    let r = sign_in(&server, "1001", "00002").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("Try again in 15 minutes"), "{}", r.text());
    assert!(!r.text().contains("00002"), "the PIN is never echoed");
    // Locked: the right PIN is refused on the page and on the phone.
    let r = sign_in(&server, "1001", "73915").await;
    assert_eq!(r.status, 429);
    assert!(r.header("set-cookie").is_none());
    let View::Message { title, .. } = phone.login("Internal", "1001", "73915").await else {
        panic!("expected a message")
    };
    assert_eq!(title, "Login locked");

    let audit = kinds_and_details(&server.audit().await);
    assert!(
        audit.contains(&(
            "locked-out".into(),
            "wrong extension or PIN (user page)".into()
        )),
        "{audit:?}"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|(k, d)| k == "login-failed" && d == "wrong extension or PIN")
            .count(),
        2,
        "{audit:?}"
    );

    // On another extension, a wrong PIN shows the tries left, as the phone does.
    let r = sign_in(&server, "1002", "11111").await;
    assert_eq!(r.status, 401);
    assert!(
        r.text().contains("Wrong extension or PIN, 2 tries left."),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn the_user_password_works_but_the_admin_password_does_not() {
    let server = Server::start("").await;
    // 1003 has no voicemail PIN: the shared user password is its credential, as on the phone.
    let r = sign_in(&server, "1003", USER_PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.text());
    // The admin password signs in as nobody here (the console is the admin's page).
    let r = sign_in(&server, "1001", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("set-cookie").is_none());
    let audit = kinds_and_details(&server.audit().await);
    assert!(
        audit.contains(&(
            "login-failed".into(),
            "wrong extension or PIN (user page)".into()
        )),
        "{audit:?}"
    );
}

#[tokio::test]
async fn another_users_desk_cannot_be_logged_out() {
    let server = Server::start("").await;
    let ada = Phone::new(server.addr, AASTRA_6737I);
    let grace = Phone::new(server.addr, YEALINK_T46S);
    ada.login("Internal", "1001", "73915").await;
    grace.login("Internal", "1002", "86420").await;
    assert_eq!(server.logins().await.len(), 2);

    let (cookie, csrf) = session(&server, "1001", "73915").await;
    let page = get(&server, "/me", Some(&cookie)).await.text();
    assert!(
        page.contains(AASTRA_MAC) && !page.contains(YEALINK_MAC),
        "{page}"
    );

    // A forged form naming 1002's phone, with a valid session and token: refused.
    let audit_before = server.audit().await.len();
    let r = post(
        &server,
        "/me/logout",
        Some(&cookie),
        &format!("csrf={csrf}&mac={YEALINK_MAC}&identity=0"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let logins = server.logins().await;
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(server.audit().await.len(), audit_before, "nothing recorded");
    let View::Menu { title, .. } = grace.open().await else {
        panic!("expected the logged-in menu")
    };
    assert!(title.starts_with("1002"), "{title}");
    // Garbage instead of a MAC: a clear 400.
    let r = post(
        &server,
        "/me/logout",
        Some(&cookie),
        &format!("csrf={csrf}&mac=..%2F..&identity=0"),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn sources_outside_users_allow_are_refused() {
    let server = Server::start("[users]\nallow = [\"127.0.0.1/32\"]\n").await;
    let outside: IpAddr = "127.0.0.2".parse().unwrap();
    // 127.0.0.2 is a phone source ([phones] allow), so the connection is accepted, but the
    // user page is not for it.
    let r = send(&server, outside, "GET", "/me/signin", None, None).await;
    assert_eq!(r.status, 403);
    let r = send(
        &server,
        outside,
        "POST",
        "/me/signin",
        None,
        Some("extension=1001&pin=73915"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
    assert_eq!(get(&server, "/me/signin", None).await.status, 200);
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused_before_it_counts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start("").await;
    // What a hostile page opened by an employee makes their browser send.
    let body = "extension=1001&pin=00000";
    let req = format!(
        "POST /me/signin HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nSec-Fetch-Site: cross-site\r\n\
         Origin: https://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    let mut s = support::connect_from(localhost(), server.addr).await;
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let r = support::parse_response(&raw);
    assert_eq!(r.status, 403, "{}", r.text());
    let audit = kinds_and_details(&server.audit().await);
    assert!(
        audit.iter().all(|(k, _)| k != "login-failed"),
        "not counted: {audit:?}"
    );
    // The same guess from the page itself counts.
    assert_eq!(sign_in(&server, "1001", "00000").await.status, 401);
}

// --- self-service: codes and softphones ----------------------------------------------------

const LINPHONE_UA: &str = "LinphoneAndroid/5.2.5 (Pixel 7) LinphoneSDK/5.3.47";

/// An admin-made activation link for `ext`, fetched by a softphone: one device of theirs.
async fn activate(server: &Server, ext: &str, ua: &str) {
    let r = support::request_with_body(
        server.addr,
        "POST",
        &format!("/api/v1/users/{ext}/activations"),
        "",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let url = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = support::request(server.addr, "GET", &url, &[("User-Agent", ua)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn devices_of(server: &Server, ext: &str) -> Vec<serde_json::Value> {
    let r = server
        .admin("GET", &format!("/api/v1/users/{ext}/activations"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["devices"]
        .as_array()
        .unwrap()
        .clone()
}

fn secret_of(page: &str) -> String {
    let marker = "<output class=\"secret\">";
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("no secret in {page}"));
    let rest = &page[at + marker.len()..];
    rest[..rest.find('<').unwrap()].to_string()
}

/// A form POST with the right cookie and token that the browser says another site sent.
async fn cross_site_post(server: &Server, path: &str, cookie: &str, body: &str) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {cookie}\r\n\
         Sec-Fetch-Site: cross-site\r\nOrigin: https://evil.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    let mut s = support::connect_from(localhost(), server.addr).await;
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    support::parse_response(&raw)
}

#[tokio::test]
async fn a_user_sees_and_removes_only_their_own_softphones() {
    let server = Server::start("").await;
    activate(&server, "1001", LINPHONE_UA).await;
    activate(&server, "1002", "Linphone-Desktop/5.2.6 (grace)").await;
    let (cookie, csrf) = session(&server, "1001", "73915").await;
    let page = get(&server, "/me", Some(&cookie)).await.text();
    assert!(page.contains("LinphoneAndroid&#x2f;5.2.5"), "{page}");
    assert!(page.contains("1 of 4"), "{page}");
    assert!(!page.contains("grace"), "another user's softphone: {page}");

    // 1002's device, named by a form with 1001's valid session and token: no such device
    // of 1001's, nothing removed, nothing audited.
    let theirs = devices_of(&server, "1002").await[0]["id"].as_i64().unwrap();
    let before = server.audit().await.len();
    let r = post(
        &server,
        "/me/devices/remove",
        Some(&cookie),
        &format!("csrf={csrf}&id={theirs}&extension=1002"),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(devices_of(&server, "1002").await.len(), 1);
    assert_eq!(server.audit().await.len(), before);

    // Without the token, or sent from another site: refused.
    let mine = devices_of(&server, "1001").await[0]["id"].as_i64().unwrap();
    let r = post(
        &server,
        "/me/devices/remove",
        Some(&cookie),
        &format!("id={mine}"),
    )
    .await;
    assert_eq!(r.status, 403);
    let body = format!("csrf={csrf}&id={mine}");
    let r = cross_site_post(&server, "/me/devices/remove", &cookie, &body).await;
    assert_eq!(r.status, 403);
    assert_eq!(devices_of(&server, "1001").await.len(), 1);

    // Their own: removed, the place is free, audited as the user.
    let r = post(&server, "/me/devices/remove", Some(&cookie), &body).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/me")));
    assert!(devices_of(&server, "1001").await.is_empty());
    let page = get(&server, "/me", Some(&cookie)).await.text();
    assert!(
        page.contains("0 of 4") && page.contains("No softphone activated."),
        "{page}"
    );
    let audit = kinds_and_details(&server.audit().await);
    assert!(
        audit.contains(&(
            "devices-reset".into(),
            format!("user page (1001): device {mine} removed")
        )),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_user_makes_a_login_code_for_themselves_and_no_one_else() {
    let server = Server::start("").await;
    let (cookie, csrf) = session(&server, "1001", "73915").await;
    let page = get(&server, "/me", Some(&cookie)).await.text();
    assert!(page.contains("action=\"/me/code\""), "{page}");

    // A forged extension field is ignored: the code is the session's user's.
    let r = post(
        &server,
        "/me/code",
        Some(&cookie),
        &format!("csrf={csrf}&extension=1002"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let code = secret_of(&text);
    assert!(
        code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    assert!(text.contains("Valid once, until <time"), "{text}");
    let audit = server.audit().await;
    let codes: Vec<_> = audit.iter().filter(|e| e["kind"] == "login-code").collect();
    assert_eq!(codes.len(), 1, "{audit:?}");
    assert_eq!(codes[0]["extension"], "1001");
    assert!(
        codes[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("user page (1001): one-time login code made"),
        "{audit:?}"
    );
    // Shown once: not on the page later, not in the audit trail.
    let later = get(&server, "/me", Some(&cookie)).await.text();
    assert!(!later.contains(&code));
    assert!(!serde_json::to_string(&audit).unwrap().contains(&code));

    // No token, another site, no session: no code.
    let r = post(&server, "/me/code", Some(&cookie), "extension=1001").await;
    assert_eq!(r.status, 403);
    let r = cross_site_post(&server, "/me/code", &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 403);
    let r = post(&server, "/me/code", None, &format!("csrf={csrf}")).await;
    assert_eq!(r.header("location"), Some("/me/signin"));
    let audit = server.audit().await;
    assert_eq!(
        audit.iter().filter(|e| e["kind"] == "login-code").count(),
        1
    );
}

#[tokio::test]
async fn without_self_service_a_user_gets_no_activation_link() {
    let server = Server::start("").await;
    let (cookie, csrf) = session(&server, "1001", "73915").await;
    let page = get(&server, "/me", Some(&cookie)).await.text();
    assert!(!page.contains("action=\"/me/link\""), "{page}");
    let r = post(&server, "/me/link", Some(&cookie), &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!r.text().contains("/provisioning/"));
    let audit = server.audit().await;
    assert!(
        audit.iter().all(|e| e["kind"] != "activation-link"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn with_self_service_a_user_activates_their_own_softphone() {
    let server = Server::start("[activation]\nself_service = true\n").await;
    let (cookie, csrf) = session(&server, "1001", "73915").await;
    let page = get(&server, "/me", Some(&cookie)).await.text();
    assert!(page.contains("action=\"/me/link\""), "{page}");
    let r = cross_site_post(&server, "/me/link", &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 403);
    // A forged extension field changes nothing: the link is 1001's.
    let r = post(
        &server,
        "/me/link",
        Some(&cookie),
        &format!("csrf={csrf}&extension=1002"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let src = {
        let at = text.find("<img class=\"qr\" src=\"").expect("a QR image") + 21;
        text[at..].split('"').next().unwrap().replace("&#x2f;", "/")
    };
    assert!(
        src.starts_with("/provisioning/") && src.ends_with("/qr.svg"),
        "{src}"
    );
    let img = get(&server, &src, None).await;
    assert_eq!(img.status, 200);
    assert_eq!(img.header("content-type"), Some("image/svg+xml"));
    let url = format!("http://{}{}", server.addr, src.trim_end_matches("/qr.svg"));
    let xml = support::request(server.addr, "GET", &url, &[("User-Agent", LINPHONE_UA)]).await;
    assert_eq!(xml.status, 200, "{}", xml.text());
    let xml = xml.text();
    assert!(xml.contains("sip:1001@") && !xml.contains("1002"), "{xml}");
    assert_eq!(devices_of(&server, "1001").await.len(), 1);
    assert!(devices_of(&server, "1002").await.is_empty());
    let audit = kinds_and_details(&server.audit().await);
    assert!(
        audit.iter().any(|(k, d)| k == "activation-link"
            && d.starts_with("user page (1001): activation link made")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_new_pin_or_disabling_the_user_ends_their_open_pages() {
    let server = Server::start_with(
        "[directory]\nkind = \"embedded\"\npoll_interval = \"50ms\"\n".into(),
        "",
    )
    .await;
    for (ext, pin) in [("1001", "583920"), ("1002", "604172")] {
        let body = format!("{{\"extension\": \"{ext}\", \"name\": \"U\", \"pin\": \"{pin}\"}}");
        let r = support::request_with_body(server.addr, "POST", "/api/v1/users", &body).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let (cookie, _) = session(&server, "1001", "583920").await;
    let (other, _) = session(&server, "1002", "604172").await;
    let r = support::request_with_body(server.addr, "POST", "/api/v1/users/1001/pin", "{}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The page opened with the old PIN is closed; another user's is not.
    let page = get(&server, "/me", Some(&cookie)).await;
    assert_eq!(page.status, 303, "{}", page.text());
    assert_eq!(get(&server, "/me", Some(&other)).await.status, 200);
    let r = support::request_with_body(
        server.addr,
        "PATCH",
        "/api/v1/users/1002",
        "{\"enabled\": false}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&server, "/me", Some(&other)).await.status, 303);
}
