//! The command line as an admin meets it: `--help` describes every command and flag, and a
//! config written for the first release (plaintext `[admin] api_keys`) still works, with a
//! warning that names its replacement.

mod support;

use std::process::Command;

fn hotdesk(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(args)
        .output()
        .expect("running hotdesk");
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    (out.status.success(), text)
}

/// The entries of one help section ("Commands:", "Options:"), each with its description:
/// on the entry's own line, or on the indented lines below it (long help).
fn entries(help: &str, section: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if !line.starts_with(' ') {
            inside = line.trim_end() == section;
            continue;
        }
        if !inside || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent <= 6 && (text.starts_with('-') || section == "Commands:") {
            // `  -c, --config <FILE>  The config file` or `  serve  Start the server`.
            let (name, rest) = match text.find("  ") {
                Some(i) => (&text[..i], text[i..].trim()),
                None => (text, ""),
            };
            out.push((name.to_owned(), rest.to_owned()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(' ');
            last.1.push_str(text);
        }
    }
    out
}

#[test]
fn help_describes_every_command_and_flag() {
    let (ok, top) = hotdesk(&["--help"]);
    assert!(ok, "{top}");
    for needle in [
        "/etc/hotdesk/hotdesk.toml",
        "SIGHUP",
        "SIGTERM",
        "needing a restart",
        "READY=1",
    ] {
        assert!(top.contains(needle), "--help lacks {needle:?}:\n{top}");
    }
    let commands = entries(&top, "Commands:");
    let names: Vec<&str> = commands.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["serve", "check-config", "hash-password", "new-api-key"] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    for (name, about) in &commands {
        assert!(!about.is_empty(), "command {name} has no description");
        if name == "help" {
            continue;
        }
        let (ok, help) = hotdesk(&[name, "--help"]);
        assert!(ok, "{name} --help: {help}");
        let options = entries(&help, "Options:");
        assert!(
            options.iter().any(|(o, _)| o.contains("--help")),
            "{name}: no options parsed from:\n{help}"
        );
        for (option, description) in options {
            assert!(
                !description.is_empty(),
                "{name} {option} has no description:\n{help}"
            );
        }
    }
    // The flags an admin needs are there, described.
    let (_, serve) = hotdesk(&["serve", "--help"]);
    assert!(serve.contains("--config <FILE>"), "{serve}");
    assert!(serve.contains("--log-format"), "{serve}");
    let (_, check) = hotdesk(&["check-config", "--help"]);
    for flag in ["--config <FILE>", "--online", "--extension <EXTENSION>"] {
        assert!(check.contains(flag), "{flag}: {check}");
    }
}

#[test]
fn a_helpless_parser_would_fail_this_test() {
    // The section parser finds an undocumented flag (so the test above can fail).
    let help = "Options:\n  -c, --config <FILE>\n      --quiet  Say less\n\nNext:\n";
    let found = entries(help, "Options:");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].1, "");
    assert_eq!(found[1].1, "Say less");
}

const LEGACY_KEY: &str = "first-release-key-0123456789";

fn with_legacy_key(text: String) -> String {
    text.replace(
        "[admin]\n",
        &format!("[admin]\napi_keys = [\"{LEGACY_KEY}\"]\n"),
    )
}

#[test]
fn check_config_warns_about_first_release_api_keys() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("directory.toml"), support::DIRECTORY).unwrap();
    let text = with_legacy_key(support::config_text(
        tmp.path(),
        "http://127.0.0.1:8080",
        "",
    ));
    let file = tmp.path().join("hotdesk.toml");
    std::fs::write(&file, text).unwrap();
    let (ok, out) = hotdesk(&["check-config", "--config", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("warning: [admin] api_keys"), "{out}");
    assert!(out.contains("[[admin.keys]]"), "{out}");
    assert!(out.contains("hotdesk new-api-key"), "{out}");
    assert!(!out.contains(LEGACY_KEY), "the key was printed: {out}");
}

#[tokio::test]
async fn a_first_release_api_key_still_opens_the_admin_api() {
    let addr = support::start_edited(with_legacy_key).await;
    let bearer = |key: &str| format!("Bearer {key}");
    let ok = support::request(
        addr,
        "GET",
        "/api/v1/logins",
        &[("Authorization", &bearer(LEGACY_KEY))],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let wrong = support::request(
        addr,
        "GET",
        "/api/v1/logins",
        &[("Authorization", &bearer("first-release-key-0123456780"))],
    )
    .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    // The [[admin.keys]] key of the same config works beside it.
    let current = support::request(
        addr,
        "GET",
        "/api/v1/logins",
        &[("Authorization", &bearer(support::API_KEY))],
    )
    .await;
    assert_eq!(current.status, 200, "{}", current.text());
}
