//! `/api/v1/users/{ext}/activations`, `/devices/{id}` and `/login-codes`: softphone links,
//! the device count, and one-time desk login codes. They work with every directory kind: the
//! user is looked up as a phone login would. A link or code appears in exactly one answer.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::App;
use crate::activation::{self, mail};
use crate::directory::{Directory, User};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    /// Email the link to the user's address (default: when SMTP is set and the user has one).
    email: Option<bool>,
}

fn store_error(e: impl std::fmt::Display) -> Resp {
    tracing::error!(error = %e, "activation store write failed");
    respond::json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the change could not be saved",
    )
}

/// The user as a phone login would find them (a disabled embedded user is no user).
async fn user(app: &App, ext: &str) -> Result<Arc<User>, Resp> {
    match app.directory.lookup(ext).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(respond::json_error(
            StatusCode::NOT_FOUND,
            &format!("no enabled user with extension {ext}"),
        )),
        Err(e) => {
            tracing::warn!(error = %e, extension = ext, "directory lookup failed");
            Err(respond::json_error(
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

/// What `status` and the pages show of a user's softphones.
pub async fn devices_view(app: &App, ext: &str) -> Result<serde_json::Value, Resp> {
    let config = app.live_config();
    let max = config.activation.max_devices;
    let devices = app.activations.devices(ext).await.map_err(store_error)?;
    let link = app.activations.live_link(ext).await.map_err(store_error)?;
    Ok(serde_json::json!({
        "extension": ext,
        "max_devices": max,
        "limit_reached": devices.len() >= max,
        "devices": devices,
        "link_expires_at": link.map(activation::rfc3339),
    }))
}

async fn status(app: &App, ext: &str) -> Resp {
    match devices_view(app, ext).await {
        Ok(v) => respond::json(StatusCode::OK, &v),
        Err(resp) => resp,
    }
}

async fn remove(app: &App, ext: &str, id: Option<i64>, why: String) -> Resp {
    match app.activations.remove_devices(ext, id, why).await {
        Ok(0) if id.is_some() => respond::json_error(
            StatusCode::NOT_FOUND,
            &format!("user {ext} has no device {}", id.unwrap_or_default()),
        ),
        Ok(n) => {
            tracing::info!(extension = ext, removed = n, "softphones removed");
            respond::json(StatusCode::OK, &serde_json::json!({ "removed": n }))
        }
        Err(e) => store_error(e),
    }
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
    let user = match user(app, ext).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    if user.sip_password.is_empty() {
        return respond::json_error(
            StatusCode::CONFLICT,
            &format!(
                "user {ext} has no SIP secret: set one first (POST /api/v1/users/{ext}/sip-secret)"
            ),
        );
    }
    let config = app.live_config();
    let link = match app.activations.create_link(&config, ext, actor).await {
        Ok(l) => l,
        Err(e) => return store_error(e),
    };
    tracing::info!(extension = ext, "activation link made");
    let mut out = link.to_json();
    out["extension"] = user.extension.clone().into();
    out["username"] = user
        .sip_username
        .clone()
        .unwrap_or_else(|| user.extension.clone())
        .into();
    let address = email_of(app, ext);
    let smtp = config.activation.smtp.as_ref();
    let send = b.email.unwrap_or(smtp.is_some() && address.is_some());
    if send {
        out["email"] = match (smtp, &address) {
            (None, _) => {
                serde_json::json!({ "sent": false, "error": "no [activation.smtp] is configured" })
            }
            (_, None) => {
                serde_json::json!({ "sent": false, "error": "the user has no email address" })
            }
            (Some(smtp), Some(to)) => {
                let letter = mail::Letter {
                    to,
                    name: &user.name,
                    username: out["username"].as_str().unwrap_or(ext),
                    url: &link.url,
                    expires: &activation::rfc3339(link.expires),
                };
                match mail::send(smtp, &letter).await {
                    Ok(()) => {
                        tracing::info!(extension = ext, "activation link emailed");
                        serde_json::json!({ "sent": true, "to": to })
                    }
                    Err(e) => {
                        tracing::warn!(extension = ext, error = %e, "activation email not sent");
                        serde_json::json!({ "sent": false, "error": e })
                    }
                }
            }
        };
    }
    respond::json(StatusCode::CREATED, &out)
}

/// A one-time desk login code; shown once.
pub async fn create_code(app: &App, ext: &str, actor: &str) -> Resp {
    if let Err(resp) = user(app, ext).await {
        return resp;
    }
    let config = app.live_config();
    match app.activations.create_code(&config, ext, actor).await {
        Ok((code, expires)) => {
            tracing::info!(extension = ext, "one-time login code made");
            respond::json(
                StatusCode::CREATED,
                &serde_json::json!({
                    "extension": ext,
                    "code": code.expose(),
                    "expires_at": activation::rfc3339(expires),
                    "note": "shown once; type it at a desk phone under \"Log in with a code\"",
                }),
            )
        }
        Err(e) => store_error(e),
    }
}
