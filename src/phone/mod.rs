//! Who is calling: the User-Agent, a few vendor headers and `?vendor=`/`?mac=` become a
//! [`Handset`] with the capabilities of its model.

mod caps;
mod mac;
pub mod ua;

pub use caps::{Caps, caps_for};
pub use mac::{BadMac, Mac};

use std::fmt;
use std::str::FromStr;

/// A phone maker whose screens hotdesk can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// Aastra and Mitel (67xx, 68xx, 69xx SIP).
    Aastra,
    Yealink,
    Htek,
    /// Sangoma S-series (Htek OEM).
    Sangoma,
    Snom,
}

impl Vendor {
    pub const ALL: [Vendor; 5] = [
        Vendor::Aastra,
        Vendor::Yealink,
        Vendor::Htek,
        Vendor::Sangoma,
        Vendor::Snom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Aastra => "aastra",
            Vendor::Yealink => "yealink",
            Vendor::Htek => "htek",
            Vendor::Sangoma => "sangoma",
            Vendor::Snom => "snom",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Vendor {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "aastra" | "mitel" => Ok(Vendor::Aastra),
            "yealink" => Ok(Vendor::Yealink),
            "htek" => Ok(Vendor::Htek),
            "sangoma" => Ok(Vendor::Sangoma),
            "snom" => Ok(Vendor::Snom),
            _ => Err(()),
        }
    }
}

/// One physical phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handset {
    pub vendor: Vendor,
    pub model: String,
    pub firmware: String,
    pub mac: Mac,
    pub caps: Caps,
    /// The vendor came from `?vendor=`, so generated links must keep carrying it.
    pub vendor_forced: bool,
    /// The MAC came from `?mac=`, so generated links must keep carrying it.
    pub mac_from_query: bool,
}

/// Why a request could not be tied to a phone. The text is shown to whoever sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    #[error(
        "hotdesk could not identify this phone. Expected a phone User-Agent (Aastra/Mitel, Yealink, Htek, Sangoma or Snom) or ?vendor=<aastra|mitel|yealink|htek|sangoma|snom>&mac=<12 hex digits> on the URL."
    )]
    Unknown,
    #[error("unknown ?vendor= `{0}`; use aastra, mitel, yealink, htek, sangoma or snom")]
    BadVendor(String),
    #[error("{0}")]
    BadMac(#[from] BadMac),
    #[error(
        "this {0} phone did not send its MAC address; configure its URL as …/app?mac=<12 hex digits>"
    )]
    NoMac(Vendor),
    #[error("?mac= does not match the MAC in the phone's User-Agent")]
    MacMismatch,
}

/// Identifies the phone from its User-Agent and the `vendor`/`mac` query values.
pub fn identify(
    user_agent: Option<&str>,
    vendor_param: Option<&str>,
    mac_param: Option<&str>,
) -> Result<Handset, IdentifyError> {
    let forced = match vendor_param.filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<Vendor>()
                .map_err(|_| IdentifyError::BadVendor(printable(v, 32)))?,
        ),
        None => None,
    };
    let query_mac = match mac_param.filter(|m| !m.is_empty()) {
        Some(m) => Some(m.parse::<Mac>()?),
        None => None,
    };
    let info = user_agent.and_then(ua::parse);
    let (vendor, model, firmware, ua_mac) = match (forced, info) {
        (Some(v), Some(i)) if same_family(v, i.vendor) => (v, i.model, i.firmware, i.mac),
        // Another family's dialect may be forced, but the phone's own MAC still counts: a
        // forced vendor must never turn a request into one for another desk.
        (Some(v), Some(i)) => (v, String::from("unknown"), String::new(), i.mac),
        (Some(v), None) => (v, String::from("unknown"), String::new(), None),
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
    let caps = caps_for(vendor, &model, &firmware);
    Ok(Handset {
        vendor,
        model,
        firmware,
        mac,
        caps,
        vendor_forced: forced.is_some(),
        mac_from_query: ua_mac.is_none(),
    })
}

/// Client text made safe to show and to log: at most `max` characters, control characters
/// (newlines, terminal escapes) written as escapes.
pub fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect()
}

fn same_family(a: Vendor, b: Vendor) -> bool {
    a == b
        || matches!(
            (a, b),
            (Vendor::Htek, Vendor::Sangoma) | (Vendor::Sangoma, Vendor::Htek)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_fills_missing_mac_but_cannot_override_the_phone() {
        let old_snom = "Mozilla/4.0 (compatible; snom320-SIP 8.4.18 1.1.3-s)";
        assert_eq!(
            identify(Some(old_snom), None, None),
            Err(IdentifyError::NoMac(Vendor::Snom))
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
        assert_eq!(h.vendor, Vendor::Yealink);
        assert_eq!(h.mac.to_string(), "00085d30a6ce");
        assert!(!h.mac_from_query);
        assert_eq!(
            identify(Some(aastra), Some("yealink"), Some("805ec02f3c2e")),
            Err(IdentifyError::MacMismatch)
        );
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
        assert_eq!(h.vendor, Vendor::Yealink);
        assert!(h.vendor_forced);
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
