//! The real binary under a pretend systemd: readiness over NOTIFY_SOCKET, SIGHUP reloads
//! (what applies, what needs a restart, a broken config that changes nothing), SIGTERM.
//! Plus `App::reload` in-process.

mod support;

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::phone::{AASTRA_6731I, AASTRA_6737I, Phone, View};

const WAIT: Duration = Duration::from_secs(20);

/// A `[directory]` table whose file is never polled: only SIGHUP re-reads it.
fn directory_block(dir: &Path) -> String {
    format!(
        "[directory]\nkind = \"file\"\nfile = \"{}/directory.toml\"\npoll_interval = \"1h\"\n",
        dir.display()
    )
}

const EXTRA_USER: &str = r#"
[[user]]
extension = "1009"
name = "Added Later"
voicemail_pin = "64209"
sip_password = "sip-secret-1009"
"#;

struct Running {
    child: Child,
    addr: std::net::SocketAddr,
    notify: UnixDatagram,
    log: mpsc::Receiver<String>,
    config: PathBuf,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        std::fs::write(dir.join("directory.toml"), support::DIRECTORY).unwrap();
        let config = dir.join("hotdesk.toml");
        std::fs::write(&config, Self::config_text(&dir, "")).unwrap();
        let socket = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&socket).unwrap();
        notify.set_read_timeout(Some(WAIT)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &socket)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut running = Running {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            notify,
            log,
            config,
            dir,
            _tmp: tmp,
        };
        let line = running.log_line(|l| l.starts_with("hotdesk listening on http://"));
        let addr = line["hotdesk listening on http://".len()..]
            .split_whitespace()
            .next()
            .unwrap();
        running.addr = addr.parse().unwrap();
        running.expect_state("READY=1");
        running
    }

    fn config_text(dir: &Path, login_extra: &str) -> String {
        support::config_with(
            dir,
            "http://127.0.0.1:8080",
            &directory_block(dir),
            login_extra,
        )
    }

    /// Waits for the next log line that `pick` accepts; every line must be free of ANSI
    /// escapes (stdout is a pipe here, not a terminal).
    fn log_line(&self, pick: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .log
                .recv_timeout(left)
                .expect("the expected log line did not come");
            assert!(
                !line.contains('\u{1b}'),
                "colour codes into a pipe: {line:?}"
            );
            if pick(&line) {
                return line;
            }
        }
    }

    /// Waits for the next notification and checks it holds `state` (e.g. `READY=1`).
    fn expect_state(&self, state: &str) -> String {
        let mut buf = [0u8; 512];
        let n = self
            .notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {state} from the server: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            text.lines().any(|l| l == state),
            "wanted {state}, got {text:?}"
        );
        text
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGHUP, then the RELOADING=1 … READY=1 pair that brackets the reload.
    fn reload(&self) {
        self.signal("HUP");
        let reloading = self.expect_state("RELOADING=1");
        assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
        self.expect_state("READY=1");
    }

    async fn logins(&self) -> Vec<serde_json::Value> {
        let r = support::request(
            self.addr,
            "GET",
            "/api/v1/logins",
            &[("Authorization", &format!("Bearer {}", support::API_KEY))],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    async fn network_labels(&self) -> Vec<String> {
        // A phone nobody logs in on, so it always shows the network menu.
        match Phone::new(self.addr, AASTRA_6731I).open().await {
            View::Menu { items, .. } => items.into_iter().map(|(label, _)| label).collect(),
            other => panic!("not the network menu: {other:?}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn tells_systemd_when_ready_and_when_stopping() {
    let mut server = Running::start();
    // READY=1 came after the listener was bound: it answers at once.
    let ready = support::request(server.addr, "GET", "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    server.signal("TERM");
    server.expect_state("STOPPING=1");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sighup_applies_directory_networks_and_reports_what_needs_a_restart() {
    let server = Running::start();
    let phone = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        server.network_labels().await,
        ["Internal", "External", "Log in with a code"]
    );
    // 1009 is not in the directory yet: no login.
    phone.login("Internal", "1009", "64209").await;
    assert!(server.logins().await.is_empty());

    // Add a user, rename a network, and change what only a restart applies.
    let directory = server.dir.join("directory.toml");
    let users = std::fs::read_to_string(&directory).unwrap() + EXTRA_USER;
    std::fs::write(&directory, users).unwrap();
    let text = Running::config_text(&server.dir, "")
        .replace("label = \"Internal\"", "label = \"Inside\"")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"")
        .replace("shutdown_grace = \"2s\"", "shutdown_grace = \"3s\"");
    std::fs::write(&server.config, text).unwrap();
    server.reload();
    let applied = server.log_line(|l| l.contains("config reloaded"));
    assert!(applied.contains("[directory] re-read"), "{applied}");
    assert!(applied.contains("[networks] changed"), "{applied}");
    for setting in ["listen", "[server]"] {
        let line = server.log_line(|l| l.contains("needs a restart"));
        assert!(line.contains(setting), "{setting}: {line}");
    }

    assert_eq!(
        server.network_labels().await,
        ["Inside", "External", "Log in with a code"]
    );
    phone.login("Inside", "1009", "64209").await;
    let logins = server.logins().await;
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0]["extension"], "1009");
    assert_eq!(logins[0]["network"], "internal");

    // A broken config changes nothing, and every problem is logged.
    std::fs::write(&directory, "[[user]]\nextension = \"1001\"\nname = [\n").unwrap();
    let broken = Running::config_text(&server.dir, "[vendors.nokia]\n")
        .replace("label = \"Internal\"", "label = \"Broken\"");
    std::fs::write(&server.config, broken).unwrap();
    server.reload();
    let nokia = server.log_line(|l| l.contains("config not reloaded"));
    let directory_problem = server.log_line(|l| l.contains("config not reloaded"));
    let both = format!("{nokia}\n{directory_problem}");
    assert!(both.contains("nokia"), "{both}");
    assert!(both.contains("directory"), "{both}");
    server.log_line(|l| l.contains("problems=2"));
    assert_eq!(
        server.network_labels().await,
        ["Inside", "External", "Log in with a code"]
    );
    // The directory in use is still the one with 1009 (a lookup after the cache was kept).
    assert_eq!(server.logins().await.len(), 1);
}

/// In-process: what `App::reload` swaps, what it leaves, and that a refused reload leaves all.
#[tokio::test]
async fn app_reload_swaps_lockout_limits_and_networks_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("directory.toml"), support::DIRECTORY).unwrap();
    let text = |extra: &str| {
        support::config_with(dir, "http://127.0.0.1:8080", &directory_block(dir), extra)
    };
    let parse = |t: &str| {
        hotdesk::config::Config::parse(t, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"))
    };
    let app = hotdesk::App::open(parse(&text(""))).unwrap();
    assert_eq!(app.flow.lockouts().limits().pair, 3);

    let edited = text("")
        .replace("max_failures = 3", "max_failures = 7")
        .replace("sip_server = \"10.0.0.5\"", "sip_server = \"10.0.0.6\"")
        .replace("max_connections = 256", "max_connections = 100");
    let report = app.reload(parse(&edited)).unwrap();
    assert!(
        report.applied.iter().any(|a| a == "[networks] changed"),
        "{report:?}"
    );
    assert!(
        report
            .applied
            .iter()
            .any(|a| a == "[login] lockout limits changed"),
        "{report:?}"
    );
    assert_eq!(report.needs_restart, ["[server]"]);
    assert_eq!(app.flow.lockouts().limits().pair, 7);
    let live = app.live_config();
    assert_eq!(live.networks["internal"].sip_server, "10.0.0.6");
    // Not applied: the running value stays.
    assert_eq!(live.server.max_connections, 256);

    // Two problems: both reported, nothing swapped.
    std::fs::write(dir.join("directory.toml"), "not toml [").unwrap();
    let broken = text("[vendors.nokia]\n").replace("max_failures = 3", "max_failures = 1");
    let refused = app.reload(parse(&broken)).unwrap_err();
    assert_eq!(refused.0.len(), 2, "{refused:?}");
    assert!(refused.0.iter().any(|p| p.contains("nokia")), "{refused:?}");
    assert!(
        refused.0.iter().any(|p| p.starts_with("directory")),
        "{refused:?}"
    );
    assert_eq!(app.flow.lockouts().limits().pair, 7);
    assert_eq!(
        app.live_config().networks["internal"].sip_server,
        "10.0.0.6"
    );
    app.stop_tasks();
}
