//! The access log of the real binary: one line per request, in the log's format (text or
//! JSON), with route, vendor, MAC, status and latency, never the path or query; silenced by
//! `RUST_LOG=hotdesk::access=off` like any other target; everything written by the time the
//! server has stopped on SIGTERM.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use support::phone::YEALINK_T46S;
use support::request;

struct Run {
    child: Child,
    addr: std::net::SocketAddr,
    stdout: BufReader<std::process::ChildStdout>,
    _tmp: tempfile::TempDir,
}

fn start(args: &[&str], rust_log: &str) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("directory.toml"), support::DIRECTORY).unwrap();
    let config = tmp.path().join("hotdesk.toml");
    std::fs::write(
        &config,
        support::config_text(tmp.path(), "http://127.0.0.1:1", ""),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    Run {
        child,
        addr,
        stdout,
        _tmp: tmp,
    }
}

/// An entry screen, a login whose query carries a PIN, and a path no route takes.
async fn traffic(addr: std::net::SocketAddr) {
    let ua = [("User-Agent", YEALINK_T46S)];
    assert_eq!(request(addr, "GET", "/app", &ua).await.status, 200);
    request(
        addr,
        "GET",
        "/app/login?net=internal&ext=1001&pin=86420",
        &ua,
    )
    .await;
    assert_eq!(request(addr, "GET", "/no/such/page", &[]).await.status, 404);
}

/// Stops the server as an admin would and returns everything it wrote.
fn stop(mut run: Run) -> String {
    let pid = run.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(run.child.wait().unwrap().success());
    let mut rest = String::new();
    run.stdout.read_to_string(&mut rest).unwrap();
    rest
}

fn access_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("hotdesk::access"))
        .collect()
}

#[tokio::test]
async fn text_lines_one_per_request_without_path_or_query() {
    let run = start(&[], "info");
    traffic(run.addr).await;
    let log = stop(run);
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 3, "{log}");
    for line in &lines {
        // 2026-11-23T19:27:18.546168Z, then the level as the other lines have it.
        let (stamp, rest) = line.split_at(27);
        assert!(
            stamp.len() == 27
                && stamp.as_bytes()[10] == b'T'
                && stamp.ends_with('Z')
                && stamp[20..26].bytes().all(|b| b.is_ascii_digit()),
            "{line}"
        );
        assert!(
            rest.starts_with("  INFO hotdesk::access: request method=\"GET\" "),
            "{line}"
        );
        let us = line.rsplit_once(" us=").unwrap().1;
        assert!(us.parse::<u64>().is_ok(), "{line}");
        assert!(!line.contains("86420") && !line.contains('?'), "{line}");
    }
    assert!(lines[0].contains(
        "route=\"app\" client=127.0.0.1 vendor=\"yealink\" mac=805ec02f3c2e key=- status=200 us="
    ));
    assert!(lines[1].contains("route=\"app/login\" client=127.0.0.1 vendor=\"yealink\""));
    assert!(
        lines[2].contains(
            "route=\"not-found\" client=127.0.0.1 vendor=\"-\" mac=- key=- status=404 us="
        )
    );
    assert!(!log.contains("86420"), "the PIN is nowhere in the log");
}

#[tokio::test]
async fn json_lines_parse_and_carry_the_same_fields() {
    let run = start(&["--log-format", "json"], "info");
    traffic(run.addr).await;
    let log = stop(run);
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 3, "{log}");
    for line in log.lines().skip_while(|l| !l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    let entry: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(entry["target"], "hotdesk::access");
    assert_eq!(entry["level"], "INFO");
    assert_eq!(entry["message"], "request");
    assert_eq!(entry["route"], "app");
    assert_eq!(entry["vendor"], "yealink");
    assert_eq!(entry["mac"], "805ec02f3c2e");
    assert_eq!(entry["status"], 200);
    assert!(entry["us"].is_u64());
    assert!(entry["timestamp"].as_str().unwrap().ends_with('Z'));
    let missing: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(
        (&missing["route"], &missing["status"]),
        (&"not-found".into(), &404.into())
    );
    assert!(!log.contains("86420"));
}

#[tokio::test]
async fn the_access_target_can_be_silenced() {
    let run = start(&[], "info,hotdesk::access=off");
    traffic(run.addr).await;
    let log = stop(run);
    assert!(access_lines(&log).is_empty(), "{log}");
    assert!(log.contains(" INFO "), "the other lines stay: {log}");
}
