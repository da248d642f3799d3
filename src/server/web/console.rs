//! The admin console: sign-in, who is at which desk (live), force logout, lockouts, phones
//! seen. Every page needs a console session; every form that changes something carries the
//! session's CSRF token; every change is in the audit trail with who made it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::session::{Session, csrf_ok};
use super::{asset, form, render, render_text, see_other};
use crate::App;
use crate::auth::lockouts::{Refusal, Subject};
use crate::phone::Mac;
use crate::server::routes::Ctx;
use crate::store::{AuditEvent, Change, EventKind};

/// A live view is closed after this long; the browser reconnects by itself (and its session
/// is checked again).
const EVENTS_MAX: Duration = Duration::from_secs(600);

pub fn routes() -> Router {
    Router::new()
        .route("/admin", get(desks))
        .route("/admin/", get(desks))
        .route("/admin/signin", get(signin_form).post(signin))
        .route("/admin/signout", post(signout))
        .route("/admin/events", get(events))
        .route("/admin/logout", post(force_logout))
        .route("/admin/lockouts", get(lockouts).post(clear_lockout))
        .route("/admin/phones", get(phones))
        .merge(super::audit::routes())
        .merge(super::outbox::routes())
        .merge(super::preview::routes())
        .merge(super::settings::routes())
        .merge(super::users::routes())
        .route(
            "/admin/static/console.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("static/console.css"),
                )
            }),
        )
        .route(
            "/admin/static/console.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("static/console.js"),
                )
            }),
        )
        .layer(DefaultBodyLimit::max(16 * 1024))
}

/// The console session the request carries, else a redirect to the sign-in page.
pub(super) fn signed_in(ctx: &Ctx, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    ctx.app
        .web
        .admin
        .get(headers, Instant::now())
        .ok_or_else(|| Box::new(see_other("/admin/signin", None)))
}

/// A form's session and CSRF check: 403 when the token is not this session's or the
/// browser says another site sent it.
pub(super) fn checked_form(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Session, std::collections::HashMap<String, String>), Box<Response>> {
    if super::cross_site(headers) {
        // A second wall behind the SameSite cookie and the token.
        tracing::warn!("console form sent from another site; refused");
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "this form was sent from another site; open the console itself",
            )
                .into_response(),
        ));
    }
    let session = signed_in(ctx, headers)?;
    let f = form(body);
    if !csrf_ok(&session, f.get("csrf").map(String::as_str)) {
        tracing::warn!(who = %session.who, "console form without this session's CSRF token");
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "this form is out of date or was not sent by the console; reload the page",
            )
                .into_response(),
        ));
    }
    Ok((session, f))
}

pub(super) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Text an attacker chose, made safe and short for the audit trail and the log.
fn shown(text: &str) -> String {
    text.chars().take(64).flat_map(char::escape_debug).collect()
}

pub(super) async fn audit(app: &App, kind: EventKind, ctx: &Ctx, detail: String, mac: Option<Mac>) {
    let mut ev = AuditEvent::new(kind, detail);
    ev.source_ip = Some(ctx.client.ip().to_canonical().to_string());
    ev.mac = mac;
    if let Err(e) = app.flow.book().note(vec![ev]).await {
        tracing::error!(error = %e, "console: audit event not recorded");
    }
}

// --- sign-in ---------------------------------------------------------------------------

fn signin_page(status: StatusCode, error: Option<&str>) -> Response {
    render(status, "signin.html", context! { error => error })
}

async fn signin_form(Extension(ctx): Extension<Ctx>, headers: HeaderMap) -> Response {
    if signed_in(&ctx, &headers).is_ok() {
        return see_other("/admin", None);
    }
    signin_page(StatusCode::OK, None)
}

/// `admin` with `[login] admin_password_hash`, or a named account from `[[admin.accounts]]`.
/// The stricter admin limits apply: failures from one source (`admin_max_failures`), and for
/// the shared admin password its global budget.
async fn signin(Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let app = &ctx.app;
    let f = form(&body);
    let name = f.get("name").map_or("", |n| n.trim());
    let password = f.get("password").map_or("", String::as_str);
    let ip = ctx.client.ip();
    let mut subjects = vec![Subject::admin_from(ip)];
    let account = app.config.admin.accounts.iter().find(|a| a.name == name);
    let phc = match account {
        Some(a) => Some(Arc::from(a.password_hash.as_str())),
        None if name == "admin" => {
            subjects.push(Subject::AdminPassword);
            app.flow.verifier().admin_phc()
        }
        None => None,
    };
    let attempt = match app.flow.lockouts().begin(&subjects, Instant::now()) {
        Ok(a) => a,
        Err(Refusal::Locked(wait)) => {
            let minutes = wait.as_secs().div_ceil(60);
            let msg = format!("Too many failed sign-ins. Try again in {minutes} min.");
            return signin_page(StatusCode::TOO_MANY_REQUESTS, Some(&msg));
        }
        Err(Refusal::Busy) => {
            let msg = "Another sign-in from here is being checked. Try again.";
            return signin_page(StatusCode::TOO_MANY_REQUESTS, Some(msg));
        }
    };
    match app.flow.verifier().check_password(phc, password).await {
        Ok(true) => {
            attempt.succeed(&subjects[..1]);
            let (token, _) = app.web.admin.start(name, Instant::now());
            tracing::info!(who = %name, "console sign-in");
            audit(
                app,
                EventKind::ConsoleSignIn,
                &ctx,
                format!("console sign-in by {name}"),
                None,
            )
            .await;
            see_other("/admin", Some(app.web.admin.cookie(&token, ctx.secure)))
        }
        Ok(false) => {
            let failure = attempt.fail();
            let who = shown(name);
            tracing::info!(who = %who, tries_left = failure.left, "console sign-in failed");
            let change = Change {
                lockouts: failure.saved,
                ..Change::default()
            };
            if let Err(e) = app.flow.book().record(change).await {
                tracing::error!(error = %e, "failed sign-in not recorded");
            }
            audit(
                app,
                EventKind::ConsoleSignInFailed,
                &ctx,
                format!("console sign-in failed for \"{who}\""),
                None,
            )
            .await;
            signin_page(StatusCode::UNAUTHORIZED, Some("Wrong name or password."))
        }
        Err(_busy) => {
            attempt.abandon();
            let msg = "hotdesk is busy checking passwords. Try again in a moment.";
            signin_page(StatusCode::SERVICE_UNAVAILABLE, Some(msg))
        }
    }
}

async fn signout(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = checked_form(&ctx, &headers, &body) {
        return *resp;
    }
    ctx.app.web.admin.end(&headers);
    see_other(
        "/admin/signin",
        Some(ctx.app.web.admin.clear_cookie(ctx.secure)),
    )
}

// --- desks -----------------------------------------------------------------------------

#[derive(Serialize)]
struct DeskRow {
    extension: String,
    name: String,
    mac: String,
    identity: u8,
    vendor: String,
    model: String,
    network: String,
    template: String,
    since: String,
    source: String,
    reload_sent_at: String,
    reload_result: String,
    applied: bool,
}

fn desk_rows(app: &App) -> Vec<DeskRow> {
    let book = app.flow.book();
    let mut rows: Vec<DeskRow> = book
        .all()
        .iter()
        .map(|l| {
            let reload = book.last_reload(&l.mac);
            DeskRow {
                extension: l.extension.clone(),
                name: l.name.clone(),
                mac: l.mac.to_string(),
                identity: l.identity,
                vendor: l.vendor.clone(),
                model: l.model.clone(),
                network: l.network.clone(),
                template: l.template.clone().unwrap_or_default(),
                since: rfc3339(l.since),
                source: l.source_ip.clone(),
                reload_sent_at: reload.as_ref().map(|r| rfc3339(r.at)).unwrap_or_default(),
                reload_result: reload.map(|r| r.result).unwrap_or_default(),
                applied: l.applied_at.is_some(),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.extension.cmp(&b.extension).then(a.mac.cmp(&b.mac)));
    rows
}

async fn desks(
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let q = crate::server::routes::parse_query(query.as_deref());
    let filter = q
        .get("q")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    let rows: Vec<DeskRow> = desk_rows(&ctx.app)
        .into_iter()
        .filter(|r| {
            filter.is_empty()
                || [
                    &r.extension,
                    &r.name,
                    &r.mac,
                    &r.model,
                    &r.network,
                    &r.source,
                ]
                .iter()
                .any(|f| f.to_lowercase().contains(&filter))
        })
        .collect();
    render(
        StatusCode::OK,
        "desks.html",
        context! {
            page => "desks", who => session.who, csrf => session.csrf,
            rows => rows, q => filter,
        },
    )
}

/// Server-sent events: `desks` with the table's rows whenever a login, logout, apply or
/// reload changes them.
async fn events(Extension(ctx): Extension<Ctx>, headers: HeaderMap) -> Response {
    let Some(session) = ctx.app.web.admin.get(&headers, Instant::now()) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let changes = ctx.app.flow.book().changes();
    let ends = tokio::time::Instant::now() + EVENTS_MAX;
    let state = (ctx.app.clone(), headers, session.csrf, changes, ends, true);
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let (app, headers, csrf, changes, ends, first) = &mut s;
        if !*first {
            match tokio::time::timeout_at(*ends, changes.changed()).await {
                Ok(Ok(())) => {}
                // The book is gone (shutting down) or the view is old enough: end it.
                Ok(Err(_)) | Err(_) => return None,
            }
            // A session that ended (sign-out, expiry) gets no more rows.
            app.web.admin.get(headers, Instant::now())?;
        }
        *first = false;
        changes.borrow_and_update();
        let rows = desk_rows(app);
        let html = render_text(
            "desk_rows.html",
            context! { rows => rows, csrf => csrf.clone() },
        )
        .unwrap_or_default();
        let event = Event::default().event("desks").data(html);
        Some((Ok::<_, Infallible>(event), s))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Logs out one identity (`identity` given) or every identity on a phone.
async fn force_logout(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, f) = match checked_form(&ctx, &headers, &body) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let Some(mac) = f.get("mac").and_then(|m| m.parse::<Mac>().ok()) else {
        return (StatusCode::BAD_REQUEST, "expected a phone's MAC address").into_response();
    };
    let identity = f.get("identity").and_then(|i| i.parse::<u8>().ok());
    let ip = ctx.client.ip().to_canonical().to_string();
    let detail = format!("console ({})", session.who);
    let book = ctx.app.flow.book();
    let ended = match identity {
        Some(i) => book
            .logout_identity(mac, i, EventKind::AdminLogout, &ip, &detail)
            .await
            .map(|l| l.into_iter().collect::<Vec<_>>()),
        None => book.logout(mac, EventKind::AdminLogout, &ip, &detail).await,
    };
    match ended {
        Ok(ended) => {
            tracing::info!(%mac, users = ended.len(), who = %session.who, "console logout");
            crate::server::reload::after_remote_logout(&ctx.app, &ended);
            see_other("/admin", None)
        }
        Err(e) => {
            tracing::error!(error = %e, "console logout failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the logout could not be saved; see the server log",
            )
                .into_response()
        }
    }
}

// --- lockouts --------------------------------------------------------------------------

#[derive(Serialize)]
struct LockRow {
    subject: String,
    remaining: String,
    strikes: u32,
}

async fn lockouts(Extension(ctx): Extension<Ctx>, headers: HeaderMap) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let rows: Vec<LockRow> = ctx
        .app
        .flow
        .lockouts()
        .active(Instant::now())
        .into_iter()
        .map(|l| LockRow {
            subject: l.subject.to_string(),
            remaining: format!("{} min", l.remaining.as_secs().div_ceil(60)),
            strikes: l.strikes,
        })
        .collect();
    render(
        StatusCode::OK,
        "lockouts.html",
        context! { page => "lockouts", who => session.who, csrf => session.csrf, rows => rows },
    )
}

/// Clears one lockout (`subject`) or all of them (`all`).
async fn clear_lockout(
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, f) = match checked_form(&ctx, &headers, &body) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let lockouts = ctx.app.flow.lockouts();
    let cleared = if f.contains_key("all") {
        lockouts.clear_where(|_| true)
    } else {
        let Some(subject) = f.get("subject").and_then(|s| s.parse::<Subject>().ok()) else {
            return (StatusCode::BAD_REQUEST, "unknown lockout").into_response();
        };
        lockouts.clear(&[subject])
    };
    let names: Vec<String> = cleared.iter().map(ToString::to_string).collect();
    let change = Change {
        lockouts_cleared: names.clone(),
        events: vec![{
            let mut ev = AuditEvent::new(
                EventKind::LockoutCleared,
                format!("console ({}): {}", session.who, names.join(", ")),
            );
            ev.source_ip = Some(ctx.client.ip().to_canonical().to_string());
            ev
        }],
        ..Change::default()
    };
    if let Err(e) = ctx.app.flow.book().record(change).await {
        tracing::error!(error = %e, "console: cleared lockouts not recorded");
    }
    tracing::info!(cleared = names.len(), who = %session.who, "lockouts cleared in the console");
    see_other("/admin/lockouts", None)
}

// --- phones seen -----------------------------------------------------------------------

async fn phones(Extension(ctx): Extension<Ctx>, headers: HeaderMap) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let book = ctx.app.flow.book();
    let rows: Vec<_> = ctx
        .app
        .seen
        .all()
        .into_iter()
        .map(|p| {
            let users: Vec<String> = book
                .identities(&p.mac)
                .iter()
                .map(|l| l.extension.clone())
                .collect();
            context! {
                mac => p.mac.to_string(), vendor => p.vendor, model => p.model,
                firmware => p.firmware, address => p.address.to_string(),
                last_contact => rfc3339(p.at), users => users.join(", "),
            }
        })
        .collect();
    render(
        StatusCode::OK,
        "phones.html",
        context! { page => "phones", who => session.who, csrf => session.csrf, rows => rows },
    )
}
