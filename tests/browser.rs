//! The admin console and the user page in a real browser: headless Chromium through WebDriver,
//! against the real server. Each test signs in through the form and saves a screenshot of every
//! page it sees under `target/screenshots/` for review; every page has a test. A new page's
//! test is one function: start a server, `Browser::start`, `sign_in`, open the page, assert,
//! screenshot.

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::Browser;
use fantoccini::key::Key;
use support::Server;
use support::phone::{AASTRA_6737I, Phone, SNOM_D785, View, YEALINK_T46S};
use support::upstream::Upstream;

/// Signs in through the form; the session cookie is `HttpOnly` and `SameSite=Strict`, and the
/// page's script cannot read it.
#[tokio::test]
async fn signing_in_sets_a_strict_httponly_cookie() {
    let server = Server::start("").await;
    let browser = Browser::start("signin").await;

    // Without a session the console sends the browser to the sign-in page.
    browser.open(&server, "/admin").await;
    browser.wait_for("form[action='/admin/signin']").await;
    assert_eq!(browser.path().await, "/admin/signin");
    browser.screenshot("form").await;

    // A wrong password: the form again, with the error, and no session.
    browser
        .wait_for("input#password")
        .await
        .send_keys("12345678")
        .await
        .unwrap();
    browser
        .wait_for("button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let error = browser.wait_for("p.error[role=alert]").await;
    assert_eq!(error.text().await.unwrap(), "Wrong name or password.");
    assert!(browser.client.get_all_cookies().await.unwrap().is_empty());
    browser.screenshot("wrong-password").await;

    browser.sign_in(&server).await;
    browser.screenshot("desks-empty").await;
    assert!(browser.text().await.contains("Nobody is logged in."));

    let cookie = browser
        .client
        .get_named_cookie("hotdesk_admin")
        .await
        .expect("the console's session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert!(
        cookie.same_site().is_some_and(|s| s.is_strict()),
        "{cookie:?}"
    );
    assert_eq!(cookie.path(), Some("/admin"), "{cookie:?}");
    // Plain HTTP here: a Secure cookie would never be sent back.
    assert_ne!(cookie.secure(), Some(true), "{cookie:?}");
    assert_eq!(browser.js("return document.cookie").await, "");

    // Signing out ends the session on the server, not only in this browser.
    let token = cookie.value().to_owned();
    browser
        .wait_for("form.signout button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("form[action='/admin/signin']").await;
    let stale = support::request(
        server.addr,
        "GET",
        "/admin",
        &[("Cookie", &format!("hotdesk_admin={token}"))],
    )
    .await;
    assert_eq!(
        stale.status, 303,
        "the old cookie no longer opens the console"
    );
    assert_eq!(stale.header("location"), Some("/admin/signin"));
}

/// The sign-in form works without a mouse: the name has focus, Tab reaches the password and
/// Enter submits.
#[tokio::test]
async fn the_sign_in_form_works_from_the_keyboard() {
    let server = Server::start("").await;
    let browser = Browser::start("keyboard").await;
    browser.open(&server, "/admin/signin").await;
    browser.wait_for("input#name").await;

    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("name"));
    focused.send_keys(&Key::Tab.to_string()).await.unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(
        focused.attr("id").await.unwrap().as_deref(),
        Some("password")
    );
    focused
        .send_keys(&format!("{}{}", support::ADMIN_PASSWORD, Key::Enter))
        .await
        .unwrap();
    browser.wait_for("tbody#desks").await;
    assert_eq!(browser.path().await, "/admin");
    browser.screenshot("signed-in").await;
}

/// A phone's login appears on the open desks page without a reload; the console's Log out
/// removes it, and the phone's next app-key press shows the login menu again.
#[tokio::test]
async fn a_login_appears_live_and_a_forced_logout_reaches_the_phone() {
    let server = Server::start("").await;
    let browser = Browser::start("live").await;
    browser.sign_in(&server).await;
    // The live view is connected (its first event arrived) before the phone logs in.
    browser.wait_for("#live:not([hidden])").await;
    // A mark a reload would wipe.
    browser.js("window.notReloaded = true").await;

    let phone = Phone::new(server.addr, YEALINK_T46S);
    let View::Message { title, .. } = phone.login("External", "1001", "73915").await else {
        panic!("expected the login result")
    };
    assert_eq!(title, "Logged in");

    let row = browser.wait_for("tr[data-extension='1001']").await;
    assert_eq!(browser.js("return window.notReloaded === true").await, true);
    let text = row.text().await.unwrap();
    for expected in [
        "1001",
        "Ada Lovelace",
        "805ec02f3c2e",
        "yealink T46S",
        "external",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text:?}");
    }
    browser.screenshot("row-appeared").await;

    row.find(fantoccini::Locator::Css(
        "button[aria-label^='Log out 1001']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    browser.wait_gone("tr[data-extension='1001']").await;
    browser.wait_for("tr.empty").await;
    browser.screenshot("logged-out").await;
    assert!(server.logins().await.is_empty());

    // The phone is back at the start: the network choice.
    let View::Menu { items, .. } = phone.open().await else {
        panic!("expected the login menu")
    };
    let labels: Vec<&str> = items.iter().map(|(l, _)| l.as_str()).collect();
    assert!(labels.contains(&"External"), "{labels:?}");
    let audit = server.audit().await;
    assert!(
        audit.iter().any(|e| e["kind"] == "admin-logout"
            && e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("console (admin)")),
        "{audit:?}"
    );
}

/// A directory name made of markup arrives over the live view as text, never as HTML.
#[tokio::test]
async fn a_markup_name_arrives_live_as_text() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("directory.toml"),
        r#"[[user]]
extension = "1005"
name = "<b id='injected'>Eve</b> & <script>alert(1)</script>"
voicemail_pin = "40404"
sip_password = "sip-secret-1005"
"#,
    )
    .unwrap();
    let server = Server::start_in(tmp.path().to_owned(), None, String::new()).await;
    let browser = Browser::start("escaping").await;
    browser.sign_in(&server).await;
    browser.wait_for("#live:not([hidden])").await;
    let View::Message { title, .. } = Phone::new(server.addr, YEALINK_T46S)
        .login("External", "1005", "40404")
        .await
    else {
        panic!("expected the login result")
    };
    assert_eq!(title, "Logged in");
    let row = browser.wait_for("tr[data-extension='1005']").await;
    let text = row.text().await.unwrap();
    assert!(
        text.contains("<b id='injected'>Eve</b> & <script>alert(1)</script>"),
        "{text:?}"
    );
    assert_eq!(
        browser
            .js("return document.querySelectorAll('#injected, #desks script').length")
            .await,
        0
    );
    browser.screenshot("row").await;
}

/// A console form whose CSRF token was changed in the page is refused with 403 and changes
/// nothing.
#[tokio::test]
async fn a_tampered_csrf_token_is_refused_and_nothing_changes() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    phone.login("External", "1001", "73915").await;
    let browser = Browser::start("csrf").await;
    browser.sign_in(&server).await;
    browser.wait_for("tr[data-extension='1001']").await;

    let changed = browser
        .js(
            "const f = document.querySelector(\"tr[data-extension='1001'] input[name=csrf]\");
             f.value = f.value.split('').reverse().join('');
             return f.value.length > 0;",
        )
        .await;
    assert_eq!(changed, true);
    browser
        .wait_for("tr[data-extension='1001'] button[aria-label^='Log out 1001']")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("body").await;
    assert!(
        browser.text().await.contains("this form is out of date"),
        "{}",
        browser.text().await
    );
    browser.screenshot("refused").await;
    // The browser cannot show the status; the same request over a socket can.
    assert_eq!(browser.path().await, "/admin/logout");
    assert_eq!(server.logins().await.len(), 1, "the login is still there");

    browser.open(&server, "/admin").await;
    browser.wait_for("tr[data-extension='1001']").await;
    let View::Menu { title, .. } = phone.open().await else {
        panic!("logged-in menu")
    };
    assert!(title.starts_with("1001"), "{title}");
}

/// Failed PINs lock an extension; the lockouts page lists it and clears it.
#[tokio::test]
async fn the_lockouts_page_lists_and_clears_a_lockout() {
    let server = Server::start("").await;
    // Failed PINs also count against the admin password from that address (a PIN field takes
    // it too), so the phone guesses from another loopback address than the console's.
    let phone = Phone::new(server.addr, AASTRA_6737I).connecting_from("127.0.0.9");
    for pin in ["00000", "00001", "00002"] {
        phone.login("External", "1002", pin).await;
    }
    let View::Message { title, .. } = phone.login("External", "1002", "86420").await else {
        panic!("expected a message")
    };
    assert_eq!(title, "Login locked");

    let browser = Browser::start("lockouts").await;
    browser.sign_in(&server).await;
    browser.open(&server, "/admin/lockouts").await;
    browser
        .wait_for("nav a[aria-current=page][href='/admin/lockouts']")
        .await;
    let text = browser.text().await;
    assert!(text.contains("extension-from:1002@127.0.0.9"), "{text}");
    browser.screenshot("locked").await;

    browser
        .wait_for("form[action='/admin/lockouts'] input[name=all] ~ button")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("tr.empty").await;
    assert!(browser.text().await.contains("No lockouts."));
    browser.screenshot("cleared").await;

    let View::Message { title, .. } = phone.login("External", "1002", "86420").await else {
        panic!("expected a message")
    };
    assert_eq!(title, "Logged in");
}

/// The phones page lists a phone that asked for its menu, logged in or not.
#[tokio::test]
async fn the_phones_page_lists_phones_seen() {
    let server = Server::start("").await;
    Phone::new(server.addr, AASTRA_6737I).open().await;
    Phone::new(server.addr, SNOM_D785)
        .login("External", "1002", "86420")
        .await;

    let browser = Browser::start("phones").await;
    browser.sign_in(&server).await;
    browser.open(&server, "/admin/phones").await;
    browser.wait_for("tbody#phones").await;
    let rows: Vec<String> = {
        let mut out = Vec::new();
        for r in browser
            .client
            .find_all(fantoccini::Locator::Css("tbody#phones tr"))
            .await
            .unwrap()
        {
            out.push(r.text().await.unwrap());
        }
        out
    };
    assert_eq!(rows.len(), 2, "{rows:?}");
    let aastra = rows
        .iter()
        .find(|r| r.contains("6737i"))
        .expect("the Aastra");
    assert!(aastra.contains("3.2.2.6038"), "{aastra}");
    let snom = rows.iter().find(|r| r.contains("D785")).expect("the Snom");
    assert!(snom.contains("1002"), "who is logged in: {snom}");
    browser.screenshot("list").await;

    // The filter narrows the list in the page.
    browser
        .wait_for("input[data-filter=phones]")
        .await
        .send_keys("6737")
        .await
        .unwrap();
    browser
        .wait_until("[...document.querySelectorAll('#phones tr:not([hidden])')].length === 1")
        .await;
    let shown = browser
        .js("return document.querySelector('#phones tr:not([hidden])').textContent")
        .await;
    assert!(shown.as_str().unwrap().contains("6737i"), "{shown}");
    browser.screenshot("filtered").await;
}

/// The README's picture: the desks page with three phones logged in, 1280x800.
/// `make screenshot` copies it to docs/console.png.
#[tokio::test]
async fn console_screenshot_for_the_readme() {
    let server = Server::start("").await;
    let logins = [
        (YEALINK_T46S, "1001", "73915"),
        (AASTRA_6737I, "1002", "86420"),
        (SNOM_D785, "1003", support::USER_PASSWORD),
    ];
    for (ua, ext, pin) in logins {
        let View::Message { title, .. } = Phone::new(server.addr, ua)
            .login("External", ext, pin)
            .await
        else {
            panic!("expected a message")
        };
        assert_eq!(title, "Logged in", "{ext}");
    }
    let browser = Browser::start_sized("readme", 1280, 800).await;
    browser.sign_in(&server).await;
    browser.wait_for("#live:not([hidden])").await;
    let rows = browser
        .client
        .find_all(fantoccini::Locator::Css("tr[data-extension]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    browser.screenshot("console").await;
}

/// The kind of every row of the audit table, in order.
async fn audit_kinds(browser: &Browser) -> Vec<String> {
    browser
        .texts("main tbody tr:not(.empty) td:nth-child(2)")
        .await
}

/// A phone's wrong PIN and its login are both in the audit trail; the form's kind filter
/// narrows the table to the failure, and its CSV link answers with the same selection.
#[tokio::test]
async fn the_audit_page_lists_a_login_and_a_failure_and_filters_by_kind() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        phone.login("External", "1001", "13579").await.title(),
        "Login failed"
    );
    assert_eq!(
        phone.login("External", "1001", "73915").await.title(),
        "Logged in"
    );

    let browser = Browser::start("audit").await;
    browser.sign_in(&server).await;
    browser
        .wait_for("nav a[href='/admin/audit']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for("nav a[aria-current=page][href='/admin/audit']")
        .await;
    let rows = browser.texts("main tbody tr").await;
    let phone_rows: Vec<&String> = rows.iter().filter(|r| r.contains("805ec02f3c2e")).collect();
    assert_eq!(phone_rows.len(), 2, "{rows:#?}");
    let kinds = audit_kinds(&browser).await;
    for kind in ["login", "login-failed", "console-sign-in"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    assert!(
        !browser.text().await.contains("73915"),
        "no PIN on the page"
    );
    browser.screenshot("all").await;

    browser
        .wait_for("select#kind")
        .await
        .select_by_value("login-failed")
        .await
        .unwrap();
    browser
        .wait_for("form[action='/admin/audit'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_until("location.search.includes('kind=login-failed')")
        .await;
    browser
        .wait_for("select#kind option[value='login-failed'][selected]")
        .await;
    let kinds = audit_kinds(&browser).await;
    assert_eq!(kinds, ["login-failed"], "{}", browser.text().await);
    let row = browser.texts("main tbody tr").await.remove(0);
    for expected in ["1001", "805ec02f3c2e", "external"] {
        assert!(row.contains(expected), "{expected:?} in {row:?}");
    }
    browser.screenshot("failures").await;

    // The CSV link carries the same filter; fetched as the page's own script would.
    let href = browser
        .wait_for("a[download]")
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("the CSV link");
    assert!(href.starts_with("/admin/audit.csv?"), "{href}");
    assert!(href.contains("kind=login-failed"), "{href}");
    let answer = browser
        .js(
            "return fetch(document.querySelector('a[download]').href, {credentials: 'same-origin'})
               .then(r => r.text().then(body => [r.status, r.headers.get('content-type'), body]))",
        )
        .await;
    assert_eq!(answer[0], 200, "{answer}");
    assert_eq!(answer[1], "text/csv; charset=utf-8");
    let csv = answer[2].as_str().unwrap();
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines[0], "id,at,kind,mac,extension,network,source,detail");
    assert_eq!(lines.len(), 2, "only the failure: {csv}");
    assert!(
        lines[1].contains(",login-failed,805ec02f3c2e,1001,external,"),
        "{csv}"
    );
}

/// The outbox page: empty while every write-back is delivered; a write-back the PBX refused
/// shows as dead, and its Retry button delivers it once the PBX takes it.
#[tokio::test]
async fn the_outbox_page_shows_a_dead_write_back_and_retries_it() {
    let up = Upstream::start().await;
    up.user("1001", "Ada Lovelace", Some("73915"));
    let writeback = format!(
        "[writeback]\nkind = \"devices\"\nmax_backoff = \"1s\"\n[writeback.http]\nurl = \"http://{}/hotdesk/v1\"\nauth = \"none\"\nrequest_timeout = \"400ms\"\nbreaker_failures = 100\nbreaker_cooldown = \"1s\"\n",
        up.addr
    );
    let server = Server::start_with(support::http_directory(&up.url()), &writeback).await;
    let browser = Browser::start("outbox").await;
    browser.sign_in(&server).await;
    browser.open(&server, "/admin/outbox").await;
    browser
        .wait_for("nav a[aria-current=page][href='/admin/outbox']")
        .await;
    let text = browser.text().await;
    assert!(
        text.contains("Nothing waiting: every write-back was delivered."),
        "{text}"
    );
    assert!(
        text.contains("/hotdesk/v1"),
        "the write-back target: {text}"
    );
    browser.screenshot("empty").await;

    up.write_status(Some(422));
    let View::Message { title, .. } = Phone::new(server.addr, YEALINK_T46S)
        .login("Internal", "1001", "73915")
        .await
    else {
        panic!("expected the login result")
    };
    assert_eq!(title, "Logged in");
    browser
        .open_until(
            &server,
            "/admin/outbox",
            "document.querySelector('main tbody span.error')?.textContent === 'dead'",
        )
        .await;
    let row = browser.texts("main tbody tr").await.remove(0);
    for expected in ["dead", "805ec02f3c2e", "PBX answered 422"] {
        assert!(row.contains(expected), "{expected:?} in {row:?}");
    }
    browser.screenshot("dead").await;

    up.write_status(None);
    browser
        .wait_for("button[aria-label^='Retry write-back']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .open_until(
            &server,
            "/admin/outbox",
            "document.querySelector('tr.empty')",
        )
        .await;
    assert!(
        up.writes().iter().any(|w| w.0 == "PUT"),
        "{:?}",
        up.writes()
    );
    browser.screenshot("retried").await;
    let audit = server.audit().await;
    assert!(
        audit.iter().any(|e| e["kind"] == "outbox-retried"
            && e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("console (admin)")),
        "{audit:?}"
    );
}

/// The preview form: choosing Yealink T46S draws that phone's screens next to the XML it
/// gets, shown as text.
#[tokio::test]
async fn the_preview_page_draws_a_chosen_models_screens_beside_its_xml() {
    let server = Server::start("").await;
    let browser = Browser::start("preview").await;
    browser.sign_in(&server).await;
    browser.open(&server, "/admin/preview").await;
    browser
        .wait_for("nav a[aria-current=page][href='/admin/preview']")
        .await;
    browser.wait_for("section.screen pre").await;
    // Another vendor is the default, so Yealink's XML appears only through the form.
    assert_ne!(
        browser
            .js("return document.querySelector('select#vendor').value")
            .await,
        "yealink"
    );
    browser.screenshot("default").await;

    browser
        .wait_for("select#vendor")
        .await
        .select_by_value("yealink")
        .await
        .unwrap();
    let model = browser.wait_for("input#model").await;
    model.clear().await.unwrap();
    model.send_keys("T46S").await.unwrap();
    browser
        .wait_for("form[action='/admin/preview'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_until(
            "location.search.includes('vendor=yealink') && location.search.includes('model=T46S')",
        )
        .await;
    browser.wait_for("section.screen").await;
    let phone = browser.texts("dl.kv dd").await.remove(0);
    assert!(phone.starts_with("yealink T46S"), "{phone}");

    let xml = browser.texts("section.screen pre").await;
    assert!(xml.len() >= 3, "{xml:?}");
    assert!(
        xml.iter().all(|x| x.contains("<YealinkIPPhone")),
        "{xml:#?}"
    );
    assert!(
        xml.iter()
            .any(|x| x.contains("<YealinkIPPhoneInputScreen type=\"string\"")),
        "{xml:#?}"
    );
    // The XML is text in the page, never elements.
    assert_eq!(
        browser
            .js("return document.querySelectorAll('pre *').length + document.getElementsByTagName('YealinkIPPhoneTextMenu').length")
            .await,
        0
    );
    // The drawings: the network menu with a selected item, and the T46S's one-form login
    // whose Submit is softkey 1.
    let drawn = browser.texts("section.screen .display").await;
    assert_eq!(drawn.len(), xml.len());
    assert!(
        drawn
            .iter()
            .any(|d| d.contains("External") && d.contains("Internal")),
        "{drawn:#?}"
    );
    assert_eq!(
        browser
            .js("return document.querySelectorAll('.display li.sel').length > 0")
            .await,
        true
    );
    assert!(drawn.iter().any(|d| d.contains("1: Submit")), "{drawn:#?}");
    browser.screenshot("yealink-t46s").await;
}

/// The configuration page shows the file's settings and none of its secrets.
#[tokio::test]
async fn the_config_page_shows_settings_with_secrets_masked() {
    let server = Server::start("").await;
    let browser = Browser::start("config").await;
    browser.sign_in(&server).await;
    browser.open(&server, "/admin/config").await;
    browser
        .wait_for("nav a[aria-current=page][href='/admin/config']")
        .await;
    let rows = browser.texts("main tbody tr").await;
    let row = |key: &str| {
        rows.iter()
            .find(|r| r.split('\t').next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in {rows:#?}"))
            .clone()
    };
    assert!(row("directory.poll_interval").contains("50ms"));
    assert!(row("directory.file").contains("directory.toml"));
    assert!(row("networks.external.sip_server").contains("pbx.example.com"));
    assert!(row("login.admin_password_hash").contains("(masked)"));
    assert!(row("admin.keys[0].hash").contains("(masked)"));
    let html = browser.client.source().await.unwrap();
    for secret in [
        support::admin_hash_for_tests(),
        support::API_KEY,
        &hotdesk::auth::hash_api_key(support::API_KEY),
        support::USER_PASSWORD,
        support::ADMIN_PASSWORD,
    ] {
        assert!(!html.contains(secret), "{secret} is on the config page");
    }
    browser.screenshot("masked").await;
}

/// The user page in the browser: a user signs in with extension and PIN, sees the desk a
/// phone logged them in at, logs it out, and the phone is back at the network choice.
#[tokio::test]
async fn a_user_logs_out_their_desk_from_the_user_page() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        phone.login("External", "1001", "73915").await.title(),
        "Logged in"
    );

    let browser = Browser::start("me").await;
    browser.open(&server, "/me").await;
    browser.wait_for("form[action='/me/signin']").await;
    assert_eq!(browser.path().await, "/me/signin");
    browser.screenshot("signin").await;
    browser
        .wait_for("input#extension")
        .await
        .send_keys("1001")
        .await
        .unwrap();
    browser
        .wait_for("input#pin")
        .await
        .send_keys("73915")
        .await
        .unwrap();
    browser
        .wait_for("form[action='/me/signin'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let logout = "button[aria-label='Log out desk 805ec02f3c2e']";
    browser.wait_for(logout).await;
    assert_eq!(browser.path().await, "/me");
    let desk = browser
        .texts("main > div.table:first-of-type tbody tr")
        .await;
    assert_eq!(desk.len(), 1, "{desk:?}");
    for expected in ["805ec02f3c2e", "External", "Log out this desk"] {
        assert!(desk[0].contains(expected), "{expected:?} in {desk:?}");
    }
    // The recent logins, from the audit trail.
    let history = browser
        .texts("main > div.table:nth-of-type(2) tbody tr")
        .await;
    assert!(
        history
            .iter()
            .any(|r| r.contains("805ec02f3c2e") && r.contains("voicemail-pin")),
        "{history:?}"
    );
    assert!(
        !browser.text().await.contains("73915"),
        "no PIN on the page"
    );
    browser.screenshot("desk").await;

    let cookie = browser
        .client
        .get_named_cookie("hotdesk_me")
        .await
        .expect("the user page's session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert!(
        cookie.same_site().is_some_and(|s| s.is_strict()),
        "{cookie:?}"
    );
    assert_eq!(cookie.path(), Some("/me"), "{cookie:?}");
    assert_eq!(browser.js("return document.cookie").await, "");

    browser.wait_for(logout).await.click().await.unwrap();
    browser.wait_gone(logout).await;
    browser.wait_for("tr.empty").await;
    assert!(
        browser
            .text()
            .await
            .contains("You are not logged in at any desk."),
        "{}",
        browser.text().await
    );
    browser.screenshot("logged-out").await;
    assert!(server.logins().await.is_empty());

    let View::Menu { items, .. } = phone.open().await else {
        panic!("expected the network menu")
    };
    let labels: Vec<&str> = items.iter().map(|(l, _)| l.as_str()).collect();
    assert!(labels.contains(&"External"), "{labels:?}");
}

/// The Users page: add a user, give them a SIP secret (shown once), make an activation link;
/// its QR code image loads from the link's own address.
#[tokio::test]
async fn the_users_page_adds_a_user_and_shows_an_activation_links_qr_code() {
    let server = Server::start_with(
        "[directory]\nkind = \"embedded\"\npoll_interval = \"50ms\"\n".into(),
        "",
    )
    .await;
    let browser = Browser::start("users").await;
    browser.sign_in(&server).await;
    browser
        .wait_for("nav a[href='/admin/users']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for("nav a[aria-current=page][href='/admin/users']")
        .await;
    assert!(browser.text().await.contains("No users yet."));
    browser.screenshot("empty").await;

    for (css, text) in [
        ("input#new-extension", "2001"),
        ("input#new-name", "Ada <b>Lovelace</b>"),
    ] {
        browser.wait_for(css).await.send_keys(text).await.unwrap();
    }
    browser
        .wait_for("form[method=post][action='/admin/users'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("form[action$='/sip-secret']").await;
    assert_eq!(browser.path().await, "/admin/users/2001");
    assert!(browser.text().await.contains("Ada <b>Lovelace</b> (2001)"));
    browser.screenshot("user").await;

    browser
        .wait_for("form[action$='/sip-secret'] button")
        .await
        .click()
        .await
        .unwrap();
    let secret = browser
        .wait_for("output.secret")
        .await
        .text()
        .await
        .unwrap();
    assert!(secret.len() >= 16, "{secret}");
    browser.screenshot("sip-secret").await;
    browser.open(&server, "/admin/users/2001").await;
    assert!(!browser.text().await.contains(&secret), "shown once");

    browser
        .wait_for("form[action$='/link'] button")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("img.qr").await;
    browser
        .wait_until("document.querySelector('img.qr').complete && document.querySelector('img.qr').naturalWidth > 0")
        .await;
    let link = browser.wait_for("code.link").await.text().await.unwrap();
    assert!(link.starts_with(&server.url("/provisioning/")), "{link}");
    browser.screenshot("link").await;

    browser.open(&server, "/admin/users").await;
    let rows = browser.texts("tbody#users tr").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("2001") && rows[0].contains("0 of 4"),
        "{rows:?}"
    );
    browser.screenshot("list").await;
}
