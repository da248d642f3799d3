//! `make bench`: hot-desk logins against an upstream PBX that takes 50 ms per lookup.
//!
//! Reports, for a cold cache (every login misses) and a warm one (every login hits):
//! logins per second, p50/p99 latency and upstream calls per login; plus the entry screen
//! (`GET /app`, the render hot path) against a bare hyper server answering the same number
//! of bytes from memory on the same machine in the same run (the ratio is what to compare).
//! Then, on a server with the default transport limits: a phone's latency for `GET /app` on
//! fresh connections, first alone and then while one other host (127.0.0.2) holds and
//! keeps reopening 1,100 idle sockets (over the 1,024 connection cap); and the process's
//! resident memory before and after 200 failed logins (wrong PINs, fresh MACs, 67 source
//! addresses so no lockout stops them). The server runs in this process, so VmRSS is the
//! server's plus this small client's.
//! Loopback only; bounded by request counts. It reports numbers and asserts no timings.

#[path = "../tests/support/upstream.rs"]
#[allow(dead_code)]
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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
        Self::open_from([127, 0, 0, 1], addr).await.unwrap()
    }

    /// A connection from `source` (any 127.0.0.0/8 address on Linux loopback).
    async fn open_from(source: [u8; 4], addr: SocketAddr) -> std::io::Result<Conn> {
        let s = connect_from(source, addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// As `get`, but an error instead of a panic when the server closes the connection.
    async fn try_get(&mut self, path: &str, ua: &str) -> std::io::Result<u16> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: b\r\nUser-Agent: {ua}\r\n\r\n");
        self.s.write_all(req.as_bytes()).await?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let closed = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
        loop {
            let n = self.s.read(&mut chunk).await?;
            if n == 0 {
                return Err(closed());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let n = self.s.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(closed());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return head
                    .get(9..12)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| std::io::Error::other("bad status line"));
            }
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

async fn connect_from(source: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
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
# 64 keep-alive phones from one address, reopened between runs: not a flood.
max_connections_per_source = 4096
# The login links are built here, not followed from a signed screen.
sign_links = false
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
[login]
# An admin password, so that every failed login below runs argon2 (the memory budget).
admin_password_hash = "{admin}"
# Every bench phone comes from 127.0.0.1 or a few 127.0.1.x: the per-address and shared
# budgets would stop the runs; they are not what is measured here.
max_failures_per_source = 1000000
shared_max_failures = 1000000
"#,
        url = up.url(),
        dir = tmp.path().display(),
        admin = hotdesk::auth::hash_password("bench-admin-password").unwrap()
    );
    let config =
        hotdesk::config::Config::parse(&config, std::path::Path::new("bench.toml")).unwrap();
    tokio::spawn(hotdesk::run(config, listener, std::future::pending()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_start = status_kb("VmRSS");

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
    login_rates(addr, &login, &ua).await;

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

    failed_logins(addr, rss_start).await;
    // 1024 is tokio's TcpListener::bind backlog, which `hotdesk serve` used before
    // server::LISTEN_BACKLOG; the second run is what it binds with now.
    flood(1024).await;
    flood(hotdesk::server::LISTEN_BACKLOG).await;
}

/// Warm logins (each one durable before its answer) with 1, 16 and 64 phones at once; each
/// phone logs in only its own users (user u belongs to phone u % phones), so no two
/// concurrent logins touch the same MAC or extension.
async fn login_rates(
    addr: SocketAddr,
    login: &(impl Fn(usize) -> String + Clone + Send + 'static),
    ua: &(impl Fn(usize) -> String + Clone + Send + 'static),
) {
    for phones in [1, 16, 64] {
        let per_phone = if phones == 1 { 1000 } else { 8000 / phones };
        let start = Instant::now();
        let workers: Vec<_> = (0..phones)
            .map(|w| {
                let (login, ua) = (login.clone(), ua.clone());
                tokio::spawn(async move {
                    let mut conn = Conn::open(addr).await;
                    let mut lat = Vec::with_capacity(per_phone);
                    for k in 0..per_phone {
                        let user = w + phones * (k % (USERS / phones));
                        let t = Instant::now();
                        assert_eq!(conn.get(&login(user), &ua(user)).await, 200);
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for w in workers {
            latencies.extend(w.await.unwrap());
        }
        let run = Run {
            count: latencies.len(),
            elapsed: start.elapsed(),
            latencies,
        };
        run.report(&format!("login, warm, {phones} at once"));
    }
}

/// A field of /proc/self/status in kB (VmRSS, VmHWM), or 0 where there is none.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

const FAILED_LOGINS: usize = 200;
/// `[login] admin_max_failures` (default 3): each source's first three failures run argon2.
const PER_SOURCE: usize = 3;

/// Resident memory before and after FAILED_LOGINS wrong PINs, 16 at a time, each from a fresh
/// MAC on its own connection, at most PER_SOURCE per source address (127.0.1.1 ...).
async fn failed_logins(addr: SocketAddr, rss_start: u64) {
    let rss_before = status_kb("VmRSS");
    let next = Arc::new(AtomicU64::new(0));
    let (wrong, locked) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (next, wrong, locked) = (next.clone(), wrong.clone(), locked.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= FAILED_LOGINS {
                        return;
                    }
                    let source = [127, 0, 1, (i / PER_SOURCE + 1) as u8];
                    let mut c = Conn::open_from(source, addr).await.unwrap();
                    let path = format!("/app/login?net=internal&ext={}&pin=0000", 10_000 + i);
                    let ua = format!("Yealink SIP-T46S 66.86.0.15 {}", mac(500_000 + i));
                    assert_eq!(c.get(&path, &ua).await, 200);
                    let body = String::from_utf8_lossy(&c.buf);
                    if body.contains("Wrong extension or PIN") {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    } else if body.contains("Login locked") {
                        locked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let took = start.elapsed();
    let rss_after = status_kb("VmRSS");
    println!(
        "failed logins                      {FAILED_LOGINS} in {:.1} s from {} sources: {} wrong PIN, {} locked out",
        took.as_secs_f64(),
        FAILED_LOGINS.div_ceil(PER_SOURCE),
        wrong.load(Ordering::Relaxed),
        locked.load(Ordering::Relaxed)
    );
    println!(
        "  VmRSS (MB)                       {:.1} at start, {:.1} before, {:.1} after; peak VmHWM {:.1}",
        mb(rss_start),
        mb(rss_before),
        mb(rss_after),
        mb(status_kb("VmHWM"))
    );
}

/// One host that holds `sockets` idle connections from `source` and reopens each one the
/// server closes, on its own thread and runtime (as another process would), until stopped.
struct Attack {
    stop: Arc<AtomicBool>,
    connects: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Attack {
    fn start(addr: SocketAddr, source: [u8; 4], sockets: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let (connects, failed, up) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, c, f, u) = (stop.clone(), connects.clone(), failed.clone(), up.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let tasks: Vec<_> = (0..sockets)
                    .map(|_| {
                        let (s, c, f, u) = (s.clone(), c.clone(), f.clone(), u.clone());
                        tokio::spawn(hold(addr, source, s, c, f, u))
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Attack {
            stop,
            connects,
            failed,
            up,
            thread,
        }
    }

    /// Waits (bounded) until every socket has connected once.
    async fn ramp_up(&self, sockets: usize) {
        let start = Instant::now();
        while (self.up.load(Ordering::Relaxed) as usize) < sockets
            && start.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.connects.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

async fn hold(
    addr: SocketAddr,
    source: [u8; 4],
    stop: Arc<AtomicBool>,
    connects: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect_from(source, addr).await else {
            failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        connects.fetch_add(1, Ordering::Relaxed);
        if std::mem::take(&mut first) {
            up.fetch_add(1, Ordering::Relaxed);
        }
        // Idle: send nothing; reconnect as soon as the server closes.
        let mut byte = [0u8; 1];
        loop {
            tokio::select! {
                r = s.read(&mut byte) => if !matches!(r, Ok(n) if n > 0) { break },
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
        }
    }
}

/// `n` phone key presses (`GET /app`, a fresh connection each, 10 ms apart) from 127.0.0.1:
/// latencies of the answered ones, and how many were answered.
async fn phone_presses(addr: SocketAddr, n: usize) -> (Run, usize) {
    let ua = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:01";
    let mut latencies = Vec::new();
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let press = async {
            let mut c = Conn::open_from([127, 0, 0, 1], addr).await?;
            c.try_get("/app", ua).await
        };
        if let Ok(Ok(200)) = tokio::time::timeout(Duration::from_secs(2), press).await {
            latencies.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ok = latencies.len();
    let run = Run {
        count: ok,
        elapsed: start.elapsed(),
        latencies,
    };
    (run, ok)
}

fn report_presses(name: &str, run: &Run, ok: usize, n: usize) {
    if ok == 0 {
        return println!("{name:<34} ok {ok}/{n}");
    }
    let max = run.latencies.iter().max().copied().unwrap_or_default();
    println!(
        "{name:<34} ok {ok}/{n}   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms",
        run.pct(0.50).as_secs_f64() * 1e3,
        run.pct(0.99).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

const PRESSES: usize = 200;
const FLOOD_SOCKETS: usize = 1100;

/// A phone beside one host that holds more idle sockets than the whole connection cap, on
/// a server with the default [server] limits (1,024 connections, 64 per source, 10 s
/// header timeout).
async fn flood(backlog: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("directory.toml"),
        "[[user]]\nextension = \"1001\"\nname = \"A\"\nvoicemail_pin = \"7391\"\nsip_password = \"s\"\n",
    )
    .unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(backlog).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = format!(
        r#"listen = "127.0.0.1:0"
base_url = "http://{addr}"
[directory]
file = "{dir}/directory.toml"
[store]
path = "{dir}/flood.sqlite"
[networks.internal]
label = "Internal"
sip_server = "10.0.0.5"
"#,
        dir = dir.display()
    );
    let config =
        hotdesk::config::Config::parse(&config, std::path::Path::new("flood.toml")).unwrap();
    tokio::spawn(hotdesk::run(config, listener, std::future::pending()));
    tokio::time::sleep(Duration::from_millis(100)).await;

    println!(
        "phone GET /app, fresh connection each, default limits (1024 connections, 64 per source), listen backlog {backlog}:"
    );
    let overflows = listen_overflows();
    let (alone, ok) = phone_presses(addr, PRESSES).await;
    report_presses("  alone", &alone, ok, PRESSES);
    let attack = Attack::start(addr, [127, 0, 0, 2], FLOOD_SOCKETS);
    attack.ramp_up(FLOOD_SOCKETS).await;
    let started = Instant::now();
    let (flooded, ok) = phone_presses(addr, PRESSES).await;
    let during = started.elapsed();
    let (connects, failed) = attack.stop();
    report_presses(
        &format!("  beside {FLOOD_SOCKETS} idle sockets"),
        &flooded,
        ok,
        PRESSES,
    );
    println!(
        "  the other host (127.0.0.2)       {connects} connects ({:.0}/s, each closed one reopened at once), {failed} failed",
        connects as f64 / during.as_secs_f64().max(0.001)
    );
    if let (Some(before), Some(after)) = (overflows, listen_overflows()) {
        println!(
            "  ListenOverflows (system-wide)    +{} (SYNs dropped with an accept queue full; a dropped SYN is retried after 1 s)",
            after - before
        );
    }
}

/// TcpExt ListenOverflows from /proc/net/netstat (system-wide), if readable.
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
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
