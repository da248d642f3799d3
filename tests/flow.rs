//! End to end: the real server on 127.0.0.1:0, driven as each vendor's phone would.

mod support;

use support::phone::*;
use support::{ADMIN_PASSWORD, Server, USER_PASSWORD, answer_notify, request};
use tokio::net::UdpSocket;

/// The provisioning file name each test phone asks for.
fn file_of(vendor: &str, mac: &str) -> String {
    match vendor {
        "aastra" => format!("/provision/{}.cfg", mac.to_uppercase()),
        "yealink" => format!("/provision/{mac}.cfg"),
        "htek" | "sangoma" => format!("/provision/cfg{mac}.xml"),
        _ => format!("/provision/{mac}.xml"),
    }
}

fn message(view: &View) -> (&str, &str) {
    match view {
        View::Message { title, text, .. } => (title, text),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Login, check the admin API, apply (the Aastra push, or a check-sync NOTIFY that the phone
/// answers), fetch the new file, log out, apply: once per vendor and input style.
#[tokio::test]
async fn every_vendor_logs_in_and_out() {
    let sip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sip.local_addr().unwrap().port();
    let server = Server::start(&format!("[reload.sip]\nport = {port}\n")).await;
    let phones = [
        (
            Phone::new(server.addr, AASTRA_6737I),
            "00085d30a6ce",
            "aastra",
            "6737i",
        ),
        (
            Phone::new(server.addr, AASTRA_6731I),
            "00085d237429",
            "aastra",
            "6731i",
        ),
        (
            Phone::new(server.addr, MITEL_6930),
            "1400e91edb52",
            "aastra",
            "6930",
        ),
        (
            Phone::new(server.addr, YEALINK_T46S),
            "805ec02f3c2e",
            "yealink",
            "T46S",
        ),
        (
            Phone::new(server.addr, YEALINK_T21P),
            "0015654c4c26",
            "yealink",
            "T21P_E2",
        ),
        (
            Phone::new(server.addr, HTEK_UC903),
            "001fc11c22a9",
            "htek",
            "UC903",
        ),
        (
            Phone::new(server.addr, SANGOMA_S500).with_query("mac=001fc1aabbcc"),
            "001fc1aabbcc",
            "sangoma",
            "S500",
        ),
        (
            Phone::new(server.addr, SNOM_D785),
            "000413922d24",
            "snom",
            "D785",
        ),
        (
            Phone::new(server.addr, SNOM_320_OLD).with_query("mac=000413aabbcc"),
            "000413aabbcc",
            "snom",
            "320",
        ),
    ];
    for (i, (phone, mac, vendor, model)) in phones.iter().enumerate() {
        // Each phone logs in a different user so the exclusive policy does not interfere.
        let (ext, pin) = [("1001", "73915"), ("1002", "86420")][i % 2];
        let done = phone.login("Internal", ext, pin).await;
        let (title, text) = message(&done);
        assert_eq!(title, "Logged in", "{vendor} {model}: {text}");
        assert!(text.contains(ext), "{text}");

        let logins = server.logins().await;
        let row = logins
            .iter()
            .find(|l| l["mac"] == *mac)
            .unwrap_or_else(|| panic!("{mac} not in {logins:?}"));
        assert_eq!(row["extension"], ext);
        assert_eq!(row["vendor"], *vendor);
        assert_eq!(row["model"], *model);
        assert_eq!(row["network"], "internal");
        assert!(row["since"].as_str().unwrap().contains('T'), "RFC 3339");

        // OK leads to the apply step: the phone reloads.
        let View::Execute { commands } = phone.ok(&done).await else {
            panic!("apply is an Execute")
        };
        // Aastra firmware with dynamic SIP takes the new line without a reboot.
        // The push link carries the grant this apply issued (a fresh token each time).
        let push = format!("http://{}/app/push?t=", server.addr);
        if *vendor == "aastra" {
            assert!(
                commands.len() == 1 && commands[0].starts_with(&push),
                "{commands:?}"
            );
        }
        if *vendor == "aastra" {
            // The push: an Execute that fetches each page of the phone's own file.
            let View::Execute { commands: pages } = phone.go(&commands[0]).await else {
                panic!("push")
            };
            assert!(!pages.is_empty(), "{pages:?}");
            let page = phone.fetch(&pages[0]).await;
            assert!(page.text().contains("AastraIPPhoneConfiguration"));
        } else {
            // Nothing in the apply screen: hotdesk sends the documented check-sync.
            assert!(commands.is_empty(), "{vendor} {model}: {commands:?}");
            let notify = answer_notify(&sip).await;
            assert!(notify.starts_with("NOTIFY sip:"), "{notify}");
            assert!(notify.contains("Event: check-sync"), "{notify}");
            // The phone answers by fetching its new file.
            let file = phone.fetch(&file_of(vendor, mac)).await;
            assert_eq!(file.status, 200, "{vendor} {model}");
            assert!(file.text().contains(&format!("sip-secret-{ext}")));
        }
        let row = server
            .logins()
            .await
            .into_iter()
            .find(|l| l["mac"] == *mac)
            .unwrap();
        assert_eq!(row["applied"], true, "{vendor} {model}: {row}");
        if *vendor != "aastra" {
            // Recorded once the answer is in: wait for it (bounded), not for a fixed time.
            let mut result = serde_json::Value::Null;
            for _ in 0..200 {
                let rows = server.logins().await;
                result = rows.iter().find(|l| l["mac"] == *mac).unwrap()["reload_result"].clone();
                if !result.is_null() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(result, "sip 200 OK", "{vendor} {model}");
        }

        // The app key now shows who is logged in, with Logout.
        let View::Menu { title, items } = phone.open().await else {
            panic!("logged-in menu")
        };
        // Snom phones list identities: "Log off <ext> <name>".
        let logout_label = if *vendor == "snom" {
            assert_eq!(title, "Hot desk: 1 user");
            format!("Log off {ext} ")
        } else {
            assert!(title.starts_with(ext), "{title}");
            "Log out".to_owned()
        };
        let (_, logout) = items
            .iter()
            .find(|(l, _)| l.starts_with(&logout_label))
            .unwrap()
            .clone();
        let bye = phone.go(&logout).await;
        assert_eq!(message(&bye).0, "Logged out");
        let View::Execute { commands } = phone.ok(&bye).await else {
            panic!("apply")
        };
        if *vendor == "aastra" {
            assert!(
                commands.last().is_some_and(|c| c.starts_with(&push)),
                "{commands:?}"
            );
        }
        let want: &[&str] = match *vendor {
            "aastra" => &[
                "Command: ClearCallersList",
                "Command: ClearDirectory",
                "Command: ClearRedialList",
                commands[3].as_str(),
            ],
            // Fragments are documented for Snom firmware 10 only (README S2).
            "snom" if *model == "D785" => &["calllistclear", "unregister=-1"],
            _ => &[],
        };
        assert_eq!(commands, want, "{vendor} {model}");
        if *vendor != "aastra" {
            assert!(answer_notify(&sip).await.contains("Event: check-sync"));
            let file = phone.fetch(&file_of(vendor, mac)).await;
            assert!(
                !file.text().contains("sip-secret"),
                "back to the base profile"
            );
        }
        assert!(server.logins().await.iter().all(|l| l["mac"] != *mac));
    }
}

#[tokio::test]
async fn the_apply_link_works_once() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, AASTRA_6737I);
    let done = phone.login("Internal", "1001", "73915").await;
    let View::Message {
        next: Some(apply), ..
    } = &done
    else {
        panic!()
    };
    let View::Execute { commands } = phone.go(apply).await else {
        panic!()
    };
    let push = format!("http://{}/app/push?t=", server.addr);
    assert!(
        commands.len() == 1 && commands[0].starts_with(&push),
        "{commands:?}"
    );
    let View::Execute { commands } = phone.go(apply).await else {
        panic!()
    };
    assert!(commands.is_empty(), "a replayed apply link does nothing");
    // Another phone cannot use it either.
    let other = Phone::new(server.addr, AASTRA_6731I);
    let View::Execute { commands } = other.go(apply).await else {
        panic!()
    };
    assert!(commands.is_empty());
}

#[tokio::test]
async fn both_networks_and_the_cidr_default() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    // The test client comes from 127.0.0.1, which is in the external network's CIDRs.
    let View::Menu { items, title } = phone.open().await else {
        panic!()
    };
    assert_eq!(title, "Hot desk: log in via");
    assert_eq!(
        items.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        ["Internal", "External", "Log in with a code"]
    );
    let r = phone.fetch("/app").await;
    assert!(r.text().contains("defaultIndex=\"2\""), "{}", r.text());

    message(&phone.login("External", "1001", "73915").await);
    assert_eq!(server.logins().await[0]["network"], "external");
    let snom = Phone::new(server.addr, SNOM_D785);
    message(&snom.login("Internal", "1002", "86420").await);
    let logins = server.logins().await;
    assert!(
        logins
            .iter()
            .any(|l| l["extension"] == "1002" && l["network"] == "internal")
    );
}

#[tokio::test]
async fn one_network_skips_the_choice() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("directory.toml"), support::DIRECTORY).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Without the code item there is nothing to choose.
    let config = format!(
        "listen = \"127.0.0.1:0\"\nbase_url = \"http://{addr}\"\n[directory]\nfile = \"{d}/directory.toml\"\n[store]\npath = \"{d}/s.sqlite\"\n[networks.office]\nlabel = \"Office\"\nsip_server = \"10.1.1.1\"\n[activation]\nphone_codes = false\n",
        d = tmp.path().display()
    );
    let config = hotdesk::config::Config::parse(&config, std::path::Path::new("t.toml")).unwrap();
    tokio::spawn(hotdesk::run(config, listener, std::future::pending()));
    let phone = Phone::new(addr, AASTRA_6737I);
    let View::Input { params, url, .. } = phone.open().await else {
        panic!("straight to credentials")
    };
    assert_eq!(params, ["ext", "pin"]);
    assert!(url.contains("net=office"), "{url}");
    assert_eq!(
        message(&phone.login("Office", "1001", "73915").await).0,
        "Logged in"
    );
}

#[tokio::test]
async fn one_network_with_codes_offers_the_network_and_the_code() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("directory.toml"), support::DIRECTORY).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\nbase_url = \"http://{addr}\"\n[directory]\nfile = \"{d}/directory.toml\"\n[store]\npath = \"{d}/s.sqlite\"\n[networks.office]\nlabel = \"Office\"\nsip_server = \"10.1.1.1\"\n",
        d = tmp.path().display()
    );
    let config = hotdesk::config::Config::parse(&config, std::path::Path::new("t.toml")).unwrap();
    tokio::spawn(hotdesk::run(config, listener, std::future::pending()));
    let phone = Phone::new(addr, AASTRA_6737I);
    let View::Menu { items, .. } = phone.open().await else {
        panic!("a menu: the network or a code")
    };
    let labels: Vec<_> = items.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["Office", "Log in with a code"]);
    assert!(items[1].1.contains("net=office") && items[1].1.contains("by=code"));
    assert_eq!(
        message(&phone.login("Office", "1001", "73915").await).0,
        "Logged in"
    );
}

#[tokio::test]
async fn credential_tiers() {
    let server = Server::start("").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    // The user password works only for a user without a voicemail PIN.
    assert_eq!(
        message(&a.login("Internal", "1003", USER_PASSWORD).await).0,
        "Logged in"
    );
    let b = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        message(&b.login("Internal", "1001", USER_PASSWORD).await).0,
        "Login failed"
    );
    // The admin password logs in any existing extension, but not an unknown one.
    assert_eq!(
        message(&b.login("Internal", "1001", ADMIN_PASSWORD).await).0,
        "Logged in"
    );
    let c = Phone::new(server.addr, HTEK_UC903);
    assert_eq!(
        message(&c.login("Internal", "4040", ADMIN_PASSWORD).await).0,
        "Login failed"
    );
    let audit = server.audit().await;
    let details: Vec<&str> = audit
        .iter()
        .filter(|e| e["kind"] == "login")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.contains(&"user-password") && details.contains(&"admin-password"),
        "{details:?}"
    );
}

#[tokio::test]
async fn wrong_pin_and_unknown_extension_look_the_same_then_lock_out() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, AASTRA_6737I);
    let wrong_pin = phone.login("Internal", "1001", "00000").await;
    let (title, text) = message(&wrong_pin);
    assert_eq!(
        (title, text),
        ("Login failed", "Wrong extension or PIN, 2 tries left.")
    );
    // Retry leads back to the credential screen.
    assert!(matches!(phone.ok(&wrong_pin).await, View::Input { .. }));

    let other = Phone::new(server.addr, YEALINK_T46S);
    let unknown = other.login("Internal", "4040", "00000").await;
    assert_eq!(message(&unknown).1, "Wrong extension or PIN, 2 tries left.");

    assert_eq!(
        message(&phone.login("Internal", "1001", "00001").await).1,
        "Wrong extension or PIN, 1 try left."
    );
    let locked = phone.login("Internal", "1001", "00002").await;
    assert_eq!(message(&locked).0, "Login locked");
    assert!(
        message(&locked).1.contains("Try again in 15 minutes"),
        "{locked:?}"
    );
    // Now even the right PIN is refused, for this extension from any phone ...
    let third = Phone::new(server.addr, SNOM_D785);
    assert_eq!(
        message(&third.login("Internal", "1001", "73915").await).0,
        "Login locked"
    );
    // ... and from this phone for any extension.
    assert_eq!(
        message(&phone.login("Internal", "1002", "86420").await).0,
        "Login locked"
    );
    // Other phones and extensions are unaffected.
    assert_eq!(
        message(&third.login("Internal", "1002", "86420").await).0,
        "Logged in"
    );
    let kinds: Vec<String> = server
        .audit()
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains(&"locked-out".to_owned()) && kinds.contains(&"login-failed".to_owned()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn exclusive_login_takes_over_the_other_phone() {
    let server = Server::start("").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    let b = Phone::new(server.addr, YEALINK_T46S);
    message(&a.login("Internal", "1001", "73915").await);
    message(&b.login("Internal", "1001", "73915").await);
    let logins = server.logins().await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0]["mac"], "805ec02f3c2e");
    // Phone A is back to the login screens.
    assert!(
        matches!(a.open().await, View::Menu { ref title, .. } if title == "Hot desk: log in via")
    );
    let audit = server.audit().await;
    let takeover = audit
        .iter()
        .find(|e| e["kind"] == "takeover")
        .expect("audited");
    assert_eq!(takeover["mac"], "00085d30a6ce");
}

#[tokio::test]
async fn a_new_user_on_a_logged_in_phone_replaces_the_old_one_and_wipes_lists() {
    let server = Server::start("").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    message(&a.login("Internal", "1001", "73915").await);
    let View::Menu { items, .. } = a.open().await else {
        panic!()
    };
    let (_, switch) = items
        .iter()
        .find(|(l, _)| l == "Log in as someone else")
        .unwrap()
        .clone();
    let View::Menu { items, .. } = a.go(&switch).await else {
        panic!("network choice")
    };
    let form = a.go(&items[0].1).await;
    let done = a.submit(&form, &[("ext", "1002"), ("pin", "86420")]).await;
    let View::Execute { commands } = a.ok(&done).await else {
        panic!()
    };
    assert_eq!(commands[0], "Command: ClearCallersList");
    let logins = server.logins().await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0]["extension"], "1002");
    // The entry screen is the new user's menu, not the one made for the old login.
    let View::Menu { title, items } = a.open().await else {
        panic!()
    };
    assert!(title.starts_with("1002 "), "{title}");
    // And after a logout, the login menu again.
    let (_, logout) = items.iter().find(|(l, _)| l == "Log out").unwrap().clone();
    a.ok(&a.go(&logout).await).await;
    let View::Menu { items, .. } = a.open().await else {
        panic!("network choice")
    };
    assert!(items.iter().all(|(l, _)| l != "Log out"), "{items:?}");
}

#[tokio::test]
async fn concurrent_policy_caps_devices() {
    let server = Server::start(&format!(
        "[login]\npolicy = \"concurrent\"\nmax_devices = 2\nadmin_password_hash = \"{}\"\n",
        support::admin_hash_for_tests()
    ))
    .await;
    for ua in [AASTRA_6737I, YEALINK_T46S] {
        message(
            &Phone::new(server.addr, ua)
                .login("Internal", "1001", "73915")
                .await,
        );
    }
    let third = Phone::new(server.addr, SNOM_D785)
        .login("Internal", "1001", "73915")
        .await;
    let (title, text) = message(&third);
    assert_eq!(title, "Login refused");
    assert!(text.contains("already logged in on 2 phones"), "{text}");
    assert_eq!(server.logins().await.len(), 2);
}

#[tokio::test]
async fn logins_survive_a_restart() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, AASTRA_6737I);
    message(&phone.login("Internal", "1001", "73915").await);
    let server = server.restart().await;
    let logins = server.logins().await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0]["extension"], "1001");
    let phone = Phone::new(server.addr, AASTRA_6737I);
    let View::Menu { title, .. } = phone.open().await else {
        panic!()
    };
    assert_eq!(title, "1001 Ada Lovelace");
}

#[tokio::test]
async fn unknown_or_malformed_phones_get_a_plain_400() {
    let server = Server::start("").await;
    let cases = [
        ("curl/8.5.0", "/app", "Expected a phone User-Agent"),
        ("", "/app", "Expected a phone User-Agent"),
        (
            "curl/8.5.0",
            "/app?vendor=cisco&mac=001122334455",
            "unknown ?vendor=",
        ),
        (
            "curl/8.5.0",
            "/app?vendor=yealink&mac=xyz",
            "not a MAC address",
        ),
        ("curl/8.5.0", "/app?vendor=yealink", "did not send its MAC"),
        (AASTRA_6737I, "/app?mac=001122334455", "does not match"),
        (SNOM_320_OLD, "/app", "?mac="),
    ];
    for (ua, path, needle) in cases {
        let r = request(server.addr, "GET", path, &[("User-Agent", ua)]).await;
        assert_eq!(r.status, 400, "{ua} {path}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r.text().contains(needle), "{ua} {path}: {}", r.text());
    }
    // ?vendor= with ?mac= is enough for any client.
    let r = request(
        server.addr,
        "GET",
        "/app?vendor=yealink&mac=805ec0000001",
        &[("User-Agent", "curl/8")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<YealinkIPPhoneTextMenu"));
    // The forced vendor and MAC travel on in every generated link.
    assert!(
        r.text().contains("vendor=yealink&amp;mac=805ec0000001"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn garbage_input_gets_screens_not_errors() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, AASTRA_6737I);
    let again = "That network is not configured any more. Please choose again.";
    let long_pin = format!("/app/login?net=internal&ext=1001&pin={}", "1".repeat(40));
    // Each bad input gets the screen that says what is wrong. Nonsense extensions are wrong
    // credentials like any other: counted against the phone, then it is locked.
    let cases = [
        ("/app/login?net=nowhere", "Login", again),
        ("/app/login?net=%E2%82&ext=1", "Login", again),
        (
            "/app/login?net=internal&ext=&pin=",
            "Login",
            "Please enter your extension.",
        ),
        (
            "/app/login?net=internal&pin=1",
            "Login",
            "Please enter your extension.",
        ),
        (
            "/app/login?net=internal&ext=1001&pin=",
            "Login",
            "Please enter your PIN.",
        ),
        (
            "/app/login?net=internal&ext=%00%01%FF&pin=1",
            "Login failed",
            "Wrong extension or PIN, 2 tries left.",
        ),
        (
            "/app/login?net=internal&ext=%3Cscript%3E&pin=1",
            "Login failed",
            "Wrong extension or PIN, 1 try left.",
        ),
        (
            &long_pin,
            "Login locked",
            "Too many failed attempts. Try again in 15 minutes.",
        ),
        (
            "/app/logout",
            "Not logged in",
            "Nobody is logged in on this phone.",
        ),
    ];
    for (path, title, text) in cases {
        let r = phone.fetch(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(message(&phone.read(&r.body)), (title, text), "{path}");
    }
    // A forged apply token changes nothing on the phone.
    let r = phone.fetch("/app/apply?t=forged").await;
    assert_eq!(r.status, 200);
    let View::Execute { commands } = phone.read(&r.body) else {
        panic!("{}", r.text())
    };
    assert!(commands.is_empty(), "{commands:?}");
}

#[tokio::test]
async fn hostile_directory_names_render_safely() {
    let server = Server::start("").await;
    for ua in [AASTRA_6737I, YEALINK_T46S, HTEK_UC903, SNOM_D785] {
        let phone = Phone::new(server.addr, ua);
        let done = phone.login("Internal", "1004", "55117").await;
        let (_, text) = message(&done);
        assert!(text.contains("Zoë \"O'Neil\" <&>"), "{text}");
        // Aastra displays are Latin-1: other characters become ASCII look-alikes or `?`.
        assert!(
            text.contains(if ua == AASTRA_6737I { '?' } else { '🦀' }),
            "{text}"
        );
        let View::Menu { title, items } = phone.open().await else {
            panic!()
        };
        let shown = if ua == SNOM_D785 {
            items[0].0.clone()
        } else {
            title
        };
        assert!(shown.contains("1004 Zoë"), "{shown}");
        let body = phone.fetch("/app").await.body;
        assert!(!body.contains(&7u8), "control characters are dropped");
    }
}

#[tokio::test]
async fn long_names_stay_within_the_phone_limits() {
    let server = Server::start("").await;
    let long: String = "Bartholomew ".repeat(25); // 300 characters
    let dir = format!(
        "{}\n[[user]]\nextension = \"2000\"\nname = \"{long}\"\nvoicemail_pin = \"31415\"\nsip_password = \"x\"\n",
        support::DIRECTORY
    );
    std::fs::write(server.dir.join("directory.toml"), dir).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await; // the file is re-read
    let phone = Phone::new(server.addr, AASTRA_6737I);
    let done = phone.login("Internal", "2000", "31415").await;
    assert_eq!(
        message(&done).0,
        "Logged in",
        "a user added to the file logs in without a restart"
    );
    let r = phone.fetch("/app").await;
    assert!(r.body.len() < 10_000);
    let View::Menu { title, .. } = phone.read(&r.body) else {
        panic!()
    };
    assert!(
        title.chars().count() <= 64 && title.ends_with("..."),
        "{title}"
    );
}

/// No PIN, password or SIP secret appears in anything the server sends.
#[tokio::test]
async fn secrets_never_appear_in_responses() {
    let server = Server::start("").await;
    let secrets = [
        "73915",
        "86420",
        USER_PASSWORD,
        ADMIN_PASSWORD,
        "sip-secret-1001",
        "sip-secret-1003",
    ];
    let mut seen = Vec::new();
    for ua in [AASTRA_6731I, YEALINK_T46S, SNOM_D785] {
        let phone = Phone::new(server.addr, ua);
        for (ext, pin) in [
            ("1001", "86420"),
            ("1001", "73915"),
            ("1003", USER_PASSWORD),
            ("1002", ADMIN_PASSWORD),
        ] {
            let mut view = phone.open().await;
            if let View::Menu { items, .. } = &view {
                let link = items
                    .iter()
                    .find(|(l, _)| {
                        l == "Internal"
                            || l == "Log in as someone else"
                            || l == "Log in another user"
                    })
                    .unwrap()
                    .1
                    .clone();
                view = phone.go(&link).await;
                if let View::Menu { items, .. } = &view {
                    view = phone.go(&items[0].1.clone()).await;
                }
            }
            let mut views = vec![view.clone()];
            let View::Input { params, .. } = &view else {
                panic!("{view:?}")
            };
            let end = if params.len() >= 2 {
                phone.submit(&view, &[("ext", ext), ("pin", pin)]).await
            } else {
                let v = phone.submit(&view, &[("ext", ext)]).await;
                views.push(v.clone());
                phone.submit(&v, &[("pin", pin)]).await
            };
            views.push(end);
            seen.extend(views.iter().map(|v| format!("{v:?}")));
        }
    }
    for s in [
        server.admin("GET", "/api/v1/logins").await.text(),
        server.admin("GET", "/api/v1/audit").await.text(),
    ] {
        seen.push(s);
    }
    for text in &seen {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
}

#[tokio::test]
async fn the_voicemail_conf_backend_logs_users_in() {
    // fixtures/pjsip.conf beside it gives the SIP secrets.
    let vm = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/voicemail.conf");
    let directory = format!(
        "[directory]\nkind = \"voicemail-conf\"\nvoicemail_conf = \"{vm}\"\ncontext = \"default\"\n"
    );
    let server = Server::start_with(directory, "").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        message(&phone.login("Internal", "1001", "1234").await).0,
        "Logged in"
    );
    let other = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        message(&other.login("Internal", "1003", USER_PASSWORD).await).0,
        "Logged in"
    );
    assert_eq!(server.logins().await.len(), 2);
}

/// voicemail.conf alone has PINs but no SIP secrets: its users are checked, and refused with
/// a clear screen rather than put on a phone that could never register.
#[tokio::test]
async fn voicemail_conf_users_without_a_sip_secret_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = tmp.path().join("voicemail.conf");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/voicemail.conf"),
        &vm,
    )
    .unwrap();
    let directory = format!(
        "[directory]\nkind = \"voicemail-conf\"\nvoicemail_conf = \"{}\"\ncontext = \"default\"\n",
        vm.display()
    );
    let server = Server::start_with(directory, "").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    let refused = phone.login("Internal", "1001", "1234").await;
    assert_eq!(
        message(&refused),
        (
            "Login refused",
            "Extension 1001 has no phone line set up. Ask your administrator."
        )
    );
    // A wrong PIN is still a wrong PIN.
    assert_eq!(
        message(&phone.login("Internal", "1001", "9999").await).0,
        "Login failed"
    );
    assert!(server.logins().await.is_empty());
}

#[tokio::test]
async fn the_admin_password_has_a_stricter_limit_per_source() {
    let server = Server::start("").await;
    // Three wrong attempts from this address, each on another phone and extension.
    for (ua, ext) in [
        (AASTRA_6737I, "1001"),
        (YEALINK_T46S, "1002"),
        (HTEK_UC903, "1003"),
    ] {
        let v = Phone::new(server.addr, ua)
            .login("Internal", ext, "00000")
            .await;
        assert_eq!(message(&v).0, "Login failed");
    }
    // Now the admin password is not tried from here any more ...
    let snom = Phone::new(server.addr, SNOM_D785);
    assert_eq!(
        message(&snom.login("Internal", "1004", ADMIN_PASSWORD).await).0,
        "Login failed"
    );
    // ... while a user's own PIN still works.
    assert_eq!(
        message(&snom.login("Internal", "1004", "55117").await).0,
        "Logged in"
    );
}

#[tokio::test]
async fn one_source_guessing_many_extensions_is_locked_out() {
    let server = Server::start("").await;
    // max_failures_per_source defaults to 20; spread over many phones and extensions.
    let mut last = String::new();
    for i in 0..20 {
        let ua = format!("Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:02:{i:02x}");
        let url = format!("/app/login?net=internal&ext={}&pin=1", 5000 + i);
        last = match Phone::new(server.addr, &ua).go(&url).await {
            View::Message { title, .. } => title,
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(last, "Login locked");
    // Even a right PIN from this source is refused now.
    let v = Phone::new(server.addr, AASTRA_6737I)
        .go("/app/login?net=internal&ext=1001&pin=73915")
        .await;
    assert_eq!(message(&v).0, "Login locked");
}
