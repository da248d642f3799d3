//! `/api/v1/users/{ext}/activations`, `/devices/{id}` and `/login-codes`: softphone links,
//! the device count, and one-time desk login codes. They work with every directory kind: the
//! user is looked up as a phone login would. A link or code appears in exactly one answer.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde::Deserialize;

use super::respond::{self, Resp};
use super::users_api::Refused;
use crate::App;
use crate::activation::{self, mail};
use crate::directory::{Directory, User};
use crate::secret::Secret;
use crate::store::Device;
use time::OffsetDateTime;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    /// Email the link to the user's address (default: when SMTP is set and the user has one).
    email: Option<bool>,
}

fn store_error(e: impl std::fmt::Display) -> Refused {
    tracing::error!(error = %e, "activation store write failed");
    Refused::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the change could not be saved",
    )
}

/// The user as a phone login would find them (a disabled embedded user is no user).
pub(crate) async fn user(app: &App, ext: &str) -> Result<Arc<User>, Refused> {
    match app.directory.lookup(ext).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(Refused::new(
            StatusCode::NOT_FOUND,
            format!("no enabled user with extension {ext}"),
        )),
        Err(e) => {
            tracing::warn!(error = %e, extension = ext, "directory lookup failed");
            Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the user directory cannot be reached",
            ))
        }
    }
}

fn email_of(app: &App, ext: &str) -> Option<String> {
    app.users
        .as_ref()
        .and_then(|u| u.get(ext))
        .and_then(|r| r.email)
}

/// Every sub-route; `sub` is what follows `/api/v1/users/{ext}/`.
pub(super) async fn handle(
    app: &Arc<App>,
    method: &Method,
    ext: &str,
    sub: &str,
    body: &[u8],
    actor: &str,
) -> Resp {
    match (method, sub) {
        (&Method::POST, "activations") => create_link(app, ext, body, actor).await,
        (&Method::GET, "activations") => status(app, ext).await,
        (&Method::DELETE, "activations") => {
            remove(app, ext, None, format!("{actor}: device count reset")).await
        }
        (&Method::DELETE, s) if s.starts_with("devices/") => {
            let Ok(id) = s["devices/".len()..].parse::<i64>() else {
                return respond::json_error(
                    StatusCode::BAD_REQUEST,
                    "expected /api/v1/users/<extension>/devices/<id>",
                );
            };
            remove(app, ext, Some(id), format!("{actor}: device {id} removed")).await
        }
        (&Method::POST, "login-codes") => create_code(app, ext, actor).await,
        _ => respond::json_error(StatusCode::NOT_FOUND, "no such API route"),
    }
}

/// A user's softphones: the activated devices, the limit, and an unused link's expiry.
pub(crate) struct Softphones {
    pub max: usize,
    pub devices: Vec<Device>,
    pub link_expires: Option<OffsetDateTime>,
}

impl Softphones {
    pub fn limit_reached(&self) -> bool {
        self.devices.len() >= self.max
    }
}

pub(crate) async fn softphones(app: &App, ext: &str) -> Result<Softphones, Refused> {
    let max = app.live_config().activation.max_devices;
    let devices = app.activations.devices(ext).await.map_err(store_error)?;
    let link_expires = app.activations.live_link(ext).await.map_err(store_error)?;
    Ok(Softphones {
        max,
        devices,
        link_expires,
    })
}

/// What `status` and the pages show of a user's softphones.
pub async fn devices_view(app: &App, ext: &str) -> Result<serde_json::Value, Resp> {
    let s = softphones(app, ext).await.map_err(|r| r.json())?;
    Ok(serde_json::json!({
        "extension": ext,
        "max_devices": s.max,
        "limit_reached": s.limit_reached(),
        "devices": s.devices,
        "link_expires_at": s.link_expires.map(activation::rfc3339),
    }))
}

async fn status(app: &App, ext: &str) -> Resp {
    match devices_view(app, ext).await {
        Ok(v) => respond::json(StatusCode::OK, &v),
        Err(resp) => resp,
    }
}

async fn remove(app: &App, ext: &str, id: Option<i64>, why: String) -> Resp {
    match remove_softphones(app, ext, id, why).await {
        Ok(n) => respond::json(StatusCode::OK, &serde_json::json!({ "removed": n })),
        Err(r) => r.json(),
    }
}

/// Removes one softphone of `ext` (`Some(id)`: 404 when `ext` has no such device, whoever
/// else may) or resets the count; audited with `why`.
pub(crate) async fn remove_softphones(
    app: &App,
    ext: &str,
    id: Option<i64>,
    why: String,
) -> Result<usize, Refused> {
    match app.activations.remove_devices(ext, id, why).await {
        Ok(0) if id.is_some() => Err(Refused::new(
            StatusCode::NOT_FOUND,
            format!("user {ext} has no device {}", id.unwrap_or_default()),
        )),
        Ok(n) => {
            tracing::info!(extension = ext, removed = n, "softphones removed");
            Ok(n)
        }
        Err(e) => Err(store_error(e)),
    }
}

/// What happened to the activation email.
pub(crate) enum Emailed {
    Sent { to: String },
    NotSent { error: String },
}

/// A link just made, with what the answer shows beside it.
pub(crate) struct LinkMade {
    pub link: activation::NewLink,
    pub extension: String,
    pub username: String,
    /// `None` when no email was asked for (nor due by default).
    pub email: Option<Emailed>,
}

/// Makes a link (and emails it when asked or by default); shown once.
pub async fn create_link(app: &App, ext: &str, body: &[u8], actor: &str) -> Resp {
    let b: LinkBody = if body.iter().all(u8::is_ascii_whitespace) {
        LinkBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(_) => {
                return respond::json_error(
                    StatusCode::BAD_REQUEST,
                    "expected {} or {\"email\": true|false}",
                );
            }
        }
    };
    let made = match make_link(app, ext, b.email, actor).await {
        Ok(m) => m,
        Err(r) => return r.json(),
    };
    let mut out = made.link.to_json();
    out["extension"] = made.extension.into();
    out["username"] = made.username.into();
    match made.email {
        None => {}
        Some(Emailed::Sent { to }) => out["email"] = serde_json::json!({ "sent": true, "to": to }),
        Some(Emailed::NotSent { error }) => {
            out["email"] = serde_json::json!({ "sent": false, "error": error })
        }
    }
    respond::json(StatusCode::CREATED, &out)
}

/// Makes a link for an enabled user with a SIP secret; emails it when `email` says so (by
/// default: when SMTP is set and the user has an address).
pub(crate) async fn make_link(
    app: &App,
    ext: &str,
    email: Option<bool>,
    actor: &str,
) -> Result<LinkMade, Refused> {
    let user = user(app, ext).await?;
    if user.sip_password.is_empty() {
        return Err(Refused::new(
            StatusCode::CONFLICT,
            format!(
                "user {ext} has no SIP secret: set one first (POST /api/v1/users/{ext}/sip-secret)"
            ),
        ));
    }
    let config = app.live_config();
    let link = app
        .activations
        .create_link(&config, ext, actor)
        .await
        .map_err(store_error)?;
    tracing::info!(extension = ext, "activation link made");
    let username = user
        .sip_username
        .clone()
        .unwrap_or_else(|| user.extension.clone());
    let address = email_of(app, ext);
    let smtp = config.activation.smtp.as_ref();
    let send = email.unwrap_or(smtp.is_some() && address.is_some());
    let email = if send {
        Some(match (smtp, address) {
            (None, _) => Emailed::NotSent {
                error: "no [activation.smtp] is configured".into(),
            },
            (_, None) => Emailed::NotSent {
                error: "the user has no email address".into(),
            },
            (Some(smtp), Some(to)) => {
                let letter = mail::Letter {
                    to: &to,
                    name: &user.name,
                    username: &username,
                    url: &link.url,
                    expires: &activation::rfc3339(link.expires),
                };
                match mail::send(smtp, &letter).await {
                    Ok(()) => {
                        tracing::info!(extension = ext, "activation link emailed");
                        Emailed::Sent { to }
                    }
                    Err(e) => {
                        tracing::warn!(extension = ext, error = %e, "activation email not sent");
                        Emailed::NotSent { error: e }
                    }
                }
            }
        })
    } else {
        None
    };
    Ok(LinkMade {
        link,
        extension: user.extension.clone(),
        username,
        email,
    })
}

/// A one-time desk login code; shown once.
pub async fn create_code(app: &App, ext: &str, actor: &str) -> Resp {
    match make_code(app, ext, actor).await {
        Ok((code, expires)) => respond::json(
            StatusCode::CREATED,
            &serde_json::json!({
                "extension": ext,
                "code": code.expose(),
                "expires_at": activation::rfc3339(expires),
                "note": "shown once; type it at a desk phone under \"Log in with a code\"",
            }),
        ),
        Err(r) => r.json(),
    }
}

/// Makes a one-time desk login code for an enabled user: the code (to show once) and when it
/// expires.
pub(crate) async fn make_code(
    app: &App,
    ext: &str,
    actor: &str,
) -> Result<(Secret, OffsetDateTime), Refused> {
    user(app, ext).await?;
    let config = app.live_config();
    let made = app
        .activations
        .create_code(&config, ext, actor)
        .await
        .map_err(store_error)?;
    tracing::info!(extension = ext, "one-time login code made");
    Ok(made)
}
