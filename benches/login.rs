//! `make bench`: hot-desk logins against an upstream PBX that takes 50 ms per lookup.
//!
//! Reports, for a cold cache (every login misses) and a warm one (every login hits):
//! logins per second, p50/p99 latency and upstream calls per login; plus the entry screen
//! (`GET /app`, the render hot path) against a bare hyper server answering the same number
//! of bytes from memory on the same machine in the same run (the ratio is what to compare).
//! Loopback only; bounded by request counts.

#[path = "../tests/support/upstream.rs"]
#[allow(dead_code)]
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USERS: usize = 2000;
const CONCURRENCY: usize = 64;
const SCREENS: usize = 40_000;

/// A keep-alive HTTP/1.1 connection that reads Content-Length bodies.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            s,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    async fn get(&mut self, path: &str, ua: &str) -> u16 {
        let req = format!("GET {path} HTTP/1.1\r\nHost: b\r\nUser-Agent: {ua}\r\n\r\n");
        self.s.write_all(req.as_bytes()).await.unwrap();
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let n = self.s.read(&mut chunk).await.unwrap();
                    assert!(n > 0);
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return head[9..12].parse().unwrap();
            }
        }
    }
}

struct Run {
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l[((l.len() as f64 * p) as usize).min(l.len() - 1)]
    }

    fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn report(&self, name: &str) {
        println!(
            "{name:<34} {:>9.0}/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests)",
            self.per_sec(),
            self.pct(0.50).as_secs_f64() * 1e3,
            self.pct(0.99).as_secs_f64() * 1e3,
            self.count
        );
    }
}

/// Runs `total` requests over `CONCURRENCY` keep-alive connections; `path(i)` and `ua(i)`
/// give request i.
async fn drive(
    addr: SocketAddr,
    total: usize,
    path: Arc<dyn Fn(usize) -> String + Send + Sync>,
    ua: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> Run {
    let start = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let (path, ua) = (path.clone(), ua.clone());
            tokio::spawn(async move {
                let mut conn = Conn::open(addr).await;
                let mut lat = Vec::new();
                let mut i = w;
                while i < total {
                    let t = Instant::now();
                    let status = conn.get(&path(i), &ua(i)).await;
                    assert_eq!(status, 200);
                    lat.push(t.elapsed());
                    i += CONCURRENCY;
                }
                lat
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    Run {
        count: total,
        elapsed: start.elapsed(),
        latencies,
    }
}

fn mac(i: usize) -> String {
    format!(
        "80:5e:c0:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

async fn bench() {
    let up = upstream::Upstream::start().await;
    for i in 0..USERS {
        up.user(&format!("{}", 10_000 + i), "Bench User", Some("7391"));
    }
    up.latency(Duration::from_millis(50));

    let tmp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = format!(
        r#"listen = "127.0.0.1:0"
base_url = "http://{addr}"
[server]
max_connections = 4096
[directory]
kind = "http"
fresh_ttl = "10m"
deadline = "2s"
[directory.http]
url = "{url}"
auth = "none"
[store]
path = "{dir}/bench.sqlite"
[networks.internal]
label = "Internal"
sip_server = "10.0.0.5"
"#,
        url = up.url(),
        dir = tmp.path().display()
    );
    let config =
        hotdesk::config::Config::parse(&config, std::path::Path::new("bench.toml")).unwrap();
    tokio::spawn(hotdesk::run(config, listener, std::future::pending()));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let login = |i: usize| {
        format!(
            "/app/login?net=internal&ext={}&pin=7391",
            10_000 + i % USERS
        )
    };
    let ua = |i: usize| format!("Yealink SIP-T46S 66.86.0.15 {}", mac(i % USERS));
    println!(
        "hotdesk login benchmark: {USERS} users, {CONCURRENCY} concurrent phones, upstream latency 50 ms"
    );

    let before = up.lookups();
    let cold = drive(addr, USERS, Arc::new(login), Arc::new(ua)).await;
    cold.report("login, cold cache (50 ms upstream)");
    println!(
        "{:<34} {:.2}",
        "  upstream calls per login",
        (up.lookups() - before) as f64 / USERS as f64
    );

    let before = up.lookups();
    let warm = drive(addr, USERS, Arc::new(login), Arc::new(ua)).await;
    warm.report("login, warm cache");
    println!(
        "{:<34} {:.2}",
        "  upstream calls per login",
        (up.lookups() - before) as f64 / USERS as f64
    );

    // The render hot path: a logged-in phone pressing its key.
    let entry = drive(addr, SCREENS, Arc::new(|_| "/app".to_owned()), Arc::new(ua)).await;
    entry.report("GET /app (logged-in menu)");

    // Baseline: a bare hyper server on this machine answering a body of the same size.
    let size = {
        let mut c = Conn::open(addr).await;
        c.get("/app", &ua(0)).await;
        c.buf.len()
    };
    let base_addr = baseline(size).await;
    let base = drive(
        base_addr,
        SCREENS,
        Arc::new(|_| "/".to_owned()),
        Arc::new(|_| "b".to_owned()),
    )
    .await;
    base.report("baseline: bare hyper, same bytes");
    println!(
        "{:<34} {:.2} of the baseline's throughput",
        "GET /app",
        entry.per_sec() / base.per_sec()
    );
}

async fn baseline(size: usize) -> SocketAddr {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = bytes::Bytes::from(vec![b'x'; size.saturating_sub(120)]);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}
