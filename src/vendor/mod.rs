//! Every phone family hotdesk speaks, one module each behind [`Family`], and the registry
//! that lists them. A family owns everything that differs between vendors: reading its
//! User-Agent, its capability table, rendering screens in its XML, its provisioning file
//! names and default template, and how it applies a login (reload strategy, logout wipe).
//! `flow`, `server` and `provision` ask the family; they never match on a vendor.
//!
//! Adding a vendor: its module here, one line in [`REGISTRY`], its `vendor-xml/<id>/` folder
//! (README, default template, golden files) and its User-Agent corpus entries.

mod aastra;
mod htek;
mod identify;
mod snom;
mod yealink;

pub use identify::{IdentifyError, identify, identify_file};

use crate::config::ReloadMethod;
use crate::dialect::{Limits, Rendered, Target};
use crate::phone::{Caps, Handset, Mac, Vendor};
use crate::screen::Screen;

/// What a User-Agent says about the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo<'a> {
    pub vendor: Vendor,
    /// Borrowed from the User-Agent (owned only where a family rewrites it).
    pub model: std::borrow::Cow<'a, str>,
    pub firmware: &'a str,
    /// Absent in some firmware (older Snom, possibly Sangoma): `?mac=` fills the gap.
    pub mac: Option<Mac>,
}

/// How a family names its provisioning file: `<prefix><mac><suffix>`.
#[derive(Debug, Clone, Copy)]
pub struct FileNaming {
    pub prefix: &'static str,
    pub suffix: &'static str,
    /// The phone asks with the MAC in upper case (Aastra).
    pub upper: bool,
}

impl FileNaming {
    pub fn file_name(&self, mac: Mac) -> String {
        let mac = mac.to_string();
        let mac = if self.upper { mac.to_uppercase() } else { mac };
        format!("{}{mac}{}", self.prefix, self.suffix)
    }

    /// The MAC `name` belongs to, if it follows this naming (either case).
    pub fn parse(&self, name: &str) -> Option<Mac> {
        let hex = name.strip_prefix(self.prefix)?.strip_suffix(self.suffix)?;
        (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hex.parse().ok())
            .flatten()
    }
}

/// A family's default provisioning template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Folder under `[provision] templates` (and the shipped `vendor-xml/`) its templates
    /// live in; families that share one (Htek and Sangoma) share templates.
    pub folder: &'static str,
    /// `cfg` (one `key = value` per line) or `xml` (escaped as XML).
    pub extension: &'static str,
    pub source: &'static str,
}

/// One phone family.
pub trait Family: Send + Sync + 'static {
    /// The stable id: `?vendor=`, `[vendors.<id>]`, logs, the admin API.
    fn id(&self) -> &'static str;
    /// Other names `?vendor=` accepts (e.g. `mitel`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// Families that speak the same dialect on the same hardware (Htek and its Sangoma OEM):
    /// a forced `?vendor=` of a kin family keeps the User-Agent's model.
    fn kin(&self) -> &'static str {
        self.id()
    }
    /// Reads a User-Agent; `None` when it is not this family's.
    fn parse_user_agent<'a>(&self, ua: &'a str) -> Option<UaInfo<'a>>;
    /// What this model and firmware can show and do.
    fn caps(&self, model: &str, firmware: &str) -> Caps;
    /// Renders `screen` with these text and item limits (the caller shrinks them until the
    /// document fits the phone).
    fn render(&self, screen: &Screen, target: Target<'_>, limits: Limits) -> Rendered;
    fn files(&self) -> FileNaming;
    fn template(&self) -> Template;
    /// How the phone loads its new configuration unless `[vendors.<id>] reload` says otherwise.
    fn default_reload(&self) -> ReloadMethod;
    /// The phone's XML browser may send no MAC even where its provisioning requests do, so
    /// the hot-desk key's URL always carries `?mac=`.
    fn key_url_needs_mac(&self) -> bool {
        false
    }
    /// Whether the phone can take its new configuration pushed live (`/app/push`).
    fn live_push(&self) -> bool {
        false
    }
    /// Settings pages for a live push of the phone's own file (Aastra dynamic SIP), or
    /// `None` where the family has none.
    fn push_pages(&self, _file: &str) -> Option<Vec<Vec<(String, String)>>> {
        None
    }
    /// What the push Execute does after the settings pages: Aastra re-opens the entry screen
    /// after a logout so the next user can log in at once. `logged_out`: nobody is on the
    /// phone any more.
    fn push_finish(&self, _logged_out: bool) -> Vec<crate::screen::Action> {
        Vec::new()
    }
    /// Extra variables for this handset's provisioning template, under `family.<name>`
    /// (e.g. which key carries the hot-desk URL on this model).
    fn template_vars(&self, _handset: &Handset) -> Vec<(&'static str, TemplateVar)> {
        Vec::new()
    }
    /// What the display fonts show: display text outside it is transliterated (screens and
    /// the names in provisioning files).
    fn charset(&self) -> crate::dialect::text::Charset {
        crate::dialect::text::Charset::Unicode
    }
    /// Why hotdesk refuses this phone although it reads its User-Agent (firmware that cannot
    /// take a login), or `None`.
    fn unsupported(&self, _ua: &UaInfo<'_>) -> Option<&'static str> {
        None
    }
    /// For a device [`Family::unsupported`] refuses: whether its provisioning file is still
    /// served (devices without an XML browser, such as DECT bases, that may already take
    /// their base profile from hotdesk). `false` refuses the file too (MiNET: no SIP line).
    fn file_served_when_unsupported(&self, _ua: &UaInfo<'_>) -> bool {
        false
    }
    /// The `reboot` parameter of this family's check-sync NOTIFY when `[reload.sip] reboot`
    /// is unset (`Some(false)`: `Event: check-sync;reboot=false`).
    fn check_sync_reboot(&self) -> Option<bool> {
        None
    }
    /// Whether `name` is one of the site-wide files this family's phones read at boot besides
    /// their own (Aastra: `aastra.cfg`, `<model>.cfg`). They carry no secrets and nothing of
    /// one phone: hotdesk answers them from an admin template of that name, else empty.
    fn shared_file(&self, _name: &str) -> bool {
        false
    }
}

/// A value a family hands its provisioning template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateVar {
    Text(&'static str),
    Flag(bool),
    Number(u32),
}

/// Every family, in the order User-Agents are tried.
static REGISTRY: [&dyn Family; 5] = [
    &aastra::AASTRA,
    &yealink::YEALINK,
    &htek::HTEK,
    &htek::SANGOMA,
    &snom::SNOM,
];

pub fn all() -> &'static [&'static dyn Family] {
    &REGISTRY
}

/// The family of `vendor` (every [`Vendor`] is made from a registered family's id).
pub fn family(vendor: Vendor) -> &'static dyn Family {
    REGISTRY
        .iter()
        .copied()
        .find(|f| f.id() == vendor.as_str())
        .unwrap_or(REGISTRY[0])
}

/// The family a `?vendor=` value or a config table names, by id or alias, in any case.
pub fn by_name(name: &str) -> Option<&'static dyn Family> {
    REGISTRY.iter().copied().find(|f| {
        f.id().eq_ignore_ascii_case(name)
            || f.aliases().iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// The family whose phones read the site-wide file `name` (see [`Family::shared_file`]).
pub fn shared_file(name: &str) -> Option<&'static dyn Family> {
    REGISTRY.iter().copied().find(|f| f.shared_file(name))
}

/// Tries every family's parser; `None` when no vendor's format matches.
pub fn parse_user_agent(ua: &str) -> Option<UaInfo<'_>> {
    let ua = ua.trim();
    REGISTRY.iter().find_map(|f| f.parse_user_agent(ua))
}

/// Renders `screen` for the target phone within its byte and item limits: text is cut first,
/// then trailing menu items are dropped.
pub fn render(screen: &Screen, target: Target<'_>) -> Rendered {
    let family = family(target.handset.vendor);
    let max = target.handset.caps.max_bytes;
    let mut limits = Limits {
        title: 64,
        label: 64,
        text: 1000,
        items: target.handset.caps.max_menu_items,
    };
    loop {
        let out = family.render(screen, target, limits);
        if out.body.len() <= max {
            return out;
        }
        if limits.text >= 16 {
            limits.title = limits.title.div_ceil(2).max(12);
            limits.label = limits.label.div_ceil(2).max(12);
            limits.text /= 2;
        } else if limits.items > 1 {
            limits.items /= 2;
        } else {
            // Only a single link longer than the phone's limit gets here; ours are short.
            tracing::error!(
                bytes = out.body.len(),
                max,
                "document over the phone's size limit"
            );
            return out;
        }
    }
}

/// `"3.2.2.6038"` -> `(3, 2, 2)`; anything unparsable counts as very old.
pub(crate) fn firmware_tuple(firmware: &str) -> (u32, u32, u32) {
    let mut parts = firmware
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// `s` without `prefix`, compared ASCII-case-insensitively; never splits a character.
pub(crate) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

pub(crate) fn valid_model(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 32
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests;
