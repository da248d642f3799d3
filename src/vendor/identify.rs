//! Who is calling: the User-Agent and `?vendor=`/`?mac=` become a [`Handset`] with the
//! capabilities of its model.

use std::sync::{Arc, LazyLock};

use super::{all, by_name, family, parse_user_agent};
use crate::phone::{BadMac, Handset, Mac, Vendor};
use crate::slots::Slots;

/// Why a request could not be tied to a phone. The text is shown to whoever sent it, and
/// logged: client text in it is escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    #[error(
        "hotdesk could not identify this phone. Expected a phone User-Agent ({known}) or ?vendor=<{names}>&mac=<12 hex digits> on the URL.",
        known = known_brands(),
        names = known_names()
    )]
    Unknown,
    #[error("unknown ?vendor= `{0}`; use {names}", names = known_names().replace('|', ", "))]
    BadVendor(String),
    #[error("{0}")]
    BadMac(#[from] BadMac),
    #[error(
        "this {0} phone did not send its MAC address; configure its URL as …/app?mac=<12 hex digits>"
    )]
    NoMac(Vendor),
    #[error("?mac= does not match the MAC in the phone's User-Agent")]
    MacMismatch,
    /// The family reads this User-Agent but cannot log anybody in on it (e.g. MiNET).
    #[error("this phone is not supported: {0}")]
    Unsupported(&'static str),
}

fn known_names() -> String {
    all()
        .iter()
        .flat_map(|f| std::iter::once(f.id()).chain(f.aliases().iter().copied()))
        .collect::<Vec<_>>()
        .join("|")
}

fn known_brands() -> String {
    all().iter().map(|f| f.id()).collect::<Vec<_>>().join(", ")
}

/// Client text made safe to show and to log: at most `max` characters, control characters
/// (newlines, terminal escapes) written as escapes.
pub fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect()
}

/// Identifies the phone from its User-Agent and the `vendor`/`mac` query values, for the
/// screens: a device its family does not support is refused.
pub fn identify(
    user_agent: Option<&str>,
    vendor_param: Option<&str>,
    mac_param: Option<&str>,
) -> Result<Handset, IdentifyError> {
    identify_for(user_agent, vendor_param, mac_param, false)
}

/// As [`identify`], for a provisioning file: an unsupported device whose family still serves
/// its file (no XML browser, e.g. a DECT base) is identified.
pub fn identify_file(
    user_agent: Option<&str>,
    vendor_param: Option<&str>,
    mac_param: Option<&str>,
) -> Result<Handset, IdentifyError> {
    identify_for(user_agent, vendor_param, mac_param, true)
}

fn identify_for(
    user_agent: Option<&str>,
    vendor_param: Option<&str>,
    mac_param: Option<&str>,
    file: bool,
) -> Result<Handset, IdentifyError> {
    let by_ua_alone = vendor_param.is_none_or(str::is_empty) && mac_param.is_none_or(str::is_empty);
    match user_agent {
        Some(ua) if by_ua_alone => KNOWN.identify(ua, file),
        _ => identify_uncached(user_agent, vendor_param, mac_param, file),
    }
}

/// A phone sends the same User-Agent on every request, and parsing it (with its model's
/// capabilities) was a tenth of a cached screen's CPU: the phones identified by their
/// User-Agent alone are kept per exact User-Agent.
static KNOWN: LazyLock<KnownAgents> = LazyLock::new(|| KnownAgents::new(512));

/// User-Agents this server has identified; a newcomer takes its slot over, so a client
/// sending made-up agents only evicts.
struct KnownAgents(Slots<(Box<str>, bool, Handset)>);

impl KnownAgents {
    /// Longer agents are parsed every time rather than kept.
    const MAX_LEN: usize = 256;

    fn new(slots: usize) -> Self {
        Self(Slots::new(slots))
    }

    fn identify(&self, ua: &str, file: bool) -> Result<Handset, IdentifyError> {
        if ua.len() > Self::MAX_LEN {
            return identify_uncached(Some(ua), None, None, file);
        }
        let hash = self.0.hash((ua, file));
        let hit = self.0.find(hash, |(known, for_file, handset)| {
            (**known == *ua && *for_file == file).then(|| handset.clone())
        });
        if let Some(handset) = hit {
            return Ok(handset);
        }
        let handset = identify_uncached(Some(ua), None, None, file)?;
        self.0.put(hash, (ua.into(), file, handset.clone()));
        Ok(handset)
    }
}

/// Model and firmware names, one copy each: the phones of a model share them, so a phone
/// seen for the first time (every phone of a boot storm) costs no allocation for them, and
/// the known agents do not pin a copy each.
static NAMES: LazyLock<Slots<Arc<str>>> = LazyLock::new(|| Slots::new(128));

fn interned(name: &str) -> Arc<str> {
    let hash = NAMES.hash(name);
    if let Some(hit) = NAMES.find(hash, |kept| (**kept == *name).then(|| kept.clone())) {
        return hit;
    }
    let fresh: Arc<str> = name.into();
    NAMES.put(hash, fresh.clone());
    fresh
}

fn identify_uncached(
    user_agent: Option<&str>,
    vendor_param: Option<&str>,
    mac_param: Option<&str>,
    file: bool,
) -> Result<Handset, IdentifyError> {
    let forced = match vendor_param.filter(|v| !v.is_empty()) {
        Some(v) => Some(by_name(v).ok_or_else(|| IdentifyError::BadVendor(printable(v, 32)))?),
        None => None,
    };
    let query_mac = match mac_param.filter(|m| !m.is_empty()) {
        Some(m) => Some(m.parse::<Mac>()?),
        None => None,
    };
    let info = user_agent.and_then(parse_user_agent);
    if let Some(i) = &info
        && let Some(why) = family(i.vendor).unsupported(i)
        && !(file && family(i.vendor).file_served_when_unsupported(i))
    {
        return Err(IdentifyError::Unsupported(why));
    }
    let (vendor, model, firmware, ua_mac) = match (forced, info) {
        (Some(f), Some(i)) if family(i.vendor).kin() == f.kin() => {
            (Vendor::new(f.id()), i.model, i.firmware, i.mac)
        }
        // Another family's dialect may be forced, but the phone's own MAC still counts: a
        // forced vendor must never turn a request into one for another desk.
        (Some(f), Some(i)) => (Vendor::new(f.id()), "unknown".into(), "", i.mac),
        (Some(f), None) => (Vendor::new(f.id()), "unknown".into(), "", None),
        (None, Some(i)) => (i.vendor, i.model, i.firmware, i.mac),
        (None, None) => return Err(IdentifyError::Unknown),
    };
    // The phone's own MAC wins; a different ?mac= from the same phone is refused, so a
    // link cannot be edited to act for another desk.
    let mac = match (ua_mac, query_mac) {
        (Some(a), Some(b)) if a != b => return Err(IdentifyError::MacMismatch),
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return Err(IdentifyError::NoMac(vendor)),
    };
    let caps = family(vendor).caps(&model, firmware);
    Ok(Handset {
        vendor,
        model: interned(&model),
        firmware: interned(firmware),
        mac,
        caps,
        vendor_forced: forced.is_some(),
        mac_from_query: ua_mac.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_agent_is_answered_as_parsed_and_never_for_another() {
        // One slot: every agent competes for it.
        let known = KnownAgents::new(1);
        let a = "Yealink SIP-T46S 66.86.0.15 805ec0000001";
        let b = "Yealink SIP-T46S 66.86.0.15 805ec0000002";
        for _ in 0..2 {
            for ua in [a, b, a] {
                assert_eq!(
                    known.identify(ua, false),
                    identify_uncached(Some(ua), None, None, false)
                );
            }
        }
        // Phones of one model share its strings.
        let fresh = KnownAgents::new(1);
        let (first, second) = (fresh.identify(a, false), fresh.identify(b, false));
        let (first, second) = (first.unwrap(), second.unwrap());
        assert!(std::sync::Arc::ptr_eq(&first.model, &second.model));
        assert!(std::sync::Arc::ptr_eq(&first.firmware, &second.firmware));
        // The file flag is part of the key: a device refused a screen still gets its file.
        let dect = "Yealink W60B 77.83.0.85 805ec0aabbcc";
        let screen = identify_uncached(Some(dect), None, None, false);
        let file = identify_uncached(Some(dect), None, None, true);
        assert!(screen.is_err() && file.is_ok(), "{screen:?} {file:?}");
        assert_eq!(known.identify(dect, true), file);
        assert_eq!(known.identify(dect, false), screen);
        assert_eq!(known.identify(dect, true), file);
        // A failure is not kept, and an over-long agent is parsed every time.
        assert_eq!(
            known.identify("curl/8.0", false),
            Err(IdentifyError::Unknown)
        );
        let long = format!("{a} {}", "x".repeat(300));
        assert_eq!(
            known.identify(&long, false),
            identify_uncached(Some(&long), None, None, false)
        );
    }

    #[test]
    fn query_fills_missing_mac_but_cannot_override_the_phone() {
        let old_snom = "Mozilla/4.0 (compatible; snom320-SIP 8.4.18 1.1.3-s)";
        assert_eq!(
            identify(Some(old_snom), None, None),
            Err(IdentifyError::NoMac(Vendor::new("snom")))
        );
        let h = identify(Some(old_snom), None, Some("00:04:13:aa:bb:cc")).unwrap();
        assert_eq!(h.mac.to_string(), "000413aabbcc");
        assert!(h.mac_from_query);

        let aastra = "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP";
        assert_eq!(
            identify(Some(aastra), None, Some("00085d000000")),
            Err(IdentifyError::MacMismatch)
        );
        assert!(identify(Some(aastra), None, Some("00085D30A6CE")).is_ok());
    }

    #[test]
    fn a_forced_vendor_keeps_the_phones_own_mac() {
        let aastra = "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP";
        let h = identify(Some(aastra), Some("yealink"), None).unwrap();
        assert_eq!(h.vendor.as_str(), "yealink");
        assert_eq!(h.mac.to_string(), "00085d30a6ce");
        assert!(!h.mac_from_query);
        assert_eq!(
            identify(Some(aastra), Some("yealink"), Some("805ec02f3c2e")),
            Err(IdentifyError::MacMismatch)
        );
        // Kin families keep the model.
        let htek = "Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9";
        let h = identify(Some(htek), Some("sangoma"), None).unwrap();
        assert_eq!((h.vendor.as_str(), &*h.model), ("sangoma", "UC903"));
    }

    #[test]
    fn client_text_in_errors_cannot_forge_log_lines() {
        let e = identify(
            None,
            Some("x\n2026-11-23T00:00:00Z ERROR forged\u{1b}[31m"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e}");
        let e = identify(None, Some("snom"), Some("\nERROR forged\u{1b}[31m"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn vendor_param_forces_the_dialect() {
        let h = identify(Some("curl/8.0"), Some("yealink"), Some("805ec0aabbcc")).unwrap();
        assert_eq!(h.vendor.as_str(), "yealink");
        assert!(h.vendor_forced);
        assert_eq!(
            identify(Some("curl/8.0"), Some("MITEL"), Some("805ec0aabbcc"))
                .unwrap()
                .vendor
                .as_str(),
            "aastra"
        );
        assert_eq!(
            identify(None, Some("cisco"), Some("805ec0aabbcc")),
            Err(IdentifyError::BadVendor("cisco".into()))
        );
        assert_eq!(
            identify(Some("curl/8.0"), None, None),
            Err(IdentifyError::Unknown)
        );
        assert!(matches!(
            identify(None, Some("snom"), Some("zz")),
            Err(IdentifyError::BadMac(_))
        ));
    }
}
