//! Transport: the listener, who may connect and how many times, connection lifetimes and
//! timeouts, graceful shutdown. Plain HTTP is http1 only (protocol sniffing has no timeout,
//! see rust-notes C1).
//!
//! At accept, in this order and before any other work: a source in no allow-list is closed,
//! a source holding `max_connections_per_source` is closed, and over `max_connections`
//! the new connection is closed. Each closure is counted into one periodic summary line.

pub mod access;
pub mod access_log;
mod activations_api;
mod admin;
pub mod conns;
pub mod digest;
pub mod fetch_guard;
mod metrics_route;
mod provision;
pub(crate) mod reload;
mod respond;
mod routes;
pub mod screen_cache;
pub mod seen;
mod softphone;
pub mod tls;
mod users_api;
pub mod web;

pub use routes::parse_query;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::App;
use conns::{Counted, Lifetime, PerSource, Shed, ShedSummary, SourceKey, SourceSlot, Streams};

/// At most one "connections closed at accept" line per this long.
const SHED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The accept queue a listener asks the kernel for, before the cap of net.core.somaxconn
/// ([`listen_backlog`]). tokio's `TcpListener::bind` asks for 1,024; a site's phones booting
/// together after a power cut, or a host reconnecting every socket the server sheds, fill
/// that, and a dropped SYN is retried only a second later (measured by `make bench`).
pub const LISTEN_BACKLOG: u32 = 16_384;

/// The accept queue a listener gets: [`LISTEN_BACKLOG`], capped by the kernel's
/// net.core.somaxconn where it can be read (the kernel caps it silently otherwise).
pub fn listen_backlog() -> u32 {
    backlog_within(somaxconn())
}

/// net.core.somaxconn, where the system says it.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn backlog_within(somaxconn: Option<u32>) -> u32 {
    somaxconn.map_or(LISTEN_BACKLOG, |max| max.clamp(1, LISTEN_BACKLOG))
}

/// Binds `addr` (SO_REUSEADDR, as `TcpListener::bind` does) with [`listen_backlog`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(listen_backlog())
}

/// A TLS listener and what it hands out.
pub struct TlsListener {
    pub listener: TcpListener,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

/// What a connection holds while it is open; given back when dropped.
struct Admitted {
    _source: Option<SourceSlot>,
    _global: OwnedSemaphorePermit,
}

/// The checks at accept, cheapest and most specific first.
struct Gate {
    admission: access::Admission,
    per_source: PerSource,
    global: Arc<Semaphore>,
}

impl Gate {
    fn admit(&self, peer: IpAddr) -> Result<Admitted, Shed> {
        if !self.admission.admits(peer) {
            return Err(Shed::NotAllowed);
        }
        let source = if self.admission.is_proxy(peer) {
            None
        } else {
            Some(self.per_source.try_acquire(peer).ok_or(Shed::PerSource)?)
        };
        let global = self
            .global
            .clone()
            .try_acquire_owned()
            .map_err(|_| Shed::Global)?;
        Ok(Admitted {
            _source: source,
            _global: global,
        })
    }
}

fn log_shed(summary: &mut ShedSummary, now: Instant) {
    if let Some(s) = summary.take_due(now) {
        warn_shed(&s, summary.interval());
    }
}

fn warn_shed(s: &conns::Summary, interval: Duration) {
    let most_from = s
        .top
        .map(|(source, n)| format!("{source} ({n})"))
        .unwrap_or_default();
    tracing::warn!(
        not_allowed = s.counts[0],
        per_source = s.counts[1],
        global = s.counts[2],
        %most_from,
        window_s = s.over.as_secs(),
        "connections closed at accept (at most one such line per {}s)",
        interval.as_secs()
    );
}

/// Serves `app` on `listener` (plain HTTP) and, when given, `tls`, until `shutdown`
/// resolves, then drains in-flight requests for at most the configured grace period.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsListener>,
    shutdown: impl Future<Output = ()>,
) {
    let cfg = &app.config.server;
    let mut http = http1::Builder::new();
    // Without a timer hyper's header timeout is silently off (rust-notes C1). With it, the
    // timeout also bounds an idle keep-alive connection. The header count keeps hyper's own
    // cap (100, on the stack): setting any cap puts two arrays of it on the heap, filled per
    // request.
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout.0)
        .max_buf_size(cfg.max_header_bytes)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(cfg.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let gate = Gate {
        admission: access::Admission::new(&app.config),
        per_source: PerSource::new(cfg.max_connections_per_source),
        global: Arc::new(Semaphore::new(cfg.max_connections)),
    };
    let h1_life = Lifetime {
        idle: None,
        max_age: cfg.max_connection_age.0,
        drain: cfg.shutdown_grace.0,
    };
    let h2_life = Lifetime {
        idle: Some(cfg.h2_idle_timeout.0),
        ..h1_life
    };
    let mut shed = ShedSummary::new(SHED_LOG_INTERVAL);
    let mut shed_tick = tokio::time::interval(SHED_LOG_INTERVAL);
    shed_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (stop, stopped) = watch::channel(false);
    let handshake_timeout = cfg.header_timeout.0;
    tokio::pin!(shutdown);
    let accept_tls = async |t: &Option<TlsListener>| match t {
        Some(t) => t.listener.accept().await,
        None => std::future::pending().await,
    };
    loop {
        let (accepted, secure) = tokio::select! {
            a = listener.accept() => (a, false),
            a = accept_tls(&tls) => (a, true),
            _ = shed_tick.tick() => {
                log_shed(&mut shed, Instant::now());
                continue;
            }
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        // Refused sockets are dropped unanswered: shedding beats queueing.
        let held = match gate.admit(peer.ip()) {
            Ok(held) => (held, app.metrics.connection_opened()),
            Err(why) => {
                drop(tcp);
                app.metrics.connection_refused(why.name());
                let now = Instant::now();
                shed.record(why, SourceKey::of(peer.ip()), now);
                log_shed(&mut shed, now);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Only an HTTP/2 connection's idle time is ours to bound (by its open streams), and
        // only TLS connections may speak it: plain HTTP/1 requests are not counted.
        let streams = secure.then(Streams::new);
        let svc = {
            let (app, streams) = (app.clone(), streams.clone());
            service_fn(move |req| {
                // Counted from the request until its answer is sent (or reset).
                let open = streams.as_ref().map(Streams::open);
                // Called here, not inside the async block: `handle` starts state-changing
                // phone steps at once, before hyper polls (or drops) the future.
                let answer = routes::handle(app.clone(), peer, secure, req);
                // Boxed per request: hyper keeps a slot the size of this future for the whole
                // life of a connection, so unboxed an idle keep-alive connection would hold
                // the full request state (kilobytes) between requests.
                // (A combinator, not an async block: a block would hold `answer` twice.)
                Box::pin(
                    answer.map(move |resp| resp.map(|r| r.map(|body| Counted::new(body, open)))),
                )
            })
        };
        let stopped = stopped.clone();
        if !secure {
            let conn = http.serve_connection(TokioIo::new(tcp), svc);
            // Boxed: the connection's future is about 1 KB (3.5 KB when these copies were
            // measured), and tokio moves a task's future (and overwrites it with its output)
            // several times between spawn and completion; boxed, each of those copies a
            // pointer. In a boot storm those copies were a sixth of the instructions per
            // connection. A combinator, not an async block: a block would keep `conn` twice,
            // captured and inside the `drive` future.
            let run = conns::drive(conn, None, h1_life, stopped);
            tokio::spawn(Box::pin(run.map(move |(closing, result)| {
                ended(peer, closing, result);
                drop(held);
            })));
            continue;
        }
        let acceptor = tls
            .as_ref()
            .expect("secure implies a TLS listener")
            .acceptor
            .clone();
        let (http, h2) = (http.clone(), h2.clone());
        tokio::spawn(async move {
            let _held = held;
            // The handshake runs here, bounded, so a stalled client holds only itself.
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(stream);
            let (closing, result) = if is_h2 {
                let conn = h2.serve_connection(io, svc);
                conns::drive(conn, streams.as_ref(), h2_life, stopped).await
            } else {
                let conn = http.serve_connection(io, svc);
                conns::drive(conn, None, h1_life, stopped).await
            };
            ended(peer, closing, result);
        });
    }
    drop(listener);
    drop(tls);
    if let Some(s) = shed.take(Instant::now()) {
        warn_shed(&s, shed.interval());
    }
    tracing::info!("shutting down; draining connections");
    let _ = stop.send(true);
    // Every connection holds a global permit until it is gone.
    let all = u32::try_from(cfg.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(cfg.shutdown_grace.0, gate.global.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

fn ended(peer: SocketAddr, closing: Option<conns::Closing>, result: Result<(), hyper::Error>) {
    if let Some(why) = closing {
        tracing::debug!(%peer, ?why, "connection closed by the server");
    }
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_capped_by_somaxconn() {
        assert_eq!(backlog_within(Some(4096)), 4096);
        assert_eq!(backlog_within(Some(65_535)), LISTEN_BACKLOG);
        assert_eq!(backlog_within(None), LISTEN_BACKLOG);
        assert_eq!(backlog_within(Some(0)), 1);
    }
}
