//! `/api/v1/users`: the embedded directory's users for the admin API. A PIN or SIP secret
//! appears in exactly one answer, the one that set it (`POST .../pin`, `.../sip-secret`);
//! every change is audited with the API key's name. Other directory kinds answer 409.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, StatusCode};
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::App;
use crate::directory::embedded::{Embedded, NewUser, Patch, UserRecord, UsersError, secrets};
use crate::directory::valid_extension;
use crate::secret::Secret;
use crate::store::EventKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    extension: String,
    name: String,
    template: Option<String>,
    email: Option<String>,
    enabled: Option<bool>,
    pin: Option<String>,
    sip_secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    name: Option<String>,
    /// `""` clears it.
    template: Option<String>,
    email: Option<String>,
    enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PinBody {
    pin: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SipSecretBody {
    sip_secret: Option<String>,
}

/// Parses a JSON body; the error never quotes a value (it could be a PIN).
fn parse<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    expected: &str,
) -> Result<T, Box<Resp>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_required(body, expected)
}

fn parse_required<T: serde::de::DeserializeOwned>(
    body: &[u8],
    expected: &str,
) -> Result<T, Box<Resp>> {
    serde_json::from_slice(body).map_err(|e| -> Box<Resp> {
        let text = e.to_string();
        let shown = if text.starts_with("unknown field") || text.starts_with("missing field") {
            text
        } else {
            format!(
                "not valid JSON here (line {}, column {})",
                e.line(),
                e.column()
            )
        };
        Box::new(respond::json_error(
            StatusCode::BAD_REQUEST,
            &format!("{shown}; expected {expected}"),
        ))
    })
}

/// Why a change was refused: a status and a message fit to show (never a secret). The JSON
/// API answers it as `{"error"}`, the console and the user page as a page.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

impl Refused {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn json(&self) -> Resp {
        respond::json_error(self.status, &self.message)
    }
}

impl From<UsersError> for Refused {
    fn from(e: UsersError) -> Self {
        let status = match &e {
            UsersError::NotFound(_) => StatusCode::NOT_FOUND,
            UsersError::Exists(_) => StatusCode::CONFLICT,
            UsersError::Invalid(_) => StatusCode::BAD_REQUEST,
            UsersError::Store(why) => {
                tracing::error!(error = %why, "users not saved");
                return Refused::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the users could not be saved",
                );
            }
        };
        Refused::new(status, e.to_string())
    }
}

fn error(e: UsersError) -> Resp {
    Refused::from(e).json()
}

/// The one answer that carries a secret: never cached.
fn once(body: serde_json::Value) -> Resp {
    respond::json(StatusCode::OK, &body)
}

fn check_template(app: &App, template: Option<&str>) -> Result<(), Refused> {
    let Some(t) = template.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let known = app.provisioner.user_template_names();
    if known.contains(t) {
        return Ok(());
    }
    Err(Refused::new(
        StatusCode::BAD_REQUEST,
        format!(
            "template `{}` exists for no brand (known: {})",
            t.escape_debug(),
            known.into_iter().collect::<Vec<_>>().join(", ")
        ),
    ))
}

pub(super) async fn handle(
    app: &Arc<App>,
    method: &Method,
    path: &str,
    body: &[u8],
    peer: SocketAddr,
    actor: &str,
) -> Resp {
    // Links, devices and codes work with every directory kind.
    if let Some((ext, sub)) = activation_route(path) {
        return super::activations_api::handle(app, method, &ext, sub, body, actor).await;
    }
    let Some(users) = app.users.clone() else {
        return respond::json_error(
            StatusCode::CONFLICT,
            "users are managed by hotdesk only with [directory] kind = \"embedded\"; this server's users come from elsewhere (edit them there)",
        );
    };
    let rest = path.trim_start_matches("/api/v1/users");
    let mut parts = rest.trim_start_matches('/').splitn(2, '/');
    let raw_ext = parts.next().unwrap_or("");
    let sub = parts.next();
    if raw_ext.is_empty() {
        return match *method {
            Method::GET => respond::json(StatusCode::OK, &users.list()),
            Method::POST => create(app, &users, body, actor).await,
            _ => respond::json_error(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
        };
    }
    let ext = percent_encoding::percent_decode_str(raw_ext)
        .decode_utf8()
        .map(|e| e.into_owned())
        .unwrap_or_default();
    if !valid_extension(&ext) {
        return respond::json_error(
            StatusCode::BAD_REQUEST,
            "expected /api/v1/users/<extension> (digits, * and #, percent-encoded)",
        );
    }
    let ip = peer.ip().to_canonical().to_string();
    match (method, sub) {
        (&Method::GET, None) => match users.get(&ext) {
            Some(u) => respond::json(StatusCode::OK, &u),
            None => error(UsersError::NotFound(ext)),
        },
        (&Method::PATCH, None) => patch(app, &users, &ext, body, &ip, actor).await,
        (&Method::DELETE, None) => match delete_user(app, &users, &ext, &ip, actor).await {
            Ok(()) => respond::empty(StatusCode::NO_CONTENT),
            Err(r) => r.json(),
        },
        (&Method::POST, Some("pin")) => set_pin(app, &users, &ext, body, actor).await,
        (&Method::POST, Some("sip-secret")) => set_sip_secret(app, &users, &ext, body, actor).await,
        _ => respond::json_error(StatusCode::NOT_FOUND, "no such API route"),
    }
}

/// `/api/v1/users/{ext}/activations|devices/{id}|login-codes`: the extension and the rest.
fn activation_route(path: &str) -> Option<(String, &str)> {
    let rest = path.strip_prefix("/api/v1/users/")?;
    let (raw, sub) = rest.split_once('/')?;
    if !(sub == "activations" || sub == "login-codes" || sub.starts_with("devices/")) {
        return None;
    }
    let ext = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    valid_extension(&ext).then(|| (ext.into_owned(), sub))
}

async fn create(app: &App, users: &Embedded, body: &[u8], actor: &str) -> Resp {
    const EXPECTED: &str = "{\"extension\", \"name\", optional \"template\", \"email\", \"enabled\", \"pin\", \"sip_secret\"}";
    let b: CreateBody = match parse_required(body, EXPECTED) {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let user = NewUser {
        extension: b.extension,
        name: b.name,
        pin: b.pin.map(Secret::new),
        sip_secret: b.sip_secret.map(Secret::new),
        template: b.template,
        email: b.email,
        enabled: b.enabled.unwrap_or(true),
    };
    match create_user(app, users, user, actor).await {
        Ok(rec) => respond::json(StatusCode::CREATED, &rec),
        Err(r) => r.json(),
    }
}

/// Adds a user after the checks a form or a JSON body both need (template known, a chosen
/// PIN or SIP secret strong enough); empty template and email count as none.
pub(crate) async fn create_user(
    app: &App,
    users: &Embedded,
    mut user: NewUser,
    actor: &str,
) -> Result<UserRecord, Refused> {
    user.template = user.template.filter(|t| !t.is_empty());
    user.email = user.email.filter(|e| !e.is_empty());
    check_template(app, user.template.as_deref())?;
    if let Some(pin) = &user.pin
        && let Err(weak) = secrets::check_pin(pin.expose(), &user.extension)
    {
        return Err(Refused::new(StatusCode::BAD_REQUEST, weak.to_string()));
    }
    if let Some(s) = &user.sip_secret
        && let Err(why) = secrets::check_sip_secret(s.expose())
    {
        return Err(Refused::new(StatusCode::BAD_REQUEST, why));
    }
    let ext = user.extension.clone();
    let rec = users.create(user, actor).await?;
    app.directory.invalidate(&ext).await;
    tracing::info!(extension = %ext, "user created");
    Ok(rec)
}

async fn patch(
    app: &Arc<App>,
    users: &Embedded,
    ext: &str,
    body: &[u8],
    ip: &str,
    actor: &str,
) -> Resp {
    const EXPECTED: &str = "{\"name\", \"template\", \"email\", \"enabled\"} (any of them)";
    let b: PatchBody = match parse_required(body, EXPECTED) {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let patch = Patch {
        name: b.name,
        template: b.template,
        email: b.email,
        enabled: b.enabled,
    };
    match change_user(app, users, ext, patch, ip, actor).await {
        Ok(rec) => respond::json(StatusCode::OK, &rec),
        Err(r) => r.json(),
    }
}

/// Changes a user's plain fields. Disabling logs the user out everywhere; disabling or
/// enabling starts their softphones over.
pub(crate) async fn change_user(
    app: &Arc<App>,
    users: &Embedded,
    ext: &str,
    patch: Patch,
    ip: &str,
    actor: &str,
) -> Result<UserRecord, Refused> {
    check_template(app, patch.template.as_deref())?;
    let was_enabled = users.get(ext).map(|u| u.enabled);
    let rec = users.update(ext, patch, actor).await?;
    app.directory.invalidate(ext).await;
    if was_enabled == Some(true) && !rec.enabled {
        // A disabled user may not stay at a desk either.
        let detail = format!("{actor}: user disabled");
        log_out_everywhere(app, ext, ip, &detail).await?;
        app.web.users.end_all_of(ext);
        tracing::info!(extension = %ext, "user disabled");
    }
    if was_enabled.is_some_and(|was| was != rec.enabled) {
        // Disabling or enabling starts the user's softphones over (as myCloudPBX's reset).
        let what = if rec.enabled { "enabled" } else { "disabled" };
        forget_softphones(app, ext, &format!("{actor}: user {what}")).await;
    }
    Ok(rec)
}

/// Deletes a user: their logins end first, then the user, then their softphones.
pub(crate) async fn delete_user(
    app: &Arc<App>,
    users: &Embedded,
    ext: &str,
    ip: &str,
    actor: &str,
) -> Result<(), Refused> {
    if users.get(ext).is_none() {
        return Err(UsersError::NotFound(ext.to_owned()).into());
    }
    let detail = format!("{actor}: user deleted");
    log_out_everywhere(app, ext, ip, &detail).await?;
    users.delete(ext, actor).await?;
    app.directory.invalidate(ext).await;
    app.web.users.end_all_of(ext);
    forget_softphones(app, ext, &detail).await;
    tracing::info!(extension = %ext, "user deleted");
    Ok(())
}

/// Resets the softphone count and voids unused links and codes; a failure is logged (the
/// user change itself is already saved).
async fn forget_softphones(app: &App, ext: &str, why: &str) {
    if let Err(e) = app.activations.revoke(ext).await {
        tracing::error!(error = %e, extension = %ext, "unused activation links not revoked");
    }
    if let Err(e) = app
        .activations
        .remove_devices(ext, None, format!("{why}: device count reset"))
        .await
    {
        tracing::error!(error = %e, extension = %ext, "device count not reset");
    }
}

/// Ends every login of `ext` (audited as admin logouts) and tells the phones to reload.
async fn log_out_everywhere(
    app: &Arc<App>,
    ext: &str,
    ip: &str,
    detail: &str,
) -> Result<(), Refused> {
    let book = app.flow.book();
    let mut ended = Vec::new();
    for login in book.all().iter().filter(|l| l.extension == ext) {
        match book
            .logout_identity(
                login.mac,
                login.identity,
                EventKind::AdminLogout,
                ip,
                detail,
            )
            .await
        {
            Ok(Some(l)) => ended.push(l),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, extension = %ext, "logout of a disabled user failed");
                return Err(Refused::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the user's logins could not be ended",
                ));
            }
        }
    }
    super::reload::after_remote_logout(app, &ended);
    Ok(())
}

async fn set_pin(app: &App, users: &Embedded, ext: &str, body: &[u8], actor: &str) -> Resp {
    let b: PinBody = match parse(body, "{} to generate a PIN, or {\"pin\": \"...\"}") {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    match new_pin(app, users, ext, b.pin, actor).await {
        Ok(pin) => once(serde_json::json!({
            "extension": ext,
            "pin": pin.expose(),
            "note": "shown once: hotdesk keeps only a hash of this PIN",
        })),
        Err(r) => r.json(),
    }
}

/// Sets the PIN `chosen` (if strong enough) or a generated one; returns it to be shown once.
pub(crate) async fn new_pin(
    app: &App,
    users: &Embedded,
    ext: &str,
    chosen: Option<String>,
    actor: &str,
) -> Result<Secret, Refused> {
    let (pin, how) = match chosen {
        Some(pin) => match secrets::check_pin(&pin, ext) {
            Ok(()) => (Secret::new(pin), "chosen"),
            Err(weak) => return Err(Refused::new(StatusCode::BAD_REQUEST, weak.to_string())),
        },
        None => match secrets::generate_pin(app.config.directory.pin_length, ext) {
            Ok(pin) => (pin, "generated"),
            Err(e) => return Err(UsersError::Store(e).into()),
        },
    };
    users.set_pin(ext, pin.clone(), how, actor).await?;
    app.directory.invalidate(ext).await;
    // Pages opened with the old PIN close with it.
    app.web.users.end_all_of(ext);
    tracing::info!(extension = %ext, how, "PIN set");
    Ok(pin)
}

async fn set_sip_secret(app: &App, users: &Embedded, ext: &str, body: &[u8], actor: &str) -> Resp {
    let b: SipSecretBody = match parse(body, "{} to generate one, or {\"sip_secret\": \"...\"}") {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    match new_sip_secret(app, users, ext, b.sip_secret, actor).await {
        Ok(secret) => once(serde_json::json!({
            "extension": ext,
            "sip_secret": secret.expose(),
            "note": "shown once: set the same secret for this extension on the PBX; hotdesk does not show it again",
        })),
        Err(r) => r.json(),
    }
}

/// Sets the SIP secret `chosen` (if acceptable) or a generated one; returns it to be shown
/// once.
pub(crate) async fn new_sip_secret(
    app: &App,
    users: &Embedded,
    ext: &str,
    chosen: Option<String>,
    actor: &str,
) -> Result<Secret, Refused> {
    let (secret, how) = match chosen {
        Some(s) => match secrets::check_sip_secret(&s) {
            Ok(()) => (Secret::new(s), "chosen"),
            Err(why) => return Err(Refused::new(StatusCode::BAD_REQUEST, why)),
        },
        None => match secrets::generate_sip_secret() {
            Ok(s) => (s, "generated"),
            Err(e) => return Err(UsersError::Store(e).into()),
        },
    };
    users
        .set_sip_secret(ext, secret.clone(), how, actor)
        .await?;
    app.directory.invalidate(ext).await;
    tracing::info!(extension = %ext, how, "SIP secret set");
    Ok(secret)
}
