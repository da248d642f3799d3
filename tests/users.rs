//! The embedded directory over real HTTP: users made through the admin API log in at a
//! phone with the PIN shown once; no secret shows up anywhere else (API, audit, the SQLite
//! files); weak PINs are refused with the rule; disabling logs the user out; imports are
//! all or nothing and exports hold no secret; other directory kinds answer 409.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::Server;
use support::phone::*;

const EMBEDDED: &str = "[directory]\nkind = \"embedded\"\npoll_interval = \"50ms\"\n";

async fn create(server: &Server, ext: &str) {
    let body = format!("{{\"extension\": \"{ext}\", \"name\": \"Ada <&> Lovelace\"}}");
    let r = server.call("POST", "/api/v1/users", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

async fn new_pin(server: &Server, ext: &str) -> String {
    let r = server
        .call("POST", &format!("/api/v1/users/{ext}/pin"), "{}")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()["pin"].as_str().unwrap().to_owned()
}

async fn new_sip_secret(server: &Server, ext: &str) -> String {
    let r = server
        .call("POST", &format!("/api/v1/users/{ext}/sip-secret"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sip_secret"].as_str().unwrap().to_owned()
}

fn title(v: &View) -> &str {
    match v {
        View::Message { title, .. } => title,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Every byte of the store's files (database, WAL, shared memory).
fn store_bytes(server: &Server) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(server.dir.join("state")).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_new_user_logs_in_with_the_pin_shown_once_and_no_secret_leaks() {
    let server = Server::start_with(EMBEDDED.into(), "").await;
    create(&server, "2001").await;
    let again = server
        .call(
            "POST",
            "/api/v1/users",
            "{\"extension\": \"2001\", \"name\": \"Twice\"}",
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text());

    let pin = new_pin(&server, "2001").await;
    assert_eq!(pin.len(), 6, "{pin}");
    assert!(pin.bytes().all(|b| b.is_ascii_digit()));
    let secret = new_sip_secret(&server, "2001").await;
    assert!(secret.len() >= 20);
    assert!(!secret.contains(['0', 'O', '1', 'l', 'I']), "{secret}");

    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        title(&phone.login("External", "2001", &pin).await),
        "Logged in"
    );
    // The phone's own file carries the SIP secret, opened from the store.
    let file = support::request(
        server.addr,
        "GET",
        "/provision/805ec02f3c2e.cfg",
        &[("User-Agent", YEALINK_T46S)],
    )
    .await;
    assert_eq!(file.status, 200);
    assert!(
        file.text()
            .contains(&format!("account.1.password = {secret}")),
        "{}",
        file.text()
    );

    // Shown once: never again in the API, the audit trail or the store's files.
    let user = server.admin("GET", "/api/v1/users/2001").await;
    assert_eq!(user.status, 200);
    let list = server.admin("GET", "/api/v1/users").await;
    let audit = server.admin("GET", "/api/v1/audit?limit=100").await;
    for r in [&user, &list, &audit] {
        assert!(!r.text().contains(&pin), "{}", r.text());
        assert!(!r.text().contains(&secret), "{}", r.text());
    }
    let u = user.json();
    assert_eq!(
        (u["has_pin"].as_bool(), u["has_sip_secret"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(u["name"], "Ada <&> Lovelace");
    assert!(
        audit.text().contains("PIN set (generated)"),
        "{}",
        audit.text()
    );
    assert!(
        audit.text().contains("admin API (key test)"),
        "{}",
        audit.text()
    );
    let bytes = store_bytes(&server);
    assert!(
        contains(&bytes, "Ada <&> Lovelace"),
        "the check can see plain text"
    );
    assert!(
        !contains(&bytes, &secret),
        "SIP secret in clear in the store"
    );
    assert!(!contains(&bytes, &pin), "PIN in clear in the store");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = server.dir.join("state/users.key");
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // A new PIN replaces the old one at once.
    let pin2 = new_pin(&server, "2001").await;
    let other = Phone::new(server.addr, AASTRA_6737I);
    if pin2 != pin {
        assert_eq!(
            title(&other.login("External", "2001", &pin).await),
            "Login failed"
        );
    }
    assert_eq!(
        title(&other.login("External", "2001", &pin2).await),
        "Logged in"
    );
}

#[tokio::test]
async fn weak_pins_are_refused_with_the_rule_and_a_strong_one_is_taken() {
    let server = Server::start_with(EMBEDDED.into(), "").await;
    create(&server, "2001").await;
    for weak in [
        "123456", "654321", "111111", "121212", "992001", "12345", "12a456",
    ] {
        let r = server
            .call(
                "POST",
                "/api/v1/users/2001/pin",
                &format!("{{\"pin\": \"{weak}\"}}"),
            )
            .await;
        assert_eq!(r.status, 400, "{weak}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("not a run") && msg.contains("not contain the extension"),
            "{msg}"
        );
        if weak == "992001" {
            assert!(!msg.contains(weak), "the refused PIN is not echoed: {msg}");
        }
    }
    // A PIN given as a number: the error does not quote it either.
    let r = server
        .call("POST", "/api/v1/users/2001/pin", "{\"pin\": 583920}")
        .await;
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("583920"), "{}", r.text());
    let r = server
        .call("POST", "/api/v1/users/2001/pin", "{\"pin\": \"583920\"}")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["pin"], "583920");
    let r = server
        .call(
            "POST",
            "/api/v1/users/2001/sip-secret",
            "{\"sip_secret\": \"short\"}",
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = server
        .call(
            "POST",
            "/api/v1/users",
            "{\"extension\": \"2002\", \"name\": \"B\", \"pin\": \"222222\"}",
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(server.admin("GET", "/api/v1/users/2002").await.status, 404);
    assert_eq!(server.admin("GET", "/api/v1/users/20.02").await.status, 400);
}

#[tokio::test]
async fn disabling_a_user_logs_them_out_and_refuses_new_logins() {
    let server = Server::start_with(EMBEDDED.into(), "").await;
    create(&server, "2001").await;
    let pin = new_pin(&server, "2001").await;
    new_sip_secret(&server, "2001").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        title(&phone.login("External", "2001", &pin).await),
        "Logged in"
    );
    assert_eq!(server.logins().await.len(), 1);

    let r = server
        .call("PATCH", "/api/v1/users/2001", "{\"enabled\": false}")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["enabled"], false);
    assert!(server.logins().await.is_empty(), "logged out");
    let audit = server.audit().await;
    assert!(
        audit.iter().any(|e| e["kind"] == "admin-logout"
            && e["extension"] == "2001"
            && e["detail"]
                .as_str()
                .unwrap()
                .contains("(key test): user disabled")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "user-changed"
                && e["detail"].as_str().unwrap().contains("disabled"))
    );
    let other = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        title(&other.login("External", "2001", &pin).await),
        "Login failed"
    );

    let r = server
        .call("PATCH", "/api/v1/users/2001", "{\"enabled\": true}")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        title(&other.login("External", "2001", &pin).await),
        "Logged in"
    );
    let r = server.admin("DELETE", "/api/v1/users/2001").await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(
        server.logins().await.is_empty(),
        "a deleted user is logged out too"
    );
    assert_eq!(server.admin("GET", "/api/v1/users/2001").await.status, 404);
}

#[tokio::test]
async fn other_directory_kinds_answer_409() {
    let server = Server::start("").await;
    let r = server.admin("GET", "/api/v1/users").await;
    assert_eq!(r.status, 409);
    assert!(r.text().contains("kind = \\\"embedded\\\""), "{}", r.text());
    let r = server.call("POST", "/api/v1/users/1001/pin", "{}").await;
    assert_eq!(r.status, 409);
}

#[tokio::test]
async fn a_fresh_store_is_seeded_so_the_demo_users_log_in() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed.toml");
    std::fs::write(&seed, support::DIRECTORY).unwrap();
    let block = format!("{EMBEDDED}seed = \"{}\"\n", seed.display());
    let server = Server::start_with(block, "").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        title(&phone.login("External", "1001", "73915").await),
        "Logged in"
    );
    let other = Phone::new(server.addr, AASTRA_6737I);
    // 1003 has no PIN: the shared user password, as with the file directory.
    assert_eq!(
        title(
            &other
                .login("External", "1003", support::USER_PASSWORD)
                .await
        ),
        "Logged in"
    );
    assert!(!contains(&store_bytes(&server), "sip-secret-1001"));
    // A later start does not import again over what admins changed.
    let r = server.admin("DELETE", "/api/v1/users/1004").await;
    assert_eq!(r.status, 204);
    let server = server.restart().await;
    assert_eq!(server.admin("GET", "/api/v1/users/1004").await.status, 404);
    assert_eq!(server.admin("GET", "/api/v1/users/1002").await.status, 200);
}

fn hotdesk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn import_toml_and_csv_all_or_nothing_and_export_without_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("hotdesk.toml");
    std::fs::write(
        &config,
        support::config_with(dir, "http://127.0.0.1:1", EMBEDDED, ""),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let toml = dir.join("users.toml");
    std::fs::write(&toml, support::DIRECTORY).unwrap();
    let out = hotdesk(&["import-users", "--config", config, toml.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 4 user(s)"));

    let server = Server::start_in(dir.to_owned(), Some(EMBEDDED.into()), String::new()).await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        title(&phone.login("External", "1002", "86420").await),
        "Logged in"
    );

    // A CSV with one broken row imports nothing, and says which line.
    let broken = dir.join("broken.csv");
    std::fs::write(
        &broken,
        "extension,name,pin,sip_secret,template,email\r\n\
         3001,\"Hopper, Grace\",583920,csv-secret-3001-abcdef,,grace@example.com\r\n\
         30x2,Bad Row,583921,csv-secret-3002-abcdef,,\r\n",
    )
    .unwrap();
    let out = hotdesk(&["import-users", "--config", config, broken.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("nothing imported"),
        "{err}"
    );
    assert!(
        !err.contains("csv-secret") && !err.contains("58392"),
        "{err}"
    );
    assert_eq!(server.admin("GET", "/api/v1/users/3001").await.status, 404);

    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "extension,name,pin,sip_secret,template,email\r\n\
         3001,\"Hopper, Grace\",583920,csv-secret-3001-abcdef,,grace@example.com\r\n",
    )
    .unwrap();
    let out = hotdesk(&["import-users", "--config", config, good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The running server notices the other process's import within its poll interval.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.admin("GET", "/api/v1/users/3001").await.status != 200 {
        assert!(Instant::now() < deadline, "import not picked up");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let other = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        title(&other.login("External", "3001", "583920").await),
        "Logged in"
    );

    let out = hotdesk(&["export-users", "--config", config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.starts_with("extension,name,pin,sip_secret,template,email\n"),
        "{csv}"
    );
    assert!(
        csv.contains("3001,\"Hopper, Grace\",,,,grace@example.com"),
        "{csv}"
    );
    for secret in ["583920", "csv-secret", "sip-secret-100", "73915", "86420"] {
        assert!(!csv.contains(secret), "{secret} in {csv}");
    }
    assert!(!contains(&store_bytes(&server), "csv-secret-3001"));
}
