//! The console's Users page: the embedded directory's users (create, PIN and SIP secret shown
//! once, enable/disable, delete), and for every directory kind a user's softphones (activation
//! link with its QR code, device count, remove one) and one-time desk login codes. Each action
//! calls the same function as the JSON API, audited as `console (<admin>)`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Extension, FromRequest, FromRequestParts, Path, RawQuery, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use minijinja::{Value, context};
use serde::Serialize;

use super::console::{checked_form, rfc3339, signed_in};
use super::session::Session;
use super::{render, see_other_path};
use crate::App;
use crate::activation;
use crate::directory::embedded::{NewUser, Patch};
use crate::directory::valid_extension;
use crate::secret::Secret;
use crate::server::activations_api::{self, Emailed, LinkMade};
use crate::server::routes::Ctx;
use crate::server::users_api::{self, Refused};

pub fn routes() -> Router {
    Router::new()
        .route("/admin/users", get(list).post(create))
        .route("/admin/users/{ext}", get(one))
        .route("/admin/users/{ext}/pin", post(pin))
        .route("/admin/users/{ext}/sip-secret", post(sip_secret))
        .route("/admin/users/{ext}/enabled", post(enabled))
        .route("/admin/users/{ext}/delete", post(delete))
        .route("/admin/users/{ext}/link", post(link))
        .route("/admin/users/{ext}/code", post(code))
        .route("/admin/users/{ext}/devices/reset", post(reset_devices))
        .route("/admin/users/{ext}/devices/remove", post(remove_device))
}

/// `/admin/users/<ext>`, percent-encoded (`*`, `#` and `+` are extension characters).
pub(super) fn user_path(prefix: &str, ext: &str) -> String {
    let encoded =
        percent_encoding::utf8_percent_encode(ext, percent_encoding::NON_ALPHANUMERIC).to_string();
    format!("{prefix}/{encoded}")
}

fn actor(session: &Session) -> String {
    format!("console ({})", session.who)
}

/// A page that says why nothing was done.
fn refused(session: &Session, ext: Option<&str>, r: &Refused) -> Response {
    render(
        r.status,
        "user_result.html",
        context! {
            page => "users", who => session.who, csrf => session.csrf,
            kind => "refused", extension => ext, error => r.message,
            back => ext.map_or_else(|| "/admin/users".to_owned(), |e| user_path("/admin/users", e)),
        },
    )
}

fn bad_extension(session: &Session) -> Response {
    refused(
        session,
        None,
        &Refused::new(
            StatusCode::BAD_REQUEST,
            "an extension is up to 32 digits, * and #, with an optional leading +",
        ),
    )
}

/// The embedded directory, or a page saying users are managed elsewhere.
fn embedded(
    ctx: &Ctx,
    session: &Session,
    ext: &str,
) -> Result<std::sync::Arc<crate::directory::embedded::Embedded>, Box<Response>> {
    ctx.app.users.clone().ok_or_else(|| {
        Box::new(refused(
            session,
            Some(ext),
            &Refused::new(
                StatusCode::CONFLICT,
                "this server's users come from another directory: change them there",
            ),
        ))
    })
}

/// A signed-in admin's form about one user: the session (CSRF checked, cross-site refused),
/// the form's fields and a valid extension. Every per-user action starts from it.
struct UserForm {
    ctx: Ctx,
    session: Session,
    form: HashMap<String, String>,
    ext: String,
}

impl<S: Send + Sync> FromRequest<S> for UserForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Extension(ctx) = Extension::<Ctx>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(ext) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let (session, form) = checked_form(&ctx, &headers, &body).map_err(|r| *r)?;
        if !valid_extension(&ext) {
            return Err(bad_extension(&session));
        }
        Ok(Self {
            ctx,
            session,
            form,
            ext,
        })
    }
}

// --- the list --------------------------------------------------------------------------

#[derive(Serialize)]
struct UserRow {
    extension: String,
    path: String,
    name: String,
    enabled: bool,
    email: String,
    has_pin: bool,
    has_sip_secret: bool,
    devices: usize,
    limit_reached: bool,
}

async fn list(
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    // The "open an extension" form (every directory kind) is a GET with `?ext=`.
    let q = crate::server::routes::parse_query(q.as_deref());
    if let Some(ext) = q.get("ext").map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if !valid_extension(ext) {
            return bad_extension(&session);
        }
        return see_other_path(user_path("/admin/users", ext));
    }
    let app = &ctx.app;
    let max = app.live_config().activation.max_devices;
    let counts = match app.activations.device_counts().await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "device counts not read");
            None
        }
    };
    let rows: Vec<UserRow> = app
        .users
        .as_ref()
        .map(|u| u.list())
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            let devices = counts
                .as_ref()
                .and_then(|c| c.get(&u.extension).copied())
                .unwrap_or(0);
            UserRow {
                path: user_path("/admin/users", &u.extension),
                extension: u.extension,
                name: u.name,
                enabled: u.enabled,
                email: u.email.unwrap_or_default(),
                has_pin: u.has_pin,
                has_sip_secret: u.has_sip_secret,
                devices,
                limit_reached: devices >= max,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        "users.html",
        context! {
            page => "users", who => session.who, csrf => session.csrf,
            embedded => app.users.is_some(), rows => rows, max => max,
            counts_error => counts.is_none(),
            templates => app.provisioner.user_template_names().into_iter().collect::<Vec<_>>(),
        },
    )
}

async fn create(Extension(ctx): Extension<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, f) = match checked_form(&ctx, &headers, &body) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let field = |k: &str| f.get(k).map_or("", |v| v.trim()).to_owned();
    let ext = field("extension");
    let users = match embedded(&ctx, &session, &ext) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    let user = NewUser {
        extension: ext.clone(),
        name: field("name"),
        pin: None,
        sip_secret: None,
        template: Some(field("template")),
        email: Some(field("email")),
        // A checkbox: present when ticked.
        enabled: f.contains_key("enabled"),
    };
    match users_api::create_user(&ctx.app, &users, user, &actor(&session)).await {
        Ok(rec) => see_other_path(user_path("/admin/users", &rec.extension)),
        Err(r) => refused(&session, None, &r),
    }
}

// --- one user --------------------------------------------------------------------------

#[derive(Serialize)]
struct DeviceRow {
    id: i64,
    activated: String,
    user_agent: String,
    source: String,
}

/// A user's softphones for a page: the rows, "n of max", an unused link's expiry.
pub(super) async fn softphones_view(app: &App, ext: &str) -> Result<Value, Refused> {
    let s = activations_api::softphones(app, ext).await?;
    let limit_reached = s.limit_reached();
    let rows: Vec<DeviceRow> = s
        .devices
        .into_iter()
        .map(|d| DeviceRow {
            id: d.id,
            activated: rfc3339(d.activated),
            user_agent: d.user_agent,
            source: d.source_ip,
        })
        .collect();
    Ok(context! {
        count => rows.len(), max => s.max, limit_reached => limit_reached, rows => rows,
        link_expires => s.link_expires.map(rfc3339),
    })
}

async fn one(
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    Path(ext): Path<String>,
) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    if !valid_extension(&ext) {
        return bad_extension(&session);
    }
    let app = &ctx.app;
    // The embedded record (disabled users too), or the user as a phone login finds them.
    let (record, name) = match &app.users {
        Some(users) => match users.get(&ext) {
            Some(r) => {
                let name = r.name.clone();
                (Some(r), name)
            }
            None => {
                let r = Refused::new(
                    StatusCode::NOT_FOUND,
                    format!("no user with extension {ext}"),
                );
                return refused(&session, None, &r);
            }
        },
        None => match activations_api::user(app, &ext).await {
            Ok(u) => (None, u.name.clone()),
            Err(r) => return refused(&session, None, &r),
        },
    };
    let softphones = match softphones_view(app, &ext).await {
        Ok(v) => v,
        Err(r) => return refused(&session, Some(&ext), &r),
    };
    let config = app.live_config();
    render(
        StatusCode::OK,
        "user.html",
        context! {
            page => "users", who => session.who, csrf => session.csrf,
            extension => ext, path => user_path("/admin/users", &ext), name => name,
            record => record, softphones => softphones,
            smtp => config.activation.smtp.is_some(),
            code_minutes => config.activation.code_ttl.0.as_secs().div_ceil(60),
        },
    )
}

/// The answer to an action: where a secret is shown, once (the answer to the POST: never
/// cached, every page being `no-store`, never in a URL, never again), or a confirmation.
fn result_page(session: &Session, ext: &str, kind: &str, extra: Value) -> Response {
    render(
        StatusCode::OK,
        "user_result.html",
        context! {
            page => "users", who => session.who, csrf => session.csrf,
            kind => kind, extension => ext, back => user_path("/admin/users", ext),
            ..extra
        },
    )
}

async fn pin(
    UserForm {
        ctx, session, ext, ..
    }: UserForm,
) -> Response {
    let users = match embedded(&ctx, &session, &ext) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    match users_api::new_pin(&ctx.app, &users, &ext, None, &actor(&session)).await {
        Ok(pin) => result_page(&session, &ext, "pin", context! { secret => pin.expose() }),
        Err(r) => refused(&session, Some(&ext), &r),
    }
}

async fn sip_secret(
    UserForm {
        ctx, session, ext, ..
    }: UserForm,
) -> Response {
    let users = match embedded(&ctx, &session, &ext) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    match users_api::new_sip_secret(&ctx.app, &users, &ext, None, &actor(&session)).await {
        Ok(s) => result_page(
            &session,
            &ext,
            "sip-secret",
            context! { secret => s.expose() },
        ),
        Err(r) => refused(&session, Some(&ext), &r),
    }
}

async fn enabled(
    UserForm {
        ctx,
        session,
        form: f,
        ext,
    }: UserForm,
) -> Response {
    let users = match embedded(&ctx, &session, &ext) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    let Some(on) = f.get("enabled").and_then(|v| v.parse::<bool>().ok()) else {
        let r = Refused::new(StatusCode::BAD_REQUEST, "expected enabled=true or false");
        return refused(&session, Some(&ext), &r);
    };
    let patch = Patch {
        enabled: Some(on),
        ..Patch::default()
    };
    let ip = ctx.client.ip().to_canonical().to_string();
    match users_api::change_user(&ctx.app, &users, &ext, patch, &ip, &actor(&session)).await {
        Ok(_) => see_other_path(user_path("/admin/users", &ext)),
        Err(r) => refused(&session, Some(&ext), &r),
    }
}

/// Deletes after a confirmation page (the form without `confirm=yes` only asks).
async fn delete(
    UserForm {
        ctx,
        session,
        form: f,
        ext,
    }: UserForm,
) -> Response {
    let users = match embedded(&ctx, &session, &ext) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    let Some(record) = users.get(&ext) else {
        let r = Refused::new(
            StatusCode::NOT_FOUND,
            format!("no user with extension {ext}"),
        );
        return refused(&session, None, &r);
    };
    if f.get("confirm").map(String::as_str) != Some("yes") {
        return result_page(
            &session,
            &ext,
            "confirm-delete",
            context! { name => record.name, path => user_path("/admin/users", &ext) },
        );
    }
    let ip = ctx.client.ip().to_canonical().to_string();
    match users_api::delete_user(&ctx.app, &users, &ext, &ip, &actor(&session)).await {
        Ok(()) => see_other_path("/admin/users".to_owned()),
        Err(r) => refused(&session, Some(&ext), &r),
    }
}

/// What a result page shows of a link just made.
pub(super) fn link_context(made: &LinkMade) -> Value {
    let (emailed_to, email_error) = match &made.email {
        Some(Emailed::Sent { to }) => (Some(to.clone()), None),
        Some(Emailed::NotSent { error }) => (None, Some(error.clone())),
        None => (None, None),
    };
    // The image is fetched from this page's own origin (the CSP allows no other), whatever
    // `base_url` the link itself carries.
    let qr = format!("{}/qr.svg", activation::link_path(made.link.token.expose()));
    context! {
        url => made.link.url, qr => qr, expires => rfc3339(made.link.expires),
        username => made.username, emailed_to => emailed_to, email_error => email_error,
    }
}

async fn link(
    UserForm {
        ctx,
        session,
        form: f,
        ext,
    }: UserForm,
) -> Response {
    // A ticked box asks for the email; without the field, the API's default.
    let email = f.get("email").map(|v| v == "yes");
    match activations_api::make_link(&ctx.app, &ext, email, &actor(&session)).await {
        Ok(made) => result_page(&session, &ext, "link", link_context(&made)),
        Err(r) => refused(&session, Some(&ext), &r),
    }
}

pub(super) fn code_context(code: &Secret, expires: time::OffsetDateTime) -> Value {
    context! { secret => code.expose(), expires => rfc3339(expires) }
}

async fn code(
    UserForm {
        ctx, session, ext, ..
    }: UserForm,
) -> Response {
    match activations_api::make_code(&ctx.app, &ext, &actor(&session)).await {
        Ok((code, expires)) => result_page(&session, &ext, "code", code_context(&code, expires)),
        Err(r) => refused(&session, Some(&ext), &r),
    }
}

async fn reset_devices(
    UserForm {
        ctx, session, ext, ..
    }: UserForm,
) -> Response {
    let why = format!("{}: device count reset", actor(&session));
    match activations_api::remove_softphones(&ctx.app, &ext, None, why).await {
        Ok(_) => see_other_path(user_path("/admin/users", &ext)),
        Err(r) => refused(&session, Some(&ext), &r),
    }
}

async fn remove_device(
    UserForm {
        ctx,
        session,
        form: f,
        ext,
    }: UserForm,
) -> Response {
    let Some(id) = f.get("id").and_then(|i| i.parse::<i64>().ok()) else {
        let r = Refused::new(StatusCode::BAD_REQUEST, "expected a device id");
        return refused(&session, Some(&ext), &r);
    };
    let why = format!("{}: device {id} removed", actor(&session));
    match activations_api::remove_softphones(&ctx.app, &ext, Some(id), why).await {
        Ok(_) => see_other_path(user_path("/admin/users", &ext)),
        Err(r) => refused(&session, Some(&ext), &r),
    }
}
