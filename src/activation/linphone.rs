//! Linphone's remote-provisioning document (`lpconfig.xsd`): one `proxy_0` section (the
//! account and its registrar) and one `auth_info_0` section (its credentials). The keys are
//! the ones Linphone reads and Flexisip's account manager serves (`reg_identity`,
//! `reg_proxy`, `reg_sendregister`; `username`, `domain`, `realm`, `ha1`, `algorithm`,
//! `passwd`); every entry has `overwrite="true"` so a re-activated app takes the new values.

use std::fmt::Write;

use md5::Md5;
use quick_xml::escape::escape;
use sha2::{Digest, Sha256};

use crate::config::{ActivationConfig, Ha1Algorithm, NetworkConfig};
use crate::directory::User;

pub const CONTENT_TYPE: &str = "application/xml";

/// The host part of a `host[:port]` or `[v6]:port` server address.
pub fn host_of(server: &str) -> &str {
    let s = server.trim();
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => s,
    }
}

/// `"Name" <sip:user@domain>`: the display name as a SIP quoted-string (RFC 3261 25.1).
fn identity(name: &str, user: &str, domain: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    for c in name.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!("\"{quoted}\" <sip:{user}@{domain}>")
}

fn ha1(algorithm: Ha1Algorithm, user: &str, realm: &str, password: &str) -> String {
    let input = format!("{user}:{realm}:{password}");
    match algorithm {
        Ha1Algorithm::Md5 => crate::hex::lower(&Md5::digest(input.as_bytes())),
        Ha1Algorithm::Sha256 => crate::hex::lower(&Sha256::digest(input.as_bytes())),
    }
}

fn algorithm_name(a: Ha1Algorithm) -> &'static str {
    match a {
        Ha1Algorithm::Md5 => "MD5",
        Ha1Algorithm::Sha256 => "SHA-256",
    }
}

fn section(out: &mut String, name: &str, entries: &[(&str, &str)]) {
    let _ = writeln!(out, "  <section name=\"{name}\">");
    for (key, value) in entries {
        let _ = writeln!(
            out,
            "    <entry name=\"{key}\" overwrite=\"true\">{}</entry>",
            escape(*value)
        );
    }
    out.push_str("  </section>\n");
}

/// The document for `user` registering through `network`.
pub fn render(user: &User, network: &NetworkConfig, a: &ActivationConfig) -> String {
    let domain = a
        .domain
        .as_deref()
        .unwrap_or_else(|| host_of(&network.sip_server));
    let auth_user = user.sip_username.as_deref().unwrap_or(&user.extension);
    let identity = identity(&user.name, &user.extension, domain);
    let proxy = format!(
        "<sip:{};transport={}>",
        network.sip_server.trim(),
        a.transport
    );
    let mut out = String::with_capacity(1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<config xmlns=\"http://www.linphone.org/xsds/lpconfig.xsd\">\n");
    section(
        &mut out,
        "proxy_0",
        &[
            ("reg_identity", &identity),
            ("reg_proxy", &proxy),
            ("reg_sendregister", "1"),
        ],
    );
    let password = user.sip_password.expose();
    let digest;
    let mut auth: Vec<(&str, &str)> = vec![("username", auth_user), ("domain", domain)];
    match &a.realm {
        Some(realm) => {
            digest = ha1(a.ha1_algorithm, auth_user, realm, password);
            auth.push(("realm", realm));
            auth.push(("ha1", &digest));
            auth.push(("algorithm", algorithm_name(a.ha1_algorithm)));
        }
        None => auth.push(("passwd", password)),
    }
    section(&mut out, "auth_info_0", &auth);
    out.push_str("</config>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn user() -> User {
        User {
            extension: "1001".into(),
            name: "Zoë \"Z\" <&>".into(),
            voicemail_pin: None,
            sip_password: Secret::new("s3cret<&>"),
            sip_username: None,
            template: None,
            pin_hash: None,
        }
    }

    fn net(server: &str) -> NetworkConfig {
        NetworkConfig {
            label: "External".into(),
            sip_server: server.into(),
            cidrs: vec![],
        }
    }

    #[test]
    fn hosts_are_read_off_server_addresses() {
        assert_eq!(host_of("pbx.example.com"), "pbx.example.com");
        assert_eq!(host_of("10.0.0.5:5070"), "10.0.0.5");
        assert_eq!(host_of("[2001:db8::1]:5060"), "2001:db8::1");
        assert_eq!(host_of("2001:db8::1"), "2001:db8::1");
    }

    #[test]
    fn the_password_is_escaped_or_replaced_by_ha1_with_a_realm() {
        let a = ActivationConfig::default();
        let doc = render(&user(), &net("pbx.example.com:5070"), &a);
        assert!(
            doc.contains(r#"<entry name="passwd" overwrite="true">s3cret&lt;&amp;&gt;</entry>"#),
            "{doc}"
        );
        assert!(doc.contains("&quot;Zo\u{eb} \\&quot;Z\\&quot; &lt;&amp;&gt;&quot; &lt;sip:1001@pbx.example.com&gt;"), "{doc}");
        assert!(
            doc.contains("&lt;sip:pbx.example.com:5070;transport=udp&gt;"),
            "{doc}"
        );
        let a = ActivationConfig {
            realm: Some("asterisk".into()),
            ..ActivationConfig::default()
        };
        let doc = render(&user(), &net("pbx.example.com"), &a);
        assert!(!doc.contains("s3cret"), "{doc}");
        // MD5("1001:asterisk:s3cret<&>"), computed independently with md5sum.
        assert!(
            doc.contains(r#"<entry name="ha1" overwrite="true">"#),
            "{doc}"
        );
        assert!(doc.contains(&format!(
            r#"<entry name="ha1" overwrite="true">{}</entry>"#,
            ha1(Ha1Algorithm::Md5, "1001", "asterisk", "s3cret<&>")
        )));
        assert!(doc.contains(r#"<entry name="algorithm" overwrite="true">MD5</entry>"#));
    }

    #[test]
    fn ha1_is_the_rfc_2617_hash() {
        // RFC 2617 3.5's example: Mufasa / testrealm@host.com / Circle Of Life.
        assert_eq!(
            ha1(
                Ha1Algorithm::Md5,
                "Mufasa",
                "testrealm@host.com",
                "Circle Of Life"
            ),
            "939e7578ed9e3c518a452acee763bce9"
        );
        // RFC 7616 3.9.1's example, SHA-256.
        assert_eq!(
            ha1(
                Ha1Algorithm::Sha256,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life"
            ),
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
    }
}
