//! SIP secrets of a plain Asterisk, so voicemail.conf users get a working line.
//!
//! - pjsip.conf: a `type=endpoint` section named after the extension links its inbound
//!   credentials with `auth = <section>`; that `type=auth` section holds `username` and
//!   `password` (`auth_type` userpass, the default). Templates `(!)` and inheritance `(a)` are
//!   resolved first, so a `type` or `password` set in a template counts.
//!   Source: asterisk/asterisk f0c1c1a7b7 configs/samples/pjsip.conf.sample l.345-389 (the
//!   `[6001]` endpoint with `auth=6001`, the `[6001]` `type=auth` section with `auth_type`,
//!   `username`, `password`, and the `[6001]` aor: one name for all three, as FreePBX writes
//!   them). Every line of that sample is commented out, so it loads as an empty file.
//! - sip.conf (chan_sip): a peer section `[1001]` with `secret = …`.
//!
//! An auth section whose `username` is not the extension gives the phone that SIP user name.

use std::collections::HashMap;

use super::asterisk_conf::Parsed;
use crate::secret::Secret;

/// Endpoint name → SIP line, from a parsed pjsip.conf; skipped endpoints go to `warnings`.
/// What a phone needs to register as an extension: the secret, and the SIP user name when it is
/// not the extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipLine {
    pub username: Option<String>,
    pub secret: Secret,
}

pub fn from_pjsip(conf: &Parsed, warnings: &mut Vec<String>) -> HashMap<String, SipLine> {
    let kind = |s: &super::asterisk_conf::Section, t: &str| {
        s.get("type").is_some_and(|v| v.eq_ignore_ascii_case(t))
    };
    let auths: HashMap<String, &super::asterisk_conf::Section> = conf
        .sections
        .iter()
        .filter(|s| !s.template && kind(s, "auth"))
        .map(|s| (s.name.to_ascii_lowercase(), s))
        .collect();
    let mut out = HashMap::new();
    for endpoint in conf
        .sections
        .iter()
        .filter(|s| !s.template && kind(s, "endpoint"))
    {
        let Some(link) = endpoint.get("auth").and_then(|a| a.split(',').next()) else {
            continue;
        };
        let link = link.trim();
        let Some(auth) = auths.get(&link.to_ascii_lowercase()) else {
            warnings.push(format!(
                "pjsip endpoint {}: auth `{link}` is not a type=auth section",
                endpoint.name
            ));
            continue;
        };
        let auth_type = auth.get("auth_type").unwrap_or("userpass");
        if !auth_type.eq_ignore_ascii_case("userpass") {
            warnings.push(format!(
                "pjsip endpoint {}: auth `{link}` has auth_type {auth_type}, no plain password",
                endpoint.name
            ));
            continue;
        }
        // An auth section may name its own user: the phone then registers as that user.
        let username = auth
            .get("username")
            .filter(|u| *u != endpoint.name)
            .map(str::to_owned);
        if let Some(password) = auth.get("password").filter(|p| !p.is_empty()) {
            out.entry(endpoint.name.clone()).or_insert_with(|| SipLine {
                username,
                secret: Secret::new(password),
            });
        }
    }
    out
}

/// Peer name → `secret`, from a parsed sip.conf (chan_sip).
pub fn from_sip(conf: &Parsed) -> HashMap<String, SipLine> {
    let mut out = HashMap::new();
    for peer in conf
        .sections
        .iter()
        .filter(|s| !s.template && !s.name.eq_ignore_ascii_case("general"))
    {
        if let Some(secret) = peer.get("secret").filter(|s| !s.is_empty()) {
            // chan_sip authenticates as `defaultuser` when set, else the peer name.
            let username = peer
                .get("defaultuser")
                .filter(|u| !u.is_empty() && *u != peer.name)
                .map(str::to_owned);
            out.entry(peer.name.clone()).or_insert_with(|| SipLine {
                username,
                secret: Secret::new(secret),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::asterisk_conf::read;

    const PJSIP: &str = "\
[transport-udp]
type=transport
protocol=udp

[auth-base](!)
type=auth
auth_type=userpass

[endpoint-base](!)
type=endpoint
context=from-internal

[1001](endpoint-base)
auth=1001-auth
aors=1001

[1001-auth](auth-base)
username=1001
password=pj-secret-1001

[1002](endpoint-base)
auth = 1002-auth, other

[1002-auth](auth-base)
password=pj-secret-1002

[1003](endpoint-base)
auth=nobody

[1004](endpoint-base)
auth=1004-auth
[1004-auth](auth-base)
username=someone-else
password=x

[1005](endpoint-base)
auth=1005-auth
[1005-auth]
type=auth
auth_type=md5
md5_cred=0123456789abcdef

; pjsip.conf.sample's own example (l.345-389), as FreePBX writes it too: endpoint, auth and
; aor share the extension as their name.
[2001]
type=endpoint
auth=2001
aors=2001
[2001]
type=auth
auth_type=userpass
username=2001
password=fpbx-2001
[2001]
type=aor
max_contacts=1
";

    #[test]
    fn endpoints_lead_to_their_auth_sections() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pjsip.conf");
        std::fs::write(&p, PJSIP).unwrap();
        let mut warnings = Vec::new();
        let secrets = from_pjsip(&read(&p).unwrap(), &mut warnings);
        let get = |e: &str| secrets.get(e).map(|s| s.secret.expose().to_owned());
        assert_eq!(get("1001").as_deref(), Some("pj-secret-1001"));
        assert_eq!(
            get("1002").as_deref(),
            Some("pj-secret-1002"),
            "first of a list"
        );
        assert_eq!(get("1003"), None);
        assert_eq!(get("1004").as_deref(), Some("x"), "its own user name");
        assert_eq!(secrets["1004"].username.as_deref(), Some("someone-else"));
        assert_eq!(secrets["1001"].username, None, "the extension itself");
        assert_eq!(get("1005"), None, "md5 has no password");
        assert_eq!(
            get("2001").as_deref(),
            Some("fpbx-2001"),
            "same-name sections"
        );
        assert_eq!(secrets.len(), 4);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn chan_sip_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sip.conf");
        std::fs::write(
            &p,
            "[general]\nsecret=not-a-peer\n[phones](!)\ntype=friend\nhost=dynamic\n[2001](phones)\nsecret=sip-2001\n[2002](phones)\n",
        )
        .unwrap();
        let secrets = from_sip(&read(&p).unwrap());
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets["2001"].secret.expose(), "sip-2001");
    }
}
