//! The admin JSON API: who is logged in where, remote logout, the audit trail.
//! Every call needs `Authorization: Bearer <key>` with a key from `[[admin.keys]]` (stored hashed;
//! a key may be bound to source addresses).

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
    /// The last reload request hotdesk sent the phone (SIP NOTIFY check-sync), and its answer.
    reload_sent_at: Option<String>,
    reload_result: Option<String>,
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

/// The name of the API key the request carries, if it is a configured one valid from here.
fn authorized<'a>(app: &'a App, headers: &HeaderMap, source: std::net::IpAddr) -> Option<&'a str> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    crate::auth::match_api_key(&app.config.admin.keys, key.trim(), source)
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

pub(super) async fn handle(app: &std::sync::Arc<App>, req: AdminRequest<'_>) -> Resp {
    let AdminRequest {
        peer,
        path,
        method,
        headers,
        query,
        body,
    } = req;
    let Some(key_name) = authorized(app, headers, peer.ip()) else {
        tracing::info!("admin API: missing or wrong API key");
        return respond::json_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (Authorization: Bearer <key>)",
        );
    };
    super::access_log::note_key(key_name);
    let detail = format!("admin API (key {key_name})");
    match (method, path) {
        (&Method::GET, "/api/v1/logins") => {
            let logins = app.flow.book().all();
            let views: Vec<LoginView<'_>> = logins
                .iter()
                .map(|l| {
                    let reload = app.flow.book().last_reload(&l.mac);
                    LoginView {
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
                        reload_sent_at: reload.as_ref().map(|r| rfc3339(r.at)),
                        reload_result: reload.map(|r| r.result),
                    }
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
        (&Method::GET, "/api/v1/lockouts") => {
            let now = std::time::Instant::now();
            let views: Vec<_> = app
                .flow
                .lockouts()
                .active(now)
                .into_iter()
                .map(|l| {
                    serde_json::json!({
                        "subject": l.subject.to_string(),
                        "remaining_seconds": l.remaining.as_secs(),
                        "strikes": l.strikes,
                    })
                })
                .collect();
            respond::json(StatusCode::OK, &views)
        }
        (&Method::DELETE, "/api/v1/lockouts") => clear_lockouts(app, query, peer, &detail).await,
        (m, p) if p == "/api/v1/users" || p.starts_with("/api/v1/users/") => {
            super::users_api::handle(app, m, p, body, peer, &detail).await
        }
        (m, p) if p.starts_with("/api/v1/phones/") => {
            phone_credentials(app, m, p, peer, &detail).await
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
                .logout(mac, EventKind::AdminLogout, &ip, &detail)
                .await
            {
                Ok(ended) if !ended.is_empty() => {
                    tracing::info!(%mac, users = ended.len(), "admin logout");
                    super::reload::after_remote_logout(app, &ended);
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

/// `DELETE /api/v1/lockouts?subject=S | extension=E | source=IP | all=true`: forgets the
/// failures of every matching subject (locked or not), audited with the key's name.
async fn clear_lockouts(
    app: &App,
    query: &HashMap<String, String>,
    peer: SocketAddr,
    detail: &str,
) -> Resp {
    use crate::auth::Subject;
    use crate::auth::lockouts::source_key;
    let pick: Box<dyn Fn(&Subject) -> bool + Send> = if let Some(s) = query.get("subject") {
        let Ok(wanted) = s.parse::<Subject>() else {
            return respond::json_error(
                StatusCode::BAD_REQUEST,
                "unknown subject; see GET /api/v1/lockouts",
            );
        };
        Box::new(move |x| *x == wanted)
    } else if let Some(ext) = query.get("extension") {
        let ext = ext.clone();
        Box::new(
            move |x| matches!(x, Subject::Extension(e) | Subject::ExtensionFrom(e, _) if *e == ext),
        )
    } else if let Some(ip) = query.get("source") {
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
            return respond::json_error(StatusCode::BAD_REQUEST, "source must be an IP address");
        };
        let ip = source_key(ip);
        Box::new(move |x| {
            matches!(x, Subject::Source(a) | Subject::AdminFrom(a)
                | Subject::ExtensionFrom(_, a) | Subject::HandsetFrom(_, a) if *a == ip)
        })
    } else if query.get("all").map(String::as_str) == Some("true") {
        Box::new(|_| true)
    } else {
        return respond::json_error(
            StatusCode::BAD_REQUEST,
            "say which: ?subject=, ?extension=, ?source= or ?all=true",
        );
    };
    let cleared = app.flow.lockouts().clear_where(pick);
    let names: Vec<String> = cleared.iter().map(ToString::to_string).collect();
    let mut event = crate::store::AuditEvent::new(
        EventKind::LockoutCleared,
        format!(
            "{detail}: {}",
            if names.is_empty() {
                "nothing to clear".to_owned()
            } else {
                names.join(", ")
            }
        ),
    );
    event.source_ip = Some(peer.ip().to_canonical().to_string());
    let change = crate::store::Change {
        events: vec![event],
        lockouts_cleared: names.clone(),
        ..Default::default()
    };
    if let Err(e) = app.flow.book().record(change).await {
        tracing::error!(error = %e, "lockout clearing not recorded");
        return respond::json_error(StatusCode::INTERNAL_SERVER_ERROR, "could not be saved");
    }
    tracing::info!(cleared = names.len(), "lockouts cleared by the admin API");
    respond::json(StatusCode::OK, &serde_json::json!({ "cleared": names }))
}

/// `POST /api/v1/phones/{mac}/credentials`: makes (or replaces) the phone's provisioning
/// credentials and answers them, the only time the password is shown. `DELETE` revokes them.
async fn phone_credentials(
    app: &App,
    method: &Method,
    path: &str,
    peer: SocketAddr,
    detail: &str,
) -> Resp {
    let raw = path
        .trim_start_matches("/api/v1/phones/")
        .trim_end_matches("/credentials");
    let Ok(mac) = raw.parse::<Mac>() else {
        return respond::json_error(
            StatusCode::BAD_REQUEST,
            "expected /api/v1/phones/<12 hex digits>/credentials",
        );
    };
    let mut event = crate::store::AuditEvent::new(EventKind::CredentialsChanged, String::new());
    event.mac = Some(mac);
    event.source_ip = Some(peer.ip().to_canonical().to_string());
    let mut change = crate::store::Change::default();
    let made = if method == Method::POST {
        let c = crate::provision::credentials::generate(mac, app.clock.now());
        event.detail = format!("{detail}: provisioning credentials made");
        change.credentials_put.push(c.clone());
        Some(c)
    } else {
        if app.credentials.get(&mac).is_none() {
            return respond::json_error(StatusCode::NOT_FOUND, "that phone has no credentials");
        }
        event.detail = format!("{detail}: provisioning credentials revoked");
        change.credentials_removed.push(mac);
        None
    };
    change.events.push(event);
    if let Err(e) = app.flow.book().record(change).await {
        tracing::error!(error = %e, "phone credentials not saved");
        return respond::json_error(StatusCode::INTERNAL_SERVER_ERROR, "could not be saved");
    }
    match made {
        Some(c) => {
            tracing::info!(%mac, "provisioning credentials made");
            let body = serde_json::json!({
                "mac": mac.to_string(),
                "username": c.username,
                "password": c.password.expose(),
                "realm": app.config.provision.realm,
                "note": "shown once: hotdesk does not show this password again",
            });
            app.credentials.set(c);
            let mut resp = respond::json(StatusCode::CREATED, &body);
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        None => {
            app.credentials.remove(&mac);
            tracing::info!(%mac, "provisioning credentials revoked");
            respond::empty(StatusCode::NO_CONTENT)
        }
    }
}
