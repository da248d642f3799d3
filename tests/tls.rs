//! HTTPS beside HTTP: handshake, ALPN, links on the https base, certificate reload without
//! dropping connections, and a stalled handshake that cannot hold the server.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

struct Tls {
    plain: std::net::SocketAddr,
    tls: std::net::SocketAddr,
    dir: std::path::PathBuf,
}

async fn start() -> Tls {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::write(dir.join("directory.toml"), support::DIRECTORY).unwrap();
    std::fs::copy(fixture("cert-a.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("key-a.pem"), dir.join("key.pem")).unwrap();
    let plain_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain, tls) = (plain_l.local_addr().unwrap(), tls_l.local_addr().unwrap());
    let extra = format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\nreload_check = \"100ms\"\n",
        d = dir.display()
    );
    let text = support::config_text(&dir, &format!("http://{plain}"), &extra).replace(
        "[server]\n",
        &format!(
            "[server]\nbase_urls = [\"https://localhost:{}\"]\n",
            tls.port()
        ),
    );
    let config = hotdesk::config::Config::parse(&text, Path::new("t.toml")).unwrap();
    let app = hotdesk::App::open(config).unwrap();
    tokio::spawn(hotdesk::run_app_on(
        app,
        plain_l,
        Some(tls_l),
        std::future::pending(),
    ));
    Tls { plain, tls, dir }
}

fn client(roots: &[&str], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store
            .add(CertificateDer::from_pem_file(fixture(r)).unwrap())
            .unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

type Stream = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(addr: std::net::SocketAddr, roots: &[&str], alpn: &[&[u8]]) -> Stream {
    let tcp = TcpStream::connect(addr).await.unwrap();
    client(roots, alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// One keep-alive HTTP/1.1 request; returns the body.
async fn get(s: &mut Stream, host: &str, path: &str) -> String {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {}\r\n\r\n",
        support::phone::YEALINK_T46S
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + len {
                assert!(head.starts_with("http/1.1 200"), "{head}");
                return String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            }
        }
    }
}

#[tokio::test]
async fn https_screens_with_links_on_the_https_base() {
    let t = start().await;
    let mut s = connect(t.tls, &["ca-a.pem"], &[b"http/1.1"]).await;
    let host = format!("localhost:{}", t.tls.port());
    let body = get(&mut s, &host, "/app").await;
    assert!(
        body.contains(&format!("https://localhost:{}/app/login", t.tls.port())),
        "{body}"
    );
    // A Host that is not a configured base URL never becomes a link.
    let body = get(&mut s, "evil.example", "/app").await;
    assert!(!body.contains("evil.example"));
    assert!(
        body.contains(&format!("http://{}/app/login", t.plain)),
        "{body}"
    );
    // Plain HTTP keeps working beside it.
    let r = support::request(t.plain, "GET", "/healthz", &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn alpn_picks_h2_when_offered() {
    let t = start().await;
    let s = connect(t.tls, &["ca-a.pem"], &[b"h2", b"http/1.1"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let s = connect(t.tls, &["ca-a.pem"], &[b"http/1.1"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn a_new_certificate_is_used_without_dropping_open_connections() {
    let t = start().await;
    let host = format!("localhost:{}", t.tls.port());
    let mut old = connect(t.tls, &["ca-a.pem"], &[b"http/1.1"]).await;
    get(&mut old, &host, "/healthz").await;
    std::fs::copy(fixture("cert-b.pem"), t.dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("key-b.pem"), t.dir.join("key.pem")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // New handshakes present certificate b (a client trusting only b connects).
    let mut new = connect(t.tls, &["ca-b.pem"], &[b"http/1.1"]).await;
    let served = new.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        served,
        CertificateDer::from_pem_file(fixture("cert-b.pem")).unwrap()
    );
    get(&mut new, &host, "/healthz").await;
    // The connection opened before the swap still works.
    get(&mut old, &host, "/healthz").await;
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_off_while_others_are_served() {
    let t = start().await;
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(TcpStream::connect(t.tls).await.unwrap());
    }
    let start = Instant::now();
    let mut s = connect(t.tls, &["ca-a.pem"], &[b"http/1.1"]).await;
    get(&mut s, "localhost", "/app").await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "served beside stalled handshakes"
    );
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(4), stalled[0].read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the silent handshake was closed"
    );
}
