//! Transport: the listener, connection limits and timeouts, graceful shutdown. Plain HTTP is
//! http1 only (protocol sniffing has no timeout, see rust-notes C1).

pub mod access;
mod admin;
mod provision;
mod respond;
mod routes;

pub use routes::parse_query;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::App;

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight requests for
/// at most the configured grace period.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let cfg = &app.config.server;
    let mut http = http1::Builder::new();
    // Without a timer hyper's header timeout is silently off (rust-notes C1).
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout.0)
        .max_buf_size(cfg.max_header_bytes)
        .max_headers(64)
        .keep_alive(true);
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
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
                let app = app.clone();
                let svc = service_fn(move |req| routes::handle(app.clone(), peer, req));
                let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), svc));
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down; draining connections");
    if tokio::time::timeout(cfg.shutdown_grace.0, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}
