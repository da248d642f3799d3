//! Each vendor's own provisioning file names, and the MAC they name.

use crate::phone::{Mac, Vendor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Aastra `<MAC>.cfg` (the phone asks in upper case).
    AastraCfg,
    /// Yealink `<mac>.cfg`.
    YealinkCfg,
    /// Htek and Sangoma S-series `cfg<mac>.xml`.
    HtekXml,
    /// Snom settings XML, `<mac>.xml` (configure `setting_server` as `…/provision/{mac}.xml`).
    SnomXml,
}

impl FileKind {
    pub fn for_vendor(v: Vendor) -> Self {
        match v {
            Vendor::Aastra => FileKind::AastraCfg,
            Vendor::Yealink => FileKind::YealinkCfg,
            Vendor::Htek | Vendor::Sangoma => FileKind::HtekXml,
            Vendor::Snom => FileKind::SnomXml,
        }
    }

    /// The file name a phone of this kind asks for.
    pub fn file_name(self, mac: Mac) -> String {
        match self {
            FileKind::AastraCfg => format!("{}.cfg", mac.to_string().to_uppercase()),
            FileKind::YealinkCfg => format!("{mac}.cfg"),
            FileKind::HtekXml => format!("cfg{mac}.xml"),
            FileKind::SnomXml => format!("{mac}.xml"),
        }
    }
}

/// The MAC a file name belongs to under `kind`'s naming, if it follows it.
pub fn parse_file_name(kind: FileKind, name: &str) -> Option<Mac> {
    let hex = match kind {
        FileKind::AastraCfg | FileKind::YealinkCfg => name.strip_suffix(".cfg")?,
        FileKind::HtekXml => name.strip_prefix("cfg")?.strip_suffix(".xml")?,
        FileKind::SnomXml => name.strip_suffix(".xml")?,
    };
    (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        let mac: Mac = "00085d30a6ce".parse().unwrap();
        for kind in [
            FileKind::AastraCfg,
            FileKind::YealinkCfg,
            FileKind::HtekXml,
            FileKind::SnomXml,
        ] {
            assert_eq!(
                parse_file_name(kind, &kind.file_name(mac)),
                Some(mac),
                "{kind:?}"
            );
        }
        assert_eq!(FileKind::AastraCfg.file_name(mac), "00085D30A6CE.cfg");
        for bad in [
            "aastra.cfg",
            "00085d30a6c.cfg",
            "00085d30a6cg.cfg",
            "../00085d30a6ce.cfg",
            "00:08:5d:30:a6:ce.cfg",
        ] {
            assert_eq!(parse_file_name(FileKind::YealinkCfg, bad), None, "{bad}");
        }
        assert_eq!(parse_file_name(FileKind::HtekXml, "00085d30a6ce.xml"), None);
    }
}
