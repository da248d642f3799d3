//! `kind = "voicemail-conf"` end to end: the real server reads Asterisk's files (voicemail.conf
//! with includes and aliases, pjsip.conf for SIP secrets, the spool's secret.conf) and a phone
//! logs in through them.

mod support;

use support::Server;
use support::phone::*;

fn message(view: &View) -> (String, String) {
    match view {
        View::Message { title, text, .. } => (title.clone(), text.clone()),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn login(ext: &str, pin: &str) -> String {
    format!("/app/login?net=internal&ext={ext}&pin={pin}")
}

#[tokio::test]
async fn voicemail_users_log_in_with_their_pjsip_line_and_without_one_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("voicemail.d")).unwrap();
    std::fs::write(
        d.join("voicemail.conf"),
        "[General]\naliasescontext = myaliases\npasswordlocation = spooldir\n\
         [default]\n1001 => 1111,Ada Lovelace\nnot a mailbox line\n\
         #include \"voicemail.d/*.conf\"\n[myaliases]\n1234@devices => 1001@default\n\
         [tenantb]\n1001 => 9999,Other Tenant\n",
    )
    .unwrap();
    std::fs::write(
        d.join("voicemail.d/extra.conf"),
        "[default]\n1002 => -2222,Grace Hopper\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pjsip.conf"),
        "[auth](!)\ntype=auth\nauth_type=userpass\n[1001]\ntype=endpoint\nauth=1001-auth\n[1001-auth](auth)\nusername=1001\npassword=pj-line-1001\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("spool/default/1001")).unwrap();
    std::fs::write(
        d.join("spool/default/1001/secret.conf"),
        "[general]\npassword=5151\n",
    )
    .unwrap();
    let directory = format!(
        "[directory]\nkind = \"voicemail-conf\"\nvoicemail_conf = \"{0}/voicemail.conf\"\nspool = \"{0}/spool\"\npjsip_conf = \"{0}/pjsip.conf\"\n",
        d.display()
    );
    // check-config names each skipped line with its file and line.
    let config = d.join("hotdesk.toml");
    std::fs::write(
        &config,
        support::config_with(d, "http://127.0.0.1:8080", &directory, ""),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 mailbox(es), 1 with a SIP secret, 6 file(s) watched"),
        "{stdout}"
    );
    assert!(
        stdout.contains("voicemail.conf:6: no '=' in this line; skipped"),
        "{stdout}"
    );

    let server = Server::start_with(directory, "").await;

    // The spool's secret.conf overrides voicemail.conf's PIN.
    let a = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        message(&a.go(&login("1001", "1111")).await).0,
        "Login failed"
    );
    assert_eq!(message(&a.go(&login("1001", "5151")).await).0, "Logged in");
    assert_eq!(server.logins().await[0]["name"], "Ada Lovelace");

    // A mailbox from a globbed include, with no SIP line: refused with a clear screen.
    let b = Phone::new(server.addr, YEALINK_T46S);
    let (title, text) = message(&b.go(&login("1002", "2222")).await);
    assert_eq!(title, "Login refused");
    assert_eq!(
        text,
        "Extension 1002 has no phone line set up. Ask your administrator."
    );
    assert_eq!(server.logins().await.len(), 1);
}
