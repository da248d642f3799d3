//! Test harness: starts the real server on 127.0.0.1:0 and drives it like a phone would,
//! over plain TCP, parsing each vendor's XML and following its links.
#![allow(dead_code)]

pub mod phone;
pub mod upstream;
pub mod xml;

use std::path::PathBuf;
use std::sync::Arc;

use hotdesk::clock::ManualClock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Demo users for tests. PINs are unusual so a leak is easy to spot.
pub const DIRECTORY: &str = r#"
[[user]]
extension = "1001"
name = "Ada Lovelace"
voicemail_pin = "73915"
sip_password = "sip-secret-1001"

[[user]]
extension = "1002"
name = "Grace Hopper"
voicemail_pin = "86420"
sip_password = "sip-secret-1002"

[[user]]
extension = "1003"
name = "Søren Kierkegaard"
sip_password = "sip-secret-1003"

[[user]]
extension = "1004"
name = "Zoë \"O'Neil\" <&> \u0007 🦀"
voicemail_pin = "55117"
sip_password = "sip-secret-1004"
"#;

pub const USER_PASSWORD: &str = "24681357";
pub const ADMIN_PASSWORD: &str = "99887766";
pub const API_KEY: &str = "test-admin-key-0123456789";

/// A running server and what it needs to be restarted on the same state.
pub struct Server {
    /// The server's clock: real time plus whatever a test advances it by.
    pub clock: Arc<ManualClock>,
    pub addr: std::net::SocketAddr,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub extra: String,
    pub directory: Option<String>,
    _tmp: Option<tempfile::TempDir>,
}

fn admin_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hotdesk::auth::hash_password(ADMIN_PASSWORD).unwrap())
}

/// The `[directory]` table for the file backend in `dir`.
pub fn file_directory(dir: &std::path::Path) -> String {
    format!(
        "[directory]\nfile = \"{}/directory.toml\"\npoll_interval = \"50ms\"\n",
        dir.display()
    )
}

/// A `[directory]` table for the HTTP backend with short test windows.
pub fn http_directory(url: &str) -> String {
    format!(
        r#"[directory]
kind = "http"
fresh_ttl = "300ms"
stale_window = "1h"
negative_ttl = "300ms"
deadline = "700ms"
[directory.http]
url = "{url}"
auth = "bearer"
token = "upstream-token-123"
request_timeout = "400ms"
breaker_failures = 3
breaker_cooldown = "1s"
"#
    )
}

pub fn config_text(dir: &std::path::Path, base: &str, extra: &str) -> String {
    config_with(dir, base, &file_directory(dir), extra)
}

pub fn config_with(dir: &std::path::Path, base: &str, directory: &str, extra: &str) -> String {
    // `extra` replaces whole [login] keys by appending; TOML forbids duplicate keys, so
    // callers pass complete tables that are not otherwise present.
    let login = if extra.contains("[login]") {
        String::new()
    } else {
        format!(
            "[login]\nuser_password = \"{USER_PASSWORD}\"\nadmin_password_hash = \"{}\"\nmax_failures = 3\nlockout = \"15m\"\n",
            admin_hash()
        )
    };
    format!(
        r#"listen = "127.0.0.1:0"
base_url = "{base}"
[server]
header_timeout = "1s"
request_timeout = "5s"
max_connections = 256
# Every test phone connects from 127.0.0.1 (tests/transport.rs sets its own share).
max_connections_per_source = 256
# Most tests call step URLs directly; tests/signing.rs runs with signing on.
sign_links = false
shutdown_grace = "2s"
{directory}
[store]
path = "{dir}/state/hotdesk.sqlite"
[networks.internal]
label = "Internal"
sip_server = "10.0.0.5"
cidrs = ["10.0.0.0/8"]
[networks.external]
label = "External"
sip_server = "pbx.example.com"
cidrs = ["127.0.0.0/8"]
[admin]
[[admin.keys]]
name = "test"
hash = "{key_hash}"
{login}{extra}
"#,
        dir = dir.display(),
        key_hash = hotdesk::auth::hash_api_key(API_KEY)
    )
    .replace("{ADMIN_HASH}", admin_hash())
}

pub fn admin_hash_for_tests() -> &'static str {
    admin_hash()
}

impl Server {
    /// A fresh server with the test directory and `extra` config appended.
    pub async fn start(extra: &str) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("directory.toml"), DIRECTORY).unwrap();
        let dir = tmp.path().to_owned();
        let mut s = Self::start_in(dir, None, extra.to_owned()).await;
        s._tmp = Some(tmp);
        s
    }

    /// A fresh server whose `[directory]` table is `directory`.
    pub async fn start_with(directory: String, extra: &str) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut s = Self::start_in(dir, Some(directory), extra.to_owned()).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_in(dir: PathBuf, directory: Option<String>, extra: String) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let block = directory.clone().unwrap_or_else(|| file_directory(&dir));
        let text = config_with(&dir, &format!("http://{addr}"), &block, &extra);
        let config =
            hotdesk::config::Config::parse(&text, std::path::Path::new("test.toml")).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let clock = Arc::new(ManualClock::new(time::UtcOffset::UTC));
        let app = hotdesk::App::open_with(config, clock.clone()).unwrap();
        let task = tokio::spawn(async move {
            hotdesk::run_app(app, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            clock,
            addr,
            dir,
            stop: Some(tx),
            task: Some(task),
            extra,
            directory,
            _tmp: None,
        }
    }

    /// Stops this server and starts a new one on the same state (a new port).
    pub async fn restart(mut self) -> Server {
        self.shutdown().await;
        let tmp = self._tmp.take();
        let mut s =
            Self::start_in(self.dir.clone(), self.directory.clone(), self.extra.clone()).await;
        s._tmp = tmp;
        s
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An admin API call with a JSON body (`""` for none).
    pub async fn call(&self, method: &str, path: &str, body: &str) -> Response {
        request_with_body(self.addr, method, path, body).await
    }

    pub async fn admin(&self, method: &str, path: &str) -> Response {
        request(
            self.addr,
            method,
            path,
            &[("Authorization", &format!("Bearer {API_KEY}"))],
        )
        .await
    }

    pub async fn logins(&self) -> Vec<serde_json::Value> {
        let r = self.admin("GET", "/api/v1/logins").await;
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).unwrap()
    }

    pub async fn audit(&self) -> Vec<serde_json::Value> {
        let r = self.admin("GET", "/api/v1/audit?limit=100").await;
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; a test fails with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
}

/// An admin request with a JSON body and the test API key.
pub async fn request_with_body(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    parse_response(&raw)
}

/// One HTTP/1.1 request with `Connection: close`; `target` is a path or an absolute URL.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    request_from(
        std::net::Ipv4Addr::LOCALHOST.into(),
        addr,
        method,
        target,
        headers,
    )
    .await
}

/// A TCP connection to `addr` from `source`, a loopback address (any of 127.0.0.0/8 works
/// on Linux without setup).
pub async fn connect_from(source: std::net::IpAddr, addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// As [`request`], from the loopback address `source`.
pub async fn request_from(
    source: std::net::IpAddr,
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    let path = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => target,
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = connect_from(source, addr).await;
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .unwrap();
    let r = parse_response(&raw);
    if let Some(len) = r.header("content-length").filter(|_| method != "HEAD") {
        let len: usize = len.parse().unwrap();
        assert_eq!(len, r.body.len(), "Content-Length matches the body");
    }
    r
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    Response {
        status,
        headers,
        body,
    }
}

/// Starts a server whose config text is the test template edited by `edit` (for keys in
/// tables the template already has, such as `[server]` or `[admin]`).
pub async fn start_edited(edit: impl Fn(String) -> String) -> std::net::SocketAddr {
    let tmp = tempfile::tempdir().unwrap().keep();
    std::fs::write(tmp.join("directory.toml"), DIRECTORY).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let text = edit(config_text(&tmp, &format!("http://{addr}"), ""));
    let config = hotdesk::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    tokio::spawn(hotdesk::run(config, listener, std::future::pending()));
    addr
}

/// A browser-like request from the loopback address `source`: an optional cookie
/// (`name=value`) and an optional form body (`application/x-www-form-urlencoded`).
pub async fn form_request_from(
    source: std::net::IpAddr,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    match form {
        Some(body) => req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => req.push_str("\r\n"),
    }
    let mut s = connect_from(source, addr).await;
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    parse_response(&raw)
}

/// Stands in for the phone's SIP stack: takes one NOTIFY, answers 200 OK with the request's
/// Via, From, To, Call-ID and CSeq (RFC 3261 8.2.6), and returns the request's text.
pub async fn answer_notify(sip: &tokio::net::UdpSocket) -> String {
    let mut buf = vec![0u8; 4096];
    let (n, from) =
        tokio::time::timeout(std::time::Duration::from_secs(10), sip.recv_from(&mut buf))
            .await
            .expect("a NOTIFY within 10 s")
            .unwrap();
    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
    let copied: String = request
        .lines()
        .filter(|l| {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str())
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    let ok = format!("SIP/2.0 200 OK\r\n{copied}Content-Length: 0\r\n\r\n");
    sip.send_to(ok.as_bytes(), from).await.unwrap();
    request
}

/// A form POST from 127.0.0.1, as a browser sends it, with an optional cookie.
pub async fn post_form(
    addr: std::net::SocketAddr,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> Response {
    let local = std::net::Ipv4Addr::LOCALHOST.into();
    form_request_from(local, addr, "POST", path, cookie, Some(body)).await
}

/// Signs in to the console as `admin`; returns the session cookie's `name=value`.
pub async fn console_sign_in(addr: std::net::SocketAddr) -> String {
    let body = format!("name=admin&password={ADMIN_PASSWORD}");
    let r = post_form(addr, "/admin/signin", None, &body).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/admin"));
    let cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(cookie.starts_with("hotdesk_admin="), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

/// The CSRF token of a page's forms.
pub fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = page.find(marker).expect("a form with a CSRF token");
    let rest = &page[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}
