//! Rendered per-phone files, reused while nothing they were made from has changed. Phones
//! poll their file (at boot, after a login, and on the vendor's repeat timer), and a poll of
//! an unchanged file is the common case: it is answered with the bytes rendered last time.
//! A hit compares every input of the render (the template generation, the phone's vendor,
//! model, firmware, MAC and limits, each logged-in line and the fetch credential), never a
//! hash alone; a reload empties the cache. One slot per MAC hash bounds the memory.

use std::sync::Arc;

use super::{Line, Provisioner, Served};
use crate::config::Config;
use crate::phone::{Caps, Handset, Mac, Vendor};

/// Slots: a file is a few hundred bytes to a few KB.
const SLOTS: usize = 1024;

/// The templates and settings a file was rendered from ([`super::live::LiveProvisioner`]'s
/// current generation), compared by identity.
pub(super) type Generation = Arc<(Provisioner, Arc<Config>)>;

/// One logged-in line, as far as the templates see it.
#[derive(PartialEq, Eq)]
struct LineKey {
    identity: u8,
    extension: String,
    name: String,
    network: String,
    template: Option<String>,
    sip_password: String,
    sip_username: Option<String>,
}

impl LineKey {
    fn of(l: &Line<'_>) -> Self {
        Self {
            identity: l.login.identity,
            extension: l.login.extension.clone(),
            name: l.login.name.clone(),
            network: l.login.network.clone(),
            template: l.login.template.clone(),
            sip_password: l.sip_password.to_owned(),
            sip_username: l.sip_username.map(str::to_owned),
        }
    }

    fn is(&self, l: &Line<'_>) -> bool {
        self.identity == l.login.identity
            && self.extension == l.login.extension
            && self.name == l.login.name
            && self.network == l.login.network
            && self.template == l.login.template
            && self.sip_password == l.sip_password
            && self.sip_username.as_deref() == l.sip_username
    }
}

struct Slot {
    generation: Generation,
    mac: Mac,
    vendor: Vendor,
    model: Arc<str>,
    firmware: Arc<str>,
    caps: Caps,
    mac_from_query: bool,
    lines: Vec<LineKey>,
    fetch_auth: Option<(String, String)>,
    rendered: Served,
}

impl Slot {
    fn holds(
        &self,
        generation: &Generation,
        h: &Handset,
        lines: &[Line<'_>],
        fetch_auth: Option<(&str, &str)>,
    ) -> bool {
        Arc::ptr_eq(&self.generation, generation)
            && self.mac == h.mac
            && self.vendor == h.vendor
            && self.caps == h.caps
            && self.mac_from_query == h.mac_from_query
            && self.model == h.model
            && self.firmware == h.firmware
            && self.lines.len() == lines.len()
            && self.lines.iter().zip(lines).all(|(k, l)| k.is(l))
            && self
                .fetch_auth
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str()))
                == fetch_auth
    }
}

pub(super) struct Files {
    slots: crate::slots::Slots<Slot>,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            slots: crate::slots::Slots::new(SLOTS),
        }
    }
}

impl Files {
    /// The file rendered last time from exactly these inputs, if kept.
    pub(super) fn get(
        &self,
        generation: &Generation,
        handset: &Handset,
        lines: &[Line<'_>],
        fetch_auth: Option<(&str, &str)>,
    ) -> Option<Served> {
        self.slots.find(self.slots.hash(handset.mac), |s| {
            s.holds(generation, handset, lines, fetch_auth)
                .then(|| s.rendered.clone())
        })
    }

    pub(super) fn put(
        &self,
        generation: Generation,
        handset: &Handset,
        lines: &[Line<'_>],
        fetch_auth: Option<(&str, &str)>,
        rendered: &Served,
    ) {
        let fresh = Slot {
            generation,
            mac: handset.mac,
            vendor: handset.vendor,
            model: handset.model.clone(),
            firmware: handset.firmware.clone(),
            caps: handset.caps,
            mac_from_query: handset.mac_from_query,
            lines: lines.iter().map(LineKey::of).collect(),
            fetch_auth: fetch_auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
            rendered: rendered.clone(),
        };
        self.slots.put(self.slots.hash(handset.mac), fresh);
    }

    /// Forgets every file (templates or settings were reloaded).
    pub(super) fn clear(&self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Login;

    fn generation() -> Generation {
        let text = "listen = \"127.0.0.1:0\"\nbase_url = \"http://h\"\n[directory]\nkind = \"file\"\nfile = \"d.toml\"\n[store]\npath = \"s.sqlite\"\n[networks.internal]\nlabel = \"Internal\"\nsip_server = \"10.0.0.5\"\n";
        let config = Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        Arc::new((Provisioner::new(None).unwrap(), Arc::new(config)))
    }

    fn login(name: &str) -> Login {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        Login {
            mac: "805ec0000001".parse().unwrap(),
            identity: 0,
            extension: "1001".into(),
            name: name.into(),
            vendor: "yealink".into(),
            model: "T46S".into(),
            network: "internal".into(),
            template: None,
            since: now,
            source_ip: "10.0.0.7".into(),
            credential: "voicemail-pin".into(),
            applied_at: None,
        }
    }

    fn file(text: &str) -> Served {
        Served {
            body: bytes::Bytes::copy_from_slice(text.as_bytes()),
            content_type: "text/plain; charset=utf-8",
            template: "yealink".into(),
        }
    }

    #[test]
    fn a_file_is_reused_only_while_every_input_is_the_same() {
        let files = Files::default();
        let (g, h) = (
            generation(),
            crate::vendor::identify(Some("Yealink SIP-T46S 66.86.0.15 805ec0000001"), None, None)
                .unwrap(),
        );
        let ada = login("Ada");
        let line = |password| Line {
            login: &ada,
            sip_password: password,
            sip_username: None,
        };
        files.put(g.clone(), &h, &[line("s1")], None, &file("one"));
        let hit = files.get(&g, &h, &[line("s1")], None).unwrap();
        assert_eq!(hit.text(), "one");
        assert!(
            files.get(&g, &h, &[line("s2")], None).is_none(),
            "new SIP secret"
        );
        assert!(files.get(&g, &h, &[], None).is_none(), "logged out");
        assert!(
            files.get(&g, &h, &[line("s1")], Some(("u", "p"))).is_none(),
            "fetch credential"
        );
        let grace = login("Grace");
        let other = Line {
            login: &grace,
            sip_password: "s1",
            sip_username: None,
        };
        assert!(files.get(&g, &h, &[other], None).is_none(), "another user");
        let newer_firmware =
            crate::vendor::identify(Some("Yealink SIP-T46S 66.86.0.20 805ec0000001"), None, None)
                .unwrap();
        assert!(
            files
                .get(&g, &newer_firmware, &[line("s1")], None)
                .is_none()
        );
        assert!(
            files.get(&generation(), &h, &[line("s1")], None).is_none(),
            "reloaded"
        );
        files.clear();
        assert!(files.get(&g, &h, &[line("s1")], None).is_none(), "cleared");
    }
}
