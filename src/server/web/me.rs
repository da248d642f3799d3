//! The user's own page at `/me`: sign in with extension and PIN (the phone's own check,
//! [`crate::flow::Flow::authenticate`]: same tiers, lockouts and audit), see where one is
//! logged in and one's recent logins, and log out a desk one left. Only one's own logins can
//! be ended, whatever a form names.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::session::{Session, csrf_ok};
use super::{asset, cross_site, form, render, see_other};
use crate::App;
use crate::flow::{AuthFailure, Authenticated, Channel, Claim};
use crate::phone::Mac;
use crate::server::activations_api;
use crate::server::routes::Ctx;
use crate::server::users_api::Refused;
use crate::store::{AuditEvent, Change, EventKind};

/// How many recent logins and failed attempts the page lists.
const RECENT_LOGINS: usize = 20;
const RECENT_FAILURES: usize = 10;

pub fn routes() -> Router {
    Router::new()
        .route("/me", get(home))
        .route("/me/", get(home))
        .route("/me/signin", get(signin_form).post(signin))
        .route("/me/signout", post(signout))
        .route("/me/logout", post(logout))
        .route("/me/code", post(code))
        .route("/me/link", post(link))
        .route("/me/devices/remove", post(remove_device))
        .route(
            "/me/static/me.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("static/console.css"),
                )
            }),
        )
        .layer(DefaultBodyLimit::max(16 * 1024))
}

fn signed_in(ctx: &Ctx, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    ctx.app
        .web
        .users
        .get(headers, Instant::now())
        .ok_or_else(|| Box::new(see_other("/me/signin", None)))
}

fn cross_site_refused() -> Box<Response> {
    tracing::warn!("user page form sent from another site; refused");
    Box::new(
        (
            StatusCode::FORBIDDEN,
            "this form was sent from another site; open the user page itself",
        )
            .into_response(),
    )
}

/// A form's session and CSRF check: 403 when the token is not this session's.
fn checked_form(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Session, std::collections::HashMap<String, String>), Box<Response>> {
    if cross_site(headers) {
        return Err(cross_site_refused());
    }
    let session = signed_in(ctx, headers)?;
    let f = form(body);
    if !csrf_ok(&session, f.get("csrf").map(String::as_str)) {
        tracing::warn!(extension = %session.who, "user page form without this session's CSRF token");
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "this form is out of date or was not sent by your page; reload it",
            )
                .into_response(),
        ));
    }
    Ok((session, f))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

// --- sign-in ---------------------------------------------------------------------------

fn signin_page(status: StatusCode, extension: &str, error: Option<&str>) -> Response {
    render(
        status,
        "me_signin.html",
        context! { extension => extension, error => error },
    )
}

async fn signin_form(Extension(ctx): Extension<Ctx>, headers: HeaderMap) -> Response {
    if signed_in(&ctx, &headers).is_ok() {
        return see_other("/me", None);
    }
    signin_page(StatusCode::OK, "", None)
}

/// The PIN arrives in the body only, is checked by the phone's own check and goes nowhere
/// else: not into the page, the log or the audit trail.
async fn signin(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    if cross_site(&headers) {
        return *cross_site_refused();
    }
    let app = &ctx.app;
    let f = form(&body);
    let typed: String = f
        .get("extension")
        .map_or("", |e| e.trim())
        .chars()
        .take(40)
        .collect();
    let pin = f.get("pin").map_or("", String::as_str);
    if typed.is_empty() || pin.is_empty() {
        let msg = "Enter your extension and your PIN.";
        return signin_page(StatusCode::BAD_REQUEST, &typed, Some(msg));
    }
    let claim = Claim {
        extension: &typed,
        secret: pin,
        source_ip: ctx.client.ip(),
        channel: Channel::UserPage,
    };
    let Authenticated {
        user,
        tier,
        forgiven,
    } = match app.flow.authenticate(&claim).await {
        Ok(a) => a,
        Err(failure) => {
            let (status, msg) = failure_text(failure);
            return signin_page(status, &typed, Some(&msg));
        }
    };
    let mut event = AuditEvent::new(
        EventKind::UserPageSignIn,
        format!("user page sign-in ({})", tier.as_str()),
    );
    event.extension = Some(user.extension.clone());
    event.source_ip = Some(ctx.client.ip().to_canonical().to_string());
    let change = Change {
        events: vec![event],
        lockouts_cleared: forgiven,
        ..Change::default()
    };
    if let Err(e) = app.flow.book().record(change).await {
        tracing::error!(error = %e, "user page sign-in not recorded");
    }
    tracing::info!(extension = %user.extension, credential = tier.as_str(), "user page sign-in");
    let (token, _) = app.web.users.start(&user.extension, Instant::now());
    see_other("/me", Some(app.web.users.cookie(&token, ctx.secure)))
}

/// What the sign-in page says, in the phone's words.
fn failure_text(failure: AuthFailure) -> (StatusCode, String) {
    match failure {
        AuthFailure::Wrong { tries_left } => {
            let tries = if tries_left == 1 { "try" } else { "tries" };
            (
                StatusCode::UNAUTHORIZED,
                format!("Wrong extension or PIN, {tries_left} {tries} left."),
            )
        }
        AuthFailure::Locked(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Sign-in locked after too many wrong PINs. Try again in {} minutes.",
                wait.as_secs().div_ceil(60)
            ),
        ),
        AuthFailure::InFlight => (
            StatusCode::TOO_MANY_REQUESTS,
            "Other attempts for this extension are still being checked. Try again.".into(),
        ),
        AuthFailure::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "hotdesk is busy. Try again in a moment.".into(),
        ),
        AuthFailure::DirectoryUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The user directory cannot be reached. Try again later.".into(),
        ),
    }
}

async fn signout(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = checked_form(&ctx, &headers, &body) {
        return *resp;
    }
    ctx.app.web.users.end(&headers);
    see_other(
        "/me/signin",
        Some(ctx.app.web.users.clear_cookie(ctx.secure)),
    )
}

// --- the page --------------------------------------------------------------------------

#[derive(Serialize)]
struct DeskRow {
    mac: String,
    identity: u8,
    phone: String,
    network: String,
    since: String,
}

#[derive(Serialize)]
struct EventRow {
    at: String,
    mac: String,
    network: String,
    source: String,
    detail: String,
}

fn network_label(app: &App, key: &str) -> String {
    app.config
        .networks
        .get(key)
        .map_or_else(|| key.to_owned(), |n| n.label.clone())
}

fn event_rows(app: &App, events: Vec<AuditEvent>) -> Vec<EventRow> {
    events
        .into_iter()
        .map(|e| EventRow {
            at: rfc3339(e.at),
            mac: e.mac.map(|m| m.to_string()).unwrap_or_default(),
            network: e
                .network
                .map(|n| network_label(app, &n))
                .unwrap_or_default(),
            source: e.source_ip.unwrap_or_default(),
            detail: e.detail,
        })
        .collect()
}

async fn home(Extension(ctx): Extension<Ctx>, headers: HeaderMap) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let app = &ctx.app;
    let book = app.flow.book();
    let desks: Vec<DeskRow> = book
        .all()
        .iter()
        .filter(|l| l.extension == session.who)
        .map(|l| DeskRow {
            mac: l.mac.to_string(),
            identity: l.identity,
            phone: format!("{} {}", l.vendor, l.model),
            network: network_label(app, &l.network),
            since: rfc3339(l.since),
        })
        .collect();
    const LOGINS: &[EventKind] = &[EventKind::Login];
    const FAILURES: &[EventKind] = &[EventKind::LoginFailed, EventKind::LockedOut];
    let (logins, failures) = tokio::join!(
        book.audit_of(&session.who, LOGINS, RECENT_LOGINS),
        book.audit_of(&session.who, FAILURES, RECENT_FAILURES),
    );
    let history_error = logins.is_err() || failures.is_err();
    if let Err(e) = logins.as_ref().and(failures.as_ref()) {
        tracing::error!(error = %e, "user page: audit trail not read");
    }
    let softphones = super::users::softphones_view(app, &session.who).await.ok();
    let config = app.live_config();
    render(
        StatusCode::OK,
        "me.html",
        context! {
            who => session.who, csrf => session.csrf, desks => desks,
            logins => event_rows(app, logins.unwrap_or_default()),
            failures => event_rows(app, failures.unwrap_or_default()),
            history_error => history_error,
            softphones => softphones,
            self_service => config.activation.self_service,
            code_minutes => config.activation.code_ttl.0.as_secs().div_ceil(60),
        },
    )
}

/// Logs out one of the user's own logins. A form naming a login that is not theirs is
/// refused and changes nothing; the check is repeated under the book's writer lock.
async fn logout(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, f) = match checked_form(&ctx, &headers, &body) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let (Some(mac), Some(identity)) = (
        f.get("mac").and_then(|m| m.parse::<Mac>().ok()),
        f.get("identity").and_then(|i| i.parse::<u8>().ok()),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected a desk's MAC and identity",
        )
            .into_response();
    };
    let book = ctx.app.flow.book();
    let here = book.identities(&mac);
    let Some(current) = here.iter().find(|l| l.identity == identity) else {
        // Already logged out (a second click): nothing to do.
        return see_other("/me", None);
    };
    let refused = || {
        tracing::warn!(extension = %session.who, %mac, "user page: refused to log out a login that is not this user's");
        (
            StatusCode::FORBIDDEN,
            "that desk is not logged in as you; nothing was changed",
        )
            .into_response()
    };
    if current.extension != session.who {
        return refused();
    }
    let ip = ctx.client.ip().to_canonical().to_string();
    let detail = format!("user page ({})", session.who);
    match book
        .logout_own(mac, identity, &session.who, EventKind::Logout, &ip, &detail)
        .await
    {
        Ok(Some(_)) => {
            tracing::info!(extension = %session.who, %mac, identity, "logout from the user page");
            see_other("/me", None)
        }
        // Someone else took the desk between the check and the logout.
        Ok(None) => refused(),
        Err(e) => {
            tracing::error!(error = %e, "user page logout not recorded");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the logout could not be saved; try again",
            )
                .into_response()
        }
    }
}

// --- self-service: codes, softphones -------------------------------------------------------
// Every action is for the session's own extension: a form field naming another is ignored.

fn actor(session: &Session) -> String {
    format!("user page ({})", session.who)
}

fn result(session: &Session, status: StatusCode, kind: &str, extra: minijinja::Value) -> Response {
    render(
        status,
        "me_result.html",
        context! { csrf => session.csrf, extension => session.who, kind => kind, ..extra },
    )
}

fn refused(session: &Session, r: &Refused) -> Response {
    result(
        session,
        r.status,
        "refused",
        context! { error => r.message },
    )
}

/// A one-time desk login code for oneself, shown once.
async fn code(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, _) = match checked_form(&ctx, &headers, &body) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match activations_api::make_code(&ctx.app, &session.who, &actor(&session)).await {
        Ok((code, expires)) => result(
            &session,
            StatusCode::OK,
            "code",
            super::users::code_context(&code, expires),
        ),
        Err(r) => refused(&session, &r),
    }
}

/// An activation link for oneself, only with `[activation] self_service = true`.
async fn link(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, _) = match checked_form(&ctx, &headers, &body) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    if !ctx.app.live_config().activation.self_service {
        tracing::warn!(extension = %session.who, "user page: activation link asked for without self-service");
        let r = Refused::new(
            StatusCode::FORBIDDEN,
            "softphone activation links are made by an administrator here",
        );
        return refused(&session, &r);
    }
    match activations_api::make_link(&ctx.app, &session.who, None, &actor(&session)).await {
        Ok(made) => result(
            &session,
            StatusCode::OK,
            "link",
            super::users::link_context(&made),
        ),
        Err(r) => refused(&session, &r),
    }
}

/// Removes one of one's own softphones (frees its place); another user's is "no such device".
async fn remove_device(
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, f) = match checked_form(&ctx, &headers, &body) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let Some(id) = f.get("id").and_then(|i| i.parse::<i64>().ok()) else {
        return refused(
            &session,
            &Refused::new(StatusCode::BAD_REQUEST, "expected a device id"),
        );
    };
    let why = format!("{}: device {id} removed", actor(&session));
    match activations_api::remove_softphones(&ctx.app, &session.who, Some(id), why).await {
        Ok(_) => see_other("/me", None),
        Err(r) => refused(&session, &r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_or_user_typed_forms_pass_the_fetch_metadata_check() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("sec-fetch-site", http::HeaderValue::from_static(v));
            h
        };
        assert!(!cross_site(&HeaderMap::new()));
        assert!(!cross_site(&with("same-origin")));
        assert!(!cross_site(&with("none")));
        assert!(cross_site(&with("cross-site")));
        assert!(cross_site(&with("same-site")));
    }
}
