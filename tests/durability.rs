//! The real binary: a login the phone was told about survives `kill -9`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::phone::*;

fn spawn(config: &std::path::Path) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "hotdesk listening on http://127.0.0.1:PORT (...)"
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

/// Write-back to a port nobody listens on: the row must wait in the outbox.
const WRITEBACK: &str = "[writeback]\nkind = \"webhook\"\n[writeback.http]\nurl = \"http://127.0.0.1:1/events\"\nauth = \"none\"\n";

#[tokio::test]
async fn a_confirmed_login_survives_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("directory.toml"), support::DIRECTORY).unwrap();
    let config = tmp.path().join("hotdesk.toml");
    // base_url is not used for the assertions; the port is only known after binding.
    std::fs::write(
        &config,
        support::config_text(tmp.path(), "http://127.0.0.1:1", WRITEBACK),
    )
    .unwrap();

    let (mut child, addr) = spawn(&config);
    let phone = Phone::new(addr, YEALINK_T46S);
    let done = phone.login("Internal", "1001", "73915").await;
    assert!(matches!(done, View::Message { ref title, .. } if title == "Logged in"));
    child.kill().unwrap(); // SIGKILL, right after the answer
    child.wait().unwrap();

    let (mut child, addr) = spawn(&config);
    let r = support::request(
        addr,
        "GET",
        "/api/v1/logins",
        &[("Authorization", &format!("Bearer {}", support::API_KEY))],
    )
    .await;
    let logins: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    let auth = format!("Bearer {}", support::API_KEY);
    let r = support::request(addr, "GET", "/api/v1/outbox", &[("Authorization", &auth)]).await;
    let outbox: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0]["mac"], "805ec02f3c2e");
    assert_eq!(
        outbox["pending"], 1,
        "the write-back committed with the login: {outbox}"
    );
}

/// Logins arriving together share commits (group commit); a phone is still answered only
/// once its own login is durable. Phones log in at once, the server is killed after half
/// of them were answered, and every answered login (with its write-back) must be on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_answered_during_a_storm_survive_kill_9_with_their_write_backs() {
    const PHONES: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let directory: String = (0..PHONES)
        .map(|i| {
            format!(
                "[[user]]\nextension = \"{}\"\nname = \"User {i}\"\nvoicemail_pin = \"{}\"\nsip_password = \"s{i}\"\n",
                2000 + i,
                70_000 + i
            )
        })
        .collect();
    std::fs::write(tmp.path().join("directory.toml"), directory).unwrap();
    let config = tmp.path().join("hotdesk.toml");
    std::fs::write(
        &config,
        support::config_text(tmp.path(), "http://127.0.0.1:1", WRITEBACK),
    )
    .unwrap();

    let (mut child, addr) = spawn(&config);
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let phones: Vec<_> = (0..PHONES)
        .map(|i| {
            let answered = answered.clone();
            tokio::spawn(async move {
                let ua = format!("Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:01:{i:02x}");
                let phone = Phone::new(addr, &ua);
                let ext = (2000 + i).to_string();
                let done = phone
                    .login("Internal", &ext, &(70_000 + i).to_string())
                    .await;
                if matches!(done, View::Message { ref title, .. } if title == "Logged in") {
                    let _ = answered.send((format!("805ec00001{i:02x}"), ext));
                }
            })
        })
        .collect();
    let mut told = Vec::new();
    while told.len() < PHONES / 2 {
        told.push(answers.recv().await.unwrap());
    }
    child.kill().unwrap(); // SIGKILL while the other half are still logging in
    child.wait().unwrap();
    for p in &phones {
        p.abort();
    }
    for p in phones {
        let _ = p.await; // a phone cut off mid-login fails its request: expected
    }
    // Answers that arrived before the kill landed are answers too.
    while let Ok(t) = answers.try_recv() {
        told.push(t);
    }

    let (mut child, addr) = spawn(&config);
    let auth = format!("Bearer {}", support::API_KEY);
    let r = support::request(addr, "GET", "/api/v1/logins", &[("Authorization", &auth)]).await;
    let logins: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    let r = support::request(addr, "GET", "/api/v1/outbox", &[("Authorization", &auth)]).await;
    let outbox: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let stored: Vec<(String, String)> = logins
        .iter()
        .map(|l| {
            (
                l["mac"].as_str().unwrap_or_default().to_owned(),
                l["extension"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for t in &told {
        assert!(
            stored.contains(t),
            "{t:?} was answered but is not stored: {stored:?}"
        );
    }
    // Each login committed with its write-back, or neither did.
    assert_eq!(outbox["pending"], stored.len(), "{outbox}");
}

/// Runs `hotdesk check-config` from the project folder; it must succeed. Returns stdout.
fn check_ok(config: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_config_explains_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nbase_url = \"http://x\"\nlisten_typo = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("listen_typo"),
        "{err}"
    );

    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hotdesk.toml");
    assert!(check_ok(&demo).contains("3 user(s)"));

    // The same demo config switched to the voicemail.conf backend.
    let text = std::fs::read_to_string(&demo)
        .unwrap()
        .replace("kind = \"embedded\"", "kind = \"voicemail-conf\"")
        .replace("# voicemail_conf = ", "voicemail_conf = ")
        .replace("# pjsip_conf = ", "pjsip_conf = ");
    let switched = tmp.path().join("vm.toml");
    std::fs::write(&switched, text).unwrap();
    let out = check_ok(&switched);
    assert!(out.contains("3 mailbox(es)"), "{out}");
    assert!(out.contains("3 with a SIP secret"), "{out}");
}

#[test]
fn new_api_key_prints_a_key_and_only_its_hash_for_the_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(["new-api-key", "--name", "pbx"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text.lines().next().unwrap().strip_prefix("key: ").unwrap();
    assert_eq!(key.len(), 48);
    let config_part = text.split_once("[[admin.keys]]").unwrap().1;
    assert!(!config_part.contains(key));
    assert!(config_part.contains(&hotdesk::auth::hash_api_key(key)));
    assert!(config_part.contains("name = \"pbx\""));
}

#[test]
fn hash_password_prints_an_argon2id_phc_string() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(!phc.contains("s3cret"));
    hotdesk::auth::check_phc(phc.trim()).unwrap();
}
