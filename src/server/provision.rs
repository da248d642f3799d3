//! `GET /provision/<file>`: the phone's configuration under its vendor's own file name. The
//! MAC in the name must be the requesting phone's own when its User-Agent carries one; the
//! SIP secret is only ever in this answer, never in a log.

use std::net::IpAddr;

use http::{StatusCode, header};

use super::fetch_guard::{check_digest, may_receive};
use super::respond::{self, Resp};
use crate::App;
use crate::directory::Directory;
use crate::vendor::{self, IdentifyError};

pub(super) async fn handle(
    app: &App,
    file: &str,
    parts: &http::request::Parts,
    vendor: Option<&str>,
    client: IpAddr,
) -> Resp {
    let headers = &parts.headers;
    if let Err(resp) = app.fetch_guard.rate(client) {
        return *resp;
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    // Site-wide files read at boot (Aastra `aastra.cfg`, `<model>.cfg`): nothing of one phone,
    // so any phone may have them; but a site template may hold an admin password, so with
    // `auth = "digest"` only a phone that proves its own credentials gets them.
    if let Some(family) = vendor::shared_file(file) {
        if app.config.provision.auth == crate::config::ProvisionAuth::Digest {
            let Ok(h) = vendor::identify_file(ua, vendor, None) else {
                return respond::text(
                    StatusCode::UNAUTHORIZED,
                    "this file is served only to a phone that names its MAC and authenticates",
                );
            };
            if let Err(resp) = check_digest(app, h.mac, &parts.method, &parts.uri, headers) {
                return *resp;
            }
        }
        return shared(app, family, file);
    }
    let handset = match vendor::identify_file(ua, vendor, None) {
        Ok(h) => {
            let files = vendor::family(h.vendor).files();
            match files.parse(file) {
                Some(mac) if mac == h.mac => Ok(h),
                Some(mac) => {
                    let why = "this file belongs to another phone";
                    return app.fetch_guard.refuse(app, client, mac, why).await;
                }
                None => return not_found(files, h.mac),
            }
        }
        // No MAC in the User-Agent: the file name says which phone it is; the source address
        // decides below whether it may have that phone's secrets.
        Err(IdentifyError::NoMac(v)) => match vendor::family(v).files().parse(file) {
            Some(mac) => vendor::identify_file(ua, vendor, Some(&mac.to_string())),
            None => {
                return respond::text(
                    StatusCode::NOT_FOUND,
                    "not a provisioning file name for this phone",
                );
            }
        },
        Err(e) => Err(e),
    };
    let handset = match handset {
        Ok(h) => h,
        Err(e) => return respond::text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    super::access_log::note_phone(handset.vendor.as_str(), handset.mac);

    if let Err(resp) = check_digest(app, handset.mac, &parts.method, &parts.uri, headers) {
        return *resp;
    }
    let rendered = match render_for(app, &handset, client).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    respond::build(StatusCode::OK, rendered.content_type, rendered.body)
}

/// Renders `handset`'s configuration (its logged-in users with their SIP secrets from the
/// directory, or the base profile) and records that the phone fetched it. Secrets go only
/// to the address the login came from; anyone else is refused and nothing is recorded.
async fn render_for(
    app: &App,
    handset: &crate::phone::Handset,
    client: IpAddr,
) -> Result<crate::provision::Served, Resp> {
    let book = app.flow.book();
    let logins = book.identities(&handset.mac);
    if !may_receive(&logins, client) {
        let why = "this phone's configuration is served only to the address it logged in from";
        return Err(app.fetch_guard.refuse(app, client, handset.mac, why).await);
    }
    // SIP secrets live in the directory, not in the login records.
    let mut lines = Vec::with_capacity(logins.len());
    for l in &logins {
        match app.directory.lookup(&l.extension).await {
            Ok(Some(user)) => lines.push((l.as_ref(), user)),
            Ok(None) => {
                tracing::warn!(extension = %l.extension, "provisioning: a logged-in user left the directory; leaving that line out")
            }
            Err(e) => {
                tracing::warn!(error = %e, "provisioning: directory unavailable");
                return Err(respond::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "directory unavailable; try again",
                ));
            }
        }
    }
    // Read before rendering, and only while a login is not yet applied (a repeat poll's
    // time is not needed).
    let rendered_at = logins
        .iter()
        .any(|l| l.applied_at.is_none())
        .then(|| app.clock.now());
    let lines: Vec<crate::provision::Line<'_>> = lines
        .iter()
        .map(|(login, user)| crate::provision::Line {
            login,
            sip_password: user.sip_password.expose(),
            sip_username: user.sip_username.as_deref(),
        })
        .collect();
    let fetch_auth = app.credentials.get(&handset.mac);
    let fetch_auth = fetch_auth
        .as_ref()
        .filter(|_| app.config.provision.auth == crate::config::ProvisionAuth::Digest)
        .map(|c| (c.username.as_str(), c.password.expose()));
    let rendered = app
        .provisioner
        .render_with(&app.config, handset, &lines, fetch_auth)
        .map_err(|e| {
            tracing::error!(error = %e, "provisioning: template failed");
            respond::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the provisioning template failed; see the server log",
            )
        })?;
    // The first fetch after a login is news (the phone is taking the user's line) and is
    // recorded; the phone's later polls are in the access log already.
    let first_since_login = rendered_at.filter(|at| {
        logins
            .iter()
            .any(|l| l.applied_at.is_none() && l.since <= *at)
    });
    if lines.is_empty() {
        tracing::debug!(template = %rendered.template, "provisioning: base profile served");
    } else if let Some(rendered_at) = first_since_login {
        // Boxed: once per login, and its store write is the largest state of this future.
        if let Err(e) = Box::pin(book.mark_applied(handset.mac, rendered_at)).await {
            tracing::error!(error = %e, "provisioning: could not record the fetch");
        }
        tracing::info!(template = %rendered.template, users = lines.len(), "provisioning: login configuration served");
    } else {
        tracing::debug!(template = %rendered.template, users = lines.len(), "provisioning: login configuration served again");
    }
    Ok(rendered)
}

/// `GET /app/push[?page=N]`: an Aastra phone with dynamic SIP takes its new configuration
/// without a reboot. Without `page`: an Execute that fetches every page in turn; with it:
/// that page of `key: value` settings from the phone's own `<MAC>.cfg`.
pub(super) async fn push(
    app: &App,
    parts: &http::request::Parts,
    query: &std::collections::HashMap<String, String>,
    client: IpAddr,
) -> Resp {
    let headers = &parts.headers;
    if let Err(resp) = app.fetch_guard.rate(client) {
        return *resp;
    }
    use crate::dialect::Target;
    use crate::screen::{Action, Apply, Link, Screen};
    let handset = match super::routes::identify_request(headers, query) {
        Ok(h) if vendor::family(h.vendor).live_push() => h,
        Ok(_) => {
            let msg = "this phone's family has no live configuration push";
            return respond::text(StatusCode::NOT_FOUND, msg);
        }
        Err(resp) => return *resp,
    };
    // Only with the grant this phone's apply issued.
    let grant = query.get("t").map(String::as_str);
    if !app.flow.push_granted(handset.mac, grant) {
        let why = "a configuration push needs the token from this phone's own apply";
        return app.fetch_guard.refuse(app, client, handset.mac, why).await;
    }
    if let Err(resp) = check_digest(app, handset.mac, &parts.method, &parts.uri, headers) {
        return *resp;
    }
    let rendered = match render_for(app, &handset, client).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let family = vendor::family(handset.vendor);
    let pages = family.push_pages(rendered.text()).unwrap_or_default();
    let screen = match query.get("page").map(|p| p.parse::<usize>()) {
        None => Screen::Apply(Apply {
            actions: (1..=pages.len())
                .map(|n| {
                    let link = Link::new("/app/push").with("page", n.to_string());
                    Action::Open(link.with("t", grant.unwrap_or_default()))
                })
                // After a logout the phone shows the entry screen for the next user (A10).
                .chain(family.push_finish(app.flow.book().identities(&handset.mac).is_empty()))
                .collect(),
            grant: None,
        }),
        Some(Ok(n)) if (1..=pages.len()).contains(&n) => {
            Screen::Configuration(pages[n - 1].clone())
        }
        Some(_) => Screen::Configuration(Vec::new()),
    };
    let target = Target {
        handset: &handset,
        base: app.config.base(),
        reload: super::routes::reload_for(app, handset.vendor),
    };
    respond::xml(vendor::render(&screen, target).body)
}

fn shared(app: &App, family: &dyn vendor::Family, file: &str) -> Resp {
    match app.provisioner.render_shared(&app.config, family, file) {
        Ok(body) => {
            tracing::info!(file, "provisioning: site-wide file served");
            let mut resp = respond::text(StatusCode::OK, String::new());
            *resp.body_mut() = http_body_util::Full::new(bytes::Bytes::from(body));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, file, "provisioning: site-wide template failed");
            respond::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the provisioning template failed; see the server log",
            )
        }
    }
}

fn not_found(files: vendor::FileNaming, mac: crate::phone::Mac) -> Resp {
    respond::text(
        StatusCode::NOT_FOUND,
        format!("this phone's provisioning file is {}", files.file_name(mac)),
    )
}

/// `GET /provision/innovaphone.txt?sn=#m`: innovaphone's update client puts the MAC in `sn`
/// (innovaphone's own update server asks for `?sn=#m`).
/// `CHECK` is the serial of the script the phone ran last (`mod cmd UP1 check ser`): when it
/// matches, the answer changes nothing on the phone.
pub(super) fn innovaphone(app: &App, sn: Option<&str>, check: Option<&str>) -> Resp {
    let Some(mac) = sn.and_then(|s| s.parse::<crate::phone::Mac>().ok()) else {
        return respond::text(
            StatusCode::BAD_REQUEST,
            "expected ?sn=<MAC>; configure the update URL as …/provision/innovaphone.txt?sn=#m",
        );
    };
    super::access_log::note_mac(mac);
    match app
        .provisioner
        .render_innovaphone_checked(&app.config, mac, check)
    {
        Ok(body) => {
            tracing::info!("provisioning: innovaphone update script served");
            let mut resp = respond::text(StatusCode::OK, String::new());
            *resp.body_mut() = http_body_util::Full::new(bytes::Bytes::from(body));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "provisioning: innovaphone template failed");
            respond::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the update script template failed; see the server log",
            )
        }
    }
}
