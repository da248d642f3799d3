//! The admin JSON API: who is logged in where, remote logout, the audit trail.
//! Every call needs `Authorization: Bearer <key>` with a key from `[admin] api_keys`.

use std::collections::HashMap;
use std::net::SocketAddr;

use http::{HeaderMap, Method, StatusCode, header};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::respond::{self, Resp};
use crate::App;
use crate::phone::Mac;
use crate::store::EventKind;

#[derive(Serialize)]
struct LoginView<'a> {
    mac: String,
    /// Which identity of the phone (0-based; only Snom phones have more than one).
    identity: u8,
    extension: &'a str,
    name: &'a str,
    vendor: &'a str,
    model: &'a str,
    network: &'a str,
    template: Option<&'a str>,
    since: String,
    /// The phone fetched its configuration since this login.
    applied: bool,
    applied_at: Option<String>,
}

#[derive(Serialize)]
struct EventView {
    id: i64,
    at: String,
    kind: &'static str,
    mac: Option<String>,
    extension: Option<String>,
    network: Option<String>,
    source_ip: Option<String>,
    detail: String,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Checks the bearer key against every configured key (no early exit, constant-time each).
fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let Some(key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    app.config
        .admin
        .api_keys
        .iter()
        .fold(false, |ok, k| k.matches(key.trim()) | ok)
}

/// One admin API request, parsed by the router.
pub(super) struct AdminRequest<'a> {
    pub peer: SocketAddr,
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: &'a HashMap<String, String>,
    pub body: &'a [u8],
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    extension: Option<String>,
}

pub(super) async fn handle(app: &App, req: AdminRequest<'_>) -> Resp {
    let AdminRequest {
        peer,
        path,
        method,
        headers,
        query,
        body,
    } = req;
    if !authorized(app, headers) {
        tracing::info!("admin API: missing or wrong API key");
        return respond::json_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (Authorization: Bearer <key>)",
        );
    }
    match (method, path) {
        (&Method::GET, "/api/v1/logins") => {
            let logins = app.flow.book().all();
            let views: Vec<LoginView<'_>> = logins
                .iter()
                .map(|l| LoginView {
                    mac: l.mac.to_string(),
                    identity: l.identity,
                    extension: &l.extension,
                    name: &l.name,
                    vendor: &l.vendor,
                    model: &l.model,
                    network: &l.network,
                    template: l.template.as_deref(),
                    since: rfc3339(l.since),
                    applied: l.applied_at.is_some(),
                    applied_at: l.applied_at.map(rfc3339),
                })
                .collect();
            respond::json(StatusCode::OK, &views)
        }
        (&Method::GET, "/api/v1/audit") => {
            let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
                None => 100,
                Some(Ok(n)) if (1..=1000).contains(&n) => n,
                Some(_) => {
                    return respond::json_error(StatusCode::BAD_REQUEST, "limit must be 1 to 1000");
                }
            };
            match app.flow.book().audit(limit).await {
                Ok(events) => {
                    let views: Vec<EventView> = events
                        .into_iter()
                        .map(|e| EventView {
                            id: e.id,
                            at: rfc3339(e.at),
                            kind: e.kind.as_str(),
                            mac: e.mac.map(|m| m.to_string()),
                            extension: e.extension,
                            network: e.network,
                            source_ip: e.source_ip,
                            detail: e.detail,
                        })
                        .collect();
                    respond::json(StatusCode::OK, &views)
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit query failed");
                    respond::json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "audit trail unavailable",
                    )
                }
            }
        }
        (&Method::GET, "/api/v1/outbox") => match app.flow.book().outbox_status().await {
            Ok(st) => respond::json(
                StatusCode::OK,
                &serde_json::json!({
                    "pending": st.pending,
                    "dead": st.dead,
                    "oldest": st.oldest.map(rfc3339),
                    "last_error": st.last_error,
                }),
            ),
            Err(e) => {
                tracing::error!(error = %e, "outbox status failed");
                respond::json_error(StatusCode::INTERNAL_SERVER_ERROR, "outbox unavailable")
            }
        },
        (&Method::POST, "/api/v1/directory/invalidate") => {
            let parsed: Result<InvalidateBody, _> = if body.is_empty() {
                Ok(InvalidateBody { extension: None })
            } else {
                serde_json::from_slice(body)
            };
            match parsed {
                Ok(InvalidateBody {
                    extension: Some(ext),
                }) => {
                    app.directory.invalidate(&ext).await;
                    tracing::info!(extension = %ext.escape_debug(), "directory cache entry invalidated");
                    respond::empty(StatusCode::NO_CONTENT)
                }
                Ok(InvalidateBody { extension: None }) => {
                    app.directory.invalidate_all();
                    tracing::info!("directory cache invalidated");
                    respond::empty(StatusCode::NO_CONTENT)
                }
                Err(_) => respond::json_error(
                    StatusCode::BAD_REQUEST,
                    "expected {\"extension\": \"1001\"}, or {} for every extension",
                ),
            }
        }
        (&Method::DELETE, p) => {
            let raw = p.trim_start_matches("/api/v1/logins/");
            let Ok(mac) = raw.parse::<Mac>() else {
                return respond::json_error(
                    StatusCode::BAD_REQUEST,
                    "expected /api/v1/logins/<12 hex digits>",
                );
            };
            let ip = peer.ip().to_canonical().to_string();
            match app
                .flow
                .book()
                .logout(mac, EventKind::AdminLogout, &ip, "admin API")
                .await
            {
                Ok(ended) if !ended.is_empty() => {
                    tracing::info!(%mac, users = ended.len(), "admin logout");
                    respond::empty(StatusCode::NO_CONTENT)
                }
                Ok(_) => respond::json_error(StatusCode::NOT_FOUND, "no login on that phone"),
                Err(e) => {
                    tracing::error!(error = %e, "admin logout failed");
                    respond::json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "logout could not be saved",
                    )
                }
            }
        }
        _ => respond::json_error(StatusCode::NOT_FOUND, "no such API route"),
    }
}
