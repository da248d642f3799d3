//! The PBX write-back queue in the console: what is pending, what the PBX refused for good
//! (dead), and a retry for dead rows that wakes the worker. Retries are audited with who.

use axum::Router;
use axum::extract::Extension;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use minijinja::context;

use super::console::{audit, checked_form, rfc3339, signed_in};
use super::{render, see_other};
use crate::server::routes::Ctx;
use crate::store::EventKind;

/// Rows shown: the queue is drained oldest first, so the oldest matter most.
const SHOWN: usize = 500;

pub fn routes() -> Router {
    Router::new()
        .route("/admin/outbox", get(page))
        .route("/admin/outbox/retry", post(retry))
}

async fn page(Extension(ctx): Extension<Ctx>, headers: HeaderMap) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let book = ctx.app.flow.book();
    let (status, entries) = match (book.outbox_status().await, book.outbox_entries(SHOWN).await) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "console: outbox unreadable");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the outbox cannot be read; see the server log",
            )
                .into_response();
        }
    };
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            context! {
                id => e.item.id, dead => e.dead, mac => e.item.mac.to_string(),
                method => e.item.method.as_str(), body => e.item.body,
                attempts => e.item.attempts, created => rfc3339(e.created),
                error => e.last_error,
            }
        })
        .collect();
    let writeback =
        (ctx.app.config.writeback_http()).map(|h| super::settings::without_userinfo(&h.url));
    render(
        StatusCode::OK,
        "outbox.html",
        context! {
            page => "outbox", who => session.who, csrf => session.csrf, rows => rows,
            pending => status.pending, dead => status.dead,
            oldest => status.oldest.map(rfc3339), last_error => status.last_error,
            writeback => writeback, more => entries.len() >= SHOWN,
        },
    )
}

/// Makes one dead row (`id`) or every dead row (`all`) pending again.
async fn retry(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, f) = match checked_form(&ctx, &headers, &body) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let ids = if f.contains_key("all") {
        Vec::new()
    } else {
        match f.get("id").and_then(|i| i.parse::<i64>().ok()) {
            Some(id) => vec![id],
            None => {
                return (StatusCode::BAD_REQUEST, "expected a write-back's id or all")
                    .into_response();
            }
        }
    };
    let which = match ids.first() {
        Some(id) => format!("write-back #{id}"),
        None => "every dead write-back".to_owned(),
    };
    match ctx.app.flow.book().outbox_retry(ids).await {
        Ok(n) => {
            tracing::info!(retried = n, who = %session.who, "console: outbox retry");
            let detail = format!(
                "console ({}): {which} retried ({n} made pending)",
                session.who
            );
            audit(&ctx.app, EventKind::OutboxRetried, &ctx, detail, None).await;
            see_other("/admin/outbox", None)
        }
        Err(e) => {
            tracing::error!(error = %e, "console: outbox retry failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the retry could not be saved; see the server log",
            )
                .into_response()
        }
    }
}
