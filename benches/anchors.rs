//! The client side and the bare-hyper anchor of `make bench` (bench/run.sh drives it).
//! Loopback only; every run is bounded by a count and a per-request deadline.
//!
//! ```text
//! anchors bare ADDR DIR                  a bare hyper server answering DIR's files (1 worker)
//! anchors storm ADDR N PATH              N phones, each on its own fresh connection, one GET
//! anchors idle ADDR N PATH HOLD_S        N keep-alive connections, one GET each, held idle
//! anchors logins ADDR CONC COUNT FIRST   COUNT logins by CONC phones at once (users FIRST..)
//! ```
//! Each prints one line of `key=value` pairs for the script to read. Phones come from
//! 127.1.x.y, [`PER_SOURCE`] per address, as a site's phones come from many addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connections per source address: under `[server] max_connections_per_source` (64), and under
/// `[login] max_failures_per_source` (20), which also bounds the logins one address may have in
/// flight at once (40 per address refused a tenth of the logins at 64 at once).
const PER_SOURCE: usize = 16;
/// How long a phone waits for its answer, connect included (SYN retries come at 1 s, 3 s).
const DEADLINE: Duration = Duration::from_secs(15);

fn source(i: usize) -> [u8; 4] {
    let s = i / PER_SOURCE;
    [127, 1, (s / 250) as u8, (s % 250 + 1) as u8]
}

fn mac(i: usize) -> String {
    format!("805ec1{:06x}", i & 0xff_ffff)
}

fn ua(i: usize) -> String {
    format!("Yealink SIP-T46S 66.86.0.15 {}", mac(i))
}

async fn connect(i: usize, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source(i), 0)))?;
    let s = socket.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends one GET and reads its answer (Content-Length bodies); the status and the body.
async fn get(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    path: &str,
    ua: &str,
) -> std::io::Result<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: {ua}\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let closed = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(closed());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(closed());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let status = head
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))?;
        let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
        return Ok((status, body));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// N phones at once, each connecting afresh and fetching `path` once.
async fn storm(addr: SocketAddr, n: usize, path: String) {
    let path = Arc::new(path);
    let start = Instant::now();
    let phones: Vec<_> = (0..n)
        .map(|i| {
            let path = path.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let answered = tokio::time::timeout(DEADLINE, async {
                    let mut s = connect(i, addr).await?;
                    get(&mut s, &mut Vec::new(), &path, &ua(i)).await
                })
                .await;
                match answered {
                    Ok(Ok((200, _))) => Some(t.elapsed()),
                    _ => None,
                }
            })
        })
        .collect();
    let mut took = Vec::with_capacity(n);
    for p in phones {
        if let Ok(Some(t)) = p.await {
            took.push(t);
        }
    }
    let all = start.elapsed();
    took.sort();
    println!(
        "storm phones={n} answered={} unanswered={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} all_s={:.2}",
        took.len(),
        n - took.len(),
        ms(pct(&took, 0.50)),
        ms(pct(&took, 0.99)),
        ms(took.last().copied().unwrap_or_default()),
        all.as_secs_f64()
    );
}

/// N keep-alive connections, one GET each, then held idle for `hold`; says `ready` when all
/// are open and `closed` after dropping them.
async fn idle(addr: SocketAddr, n: usize, path: String, hold: Duration) {
    let path = Arc::new(path);
    let (tx, mut rx) = tokio::sync::mpsc::channel(n.max(1));
    let release = Arc::new(tokio::sync::Notify::new());
    for i in 0..n {
        let (path, tx, release) = (path.clone(), tx.clone(), release.clone());
        tokio::spawn(async move {
            let opened = tokio::time::timeout(DEADLINE, async {
                let mut s = connect(i, addr).await?;
                get(&mut s, &mut Vec::new(), &path, &ua(i)).await?;
                Ok::<_, std::io::Error>(s)
            })
            .await;
            let ok = matches!(opened, Ok(Ok(_)));
            let notified = release.notified();
            let _ = tx.send(ok).await;
            // Held until released (the socket lives in `opened`).
            notified.await;
            drop(opened);
        });
    }
    drop(tx);
    let mut open = 0;
    for _ in 0..n {
        if rx.recv().await == Some(true) {
            open += 1;
        }
    }
    println!("ready open={open} failed={}", n - open);
    tokio::time::sleep(hold).await;
    release.notify_waiters();
    // Let every task drop its socket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("closed");
}

/// COUNT logins, CONC at once, each by a fresh phone: the entry screen (not timed), then the
/// login it links to with extension and PIN (timed, as the phone waits for it).
async fn logins(addr: SocketAddr, conc: usize, count: usize, first: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|w| {
            let (next, failed) = (next.clone(), failed.clone());
            tokio::spawn(async move {
                let mut took = Vec::new();
                let mut s = connect(w, addr).await.expect("connect");
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return took;
                    }
                    let phone = ua(first + i);
                    let ext = first + i;
                    let ok = async {
                        let (_, entry) = get(&mut s, &mut buf, "/app", &phone).await.ok()?;
                        let url = entry.split("<URL>").nth(1)?.split("</URL>").next()?;
                        let path = url.split_once("://")?.1;
                        let path = &path[path.find('/')?..];
                        let login = format!("{}&ext={ext}&pin=7391", path.replace("&amp;", "&"));
                        let t = Instant::now();
                        let (status, body) = get(&mut s, &mut buf, &login, &phone).await.ok()?;
                        (status == 200 && body.contains("Logged in")).then(|| t.elapsed())
                    }
                    .await;
                    match ok {
                        Some(t) => took.push(t),
                        None => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            // A closed connection is reopened for the next login.
                            if let Ok(fresh) = connect(w, addr).await {
                                s = fresh;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut took = Vec::with_capacity(count);
    for w in workers {
        took.extend(w.await.unwrap_or_default());
    }
    let all = start.elapsed();
    took.sort();
    println!(
        "logins concurrent={conc} ok={} failed={} per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
        took.len(),
        failed.load(Ordering::Relaxed),
        took.len() as f64 / all.as_secs_f64(),
        ms(pct(&took, 0.50)),
        ms(pct(&took, 0.99))
    );
}

/// The anchor: hyper's http1 server with a timer, answering each file of a folder from
/// memory (`/NAME`) with the headers hotdesk sends, and 404 otherwise.
async fn bare(addr: SocketAddr, files: std::collections::HashMap<String, bytes::Bytes>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    println!("bare listening on {}", listener.local_addr().expect("addr"));
    let files = Arc::new(files);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new());
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (files, http) = (files.clone(), http.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let body = files.get(req.uri().path()).cloned();
                let mut resp = hyper::Response::new(Full::new(body.clone().unwrap_or_default()));
                if body.is_none() {
                    *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
                }
                let h = resp.headers_mut();
                h.insert("content-type", "text/xml; charset=utf-8".parse().unwrap());
                h.insert("cache-control", "no-store".parse().unwrap());
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = http
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn read_dir(dir: &str) -> std::collections::HashMap<String, bytes::Bytes> {
    std::fs::read_dir(dir)
        .expect("reading the folder to serve")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let bytes = std::fs::read(e.path()).ok()?;
            Some((format!("/{name}"), bytes.into()))
        })
        .collect()
}

fn usage() -> ! {
    eprintln!(
        "usage: anchors bare ADDR DIR | storm ADDR N PATH | idle ADDR N PATH HOLD_S | logins ADDR CONC COUNT FIRST"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; this binary is run by bench/run.sh.
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    if args.is_empty() {
        println!("anchors: run by bench/run.sh (make bench); nothing to do alone");
        return;
    }
    let addr = || -> SocketAddr {
        args.get(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let num = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let text = |i: usize| -> String {
        args.get(i)
            .map(|s| s.to_string())
            .unwrap_or_else(|| usage())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match args[0] {
        "bare" => rt.block_on(bare(addr(), read_dir(&text(2)))),
        "storm" => rt.block_on(storm(addr(), num(2), text(3))),
        "idle" => rt.block_on(idle(
            addr(),
            num(2),
            text(3),
            Duration::from_secs(num(4) as u64),
        )),
        "logins" => rt.block_on(logins(addr(), num(2), num(3), num(4))),
        _ => usage(),
    }
}
