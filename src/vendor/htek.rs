//! Htek UC9xx and their Sangoma S-series OEMs: the Aastra object model unprefixed, and
//! `cfg<mac>.xml`. Sources in `vendor-xml/htek/README.md`.

use super::{Family, FileNaming, Template, TemplateVar, UaInfo, valid_model, yealink};
use crate::config::ReloadMethod;
use crate::dialect::aastra_objects::{self, ConfigItems, Flavor};
use crate::dialect::text::Charset;
use crate::dialect::{Limits, Rendered, Target};
use crate::phone::{Caps, Handset, Mac, Vendor, XML_OBJECT_LIMIT};
use crate::screen::Screen;

/// One family type, two brands: Sangoma S-series phones are Htek OEMs (same dialect,
/// templates and files), told apart only by the first User-Agent token.
pub struct Htek {
    id: &'static str,
    brand: &'static str,
}

pub static HTEK: Htek = Htek {
    id: "htek",
    brand: "Htek",
};
/// Sangoma's User-Agent is unconfirmed, so `Sangoma S500 …` is accepted in Htek's shape.
pub static SANGOMA: Htek = Htek {
    id: "sangoma",
    brand: "Sangoma",
};

const FLAVOR: Flavor = Flavor {
    prefix: "",
    softkeys_in_fields: false,
    backspace_key: false,
    destroy_on_exit: false,
    trigger_destroy: false,
    commands: yealink::commands,
    done_action_on_exit: false,
    beep_off: true,
    charset: Charset::Unicode,
    exit_submit_only: |_| false,
    config_items: ConfigItems::Yealink,
};

impl Family for Htek {
    fn id(&self) -> &'static str {
        self.id
    }

    fn kin(&self) -> &'static str {
        "htek"
    }

    /// `Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9` (Wazo provd).
    fn parse_user_agent<'a>(&self, ua: &'a str) -> Option<UaInfo<'a>> {
        let mut tokens = ua.split_ascii_whitespace();
        if !tokens.next()?.eq_ignore_ascii_case(self.brand) {
            return None;
        }
        let model = tokens.next()?;
        let firmware = tokens.next().unwrap_or_default();
        let mac = tokens.next().and_then(|t| t.parse::<Mac>().ok());
        valid_model(model).then(|| UaInfo {
            vendor: Vendor::new(self.id),
            model: model.into(),
            firmware,
            mac,
        })
    }

    fn caps(&self, _model: &str, _firmware: &str) -> Caps {
        Caps {
            softkeys: 4,
            multi_field_input: true,
            max_menu_items: 30,
            max_bytes: XML_OBJECT_LIMIT,
            submit_key: 1,
            exit_key: 4,
            fast_reboot: false,
            identities: 1,
            dynamic_sip: false,
        }
    }

    fn render(&self, screen: &Screen, target: Target<'_>, limits: Limits) -> Rendered {
        aastra_objects::render(&FLAVOR, screen, target, limits)
    }

    fn files(&self) -> FileNaming {
        FileNaming {
            prefix: "cfg",
            suffix: ".xml",
            upper: false,
        }
    }

    fn template(&self) -> Template {
        Template {
            folder: "htek",
            extension: "xml",
            source: include_str!("../../vendor-xml/htek/provision.xml.j2"),
        }
    }

    /// SIP NOTIFY `check-sync`: the mechanism the vendor documents (see the vendor README);
    /// the Execute/fragment restarts are opt-in and unverified.
    fn default_reload(&self) -> ReloadMethod {
        ReloadMethod::CheckSync
    }

    /// The hot-desk key's P-codes, line key 2 (the first after account 1's): type, mode,
    /// value, label, account, numbered as Wazo provd's `_gen_param_num` (keys 1-4:
    /// `41200 + n - 1` and +100 per field; mode `20600 + n - 1`). `dss_key` is 0 on models
    /// without line keys (Wazo `_NB_LINEKEYS`: UC802/UC803). The key's type value is the
    /// admin's `[vendors.<id>] dss_key_type`: no public source gives "XML Browser"'s.
    fn template_vars(&self, handset: &Handset) -> Vec<(&'static str, TemplateVar)> {
        const KEY: u32 = 2;
        let m = handset.model.to_ascii_uppercase();
        let has_keys = !["UC802", "UC803"].iter().any(|p| m.starts_with(p));
        let p = |base: u32| TemplateVar::Number(base + KEY - 1);
        vec![
            (
                "dss_key",
                TemplateVar::Number(if has_keys { KEY } else { 0 }),
            ),
            ("dss_type_p", p(41200)),
            ("dss_mode_p", p(20600)),
            ("dss_value_p", p(41300)),
            ("dss_label_p", p(41400)),
            ("dss_account_p", p(41500)),
        ]
    }

    /// Sangoma's browser User-Agent is unconfirmed: its key always carries the MAC.
    fn key_url_needs_mac(&self) -> bool {
        self.id == "sangoma"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hot_desk_key_uses_wazos_line_key_numbering() {
        let vars = |ua| {
            let h = crate::vendor::identify(Some(ua), None, None).unwrap();
            HTEK.template_vars(&h)
        };
        let uc903 = vars("Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9");
        let n = |v: &[(&str, TemplateVar)], k| v.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(n(&uc903, "dss_key"), TemplateVar::Number(2));
        assert_eq!(n(&uc903, "dss_type_p"), TemplateVar::Number(41201));
        assert_eq!(n(&uc903, "dss_value_p"), TemplateVar::Number(41301));
        assert_eq!(n(&uc903, "dss_label_p"), TemplateVar::Number(41401));
        assert_eq!(n(&uc903, "dss_mode_p"), TemplateVar::Number(20601));
        let uc802 = vars("Htek UC802 2.0.4.2 00:1f:c1:1c:22:aa");
        assert_eq!(n(&uc802, "dss_key"), TemplateVar::Number(0));
    }

    #[test]
    fn sangoma_s_series_is_read_like_htek() {
        let info = SANGOMA
            .parse_user_agent("Sangoma S705 2.0.4.4.58 00:1f:c1:aa:bb:cc")
            .unwrap();
        assert_eq!(info.vendor.as_str(), "sangoma");
        assert_eq!(info.model, "S705");
        assert!(
            SANGOMA
                .parse_user_agent("Sangoma S500 2.0.4.4")
                .unwrap()
                .mac
                .is_none()
        );
        assert!(HTEK.parse_user_agent("Sangoma S500 2.0.4.4").is_none());
    }
}
