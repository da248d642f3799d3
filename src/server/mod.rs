//! Transport: the listener, connection limits and timeouts, graceful shutdown. Plain HTTP is
//! http1 only (protocol sniffing has no timeout, see rust-notes C1).

pub mod access;
mod admin;
pub mod digest;
pub mod fetch_guard;
mod provision;
mod respond;
mod routes;
pub mod tls;

pub use routes::parse_query;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::App;

/// A TLS listener and what it hands out.
pub struct TlsListener {
    pub listener: TcpListener,
    pub acceptor: tokio_rustls::TlsAcceptor,
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
    // Without a timer hyper's header timeout is silently off (rust-notes C1).
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout.0)
        .max_buf_size(cfg.max_header_bytes)
        .max_headers(64)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(cfg.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = GracefulShutdown::new();
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
        // Over the cap the socket is closed at once: shedding beats queueing.
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app2 = app.clone();
        let svc = service_fn(move |req| routes::handle(app2.clone(), peer, secure, req));
        let watcher = graceful.watcher();
        if !secure {
            let conn = http.serve_connection(TokioIo::new(tcp), svc);
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
            continue;
        }
        let acceptor = tls
            .as_ref()
            .expect("secure implies a TLS listener")
            .acceptor
            .clone();
        let (http, h2) = (http.clone(), h2.clone());
        tokio::spawn(async move {
            let _permit = permit;
            // The handshake runs here, bounded, so a stalled client holds only itself.
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(stream);
            let result = if is_h2 {
                watcher.watch(h2.serve_connection(io, svc)).await
            } else {
                watcher.watch(http.serve_connection(io, svc)).await
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "TLS connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(tls);
    tracing::info!("shutting down; draining connections");
    if tokio::time::timeout(cfg.shutdown_grace.0, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}
