//! Making a phone load its new configuration after a hot-desk login or logout, by the
//! mechanisms the vendors document: a SIP NOTIFY `Event: check-sync` sent by hotdesk
//! ([`notify`]), or the same NOTIFY sent by Asterisk when asked over AMI ([`ami`]).
//! Each returns an outcome with a short text for the audit trail.

pub mod ami;
pub mod config;
pub mod notify;

pub use ami::{AmiError, AmiOutcome};
pub use config::{AmiAction, AmiReloadConfig, ReloadConfig, ReloadVia, SipReloadConfig};
pub use notify::{NotifyOptions, NotifyOutcome, notify_check_sync};

use std::net::{IpAddr, SocketAddr};

/// Asks the phone at `phone_ip` (the source address of its HTTP request) to load its new
/// configuration, by the mechanism `cfg.via` names. `extension` fills `{extension}` in the AMI
/// endpoint or URI template. Bounded in time (Timer F for SIP, the AMI timeouts); spawn it if
/// the caller must not wait that long.
pub async fn reload_phone(cfg: &ReloadConfig, phone_ip: IpAddr, extension: &str) -> ReloadOutcome {
    match cfg.via {
        ReloadVia::None => ReloadOutcome::NotSent,
        ReloadVia::Sip => {
            // A dual-stack listener reports IPv4 phones as ::ffff:a.b.c.d; talk IPv4 to them.
            let target = SocketAddr::new(phone_ip.to_canonical(), cfg.sip.port);
            ReloadOutcome::Sip(notify_check_sync(target, &cfg.sip.notify_options()).await)
        }
        ReloadVia::Ami => {
            let event = cfg.sip.notify_options().event_header();
            // `{ip}` in the templates is the phone's address (`uri = "sip:{ip}:5060"` reaches
            // the phone whichever user it is registered as).
            let ip = match phone_ip.to_canonical() {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            let mut ami_cfg = cfg.ami.clone();
            ami_cfg.endpoint = ami_cfg.endpoint.replace("{ip}", &ip);
            ami_cfg.uri = ami_cfg.uri.map(|u| u.replace("{ip}", &ip));
            ReloadOutcome::Ami(ami::pjsip_notify(&ami_cfg, extension, &event).await)
        }
    }
}

/// What a reload attempt came to, whichever mechanism ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// `via = "none"`: nothing was sent.
    NotSent,
    /// hotdesk's own NOTIFY.
    Sip(NotifyOutcome),
    /// The AMI action's reply, or why there was none.
    Ami(Result<AmiOutcome, AmiError>),
}

impl ReloadOutcome {
    /// Short text for the audit trail ("sip 200 OK", "ami Success: NOTIFY sent", "none").
    pub fn audit_text(&self) -> String {
        match self {
            Self::NotSent => "none".into(),
            Self::Sip(o) => o.audit_text(),
            Self::Ami(Ok(o)) => o.audit_text(),
            Self::Ami(Err(e)) => format!("ami {e}"),
        }
    }
}
