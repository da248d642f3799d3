//! Transport limits over raw sockets: timeouts, oversized heads and bodies, status codes.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use support::{Server, parse_response, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Reads until the server closes; returns what it sent and how long that took.
async fn until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, start.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after 6 s"),
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_by_the_header_timeout() {
    let server = Server::start("").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let (_, took) = until_closed(&mut s).await;
    assert!(
        took < Duration::from_secs(3),
        "closed after {took:?} (header_timeout = 1s)"
    );
}

#[tokio::test]
async fn byte_drip_headers_are_cut_off() {
    let server = Server::start("").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    let drip = b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for b in drip {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > Duration::from_secs(5) {
            panic!("still accepting bytes after 5 s");
        }
    }
    let (_, _) = until_closed(&mut s).await;
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn phones_are_served_while_slow_clients_hold_connections() {
    let server = Server::start("").await;
    // Twenty slow clients dripping header bytes ...
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /app HTTP/1.1\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    // ... while a phone keeps getting its screens promptly.
    let ua = [("User-Agent", support::phone::AASTRA_6737I)];
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(request(server.addr, "GET", "/app", &ua).await.status, 200);
        assert!(start.elapsed() < Duration::from_millis(500));
    }
    for s in &mut slow {
        let (_, took) = until_closed(s).await;
        assert!(took < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::start("").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (raw, took) = until_closed(&mut s).await;
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert!(
        took < Duration::from_secs(3),
        "idle connection kept {took:?}"
    );
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let server = Server::start("").await;
    let cases = [
        format!(
            "GET /app HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(40_000)
        ),
        format!(
            "GET /app HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..100)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        ),
    ];
    for req in cases {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let _ = s.write_all(req.as_bytes()).await;
        let (raw, _) = until_closed(&mut s).await;
        assert!(
            String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }
    // The server is still serving.
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[]).await.status,
        200
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = Server::start("").await;
    // The admin API reads bodies: an oversized one is refused before the key is even checked.
    // A route that takes no body refuses the method without reading it.
    for (path, want) in [("/api/v1/directory/invalidate", 413), ("/app", 405)] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let body = vec![b'x'; 100_000];
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = s.write_all(&body).await;
        let (raw, _) = until_closed(&mut s).await;
        assert_eq!(parse_response(&raw).status, want, "{path}");
    }
}

#[tokio::test]
async fn statuses_for_routes_and_methods() {
    let server = Server::start("").await;
    let ua = [("User-Agent", support::phone::AASTRA_6737I)];
    let cases = [
        ("GET", "/healthz", 200),
        ("HEAD", "/healthz", 200),
        ("GET", "/nope", 404),
        ("GET", "/app/../etc/passwd", 404),
        ("DELETE", "/app", 405),
        ("POST", "/api/v1/logins", 405),
    ];
    for (method, path, want) in cases {
        let r = request(server.addr, method, path, &ua).await;
        assert_eq!(r.status, want, "{method} {path}");
    }
    let allow = |r: &support::Response| -> Vec<String> {
        let mut m: Vec<String> = (r.header("allow").unwrap_or_default().split(','))
            .map(|m| m.trim().to_string())
            .collect();
        m.sort();
        m
    };
    let r = request(server.addr, "DELETE", "/app", &ua).await;
    assert_eq!(allow(&r), ["GET", "HEAD"]);
    // Each route names its own methods.
    let r = request(server.addr, "GET", "/api/v1/directory/invalidate", &ua).await;
    assert_eq!((r.status, allow(&r)), (405, vec!["POST".to_string()]));
    let r = request(server.addr, "PUT", "/api/v1/lockouts", &ua).await;
    assert_eq!(allow(&r), ["DELETE", "GET", "HEAD"]);
    // A step that changes state answers GET only, HEAD included.
    for method in ["HEAD", "POST"] {
        let r = request(server.addr, method, "/app/login", &ua).await;
        assert_eq!(
            (r.status, allow(&r)),
            (405, vec!["GET".to_string()]),
            "{method}"
        );
    }
}

#[tokio::test]
async fn many_parallel_phones_are_served() {
    let server = Server::start("").await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let ua = format!("Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:{i:02x}");
                request(addr, "GET", "/app", &[("User-Agent", &ua)])
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn the_connection_cap_sheds_load_and_recovers() {
    let addr =
        support::start_edited(|t| t.replace("max_connections = 256", "max_connections = 4")).await;
    // Four idle keep-alive connections fill the cap; each answered request proves it holds
    // a slot (no sleep needed to know the server accepted it).
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(answered(&mut s).await, "under the cap: served");
        idle.push(s);
    }
    // The fifth is closed at once, unanswered, instead of queueing.
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    let _ = fifth.write_all(HEALTH).await;
    let (raw, took) = until_closed(&mut fifth).await;
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    assert!(
        took < Duration::from_millis(500),
        "over the cap: closed after {took:?}"
    );
    // The idle ones are cut by the header timeout; then phones are served again.
    for s in &mut idle {
        until_closed(s).await;
    }
    let ua = [("User-Agent", support::phone::YEALINK_T46S)];
    for _ in 0..10 {
        assert_eq!(request(addr, "GET", "/app", &ua).await.status, 200);
    }
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// A TCP connection to `addr` from `source` (any 127.0.0.0/8 address works on Linux loopback).
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends one keep-alive `GET /healthz`: true when a 200 came back (the connection is held
/// open afterwards), false when the server closed it without a byte.
async fn answered(s: &mut TcpStream) -> bool {
    if s.write_all(HEALTH).await.is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer or a close within 5 s");
        match read {
            Ok(0) | Err(_) => {
                assert!(got.is_empty(), "closed mid-answer");
                return false;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.ends_with(b"ok\n") {
            assert!(got.starts_with(b"HTTP/1.1 200"));
            return true;
        }
    }
}

/// One `GET /app` as a phone, on a fresh connection from `source`.
async fn phone_from(source: [u8; 4], addr: SocketAddr) -> u16 {
    let mut s = connect_from(source, addr).await;
    let req = format!(
        "GET /app HTTP/1.1\r\nHost: x\r\nUser-Agent: {}\r\nConnection: close\r\n\r\n",
        support::phone::YEALINK_T46S
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (raw, _) = until_closed(&mut s).await;
    parse_response(&raw).status
}

#[tokio::test]
async fn one_source_at_its_cap_cannot_keep_phones_from_other_sources_out() {
    // 8 per source, 16 in all; held connections stay open for the whole test.
    let addr = support::start_edited(|t| {
        t.replace("max_connections = 256", "max_connections = 16")
            .replace(
                "max_connections_per_source = 256",
                "max_connections_per_source = 8",
            )
            .replace("header_timeout = \"1s\"", "header_timeout = \"30s\"")
    })
    .await;
    let attacker = [127, 0, 0, 2];
    let (mut held, mut shed) = (Vec::new(), 0);
    for _ in 0..200 {
        let mut s = connect_from(attacker, addr).await;
        let start = Instant::now();
        if answered(&mut s).await {
            held.push(s);
        } else {
            // Closed at once, not after a timeout (header_timeout is 30 s here).
            assert!(start.elapsed() < Duration::from_secs(2));
            shed += 1;
        }
    }
    assert_eq!((held.len(), shed), (8, 192));
    // Without the per-source limit those 200 sockets would have taken all 16 slots.
    for source in [[127, 0, 0, 1], [127, 0, 0, 3]] {
        for _ in 0..5 {
            assert_eq!(phone_from(source, addr).await, 200);
        }
    }
}

/// A server with HTTPS beside HTTP (the fixture certificate for "localhost"); `server` lines
/// are added to its `[server]` table (connection limits there replace the template's).
async fn start_tls(server: &str) -> (SocketAddr, SocketAddr) {
    let fixture = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/tls")
            .join(name)
    };
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::write(dir.join("directory.toml"), support::DIRECTORY).unwrap();
    let plain_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain, tls) = (plain_l.local_addr().unwrap(), tls_l.local_addr().unwrap());
    let extra = format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        fixture("cert-a.pem").display(),
        fixture("key-a.pem").display()
    );
    let mut text = support::config_text(&dir, &format!("http://{plain}"), &extra);
    for key in ["max_connections", "max_connections_per_source"] {
        if server.contains(&format!("{key} =")) {
            text = text.replace(&format!("{key} = 256\n"), "");
        }
    }
    let text = text.replace("[server]\n", &format!("[server]\n{server}\n"));
    let config = hotdesk::config::Config::parse(&text, Path::new("t.toml")).unwrap();
    let app = hotdesk::App::open(config).unwrap();
    tokio::spawn(hotdesk::run_app_on(
        app,
        plain_l,
        Some(tls_l),
        std::future::pending(),
    ));
    (plain, tls)
}

type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// An HTTP/2-over-TLS client connection that sends a PING every 100 ms (and answers the
/// server's): busy at the frame level, idle at the request level. The task ends when the
/// server closes the connection.
async fn h2_connect(addr: SocketAddr) -> (H2Sender, tokio::task::JoinHandle<()>) {
    h2_connect_from([127, 0, 0, 1], addr)
        .await
        .expect("TLS and h2 handshakes")
}

/// As `h2_connect`, from `source`; `None` when the server closed it during the handshakes.
async fn h2_connect_from(
    source: [u8; 4],
    addr: SocketAddr,
) -> Option<(H2Sender, tokio::task::JoinHandle<()>)> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls/ca-a.pem");
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = connect_from(source, addr).await;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(100))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tls))
        .await
        .ok()?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Some((sender, task))
}

async fn h2_get(sender: &mut H2Sender, path: &str) -> u16 {
    let req = hyper::Request::get(format!("https://localhost{path}"))
        .header("user-agent", support::phone::YEALINK_T46S)
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_even_though_it_answers_pings() {
    let (_, tls) = start_tls("h2_idle_timeout = \"1s\"").await;
    let (mut sender, conn) = h2_connect(tls).await;
    assert_eq!(h2_get(&mut sender, "/app").await, 200);
    let idle_since = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), conn)
        .await
        .expect("the server closed the idle h2 connection")
        .unwrap();
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
    assert!(sender.is_closed());
}

#[tokio::test]
async fn busy_connections_are_closed_at_their_max_age() {
    let (plain, tls) = start_tls("h2_idle_timeout = \"1s\"\nmax_connection_age = \"2s\"").await;
    // HTTP/2: a request every 200 ms keeps it from being idle, not from growing old.
    let (mut sender, conn) = h2_connect(tls).await;
    let born = Instant::now();
    while !conn.is_finished() {
        assert!(
            born.elapsed() < Duration::from_secs(6),
            "h2 connection never aged out"
        );
        if sender.ready().await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), h2_get_opt(&mut sender)).await {
            Ok(Some(status)) => assert_eq!(status, 200),
            Ok(None) => break,
            Err(_) => panic!("request hung"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .unwrap()
        .unwrap();
    let lived = born.elapsed();
    assert!(
        lived >= Duration::from_millis(1900),
        "h2 closed after {lived:?}"
    );
    // HTTP/1.1 keep-alive: the same, on the plain listener.
    let mut s = TcpStream::connect(plain).await.unwrap();
    let born = Instant::now();
    while answered(&mut s).await {
        assert!(
            born.elapsed() < Duration::from_secs(6),
            "h1 connection never aged out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lived = born.elapsed();
    assert!(
        lived >= Duration::from_millis(1900),
        "h1 closed after {lived:?}"
    );
}

/// As `h2_get`, but `None` when the connection went away (GOAWAY) instead of a panic.
async fn h2_get_opt(sender: &mut H2Sender) -> Option<u16> {
    let req = hyper::Request::get("https://localhost/healthz")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.ok()?;
    Some(status)
}

#[tokio::test]
async fn idle_h2_connections_from_one_source_cannot_keep_phones_out() {
    let (_, tls) = start_tls("max_connections = 16\nmax_connections_per_source = 8").await;
    // 127.0.0.2 opens 20 h2 connections that answer PINGs and never send a request.
    let mut held = Vec::new();
    let mut shed = 0;
    for _ in 0..20 {
        match h2_connect_from([127, 0, 0, 2], tls).await {
            Some(mut conn) => {
                // A usable connection holds a slot; one closed at accept fails here.
                match tokio::time::timeout(Duration::from_secs(5), h2_get_opt(&mut conn.0)).await {
                    Ok(Some(200)) => held.push(conn),
                    Ok(_) => shed += 1,
                    Err(_) => panic!("neither served nor closed"),
                }
            }
            None => shed += 1,
        }
    }
    assert_eq!((held.len(), shed), (8, 12));
    // A phone from another source still gets its screen over h2.
    let (mut phone, _) = h2_connect(tls).await;
    for _ in 0..5 {
        assert_eq!(h2_get(&mut phone, "/app").await, 200);
    }
}

#[tokio::test]
async fn shed_connections_are_logged_as_one_summary_not_a_line_each() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("directory.toml"), support::DIRECTORY).unwrap();
    let config = tmp.path().join("hotdesk.toml");
    let text = support::config_text(tmp.path(), "http://127.0.0.1:1", "")
        .replace(
            "max_connections_per_source = 256",
            "max_connections_per_source = 2",
        )
        .replace("[admin]\n", "[admin]\nallow = [\"127.0.0.1/32\"]\n")
        + "[phones]\nallow = [\"127.0.0.1/32\", \"127.0.0.2/32\"]\n";
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotdesk"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "hotdesk=warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr: SocketAddr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let start = Instant::now();
    // 127.0.0.2 holds its two, then 300 more are shed; 127.0.0.9 is in no list: 200 shed.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from([127, 0, 0, 2], addr).await;
        assert!(answered(&mut s).await);
        held.push(s);
    }
    for (source, n) in [([127, 0, 0, 2], 300), ([127, 0, 0, 9], 200)] {
        for _ in 0..n {
            let mut s = connect_from(source, addr).await;
            assert!(!answered(&mut s).await, "{source:?} was served");
        }
    }
    drop(held);
    // SIGTERM: the server drains and writes what it has not reported yet.
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(kill.unwrap().success());
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the server exits after SIGTERM")
    .unwrap()
    .unwrap();
    assert!(status.success());
    let elapsed = start.elapsed();
    let mut log = String::new();
    stdout.read_to_string(&mut log).unwrap();
    let summaries: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("connections closed at accept"))
        })
        .collect();
    // The first shed at once, then at most one line per 10 s, and one at exit.
    let allowed_lines = 2 + elapsed.as_secs() as usize / 10;
    assert!(
        (1..=allowed_lines).contains(&summaries.len()),
        "{} summary lines in {elapsed:?}:\n{log}",
        summaries.len()
    );
    let total = |field: &str| -> u64 { summaries.iter().map(|v| v[field].as_u64().unwrap()).sum() };
    assert_eq!(
        (total("not_allowed"), total("per_source"), total("global")),
        (200, 300, 0),
        "{log}"
    );
    assert!(log.lines().count() < 20, "one line per connection?\n{log}");
}
