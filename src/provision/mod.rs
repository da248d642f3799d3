//! Per-phone configuration files: the logged-in user's line on the chosen network, or the
//! base profile, rendered from a template per brand (minijinja; never hand-rolled).
//!
//! Output escaping is chosen by the template's file type: `.xml` templates escape XML and drop
//! XML-illegal characters; `.cfg` templates keep every value on one line, so a display name
//! cannot add configuration lines.

pub mod credentials;
mod files;
pub mod live;

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value, context};

use crate::config::Config;
use crate::dialect::text::{clean, display_in};
use crate::phone::{Handset, Vendor};
use crate::store::Login;
use crate::vendor::{self, TemplateVar};

/// Longest display name or label written into a provisioning file: phone displays show
/// far less, and a file stays small whatever the directory holds.
const NAME_MAX: usize = 64;

/// innovaphone's update script: not a screen family, served by its own route.
const INNOVAPHONE: (&str, &str) = (
    "innovaphone/default.txt",
    include_str!("../../vendor-xml/innovaphone/update.txt.j2"),
);

pub struct Provisioner {
    env: Environment<'static>,
    /// Every template name loaded, `brand/name.ext`.
    names: BTreeSet<String>,
}

/// One logged-in user's line as the file needs it: the login, and the SIP credentials read
/// from the directory at that moment.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub login: &'a Login,
    pub sip_password: &'a str,
    /// The SIP user name when it is not the extension.
    pub sip_username: Option<&'a str>,
}

/// A rendered file and its content type.
#[derive(Clone)]
pub struct Rendered {
    pub body: String,
    pub content_type: &'static str,
    pub template: String,
}

/// A rendered file as it is served and kept: shared bytes, so that a phone polling an
/// unchanged file is answered without a copy.
#[derive(Clone)]
pub struct Served {
    pub body: bytes::Bytes,
    pub content_type: &'static str,
    pub template: std::sync::Arc<str>,
}

impl From<Rendered> for Served {
    fn from(r: Rendered) -> Self {
        Self {
            body: r.body.into(),
            content_type: r.content_type,
            template: r.template.into(),
        }
    }
}

impl Served {
    /// The file as text (it was rendered from a `String`).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or_default()
    }
}

impl Provisioner {
    /// Loads the shipped defaults and every `<brand>/<name>.<cfg|xml>.j2` under `folder`.
    pub fn new(folder: Option<&Path>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".xml") {
                AutoEscape::Custom("xml")
            } else {
                AutoEscape::Custom("cfg")
            }
        });
        env.set_formatter(|out, state, value| {
            let text = if value.is_none() || value.is_undefined() {
                String::new()
            } else {
                value.to_string()
            };
            let text = match state.auto_escape() {
                AutoEscape::Custom("xml") => xml_escape(&clean(&text, false)),
                _ => clean(&text, false),
            };
            out.write_str(&text)
                .map_err(|_| Error::new(ErrorKind::WriteFailure, "writing a template"))
        });
        let mut names = BTreeSet::new();
        let (name, source) = INNOVAPHONE;
        env.add_template(name, source)
            .map_err(|e| format!("shipped template {name}: {e}"))?;
        names.insert(name.to_owned());
        let mut folders = BTreeSet::new();
        for family in vendor::all() {
            let t = family.template();
            let name = format!("{}/default.{}", t.folder, t.extension);
            if names.insert(name.clone()) {
                env.add_template_owned(name.clone(), t.source)
                    .map_err(|e| format!("shipped template {name}: {e}"))?;
            }
            folders.insert(t.folder);
        }
        if let Some(folder) = folder {
            for b in folders {
                let dir = folder.join(b);
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
                    let Some(stem) = file.strip_suffix(".j2") else {
                        continue;
                    };
                    if !(stem.ends_with(".cfg") || stem.ends_with(".xml")) {
                        continue;
                    }
                    let source = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read template {}: {e}", path.display()))?;
                    let name = format!("{b}/{stem}");
                    env.add_template_owned(name.clone(), source)
                        .map_err(|e| format!("template {}: {e}", path.display()))?;
                    names.insert(name);
                }
            }
        }
        Ok(Self { env, names })
    }

    /// Template names a directory may use (`sales` for `yealink/sales.cfg`).
    /// Site-wide files (`aastra/aastra.cfg`) are not user templates.
    pub fn user_template_names(&self) -> BTreeSet<String> {
        self.names
            .iter()
            .filter_map(|n| n.split_once('/'))
            .filter(|(folder, file)| !is_shared(folder, file))
            .map(|(_, f)| f)
            .filter_map(|f| f.rsplit_once('.').map(|(stem, _)| stem.to_owned()))
            .filter(|stem| stem != "default")
            .collect()
    }

    /// Which template serves this phone: the user's own where it exists for this brand,
    /// else the brand default.
    fn pick(&self, vendor: Vendor, template: Option<&str>) -> String {
        let t = vendor::family(vendor).template();
        let (b, ext) = (t.folder, t.extension);
        if let Some(t) = template {
            let name = format!("{b}/{t}.{ext}");
            if self.names.contains(&name) && !is_shared(b, &format!("{t}.{ext}")) {
                return name;
            }
            tracing::warn!(
                template = t,
                brand = b,
                "no such template for this brand; using the default"
            );
        }
        format!("{b}/default.{ext}")
    }

    /// A family's site-wide file `file` (e.g. Aastra's `aastra.cfg`, `6737i.cfg`): the admin
    /// template `<folder>/<file>.j2` when there is one, else a single comment line. The
    /// template gets only `base_url`: these files go to any phone that asks, so nothing of
    /// one phone or user belongs in them.
    pub fn render_shared(
        &self,
        config: &Config,
        family: &dyn vendor::Family,
        file: &str,
    ) -> Result<String, String> {
        let name = format!("{}/{file}", family.template().folder);
        if !self.names.contains(&name) {
            return Ok(format!(
                "# {file}: no site-wide settings; hotdesk writes each phone's settings into its own file\n"
            ));
        }
        let tmpl = self.env.get_template(&name).map_err(|e| e.to_string())?;
        tmpl.render(context! { base_url => config.base() })
            .map_err(|e| e.to_string())
    }

    /// Renders the configuration of `handset`: its logged-in users (each with the SIP secret
    /// from the directory; `line` is the first, `lines` all of them in identity order), or
    /// the base profile when `lines` is empty.
    pub fn render(
        &self,
        config: &Config,
        handset: &Handset,
        lines: &[Line<'_>],
    ) -> Result<Rendered, String> {
        self.render_with(config, handset, lines, None)
    }

    /// As [`Provisioner::render`]; `fetch_auth` (user name, password) is the phone's own
    /// provisioning credential, written where its vendor documents a key for it.
    pub fn render_with(
        &self,
        config: &Config,
        handset: &Handset,
        lines: &[Line<'_>],
        fetch_auth: Option<(&str, &str)>,
    ) -> Result<Rendered, String> {
        let login = lines.first().map(|l| l.login);
        let name = self.pick(handset.vendor, login.and_then(|l| l.template.as_deref()));
        let tmpl = self.env.get_template(&name).map_err(|e| e.to_string())?;
        let family = vendor::family(handset.vendor);
        let charset = family.charset();
        let name_for = |n: &str| display_in(n, NAME_MAX, false, charset);
        let family_vars: std::collections::BTreeMap<&str, Value> = family
            .template_vars(handset)
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    TemplateVar::Text(t) => Value::from(t),
                    TemplateVar::Flag(b) => Value::from(b),
                    TemplateVar::Number(n) => Value::from(n),
                };
                (k, v)
            })
            .collect();
        let base_url = config.base();
        let mac = handset.mac.to_string();
        // The key's URL carries the MAC when this phone's User-Agent did not (it came from
        // the file name), or when the family's browser may send none.
        let entry_url = if handset.mac_from_query || family.key_url_needs_mac() {
            format!("{base_url}/app?mac={mac}")
        } else {
            format!("{base_url}/app")
        };
        let to_value = |line: &Line<'_>| {
            let l = line.login;
            let net = config.networks.get(&l.network);
            let server = net.map(|n| n.sip_server.as_str()).unwrap_or("");
            let (host, port) = split_host_port(server);
            context! {
                identity => l.identity,
                extension => l.extension,
                name => name_for(&l.name),
                sip_password => line.sip_password,
                sip_username => line.sip_username.unwrap_or(&l.extension),
                network => l.network,
                network_label => net.map(|n| n.label.as_str()).unwrap_or(""),
                sip_server => server,
                sip_host => host,
                sip_port => port,
            }
        };
        let all: Vec<Value> = lines.iter().map(to_value).collect();
        let line = all.first().cloned();
        // One entry per identity the phone holds: a user, or none (switched off).
        let slots: Vec<Value> = (0..handset.caps.identities)
            .map(|i| {
                lines
                    .iter()
                    .position(|l| l.login.identity == i)
                    .map_or(Value::from(()), |p| all[p].clone())
            })
            .collect();
        let base = config.base_profile.as_ref().map(|b| {
            let server = config
                .networks
                .get(&b.network)
                .map(|n| n.sip_server.as_str())
                .unwrap_or("");
            let (host, port) = split_host_port(server);
            context! {
                extension => b.extension,
                secret => b.secret.expose(),
                label => name_for(&b.label),
                sip_server => server,
                sip_host => host,
                sip_port => port,
            }
        });
        let body = tmpl
            .render(context! {
                mac => mac,
                mac_upper => mac.to_uppercase(),
                vendor => handset.vendor.as_str(),
                model => &*handset.model,
                entry_url => entry_url,
                family => family_vars,
                // `[vendors.<id>] dss_key_type`: a value only the admin can know (Htek).
                dss_key_type => config
                    .vendor(handset.vendor.as_str())
                    .and_then(|s| s.dss_key_type),
                logged_in => login.is_some(),
                line => line.unwrap_or(Value::from(())),
                lines => all,
                slots => slots,
                base => base.unwrap_or(Value::from(())),
                fetch_auth => fetch_auth.map_or(Value::from(()), |(username, password)| {
                    Value::from_serialize(context! { username => username, password => password })
                }),
            })
            .map_err(|e| format!("template {name}: {e}"))?;
        let content_type = if name.ends_with(".xml") {
            "application/xml; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        Ok(Rendered {
            body,
            content_type,
            template: name,
        })
    }
}

impl Provisioner {
    /// The innovaphone update script for `mac`, lines ending in CR LF as the update server's,
    /// ending with `mod cmd UP1 check ser <serial>` so the phone reports the serial back as
    /// `CHECK` (innovaphone's `update.php`).
    pub fn render_innovaphone(
        &self,
        config: &Config,
        mac: crate::phone::Mac,
    ) -> Result<String, String> {
        self.render_innovaphone_checked(config, mac, None)
    }

    /// As [`Provisioner::render_innovaphone`]; when `check` (the phone's `CHECK` argument)
    /// is the script's serial the phone already runs it, and the answer is only a comment,
    /// as innovaphone's own update server does, so the phone neither rewrites its flash nor
    /// re-activates its configuration on every poll.
    pub fn render_innovaphone_checked(
        &self,
        config: &Config,
        mac: crate::phone::Mac,
        check: Option<&str>,
    ) -> Result<String, String> {
        let c = &config.innovaphone;
        let tmpl = self
            .env
            .get_template("innovaphone/default.txt")
            .map_err(|e| e.to_string())?;
        let serial = innovaphone_serial(tmpl.source(), mac, &c.lines);
        if check.is_some_and(|c| c.trim().eq_ignore_ascii_case(&serial)) {
            return Ok(format!(
                "# not delivering the script - CHECK serial {serial} is good\r\n"
            ));
        }
        let password = c.password.as_ref().map(|p| p.expose()).unwrap_or("");
        let lines: Vec<String> = c
            .lines
            .iter()
            .map(|l| l.replace("{password}", password))
            .collect();
        let text = tmpl
            .render(context! {
                mac => mac.to_string(),
                innovaphone_lines => lines,
                check_serial => serial,
            })
            .map_err(|e| format!("innovaphone template: {e}"))?;
        Ok(text.lines().map(|l| format!("{l}\r\n")).collect())
    }
}

/// The script's serial: a hash of what makes it (template, MAC, configured lines). The lines
/// are hashed with `{password}` unreplaced, so the serial, which the phone sends back in a
/// URL, says nothing about the password (a password change alone keeps the serial).
/// Whether `file` in template folder `folder` is a family's site-wide file (Aastra's
/// `aastra.cfg`, `<model>.cfg`), served as itself and never as a phone's own file.
fn is_shared(folder: &str, file: &str) -> bool {
    vendor::all()
        .iter()
        .any(|f| f.template().folder == folder && f.shared_file(file))
}

fn innovaphone_serial(template: &str, mac: crate::phone::Mac, lines: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(template.as_bytes());
    h.update(mac.to_string().as_bytes());
    for l in lines {
        h.update([0]);
        h.update(l.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `host[:port]` (or `[v6]:port`) as host and port, 5060 when none is given.
fn split_host_port(server: &str) -> (&str, u16) {
    let server = server.trim();
    if let Some((host, tail)) = server.strip_prefix('[').and_then(|r| r.split_once(']')) {
        let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host, port.unwrap_or(5060));
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, port),
            Err(_) => (server, 5060),
        },
        _ => (server, 5060),
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Provisioner, split_host_port};

    #[test]
    fn site_wide_files_are_not_user_templates() {
        let dir = tempfile::tempdir().unwrap();
        let aastra = dir.path().join("aastra");
        std::fs::create_dir(&aastra).unwrap();
        for f in ["aastra.cfg.j2", "6737i.cfg.j2", "sales.cfg.j2"] {
            std::fs::write(aastra.join(f), "x: 1\n").unwrap();
        }
        let names = Provisioner::new(Some(dir.path()))
            .unwrap()
            .user_template_names();
        assert!(names.contains("sales"), "{names:?}");
        assert!(
            !names.contains("aastra") && !names.contains("6737i"),
            "{names:?}"
        );
    }

    #[test]
    fn sip_server_splits_into_host_and_port() {
        assert_eq!(split_host_port("10.0.0.5"), ("10.0.0.5", 5060));
        assert_eq!(
            split_host_port("pbx.example.com:5080"),
            ("pbx.example.com", 5080)
        );
        assert_eq!(split_host_port("[2001:db8::1]:5061"), ("2001:db8::1", 5061));
        assert_eq!(split_host_port("2001:db8::1"), ("2001:db8::1", 5060));
        assert_eq!(split_host_port("h:x"), ("h:x", 5060));
    }
}
