//! The admin console over real sockets, as a browser would use it: sign-in and its limits,
//! cookie flags, CSRF, the live desk view (server-sent events), force logout, lockouts.

mod support;

use std::time::Duration;

use support::phone::*;
use support::{ADMIN_PASSWORD, Response, Server, post_form, request, request_from};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Signs in as `admin`; returns the `name=value` cookie pair.
async fn sign_in(addr: std::net::SocketAddr) -> String {
    let r = post_form(
        addr,
        "/admin/signin",
        None,
        &format!("name=admin&password={ADMIN_PASSWORD}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/admin"));
    let cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    // Plain HTTP: the cookie cannot be Secure (the browser would drop it).
    assert!(!cookie.contains("Secure"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

async fn get(addr: std::net::SocketAddr, path: &str, cookie: &str) -> Response {
    request(addr, "GET", path, &[("Cookie", cookie)]).await
}

fn csrf(page: &str) -> String {
    support::csrf_of(page)
}

#[tokio::test]
async fn pages_need_a_session_and_sign_in_sets_a_strict_cookie() {
    let server = Server::start("").await;
    let addr = server.addr;
    for path in ["/admin", "/admin/lockouts", "/admin/phones"] {
        let r = request(addr, "GET", path, &[]).await;
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/admin/signin"));
    }
    // A made-up cookie is no session.
    let r = get(addr, "/admin", "hotdesk_admin=forged").await;
    assert_eq!(r.status, 303);
    let events = get(addr, "/admin/events", "hotdesk_admin=forged").await;
    assert_eq!(events.status, 401);

    let cookie = sign_in(addr).await;
    let page = get(addr, "/admin", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("Nobody is logged in."),
        "{}",
        page.text()
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    // The sign-in is in the audit trail, without the password.
    let audit = server.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "console-sign-in"
                && e["detail"].as_str().unwrap().contains("admin"))
    );
    assert!(!format!("{audit:?}").contains(ADMIN_PASSWORD));

    // Signing out needs the form's token, and ends the session for good.
    let token = csrf(&page.text());
    let r = post_form(addr, "/admin/signout", Some(&cookie), "csrf=wrong").await;
    assert_eq!(r.status, 403);
    assert_eq!(get(addr, "/admin", &cookie).await.status, 200);
    let r = post_form(
        addr,
        "/admin/signout",
        Some(&cookie),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(get(addr, "/admin", &cookie).await.status, 303);
}

#[tokio::test]
async fn wrong_passwords_are_limited_audited_and_name_nothing() {
    // admin_max_failures defaults to 3 per source.
    let server = Server::start("").await;
    let addr = server.addr;
    for name in ["admin", "nobody", "admin"] {
        let r = post_form(
            addr,
            "/admin/signin",
            None,
            &format!("name={name}&password=wrong"),
        )
        .await;
        assert_eq!(r.status, 401, "{name}");
        // The same words whether the name exists or not.
        assert!(r.text().contains("Wrong name or password."), "{}", r.text());
    }
    // Locked now, even with the right password.
    let r = post_form(
        addr,
        "/admin/signin",
        None,
        &format!("name=admin&password={ADMIN_PASSWORD}"),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text().contains("Too many failed sign-ins"),
        "{}",
        r.text()
    );
    assert!(r.header("set-cookie").is_none());
    let failed = server
        .audit()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "console-sign-in-failed")
        .count();
    assert_eq!(failed, 3);
    // The lockout is the admin API's too, and clearing it lets the admin in again.
    let locks = server.admin("GET", "/api/v1/lockouts").await;
    assert!(
        locks.text().contains("admin-from:127.0.0.1"),
        "{}",
        locks.text()
    );
    let r = server.admin("DELETE", "/api/v1/lockouts?all=true").await;
    assert!(r.status < 300, "{}", r.text());
    sign_in(addr).await;
}

#[tokio::test]
async fn a_named_account_signs_in_and_its_actions_carry_its_name() {
    let hash = hotdesk::auth::hash_password("correct horse").unwrap();
    let server = Server::start(&format!(
        "[[admin.accounts]]\nname = \"ops-alice\"\npassword_hash = \"{hash}\"\n"
    ))
    .await;
    let addr = server.addr;
    let r = post_form(
        addr,
        "/admin/signin",
        None,
        "name=ops-alice&password=correct+horse",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = get(addr, "/admin", &cookie).await;
    assert!(page.text().contains("ops-alice"));
    // Someone else's password is not alice's.
    let r = post_form(
        addr,
        "/admin/signin",
        None,
        &format!("name=ops-alice&password={ADMIN_PASSWORD}"),
    )
    .await;
    assert_eq!(r.status, 401);
}

/// Reads an event stream until `want` shows up in it.
async fn until_in_stream(s: &mut TcpStream, seen: &mut Vec<u8>, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(want) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{want:?} not in {}", String::from_utf8_lossy(seen)))
            .unwrap();
        assert!(n > 0, "stream closed before {want:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn the_desk_view_follows_logins_live_and_force_logout_frees_the_phone() {
    // The phone's SIP stack, for the check-sync NOTIFY a remote logout sends.
    let sip = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sip.local_addr().unwrap().port();
    let server = Server::start(&format!("[reload.sip]\nport = {port}\n")).await;
    let addr = server.addr;
    let cookie = sign_in(addr).await;

    // The live view, as the page's EventSource opens it.
    let mut events = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /admin/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n"
    );
    events.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    until_in_stream(&mut events, &mut seen, "Nobody is logged in.").await;
    assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));

    // A phone logs in: its row arrives on the open stream, without asking.
    let phone = Phone::new(addr, YEALINK_T46S);
    phone.login("External", "1001", "73915").await;
    seen.clear();
    until_in_stream(&mut events, &mut seen, "event: desks").await;
    until_in_stream(&mut events, &mut seen, "805ec02f3c2e").await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.contains("Ada Lovelace"), "{text}");

    // The page shows it too; a logout without the page's token changes nothing.
    let page = get(addr, "/admin", &cookie).await.text();
    assert!(page.contains("<td>1001</td>"), "{page}");
    let token = csrf(&page);
    for body in ["mac=805ec02f3c2e", "mac=805ec02f3c2e&csrf=0000"] {
        let r = post_form(addr, "/admin/logout", Some(&cookie), body).await;
        assert_eq!(r.status, 403, "{body}");
    }
    assert_eq!(server.logins().await.len(), 1);
    // Another session's token is not this one's.
    let other = sign_in(addr).await;
    let r = post_form(
        addr,
        "/admin/logout",
        Some(&other),
        &format!("mac=805ec02f3c2e&csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 403);

    // With it, the desk is free: the stream says so, and the phone's next /app is the login.
    let r = post_form(
        addr,
        "/admin/logout",
        Some(&cookie),
        &format!("mac=805ec02f3c2e&identity=0&csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    // The Yealink is told to load its (now base) configuration at once.
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sip.recv_from(&mut buf))
        .await
        .expect("a NOTIFY after the remote logout")
        .unwrap();
    let notify = String::from_utf8_lossy(&buf[..n]);
    assert!(
        notify.starts_with("NOTIFY sip:") && notify.contains("Event: check-sync"),
        "{notify}"
    );
    seen.clear();
    until_in_stream(&mut events, &mut seen, "Nobody is logged in.").await;
    assert!(server.logins().await.is_empty());
    match phone.open().await {
        View::Menu { items, .. } => {
            assert!(items.iter().any(|(l, _)| l == "External"), "{items:?}")
        }
        other => panic!("expected the network menu, got {other:?}"),
    }
    let audit = server.audit().await;
    assert!(
        audit.iter().any(|e| e["kind"] == "admin-logout"
            && e["detail"].as_str().unwrap().contains("console (admin)")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn lockouts_and_phones_are_listed_and_a_lockout_is_cleared_with_the_token() {
    let server = Server::start("").await;
    let addr = server.addr;
    // A phone that guesses wrong three times locks 1002 for its address. (Not the console's
    // address: those guesses also spend that address's admin-password budget, which the
    // console's sign-in shares.)
    let phone = Phone::new(addr, AASTRA_6737I).connecting_from("127.0.0.3");
    for _ in 0..3 {
        phone.login("External", "1002", "11111").await;
    }
    let cookie = sign_in(addr).await;
    let page = get(addr, "/admin/lockouts", &cookie).await.text();
    assert!(page.contains("extension-from:1002@127.0.0.3"), "{page}");
    let phones = get(addr, "/admin/phones", &cookie).await.text();
    assert!(
        phones.contains("00085d30a6ce") && phones.contains("6737i"),
        "{phones}"
    );
    assert!(phones.contains("3.2.2.6038"), "{phones}");

    let token = csrf(&page);
    let r = post_form(
        addr,
        "/admin/lockouts",
        Some(&cookie),
        "subject=extension-from%3A1002%40127.0.0.3&csrf=nope",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post_form(
        addr,
        "/admin/lockouts",
        Some(&cookie),
        &format!("subject=extension-from%3A1002%40127.0.0.3&csrf={token}"),
    )
    .await;
    assert_eq!(r.status, 303);
    let page = get(addr, "/admin/lockouts", &cookie).await.text();
    assert!(!page.contains("extension-from:1002@"), "{page}");
    let audit = server.audit().await;
    assert!(audit.iter().any(|e| e["kind"] == "lockout-cleared"
        && e["detail"].as_str().unwrap().contains("console (admin)")));
}

#[tokio::test]
async fn the_console_is_behind_the_admin_allow_list() {
    // Admin from 127.0.0.1 only; phones (127.0.0.0/8) may connect from 127.0.0.2.
    let addr =
        support::start_edited(|t| t.replace("[admin]\n", "[admin]\nallow = [\"127.0.0.1/32\"]\n"))
            .await;
    let from = std::net::Ipv4Addr::new(127, 0, 0, 2).into();
    for path in ["/admin", "/admin/signin", "/admin/static/console.js"] {
        let r = request_from(from, addr, "GET", path, &[]).await;
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.text().contains("<form"), "{path}");
    }
    let r = request_from(from, addr, "POST", "/admin/signin", &[]).await;
    assert_eq!(r.status, 403);
    let r = request(addr, "GET", "/admin/signin", &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn hostile_text_is_escaped_in_pages_and_events() {
    let server = Server::start("").await;
    let addr = server.addr;
    // 1004's name is `Zoë "O'Neil" <&> \u{7} 🦀`.
    Phone::new(addr, YEALINK_T46S)
        .login("External", "1004", "55117")
        .await;
    let cookie = sign_in(addr).await;
    let page = get(addr, "/admin", &cookie).await.text();
    assert!(page.contains("&lt;&amp;&gt;"), "{page}");
    assert!(!page.contains("<&>"), "{page}");
    // A name tried at sign-in is shown nowhere as markup.
    let r = post_form(
        addr,
        "/admin/signin",
        None,
        "name=%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=x",
    )
    .await;
    assert!(!r.text().contains("<script>"), "{}", r.text());
}
