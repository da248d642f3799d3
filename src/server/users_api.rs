//! `/api/v1/users`: the embedded directory's users for the admin API. A PIN or SIP secret
//! appears in exactly one answer, the one that set it (`POST .../pin`, `.../sip-secret`);
//! every change is audited with the API key's name. Other directory kinds answer 409.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, StatusCode};
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::App;
use crate::directory::embedded::{Embedded, NewUser, Patch, UsersError, secrets};
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

fn error(e: UsersError) -> Resp {
    let status = match &e {
        UsersError::NotFound(_) => StatusCode::NOT_FOUND,
        UsersError::Exists(_) => StatusCode::CONFLICT,
        UsersError::Invalid(_) => StatusCode::BAD_REQUEST,
        UsersError::Store(why) => {
            tracing::error!(error = %why, "users not saved");
            return respond::json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the users could not be saved",
            );
        }
    };
    respond::json_error(status, &e.to_string())
}

/// The one answer that carries a secret: never cached.
fn once(body: serde_json::Value) -> Resp {
    respond::json(StatusCode::OK, &body)
}

fn check_template(app: &App, template: Option<&str>) -> Result<(), Box<Resp>> {
    let Some(t) = template.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let known = app.provisioner.user_template_names();
    if known.contains(t) {
        return Ok(());
    }
    Err(Box::new(respond::json_error(
        StatusCode::BAD_REQUEST,
        &format!(
            "template `{}` exists for no brand (known: {})",
            t.escape_debug(),
            known.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )))
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
        (&Method::DELETE, None) => {
            if users.get(&ext).is_none() {
                return error(UsersError::NotFound(ext));
            }
            let detail = format!("{actor}: user deleted");
            if let Err(resp) = log_out_everywhere(app, &ext, &ip, &detail).await {
                return resp;
            }
            match users.delete(&ext, actor).await {
                Ok(()) => {
                    app.directory.invalidate(&ext).await;
                    forget_softphones(app, &ext, &format!("{actor}: user deleted")).await;
                    tracing::info!(extension = %ext, "user deleted");
                    respond::empty(StatusCode::NO_CONTENT)
                }
                Err(e) => error(e),
            }
        }
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
    if let Err(resp) = check_template(app, b.template.as_deref()) {
        return *resp;
    }
    if let Some(pin) = &b.pin
        && let Err(weak) = secrets::check_pin(pin, &b.extension)
    {
        return respond::json_error(StatusCode::BAD_REQUEST, &weak.to_string());
    }
    if let Some(s) = &b.sip_secret
        && let Err(why) = secrets::check_sip_secret(s)
    {
        return respond::json_error(StatusCode::BAD_REQUEST, &why);
    }
    let user = NewUser {
        extension: b.extension,
        name: b.name,
        pin: b.pin.map(Secret::new),
        sip_secret: b.sip_secret.map(Secret::new),
        template: b.template.filter(|t| !t.is_empty()),
        email: b.email.filter(|e| !e.is_empty()),
        enabled: b.enabled.unwrap_or(true),
    };
    let ext = user.extension.clone();
    match users.create(user, actor).await {
        Ok(rec) => {
            app.directory.invalidate(&ext).await;
            tracing::info!(extension = %ext, "user created");
            respond::json(StatusCode::CREATED, &rec)
        }
        Err(e) => error(e),
    }
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
    if let Err(resp) = check_template(app, b.template.as_deref()) {
        return *resp;
    }
    let was_enabled = users.get(ext).map(|u| u.enabled);
    let patch = Patch {
        name: b.name,
        template: b.template,
        email: b.email,
        enabled: b.enabled,
    };
    let rec = match users.update(ext, patch, actor).await {
        Ok(rec) => rec,
        Err(e) => return error(e),
    };
    app.directory.invalidate(ext).await;
    if was_enabled == Some(true) && !rec.enabled {
        // A disabled user may not stay at a desk either.
        let detail = format!("{actor}: user disabled");
        if let Err(resp) = log_out_everywhere(app, ext, ip, &detail).await {
            return resp;
        }
        tracing::info!(extension = %ext, "user disabled");
    }
    if was_enabled.is_some_and(|was| was != rec.enabled) {
        // Disabling or enabling starts the user's softphones over (as myCloudPBX's reset).
        let what = if rec.enabled { "enabled" } else { "disabled" };
        forget_softphones(app, ext, &format!("{actor}: user {what}")).await;
    }
    respond::json(StatusCode::OK, &rec)
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
async fn log_out_everywhere(app: &Arc<App>, ext: &str, ip: &str, detail: &str) -> Result<(), Resp> {
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
                return Err(respond::json_error(
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
    let (pin, how) = match b.pin {
        Some(pin) => match secrets::check_pin(&pin, ext) {
            Ok(()) => (Secret::new(pin), "chosen"),
            Err(weak) => return respond::json_error(StatusCode::BAD_REQUEST, &weak.to_string()),
        },
        None => match secrets::generate_pin(app.config.directory.pin_length, ext) {
            Ok(pin) => (pin, "generated"),
            Err(e) => return error(UsersError::Store(e)),
        },
    };
    if let Err(e) = users.set_pin(ext, pin.clone(), how, actor).await {
        return error(e);
    }
    app.directory.invalidate(ext).await;
    tracing::info!(extension = %ext, how, "PIN set");
    once(serde_json::json!({
        "extension": ext,
        "pin": pin.expose(),
        "note": "shown once: hotdesk keeps only a hash of this PIN",
    }))
}

async fn set_sip_secret(app: &App, users: &Embedded, ext: &str, body: &[u8], actor: &str) -> Resp {
    let b: SipSecretBody = match parse(body, "{} to generate one, or {\"sip_secret\": \"...\"}") {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let (secret, how) = match b.sip_secret {
        Some(s) => match secrets::check_sip_secret(&s) {
            Ok(()) => (Secret::new(s), "chosen"),
            Err(why) => return respond::json_error(StatusCode::BAD_REQUEST, &why),
        },
        None => match secrets::generate_sip_secret() {
            Ok(s) => (s, "generated"),
            Err(e) => return error(UsersError::Store(e)),
        },
    };
    if let Err(e) = users.set_sip_secret(ext, secret.clone(), how, actor).await {
        return error(e);
    }
    app.directory.invalidate(ext).await;
    tracing::info!(extension = %ext, how, "SIP secret set");
    once(serde_json::json!({
        "extension": ext,
        "sip_secret": secret.expose(),
        "note": "shown once: set the same secret for this extension on the PBX; hotdesk does not show it again",
    }))
}
