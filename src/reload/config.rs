//! `[reload]`: how hotdesk makes a phone load its new configuration after a login or logout.
//!
//! ```toml
//! [reload]
//! via = "sip"            # "sip" | "ami" | "none"
//!
//! [reload.sip]
//! port = 5060            # the phone's SIP port; the address is the phone's HTTP source address
//! event = "check-sync"
//! reboot = false         # optional: adds ";reboot=false" to the Event header
//! from_user = "hotdesk"
//! t1_ms = 500            # RFC 3261 T1
//! t2_ms = 4000           # RFC 3261 T2
//! # timeout_ms = 32000   # Timer F; default 64 * T1
//!
//! [reload.ami]
//! host = "127.0.0.1"
//! port = 5038
//! username = "hotdesk"
//! secret = "…"
//! action = "pjsip"       # "pjsip" (PJSIPNotify) | "chan_sip" (SIPnotify)
//! endpoint = "{extension}"
//! # uri = "sip:{extension}@10.0.0.5"   # instead of endpoint (PJSIPNotify only)
//! connect_timeout_ms = 3000
//! reply_timeout_ms = 5000
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// The whole `[reload]` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Which mechanism sends the reload request; `none` leaves it to the PBX or the user.
    pub via: ReloadVia,
    /// hotdesk sends the SIP NOTIFY itself.
    pub sip: SipReloadConfig,
    /// The PBX sends the NOTIFY when asked over the Asterisk Manager Interface.
    pub ami: AmiReloadConfig,
    /// `[reload] aastra = "push"` and friends, as earlier releases wrote the per-vendor method:
    /// still read, with a warning naming `[vendors.<id>] reload`.
    pub aastra: Option<crate::config::ReloadMethod>,
    pub yealink: Option<crate::config::ReloadMethod>,
    /// Also Sangoma S-series (Htek OEMs), as before.
    pub htek: Option<crate::config::ReloadMethod>,
    pub snom: Option<crate::config::ReloadMethod>,
}

impl ReloadConfig {
    /// The old per-vendor key for `vendor`, if set.
    pub fn legacy(&self, vendor: &str) -> Option<crate::config::ReloadMethod> {
        match vendor {
            "aastra" => self.aastra,
            "yealink" => self.yealink,
            "htek" | "sangoma" => self.htek,
            "snom" => self.snom,
            _ => None,
        }
    }

    /// The old per-vendor keys this config still uses.
    pub fn legacy_keys(&self) -> Vec<&'static str> {
        [
            ("aastra", self.aastra),
            ("yealink", self.yealink),
            ("htek", self.htek),
            ("snom", self.snom),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|_| k))
        .collect()
    }
}

impl ReloadConfig {
    /// Checks the section the chosen mechanism uses; call once at start-up. The event (and
    /// `reboot`) in `[reload.sip]` is also what `via = "ami"` asks Asterisk to send.
    pub fn validate(&self) -> Result<(), String> {
        match self.via {
            ReloadVia::None => Ok(()),
            ReloadVia::Sip => self.sip.validate(),
            ReloadVia::Ami => {
                self.sip.validate()?;
                self.ami.validate()
            }
        }
    }
}

/// `via = "sip" | "ami" | "none"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadVia {
    /// SIP NOTIFY from hotdesk to the phone (the default: the vendors' documented way).
    #[default]
    Sip,
    /// AMI action asking Asterisk to send the NOTIFY.
    Ami,
    /// Nothing is sent.
    None,
}

/// `[reload.sip]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipReloadConfig {
    /// UDP port of the phone's SIP stack; the address is the one the phone's HTTP request came from.
    pub port: u16,
    /// Event package; `check-sync` is the one Yealink, Htek/Sangoma and Snom document.
    pub event: String,
    /// `Some(b)` appends `;reboot=b` to the Event header (Yealink, Snom read it).
    pub reboot: Option<bool>,
    /// User part of the From URI.
    pub from_user: String,
    /// RFC 3261 T1 (round-trip estimate), milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 (longest retransmit interval), milliseconds.
    pub t2_ms: u64,
    /// Timer F (give up), milliseconds; default 64 * T1.
    pub timeout_ms: Option<u64>,
}

impl Default for SipReloadConfig {
    fn default() -> Self {
        Self {
            port: 5060,
            event: "check-sync".into(),
            reboot: None,
            from_user: "hotdesk".into(),
            t1_ms: 500,
            t2_ms: 4000,
            timeout_ms: None,
        }
    }
}

impl SipReloadConfig {
    /// Checks what a header line would otherwise carry unescaped; call once at start-up.
    pub fn validate(&self) -> Result<(), String> {
        if !is_event_type(&self.event) {
            return Err(format!(
                "[reload.sip] event {:?}: an event package name (letters, digits, '-', '.', '_') without parameters; use `reboot` for ;reboot=",
                self.event
            ));
        }
        if !is_sip_user(&self.from_user) {
            return Err(format!(
                "[reload.sip] from_user {:?}: letters, digits and - . _ ~ + only",
                self.from_user
            ));
        }
        if self.port == 0 {
            return Err("[reload.sip] port must not be 0".into());
        }
        if self.t1_ms == 0 || self.t2_ms < self.t1_ms {
            return Err("[reload.sip] need 0 < t1_ms <= t2_ms".into());
        }
        match self.timeout_ms {
            Some(t) if t < self.t1_ms || t > 300_000 => {
                Err("[reload.sip] timeout_ms must lie between t1_ms and 300000".into())
            }
            _ => Ok(()),
        }
    }

    /// The transaction options these settings describe.
    pub fn notify_options(&self) -> super::notify::NotifyOptions {
        let t1 = Duration::from_millis(self.t1_ms);
        super::notify::NotifyOptions {
            event: self.event.clone(),
            reboot: self.reboot,
            from_user: self.from_user.clone(),
            to_user: None,
            t1,
            t2: Duration::from_millis(self.t2_ms),
            timeout: self
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(t1 * 64),
        }
    }
}

/// Which AMI action asks Asterisk to send the NOTIFY.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmiAction {
    /// `Action: PJSIPNotify` (res_pjsip_notify).
    #[default]
    Pjsip,
    /// `Action: SIPnotify` (legacy chan_sip).
    ChanSip,
}

/// `[reload.ami]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmiReloadConfig {
    /// Asterisk manager host (name or address).
    pub host: String,
    /// Asterisk manager TCP port.
    pub port: u16,
    /// manager.conf user.
    pub username: String,
    /// manager.conf secret; never logged (`Debug` prints `[redacted]`).
    pub secret: Secret,
    /// Which action to send.
    pub action: AmiAction,
    /// Endpoint (PJSIP) or peer (chan_sip) name; `{extension}` is replaced by the extension.
    pub endpoint: String,
    /// Instead of `endpoint`: a SIP URI template for PJSIPNotify's `URI` field (uses Asterisk's
    /// default outbound endpoint).
    pub uri: Option<String>,
    /// TCP connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest wait for the banner and for each reply, milliseconds.
    pub reply_timeout_ms: u64,
}

impl Default for AmiReloadConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5038,
            username: String::new(),
            secret: Secret::default(),
            action: AmiAction::default(),
            endpoint: "{extension}".into(),
            uri: None,
            connect_timeout_ms: 3000,
            reply_timeout_ms: 5000,
        }
    }
}

impl AmiReloadConfig {
    /// Checks the settings that end up in AMI header lines; call once at start-up.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("host", self.host.as_str()),
            ("username", self.username.as_str()),
            ("secret", self.secret.expose()),
            ("endpoint", self.endpoint.as_str()),
        ] {
            if value.is_empty() {
                return Err(format!("[reload.ami] {name} must be set"));
            }
            if value.chars().any(char::is_control) {
                // The secret's value is not repeated; the others are harmless to show.
                return Err(format!("[reload.ami] {name} contains a control character"));
            }
        }
        if let Some(uri) = &self.uri {
            if uri.chars().any(char::is_control) || !uri.starts_with("sip") {
                return Err("[reload.ami] uri must be a sip: or sips: URI template".into());
            }
            if self.action == AmiAction::ChanSip {
                return Err("[reload.ami] uri is a PJSIPNotify field; chan_sip takes a peer name in endpoint".into());
            }
        }
        if self.port == 0 || self.connect_timeout_ms == 0 || self.reply_timeout_ms == 0 {
            return Err("[reload.ami] port and timeouts must not be 0".into());
        }
        Ok(())
    }
}

/// RFC 3265/6665 event-type: token characters; parameters come from `reboot`.
pub(crate) fn is_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'_' | b'!' | b'%' | b'*' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// A conservative subset of RFC 3261 `user` (unreserved only), so nothing needs escaping.
pub(crate) fn is_sip_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_an_empty_section() {
        let c: ReloadConfig = toml::from_str("").unwrap();
        assert_eq!(c.via, ReloadVia::Sip);
        assert_eq!(c.sip.port, 5060);
        assert_eq!(c.sip.event, "check-sync");
        assert_eq!(c.ami.port, 5038);
        assert_eq!(c.ami.endpoint, "{extension}");
        let o = c.sip.notify_options();
        assert_eq!(o.timeout, Duration::from_secs(32));
    }

    #[test]
    fn full_section_parses_and_validates() {
        let c: ReloadConfig = toml::from_str(
            r#"
via = "ami"
[sip]
port = 5062
reboot = false
[ami]
host = "pbx.example"
username = "hotdesk"
secret = "s3cret"
action = "chan_sip"
endpoint = "{extension}"
"#,
        )
        .unwrap();
        assert_eq!(c.via, ReloadVia::Ami);
        assert_eq!(c.sip.reboot, Some(false));
        c.sip.validate().unwrap();
        c.ami.validate().unwrap();
        assert!(!format!("{:?}", c.ami).contains("s3cret"));
    }

    #[test]
    fn unknown_fields_and_header_injection_are_refused() {
        assert!(toml::from_str::<ReloadConfig>("[sip]\nprot = 1").is_err());
        let mut s = SipReloadConfig {
            event: "check-sync\r\nX-Evil: 1".into(),
            ..Default::default()
        };
        assert!(s.validate().is_err());
        s.event = "check-sync;reboot=true".into();
        assert!(s.validate().is_err(), "parameters go through `reboot`");
        s.event = "check-sync".into();
        s.from_user = "a@b".into();
        assert!(s.validate().is_err());
        let a = AmiReloadConfig {
            username: "u".into(),
            secret: Secret::new("x\r\nAction: Originate"),
            ..Default::default()
        };
        let e = a.validate().unwrap_err();
        assert!(!e.contains("Originate"));
    }
}
