//! `/provisioning/{token}`: where a softphone fetches its account, once. A browser (it asks
//! for HTML) gets a page with the QR code instead, and the link stays unused: mail scanners
//! and link previews open links too, and must not spend it. `qr.png` / `qr.svg` draw the link.

use std::net::IpAddr;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

use super::respond::{self, Resp};
use crate::App;
use crate::activation::{self, linphone, qr};
use crate::config::{Config, NetworkConfig};
use crate::directory::{Directory, User};
use crate::store::{LinkState, Redeemed};

const GONE: &str = "This activation link was already used or has expired. Ask for a new one.";
const UNKNOWN: &str = "No such activation link.";

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn store_failed(e: impl std::fmt::Display) -> Resp {
    tracing::error!(error = %e, "activation link not read");
    respond::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "hotdesk cannot read its store now; try again in a minute",
    )
}

/// The document for a link, spending it; or why not. A browser gets the landing page.
pub async fn fetch(app: &Arc<App>, token: &str, headers: &HeaderMap, client: IpAddr) -> Response {
    if let Err(resp) = app.fetch_guard.rate(client) {
        return resp.into_response();
    }
    let config = app.live_config();
    let state = match app.activations.peek(token).await {
        Ok(s) => s,
        Err(e) => return store_failed(e).into_response(),
    };
    if wants_html(headers) {
        return landing(&config, token, &state);
    }
    spend(app, &config, token, headers, client, state)
        .await
        .into_response()
}

async fn spend(
    app: &Arc<App>,
    config: &Config,
    token: &str,
    headers: &HeaderMap,
    client: IpAddr,
    state: LinkState,
) -> Resp {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ip = client.to_canonical().to_string();
    let extension = match &state {
        LinkState::Unknown => {
            app.metrics.softphone_activation("unknown");
            return respond::text(StatusCode::NOT_FOUND, UNKNOWN);
        }
        LinkState::Gone => {
            app.metrics.softphone_activation("gone");
            // Through the store all the same: a reused link is audited (a copied link?).
            if let Err(e) = app.activations.redeem(config, token, ua, &ip).await {
                return store_failed(e);
            }
            return respond::text(StatusCode::GONE, GONE);
        }
        LinkState::Live { extension, .. } => extension.clone(),
    };
    // The account is read before the link is spent: a user without a SIP secret (or gone)
    // keeps an unused link for when that is mended.
    let user = match app.directory.lookup(&extension).await {
        Ok(Some(u)) if !u.sip_password.is_empty() => u,
        Ok(_) => {
            return respond::text(
                StatusCode::CONFLICT,
                "This account cannot be activated now (no such user, disabled, or without a SIP secret). Ask your administrator.",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, extension = %extension, "activation: directory lookup failed");
            return respond::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "The user directory cannot be reached; try again in a minute.",
            );
        }
    };
    let max = config.activation.max_devices;
    match app.activations.redeem(config, token, ua, &ip).await {
        Ok(Redeemed::Activated {
            extension,
            network,
            device,
        }) => {
            app.metrics.softphone_activation("activated");
            let Some(net) = config.networks.get(&network) else {
                // The network was removed from the config since the link was made.
                tracing::warn!(network = %network, "activation: the link's network is gone; using the default");
                let (_, net) = config.activation_network();
                return document(&user, net, config);
            };
            tracing::info!(extension = %extension, device, "softphone activated");
            document(&user, net, config)
        }
        Ok(Redeemed::Limit(n)) => {
            app.metrics.softphone_activation("limit");
            tracing::info!(extension = %extension, devices = n, "activation refused: device limit");
            respond::text(
                StatusCode::FORBIDDEN,
                format!(
                    "Device activation limit reached: {n} of {max} devices are activated for this account. Ask your administrator to reset the count, or remove a device on your user page."
                ),
            )
        }
        Ok(Redeemed::Gone) => {
            app.metrics.softphone_activation("gone");
            respond::text(StatusCode::GONE, GONE)
        }
        Ok(Redeemed::Unknown) => {
            app.metrics.softphone_activation("unknown");
            respond::text(StatusCode::NOT_FOUND, UNKNOWN)
        }
        Err(e) => store_failed(e),
    }
}

fn document(user: &User, net: &NetworkConfig, config: &Config) -> Resp {
    let body = linphone::render(user, net, &config.activation);
    respond::build(StatusCode::OK, linphone::CONTENT_TYPE, body)
}

/// What a browser sees: the QR code to scan with the softphone, and the link unspent.
fn landing(config: &Config, token: &str, state: &LinkState) -> Response {
    let (status, live, expires) = match state {
        LinkState::Unknown => (StatusCode::NOT_FOUND, false, String::new()),
        LinkState::Gone => (StatusCode::GONE, false, String::new()),
        LinkState::Live { expires, .. } => (StatusCode::OK, true, activation::rfc3339(*expires)),
    };
    let url = format!("{}{}", config.base(), activation::link_path(token));
    super::web::render(
        status,
        "activate.html",
        minijinja::context! {
            live,
            expires,
            url => if live { url.clone() } else { String::new() },
            qr => if live { format!("{}/qr.svg", activation::link_path(token)) } else { String::new() },
            gone => matches!(state, LinkState::Gone),
        },
    )
}

/// `qr.png` / `qr.svg` of a live link.
pub async fn qr_image(app: &Arc<App>, token: &str, file: &str, client: IpAddr) -> Resp {
    if let Err(resp) = app.fetch_guard.rate(client) {
        return *resp;
    }
    match app.activations.peek(token).await {
        Ok(LinkState::Live { .. }) => {}
        Ok(LinkState::Gone) => return respond::text(StatusCode::GONE, GONE),
        Ok(LinkState::Unknown) => return respond::text(StatusCode::NOT_FOUND, UNKNOWN),
        Err(e) => return store_failed(e),
    }
    let url = format!(
        "{}{}",
        app.live_config().base(),
        activation::link_path(token)
    );
    let drawn = match file {
        "qr.png" => qr::png(&url).map(|b| respond::build(StatusCode::OK, "image/png", b)),
        "qr.svg" => qr::svg(&url).map(|s| respond::build(StatusCode::OK, "image/svg+xml", s)),
        _ => return respond::text(StatusCode::NOT_FOUND, "qr.png or qr.svg"),
    };
    drawn.unwrap_or_else(|e| {
        tracing::error!(error = %e, "QR code not drawn");
        respond::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the QR code could not be drawn",
        )
    })
}
