//! Provisioning: each vendor's file for a logged-in phone and the base profile, golden files
//! of every shipped template, per-extension templates, and who may fetch which file.

mod support;

use support::phone::*;
use support::{Server, request};

/// (User-Agent, ?mac= when the UA lacks it, file name, vendor folder)
const PHONES: &[(&str, Option<&str>, &str, &str)] = &[
    (AASTRA_6737I, None, "00085D30A6CE.cfg", "aastra"),
    (YEALINK_T46S, None, "805ec02f3c2e.cfg", "yealink"),
    (HTEK_UC903, None, "cfg001fc11c22a9.xml", "htek"),
    (
        SANGOMA_S500,
        Some("001fc1aabbcc"),
        "cfg001fc1aabbcc.xml",
        "htek",
    ),
    (SNOM_D785, None, "000413922d24.xml", "snom"),
];

async fn fetch(server: &Server, ua: &str, file: &str) -> support::Response {
    request(
        server.addr,
        "GET",
        &format!("/provision/{file}"),
        &[("User-Agent", ua)],
    )
    .await
}

const BASE: &str = "[base]\nextension = \"9999\"\nsecret = \"base-secret-77\"\nlabel = \"Emergency only\"\nnetwork = \"internal\"\n";

#[tokio::test]
async fn the_loop_per_vendor_login_fetch_logout_fetch() {
    let server = Server::start(BASE).await;
    for &(ua, mac, file, folder) in PHONES {
        let phone = match mac {
            Some(m) => Phone::new(server.addr, ua).with_query(&format!("mac={m}")),
            None => Phone::new(server.addr, ua),
        };
        let done = phone.login("External", "1001", "73915").await;
        assert!(
            matches!(done, View::Message { ref title, .. } if title == "Logged in"),
            "{folder}: {done:?}"
        );
        let mac12 = file
            .trim_start_matches("cfg")
            .split('.')
            .next()
            .unwrap()
            .to_lowercase();
        let row = |logins: Vec<serde_json::Value>| {
            logins
                .into_iter()
                .find(|l| l["mac"] == mac12.as_str())
                .unwrap()
        };
        assert_eq!(row(server.logins().await)["applied"], false);

        let r = fetch(&server, ua, file).await;
        assert_eq!(r.status, 200, "{folder}: {}", r.text());
        let body = r.text();
        assert!(
            body.contains("1001") && body.contains("Ada Lovelace"),
            "{folder}: {body}"
        );
        assert!(
            body.contains("sip-secret-1001"),
            "{folder}: the user's SIP secret"
        );
        assert!(
            body.contains("pbx.example.com"),
            "{folder}: the chosen (external) network's server"
        );
        assert!(!body.contains("base-secret-77"));
        let applied = row(server.logins().await);
        assert_eq!(applied["applied"], true, "{folder}");
        assert!(applied["applied_at"].is_string());

        let View::Menu { items, .. } = phone.open().await else {
            panic!()
        };
        phone.go(&items[0].1).await; // Log out
        let body = fetch(&server, ua, file).await.text();
        assert!(
            !body.contains("sip-secret-1001"),
            "{folder}: logged out, no user secret"
        );
        assert!(
            body.contains("9999") && body.contains("base-secret-77"),
            "{folder}: the emergency base line: {body}"
        );
        // Htek line-key P-codes vary by model and are not verified: no key is provisioned there.
        if folder != "htek" {
            assert!(
                body.contains(&format!("http://{}/app", server.addr)),
                "{folder}: the hot-desk key"
            );
        }
    }
}

#[tokio::test]
async fn only_the_named_phone_gets_its_file() {
    let server = Server::start("").await;
    Phone::new(server.addr, YEALINK_T46S)
        .login("Internal", "1001", "73915")
        .await;
    // Another Yealink asking for this phone's file.
    let other = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:01";
    let r = fetch(&server, other, "805ec02f3c2e.cfg").await;
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("sip-secret"));
    // Not this vendor's naming.
    assert_eq!(
        fetch(&server, YEALINK_T46S, "cfg805ec02f3c2e.xml")
            .await
            .status,
        404
    );
    assert_eq!(
        fetch(&server, YEALINK_T46S, "y000000000028.cfg")
            .await
            .status,
        404
    );
    assert_eq!(
        fetch(&server, "curl/8", "805ec02f3c2e.cfg").await.status,
        400
    );
    assert_eq!(
        request(
            server.addr,
            "GET",
            "/provision/a/b.cfg",
            &[("User-Agent", YEALINK_T46S)]
        )
        .await
        .status,
        404
    );
    assert_eq!(
        fetch(&server, YEALINK_T46S, "805ec02f3c2e.cfg")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_display_name_cannot_inject_configuration_lines() {
    let server = Server::start("").await;
    let dir = format!(
        "{}\n[[user]]\nextension = \"3000\"\nname = \"Mallory\\nsip line1 proxy ip: 6.6.6.6\\r\\n<P47>x</P47>\"\nvoicemail_pin = \"31337\"\nsip_password = \"s3\"\n",
        support::DIRECTORY
    );
    std::fs::write(server.dir.join("directory.toml"), dir).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    a.login("Internal", "3000", "31337").await;
    let body = fetch(&server, AASTRA_6737I, "00085D30A6CE.cfg")
        .await
        .text();
    assert!(
        !body
            .lines()
            .any(|l| l.starts_with("sip line1 proxy ip: 6.6.6.6")),
        "{body}"
    );
    let h = Phone::new(server.addr, HTEK_UC903);
    h.login("Internal", "3000", "31337").await;
    let body = fetch(&server, HTEK_UC903, "cfg001fc11c22a9.xml")
        .await
        .text();
    assert!(body.contains("&lt;P47&gt;"), "{body}");
    assert_eq!(body.matches("<P47").count(), 1);
}

#[tokio::test]
async fn per_extension_template_wins_over_the_brand_default() {
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/templates");
    let server = Server::start(&format!("[provision]\ntemplates = \"{templates}\"\n")).await;
    let dir = format!(
        "{}\n[[user]]\nextension = \"4000\"\nname = \"Sam Sales\"\nvoicemail_pin = \"4444\"\nsip_password = \"s4\"\ntemplate = \"sales\"\n",
        support::DIRECTORY
    );
    std::fs::write(server.dir.join("directory.toml"), dir).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let y = Phone::new(server.addr, YEALINK_T46S);
    y.login("Internal", "4000", "4444").await;
    let body = fetch(&server, YEALINK_T46S, "805ec02f3c2e.cfg")
        .await
        .text();
    assert!(body.contains("account.1.label = Sales 4000"), "{body}");
    // No sales template for Aastra: the brand default.
    let a = Phone::new(server.addr, AASTRA_6737I);
    a.login("Internal", "4000", "4444").await;
    let body = fetch(&server, AASTRA_6737I, "00085D30A6CE.cfg")
        .await
        .text();
    assert!(body.contains("sip line1 auth name: 4000"), "{body}");
}

#[test]
fn an_unknown_template_name_stops_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = format!(
        "{}\n[[user]]\nextension = \"4000\"\nname = \"x\"\nsip_password = \"s\"\ntemplate = \"nope\"\n",
        support::DIRECTORY
    );
    std::fs::write(tmp.path().join("directory.toml"), dir).unwrap();
    let text = support::config_text(tmp.path(), "http://127.0.0.1:1", "");
    let config = hotdesk::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(async { hotdesk::App::open(config).err().unwrap().to_string() });
    assert!(err.contains("user 4000") && err.contains("`nope`"), "{err}");
}

/// Golden files of every shipped template: logged in, base profile, nothing.
#[test]
fn shipped_templates_match_their_golden_files() {
    use hotdesk::provision::Provisioner;
    use hotdesk::vendor::identify;
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-xml");
    let tmp = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    for (extra, state) in [("", "none"), (BASE, "base")] {
        let text = support::config_text(tmp.path(), "http://hd.example.net:8080", extra);
        let config = hotdesk::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let p = Provisioner::new(None).unwrap();
        for &(ua, mac, file, folder) in PHONES.iter().filter(|p| p.3 != "htek" || p.1.is_none()) {
            let h = identify(Some(ua), None, mac).unwrap();
            let login = hotdesk::store::Login {
                mac: h.mac,
                identity: 0,
                extension: "1001".into(),
                name: "Zoë \"O'Neil\" <&>".into(),
                vendor: h.vendor.to_string(),
                model: h.model.to_string(),
                network: "external".into(),
                template: None,
                since: time::OffsetDateTime::UNIX_EPOCH,
                source_ip: "10.0.0.9".into(),
                credential: "voicemail-pin".into(),
                applied_at: None,
            };
            let ext = file.rsplit('.').next().unwrap();
            let one = [hotdesk::provision::Line {
                login: &login,
                sip_password: "sip-secret-1001",
                sip_username: None,
            }];
            let none: [hotdesk::provision::Line<'_>; 0] = [];
            let cases: Vec<(&str, &[hotdesk::provision::Line<'_>])> = if state == "none" {
                vec![("login", &one), ("logged-out", &none)]
            } else {
                vec![("base-profile", &none)]
            };
            for (name, lines) in cases {
                let out = p.render(&config, &h, lines).unwrap();
                let path = root.join(folder).join(format!("provision-{name}.{ext}"));
                if update {
                    std::fs::write(&path, &out.body).unwrap();
                } else if std::fs::read_to_string(&path).ok().as_deref() != Some(out.body.as_str())
                {
                    mismatches.push(path.display().to_string());
                }
                if ext == "xml" {
                    let check = std::process::Command::new("xmllint")
                        .arg("--noout")
                        .arg("-")
                        .stdin(std::process::Stdio::piped())
                        .spawn();
                    if let Ok(mut child) = check {
                        use std::io::Write;
                        child
                            .stdin
                            .take()
                            .unwrap()
                            .write_all(out.body.as_bytes())
                            .unwrap();
                        assert!(
                            child.wait().unwrap().success(),
                            "{folder} {name} is not well-formed XML"
                        );
                    }
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden files out of date (UPDATE_GOLDEN=1 to rewrite):\n{}",
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn auto_logout_after_max_login_and_at_the_daily_time() {
    let server = Server::start("[login]\nmax_login = \"10h\"\nexpiry_check = \"100ms\"\n").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    phone.login("Internal", "1002", "86420").await;
    server
        .clock
        .advance(std::time::Duration::from_secs(9 * 3600));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(server.logins().await.len(), 1, "9 h: still logged in");
    server
        .clock
        .advance(std::time::Duration::from_secs(3600 + 60));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(server.logins().await.is_empty(), "past 10 h: logged out");
    let audit = server.audit().await;
    assert_eq!(audit[0]["kind"], "auto-logout");
    assert_eq!(audit[0]["detail"], "logged in longer than 10h");
    // The phone gets the base profile at its next fetch.
    let body = fetch(&server, YEALINK_T46S, "805ec02f3c2e.cfg")
        .await
        .text();
    assert!(body.contains("account.1.enable = 0"), "{body}");

    let daily = Server::start("[login]\nauto_logout = \"02:00\"\nexpiry_check = \"100ms\"\n").await;
    Phone::new(daily.addr, AASTRA_6737I)
        .login("Internal", "1001", "73915")
        .await;
    // At most 24 h later it is past the next 02:00 (UTC here).
    daily
        .clock
        .advance(std::time::Duration::from_secs(24 * 3600));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(daily.logins().await.is_empty());
    assert_eq!(daily.audit().await[0]["detail"], "daily logout at 02:00");
}

#[tokio::test]
async fn a_snom_phone_holds_three_identities_and_logs_off_one_then_all() {
    let server = Server::start("").await;
    let snom = Phone::new(server.addr, SNOM_D785);
    for (ext, pin) in [
        ("1001", "73915"),
        ("1002", "86420"),
        ("1003", support::USER_PASSWORD),
    ] {
        let mut view = snom.open().await;
        if let View::Menu { items, .. } = &view {
            let (_, link) = items
                .iter()
                .find(|(l, _)| l == "Log in another user" || l == "Internal")
                .unwrap()
                .clone();
            view = snom.go(&link).await;
            if let View::Menu { items, .. } = &view {
                view = snom
                    .go(&items
                        .iter()
                        .find(|(l, _)| l == "Internal")
                        .unwrap()
                        .1
                        .clone())
                    .await;
            }
        }
        let view = snom.submit(&view, &[("ext", ext)]).await;
        let done = snom.submit(&view, &[("pin", pin)]).await;
        assert!(
            matches!(done, View::Message { ref title, .. } if title == "Logged in"),
            "{ext}: {done:?}"
        );
    }
    let logins = server.logins().await;
    let ids: Vec<(u64, &str)> = logins
        .iter()
        .map(|l| {
            (
                l["identity"].as_u64().unwrap(),
                l["extension"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids.len(), 3);
    for (i, ext) in [(0, "1001"), (1, "1002"), (2, "1003")] {
        assert!(ids.contains(&(i, ext)), "{ids:?}");
    }
    let body = fetch(&server, SNOM_D785, "000413922d24.xml").await.text();
    for (idx, ext) in [(1, "1001"), (2, "1002"), (3, "1003")] {
        assert!(
            body.contains(&format!(
                "<user_name idx=\"{idx}\" perm=\"\">{ext}</user_name>"
            )),
            "{body}"
        );
    }

    // The menu lists everyone, with log off one and log off all.
    let View::Menu { title, items } = snom.open().await else {
        panic!()
    };
    assert_eq!(title, "Hot desk: 3 users");
    let labels: Vec<&str> = items.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels[..3],
        [
            "Log off 1001 Ada Lovelace",
            "Log off 1002 Grace Hopper",
            "Log off 1003 Søren Kierkegaard"
        ]
    );
    assert!(labels.contains(&"Log off all") && labels.contains(&"Log in another user"));

    let bye = snom.go(&items[1].1).await; // Log off 1002 (identity index 1)
    let View::Execute { commands } = snom.ok(&bye).await else {
        panic!()
    };
    assert_eq!(commands, ["unregister=1"], "Snom's 0-based identity index");
    assert_eq!(server.logins().await.len(), 2);
    let body = fetch(&server, SNOM_D785, "000413922d24.xml").await.text();
    assert!(
        body.contains("<user_active idx=\"2\" perm=\"\">off</user_active>"),
        "{body}"
    );
    assert!(body.contains("<user_name idx=\"3\" perm=\"\">1003</user_name>"));

    let View::Menu { items, .. } = snom.open().await else {
        panic!()
    };
    let (_, all) = items
        .iter()
        .find(|(l, _)| l == "Log off all")
        .unwrap()
        .clone();
    let bye = snom.go(&all).await;
    let View::Execute { commands } = snom.ok(&bye).await else {
        panic!()
    };
    // The reload itself is the check-sync NOTIFY, sent beside the screen.
    assert_eq!(commands, ["calllistclear", "unregister=-1"]);
    assert!(server.logins().await.is_empty());
}

#[tokio::test]
async fn innovaphone_update_script() {
    let extra = "[innovaphone]\npassword = \"base-pw-31\"\nlines = [\"# Hot Desk Base user and key: lines from the device's config show\", \"config change EXAMPLE /pwd {password}\"]\n";
    let server = Server::start(extra).await;
    let r = request(
        server.addr,
        "GET",
        "/provision/innovaphone.txt?sn=009033aabbcc",
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(
        body.lines().all(|_| true) && body.ends_with("iresetn\r\n"),
        "{body:?}"
    );
    assert!(
        !body.replace("\r\n", "").contains('\n'),
        "every line ends in CR LF"
    );
    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "# hotdesk update script for 009033aabbcc");
    assert_eq!(lines[2], "config change EXAMPLE /pwd base-pw-31");
    assert_eq!(
        lines[lines.len() - 4..lines.len() - 2],
        ["config write", "config activate"]
    );
    assert_eq!(lines[lines.len() - 1], "iresetn");
    // I1: the serial the phone sends back as CHECK; then nothing is delivered again.
    let serial = lines[lines.len() - 2]
        .strip_prefix("mod cmd UP1 check ser ")
        .unwrap();
    assert_eq!(serial.len(), 32);
    let text = support::config_text(&server.dir, "http://127.0.0.1:1", extra);
    let config = hotdesk::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let prov = hotdesk::provision::Provisioner::new(None).unwrap();
    let mac = "009033aabbcc".parse().unwrap();
    let again = prov
        .render_innovaphone_checked(&config, mac, Some(serial))
        .unwrap();
    assert!(
        !again.contains("config") && !again.contains("iresetn"),
        "{again}"
    );
    let stale = prov
        .render_innovaphone_checked(&config, mac, Some("0123"))
        .unwrap();
    assert!(stale.ends_with("iresetn\r\n"), "{stale}");
    assert!(!serial.contains("base-pw"), "no secret in the serial");
    // Over HTTP: the route passes the phone's CHECK argument.
    let r = request(
        server.addr,
        "GET",
        &format!("/provision/innovaphone.txt?sn=009033aabbcc&CHECK={serial}"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        !r.text().contains("config") && !r.text().contains("iresetn"),
        "{}",
        r.text()
    );
    for bad in [
        "/provision/innovaphone.txt",
        "/provision/innovaphone.txt?sn=%23m",
        "/provision/innovaphone.txt?sn=zz",
    ] {
        assert_eq!(
            request(server.addr, "GET", bad, &[]).await.status,
            400,
            "{bad}"
        );
    }

    // Golden: the shipped template with no lines configured.
    let tmp = tempfile::tempdir().unwrap();
    let text = support::config_text(tmp.path(), "http://hd.example.net:8080", "");
    let config = hotdesk::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let p = hotdesk::provision::Provisioner::new(None).unwrap();
    let out = p
        .render_innovaphone(&config, "009033aabbcc".parse().unwrap())
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vendor-xml/innovaphone/update-script.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), out);
}

/// Aastra with dynamic SIP: the apply step pushes the new line in pages, no reboot.
#[tokio::test]
async fn aastra_takes_its_new_line_without_a_reboot() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, AASTRA_6737I);
    let done = phone.login("Internal", "1001", "73915").await;
    let View::Execute { commands } = phone.ok(&done).await else {
        panic!()
    };
    let push = format!("http://{}/app/push?t=", server.addr);
    assert!(
        commands.len() == 1 && commands[0].starts_with(&push),
        "{commands:?}"
    );
    let grant = &commands[0][push.len()..];
    // The push answers an Execute that fetches each page in turn, each with the grant.
    let View::Execute { commands: pages } = phone.go(&commands[0]).await else {
        panic!()
    };
    assert_eq!(
        pages,
        [format!("http://{}/app/push?page=1&t={grant}", server.addr)]
    );
    let r = phone.fetch(&pages[0]).await;
    let doc = support::xml::parse(&r.body);
    assert_eq!(doc.name, "AastraIPPhoneConfiguration");
    let items: Vec<(String, String)> = doc
        .all("ConfigurationItem")
        .iter()
        .map(|i| (i.get("Parameter"), i.get("Value")))
        .collect();
    let get = |k: &str| items.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
    assert_eq!(get("sip line1 auth name"), Some("1001"));
    assert_eq!(get("sip line1 password"), Some("sip-secret-1001"));
    assert_eq!(get("sip line1 proxy ip"), Some("10.0.0.5"));
    assert_eq!(
        get("softkey1 value"),
        Some(format!("http://{}/app", server.addr).as_str()),
        "URLs keep their colons"
    );
    assert!(items.len() <= 30);
    assert_eq!(server.logins().await[0]["applied"], true);
    // Other vendors have no live push.
    let y = request(
        server.addr,
        "GET",
        "/app/push",
        &[("User-Agent", YEALINK_T46S)],
    )
    .await;
    assert_eq!(y.status, 404);
}

/// Per-model and per-firmware choices of the shipped templates, and their limits: the
/// hot-desk key where the model has it (A1, Y4, S5), V70 server keys (Y2), `?mac=` for a
/// MAC-less User-Agent (Y5), `%NULL%` on logout (Y3), and a 12,000-character name that
/// neither bloats the file nor adds a line.
#[test]
fn shipped_templates_per_model_firmware_and_limits() {
    use hotdesk::provision::Provisioner;
    use hotdesk::vendor::identify;
    let tmp = tempfile::tempdir().unwrap();
    let text = support::config_text(tmp.path(), "http://hd.example.net:8080", "");
    let config = hotdesk::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let p = Provisioner::new(None).unwrap();
    let huge: String = "Łukasz 🦀 \"Zoë\" <&>\n".repeat(600);
    let render = |ua: &str, mac: Option<&str>, name: Option<&str>| {
        let h = identify(Some(ua), None, mac).unwrap();
        let login = hotdesk::store::Login {
            mac: h.mac,
            identity: 0,
            extension: "1001".into(),
            name: name.unwrap_or("").into(),
            vendor: h.vendor.to_string(),
            model: h.model.to_string(),
            network: "external".into(),
            template: None,
            since: time::OffsetDateTime::UNIX_EPOCH,
            source_ip: "10.0.0.9".into(),
            credential: "voicemail-pin".into(),
            applied_at: None,
        };
        let line = [hotdesk::provision::Line {
            login: &login,
            sip_password: "s",
            sip_username: None,
        }];
        let lines: &[hotdesk::provision::Line<'_>] = if name.is_some() { &line } else { &[] };
        p.render(&config, &h, lines).unwrap().body
    };

    let a6731 = "Aastra6731i MAC:00-08-5D-23-74-29 V:3.2.0.70-SIP";
    let body = render(a6731, None, Some(&huge));
    assert!(body.contains("\n^prgkey1 type: xml\n"), "{body}");
    assert!(!body.contains("softkey1"), "{body}");
    assert!(body.len() < 2000, "{} bytes", body.len());
    // Aastra displays are Latin-1: ASCII look-alikes, never boxes; one line per setting.
    assert!(
        body.contains("display name: Lukasz ? \"Zoë\" <&> Lukasz"),
        "{body}"
    );
    assert_eq!(
        body.lines().filter(|l| l.contains("display name")).count(),
        1
    );

    let t19 = "Yealink SIP-T19P_E2 53.84.0.15 00:15:65:4c:4c:27";
    let body = render(t19, None, None);
    assert!(body.contains("programablekey.2.type = 27"), "{body}");
    assert!(!body.contains("linekey."), "{body}");
    assert!(body.contains("account.1.password = %NULL%"), "{body}");

    let t38 = "Yealink SIP-T38G  38.70.0.125 00:15:65:00:00:01";
    let body = render(t38, None, Some("Ada"));
    assert!(
        body.contains("account.1.sip_server_host = pbx.example.com"),
        "{body}"
    );
    assert!(body.contains("account.1.sip_server_port = 5060"), "{body}");
    let body = render(YEALINK_T46S, None, Some(&huge));
    assert!(!body.contains("sip_server_host"), "{body}");
    assert!(body.len() < 2000, "{} bytes", body.len());
    assert!(body.contains("Łukasz 🦀"), "Yealink keeps Unicode: {body}");

    // A User-Agent without a MAC: the key must carry it, or the phone gets 400 (Y5).
    let no_mac = "Yealink-T46G 28.71.0.81 28.1.0.128.0.0.0";
    let body = render(no_mac, Some("0015654aa937"), None);
    assert!(
        body.contains("linekey.2.value = http://hd.example.net:8080/app?mac=0015654aa937"),
        "{body}"
    );

    let d120 = "Mozilla/4.0 (compatible; snomD120-SIP 10.1.33.33 x 000413922D25)";
    let body = render(d120, None, Some(&huge));
    assert!(body.contains("<fkey idx=\"2\""), "{body}");
    assert_eq!(body.matches("<user_active").count(), 2, "{body}");
    assert!(body.len() < 3000, "{} bytes", body.len());
}

/// MiNET firmware cannot take a SIP line: both the screens and the file are refused with
/// the reason (A11).
#[tokio::test]
async fn minet_phones_are_refused_with_the_reason() {
    let server = Server::start("").await;
    let ua = "MitelMINET_6930 MAC:14-00-E9-00-00-01 V:6.4.0.140";
    for path in ["/app", "/provision/1400E9000001.cfg"] {
        let r = request(server.addr, "GET", path, &[("User-Agent", ua)]).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(r.text().contains("MiNET"), "{path}: {}", r.text());
    }
}

/// Aastra phones read `aastra.cfg` and `<model>.cfg` before `<MAC>.cfg` (A13): 200 with the
/// admin's template of that name, else one comment line; never a secret, still rate-limited.
#[tokio::test]
async fn aastra_site_and_model_files_are_served_from_templates_or_empty() {
    let templates = tempfile::tempdir().unwrap();
    let aastra = templates.path().join("aastra");
    std::fs::create_dir(&aastra).unwrap();
    std::fs::write(
        aastra.join("aastra.cfg.j2"),
        "time server disabled: 0\naction uri startup: {{ base_url }}/app\n",
    )
    .unwrap();
    let server = Server::start(&format!(
        "{BASE}[provision]\ntemplates = \"{}\"\nrate_per_second = 1\nrate_burst = 6\n",
        templates.path().display()
    ))
    .await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    a.login("Internal", "1001", "73915").await;

    let site = fetch(&server, AASTRA_6737I, "aastra.cfg").await;
    assert_eq!(site.status, 200);
    assert_eq!(
        site.text(),
        format!(
            "time server disabled: 0\naction uri startup: http://{}/app\n",
            server.addr
        )
    );
    // No template for the model: an empty file (a comment), for any Aastra model name.
    for file in ["6737i.cfg", "6867i.cfg"] {
        let model = fetch(&server, AASTRA_6737I, file).await;
        assert_eq!(model.status, 200, "{file}");
        assert!(model.text().starts_with("# "), "{file}: {}", model.text());
        assert_eq!(model.text().lines().count(), 1);
    }
    // Nothing of the logged-in user or the base profile, whoever asks.
    for file in ["aastra.cfg", "6737i.cfg"] {
        let body = fetch(&server, "curl/8.0", file).await.text();
        assert!(
            !body.contains("sip-secret") && !body.contains("base-secret"),
            "{body}"
        );
        assert!(!body.contains("1001"), "{body}");
    }
    // The phone's own file is unchanged.
    let own = fetch(&server, AASTRA_6737I, "00085D30A6CE.cfg").await;
    assert!(own.text().contains("sip-secret-1001"));
    // Same per-source rate as every provisioning file.
    let mut limited = false;
    for _ in 0..10 {
        if fetch(&server, AASTRA_6737I, "aastra.cfg").await.status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "site-wide files share the provisioning rate limit");
    // And the phones' allow-list.
    let closed = Server::start("[phones]\nallow = [\"10.0.0.0/8\"]\n").await;
    assert_eq!(fetch(&closed, AASTRA_6737I, "aastra.cfg").await.status, 403);
    // With Digest, as every provisioning file: a site template may hold an admin password.
    let digest = Server::start("[provision]\nauth = \"digest\"\n").await;
    for ua in [AASTRA_6737I, "curl/8.0"] {
        let r = fetch(&digest, ua, "aastra.cfg").await;
        assert_eq!(r.status, 401, "{ua}: {}", r.text());
    }
}

/// Logs `ext` in on a Snom (first user, or "Log in another user"), returns the apply's
/// fragments.
async fn snom_login(snom: &Phone, ext: &str, pin: &str) -> Vec<String> {
    let mut view = snom.open().await;
    while let View::Menu { items, .. } = &view {
        let (_, link) = items
            .iter()
            .find(|(l, _)| l == "Log in another user" || l == "Internal")
            .unwrap()
            .clone();
        view = snom.go(&link).await;
    }
    let view = snom.submit(&view, &[("ext", ext)]).await;
    let done = snom.submit(&view, &[("pin", pin)]).await;
    assert!(
        matches!(done, View::Message { ref title, .. } if title == "Logged in"),
        "{ext}: {done:?}"
    );
    let View::Execute { commands } = snom.ok(&done).await else {
        panic!("apply")
    };
    commands
}

/// S1/S6: a Snom applies by `check-sync;reboot=false` (re-reads its settings, no restart), so a
/// second identity's login does not restart the phone; other vendors get the plain event.
/// S2: firmware 8 gets no fragment (fragments are documented for firmware 10) and applies by
/// the same NOTIFY; firmware 6 is refused.
#[tokio::test]
async fn snom_applies_by_check_sync_without_reboot_on_firmware_10_and_8() {
    let sip = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sip.local_addr().unwrap().port();
    let server = Server::start(&format!("[reload.sip]\nport = {port}\n")).await;

    let d785 = Phone::new(server.addr, SNOM_D785);
    assert!(snom_login(&d785, "1001", "73915").await.is_empty());
    assert!(
        support::answer_notify(&sip)
            .await
            .contains("Event: check-sync;reboot=false\r\n")
    );
    // A second user on the same phone: no reboot fragment, the same NOTIFY.
    assert!(snom_login(&d785, "1002", "86420").await.is_empty());
    assert!(
        support::answer_notify(&sip)
            .await
            .contains("Event: check-sync;reboot=false\r\n")
    );
    let body = fetch(&server, SNOM_D785, "000413922d24.xml").await.text();
    assert!(body.contains("sip-secret-1001") && body.contains("sip-secret-1002"));

    // Firmware 8.4.18: the same screens, no fragment in the apply or the logout.
    let old = Phone::new(server.addr, SNOM_320_OLD).with_query("mac=000413aabbcc");
    assert!(
        snom_login(&old, "1003", support::USER_PASSWORD)
            .await
            .is_empty()
    );
    assert!(
        support::answer_notify(&sip)
            .await
            .contains("Event: check-sync;reboot=false\r\n")
    );
    let raw = old.fetch("/provision/000413aabbcc.xml").await;
    assert!(raw.text().contains("sip-secret-1003"));
    let View::Menu { items, .. } = old.open().await else {
        panic!("logged-in menu")
    };
    let (_, all) = items
        .iter()
        .find(|(l, _)| l.starts_with("Log off 1003"))
        .unwrap()
        .clone();
    let bye = old.go(&all).await;
    let View::Execute { commands } = old.ok(&bye).await else {
        panic!("apply: a bare snom://mb_exit")
    };
    assert!(
        commands.is_empty(),
        "no calllistclear or unregister on firmware 8: {commands:?}"
    );
    assert!(
        support::answer_notify(&sip)
            .await
            .contains("Event: check-sync;reboot=false\r\n")
    );

    // Other families keep the plain event (Yealink reboots per sip.notify_reboot_enable).
    let y = Phone::new(server.addr, YEALINK_T46S);
    let done = y.login("Internal", "1001", "73915").await;
    assert_eq!(done.title(), "Logged in", "{done:?}");
    assert!(matches!(y.ok(&done).await, View::Execute { .. }));
    assert!(
        support::answer_notify(&sip)
            .await
            .contains("Event: check-sync\r\n")
    );

    // Firmware 6.5 reads no XML settings: refused with the reason.
    let ancient =
        "Mozilla/4.0 (compatible; snom320-SIP 6.5.20; snom320 jffs2 v3.36; snom320 linux 3.38)";
    let r = request(
        server.addr,
        "GET",
        "/app?mac=000413000001",
        &[("User-Agent", ancient)],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("before 7"), "{}", r.text());
}

/// Y9 and the snom PA1: devices without an XML browser are refused for the screens with the
/// reason, and keep getting their provisioning file (a base profile) as before. Real UAs
/// (Wazo provd's Yealink and Snom plugins, fixtures/user-agents.toml).
#[tokio::test]
async fn dect_bases_and_the_pa1_get_no_screens_but_keep_their_file() {
    let server = Server::start(BASE).await;
    let devices = [
        (
            "Yealink W60B 77.81.0.35 80:5e:c0:09:ab:dc",
            "",
            "805ec009abdc.cfg",
            "DECT",
        ),
        (
            "W52P 25.30.0.2 00:15:65:44:b3:7c",
            "",
            "00156544b37c.cfg",
            "DECT",
        ),
        (
            "Yealink W90DM 130.85.0.15 80:5e:c0:d9:c7:44",
            "",
            "805ec0d9c744.cfg",
            "DECT",
        ),
        (
            "Mozilla/4.0 (compatible; snomPA1-SIP 8.4.35 1.1.3-s)",
            "?mac=000413aabbcd",
            "000413aabbcd.xml",
            "paging amplifier",
        ),
    ];
    for (ua, query, file, why) in devices {
        let r = request(
            server.addr,
            "GET",
            &format!("/app{query}"),
            &[("User-Agent", ua)],
        )
        .await;
        assert_eq!(r.status, 400, "{ua}");
        assert!(r.text().contains(why), "{ua}: {}", r.text());
        let f = fetch(&server, ua, file).await;
        assert_eq!(f.status, 200, "{ua}: {}", f.text());
        assert!(
            f.text().contains("base-secret-77"),
            "{ua}: the base profile"
        );
    }
}

/// H2: the XML-browser DSS type of Htek firmware is in no public source, so the hot-desk key is
/// provisioned only when the admin names it (`[vendors.htek] dss_key_type`), on line key 2 with
/// Wazo's P-code numbering; unset, the file has no key.
#[tokio::test]
async fn htek_hot_desk_key_only_with_the_admins_dss_key_type() {
    let file = "cfg001fc11c22a9.xml";
    let plain = Server::start("").await;
    let body = fetch(&plain, HTEK_UC903, file).await.text();
    assert!(!body.contains("LineKey"), "{body}");

    let server = Server::start("[vendors.htek]\ndss_key_type = 42\n").await;
    let body = fetch(&server, HTEK_UC903, file).await.text();
    for want in [
        "<P41201 para=\"LineKey2_Type\">42</P41201>".to_owned(),
        "<P20601 para=\"LineKey2_Mode\">0</P20601>".to_owned(),
        format!(
            "<P41301 para=\"LineKey2_Value\">http://{}/app</P41301>",
            server.addr
        ),
        "<P41401 para=\"LineKey2_Label\">Hot desk</P41401>".to_owned(),
        "<P41501 para=\"LineKey2_Account\">255</P41501>".to_owned(),
    ] {
        assert!(body.contains(&want), "{want} in {body}");
    }
    // A model without line keys gets none.
    let uc802 = "Htek UC802 2.0.4.2 00:1f:c1:1c:22:aa";
    let body = fetch(&server, uc802, "cfg001fc11c22aa.xml").await.text();
    assert!(!body.contains("LineKey"), "{body}");
}

/// Issue 10 item 4 for provisioning files: any Unicode name up to 20,000 characters leaves every
/// shipped file small, one setting per line (the same lines as with a plain name) and, for
/// XML files, well-formed with XML-legal characters only.
mod file_limits {
    use super::*;
    use proptest::prelude::*;

    fn render(name: &str) -> Vec<(&'static str, String)> {
        let tmp = tempfile::tempdir().unwrap();
        let text = support::config_text(tmp.path(), "http://hd.example.net:8080", BASE);
        let config = hotdesk::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let p = hotdesk::provision::Provisioner::new(None).unwrap();
        PHONES
            .iter()
            .map(|&(ua, mac, _, folder)| {
                let h = hotdesk::vendor::identify(Some(ua), None, mac).unwrap();
                let login = hotdesk::store::Login {
                    mac: h.mac,
                    identity: 0,
                    extension: "1001".into(),
                    name: name.into(),
                    vendor: h.vendor.to_string(),
                    model: h.model.to_string(),
                    network: "internal".into(),
                    template: None,
                    since: time::OffsetDateTime::UNIX_EPOCH,
                    source_ip: "10.0.0.9".into(),
                    credential: "voicemail-pin".into(),
                    applied_at: None,
                };
                let line = [hotdesk::provision::Line {
                    login: &login,
                    sip_password: "s",
                    sip_username: None,
                }];
                (folder, p.render(&config, &h, &line).unwrap().body)
            })
            .collect()
    }

    fn check(name: &str) -> Result<(), TestCaseError> {
        let plain = render("x");
        for ((folder, body), (_, reference)) in render(name).into_iter().zip(plain) {
            prop_assert!(body.len() < 4000, "{folder}: {} bytes", body.len());
            prop_assert_eq!(
                body.lines().count(),
                reference.lines().count(),
                "{}",
                folder
            );
            if body.starts_with("<?xml") {
                prop_assert!(body.chars().all(hotdesk::dialect::text::is_xml_char));
                let mut reader = quick_xml::Reader::from_str(&body);
                loop {
                    match reader.read_event() {
                        Ok(quick_xml::events::Event::Eof) => break,
                        Ok(_) => {}
                        Err(e) => return Err(TestCaseError::fail(format!("{folder}: {e}"))),
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        #[test]
        fn any_name_up_to_20000_characters_keeps_every_file_small_and_one_setting_per_line(
            name in proptest::collection::vec(any::<char>(), 0..20_000)
        ) {
            check(&name.into_iter().collect::<String>())?;
        }
    }

    #[test]
    fn hostile_names() {
        for name in [
            "a\r\nsip line1 password: x",
            "</P3><P34>x",
            "\u{0}\u{b}\u{fffe}",
            "]]>&lt;",
        ] {
            check(&name.repeat(500)).unwrap();
        }
    }
}
