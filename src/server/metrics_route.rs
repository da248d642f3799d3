//! `GET /metrics` (Prometheus, behind `[admin] allow`) and `GET /readyz` (orchestration).
//! Kept out of the router so that it only names the routes.

use http::{HeaderValue, StatusCode, header};

use super::respond::{self, Resp};
use crate::App;

/// This server's metrics as OpenMetrics text; the outbox gauges are read from the store now.
pub async fn metrics(app: &App) -> Resp {
    match app.flow.book().outbox_status().await {
        Ok(s) => app.metrics.set_outbox(s.pending, s.dead),
        // The gauges keep their last values; the store's trouble shows in /readyz and the log.
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the outbox"),
    }
    let mut resp = respond::text(StatusCode::OK, "");
    *resp.body_mut() = app.metrics.encode().into();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}

/// Ready = the store takes writes and the directory is not "never loaded" (liveness stays
/// `/healthz`). The body names the parts that are not ready; the reasons (paths, errors)
/// are for the log, not for whoever asks.
pub fn ready(app: &App) -> Resp {
    let mut missing = Vec::new();
    if app.flow.book().health().is_err() {
        missing.push("the store cannot take writes");
    }
    if let Err(why) = app.directory.readiness() {
        missing.push(why);
    }
    if missing.is_empty() {
        return respond::text(StatusCode::OK, "ready");
    }
    respond::text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {} (see the server log)", missing.join("; ")),
    )
}
