//! After a phone's apply: the reload request its vendor documents, sent out of band. With
//! `check-sync` the apply screen carries no restart command; hotdesk (or the PBX, over AMI)
//! sends a SIP NOTIFY to the phone, records when and what came back (audit trail, admin API),
//! and the login counts as applied only when the phone then fetches its file.

use std::net::IpAddr;
use std::sync::Arc;

use crate::App;
use crate::config::ReloadMethod;
use crate::phone::Handset;
use crate::screen::{Action, Screen};
use crate::store::{AuditEvent, Change, EventKind, ReloadSent};

/// Takes the reload out of an apply screen when the phone's method is `check-sync`, and sends
/// the NOTIFY in the background (the phone is fetching its apply screen; it takes the NOTIFY
/// once it has shown it). Nothing happens for a replayed apply (no reload in it).
pub(super) fn after_apply(
    app: &Arc<App>,
    handset: &Handset,
    source: IpAddr,
    screen: &mut Screen,
    method: ReloadMethod,
) {
    if method != ReloadMethod::CheckSync {
        return;
    }
    let Screen::Apply(apply) = screen else {
        return;
    };
    let before = apply.actions.len();
    apply.actions.retain(|a| *a != Action::Reload);
    if apply.actions.len() == before {
        return;
    }
    spawn_notify(
        app,
        crate::vendor::family(handset.vendor),
        handset.mac,
        source,
    );
}

/// After a logout the phone did not ask for (console, admin API, user page): phones whose
/// reload is a check-sync get the NOTIFY now, at the address the login came from, so they
/// fall back to the base profile at once rather than at their next poll. Others load it at
/// their next fetch.
pub(crate) fn after_remote_logout(app: &Arc<App>, ended: &[Arc<crate::store::Login>]) {
    let mut done = Vec::new();
    for login in ended {
        if done.contains(&login.mac) {
            continue;
        }
        done.push(login.mac);
        let Some(family) = crate::vendor::by_name(&login.vendor) else {
            continue;
        };
        let method = (app.config.vendor(family.id()))
            .and_then(|v| v.reload)
            .unwrap_or_else(|| family.default_reload());
        if method != ReloadMethod::CheckSync {
            continue;
        }
        match login.source_ip.parse::<IpAddr>() {
            Ok(ip) => spawn_notify(app, family, login.mac, ip),
            Err(_) => tracing::warn!(mac = %login.mac, "no address to send the reload to"),
        }
    }
}

/// Sends the check-sync in the background and records its outcome.
fn spawn_notify(
    app: &Arc<App>,
    family: &'static dyn crate::vendor::Family,
    mac: crate::phone::Mac,
    source: IpAddr,
) {
    let app = app.clone();
    // The user the phone is registered as for an AMI endpoint: the one now logged in, else the
    // base profile's line.
    let extension = app
        .flow
        .book()
        .identities(&mac)
        .first()
        .map(|l| l.extension.clone())
        .or_else(|| {
            app.config
                .base_profile
                .as_ref()
                .map(|b| b.extension.clone())
        })
        .unwrap_or_default();
    // The family's `;reboot=` (Snom: false) unless `[reload.sip] reboot` says otherwise.
    let mut cfg = app.config.reload.clone();
    if cfg.sip.reboot.is_none() {
        cfg.sip.reboot = family.check_sync_reboot();
    }
    tokio::spawn(async move {
        let outcome = crate::reload::reload_phone(&cfg, source, &extension).await;
        let result = outcome.audit_text();
        tracing::info!(%mac, result = %result, "reload request sent");
        let at = app.clock.now();
        let mut event = AuditEvent::new(EventKind::Reload, format!("check-sync: {result}"));
        event.mac = Some(mac);
        event.source_ip = Some(source.to_canonical().to_string());
        let change = Change {
            events: vec![event],
            reloads: vec![ReloadSent { mac, at, result }],
            ..Change::default()
        };
        if let Err(e) = app.flow.book().record(change).await {
            tracing::error!(error = %e, "reload outcome not recorded");
        }
    });
}
