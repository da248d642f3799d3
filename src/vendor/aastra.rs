//! Aastra and Mitel SIP phones (67xx, 68xx, 69xx): `AastraIPPhone*` objects, `<MAC>.cfg`,
//! Execute commands, and the live configuration push where the firmware has dynamic SIP.
//! Sources in `vendor-xml/aastra/README.md`.

use super::{Family, FileNaming, Template, UaInfo, firmware_tuple};
use crate::config::ReloadMethod;
use crate::dialect::aastra_objects::{self, ConfigItems, Flavor};
use crate::dialect::{Limits, Rendered, Target};
use crate::phone::{Caps, Mac, Vendor, XML_OBJECT_LIMIT};
use crate::screen::{Action, Link, Screen};

pub struct Aastra;
pub static AASTRA: Aastra = Aastra;

const FLAVOR: Flavor = Flavor {
    prefix: "AastraIPPhone",
    softkeys_in_fields: true,
    backspace_key: true,
    trigger_destroy: true,
    commands,
    config_items: ConfigItems::Aastra,
};

/// Items per `AastraIPPhoneConfiguration` page, as Aastra's own scripts page them.
const PUSH_PAGE: usize = 30;

impl Family for Aastra {
    fn id(&self) -> &'static str {
        "aastra"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["mitel"]
    }

    /// `Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP`, `Mitel6930 MAC:… V:…-SIP`,
    /// `MitelMINET_6930 MAC:…` (AXAPI p.197; Mitel's PHP `Aastra_decode_HTTP_header`).
    fn parse_user_agent(&self, ua: &str) -> Option<UaInfo> {
        let (head, rest) = ua.split_once(" MAC:")?;
        let model = head
            .strip_prefix("MitelMINET_")
            .or_else(|| head.strip_prefix("Aastra"))
            .or_else(|| head.strip_prefix("Mitel"))?;
        if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let mut tokens = rest.split_whitespace();
        let mac = tokens.next()?.parse::<Mac>().ok();
        let firmware = tokens
            .find_map(|t| t.strip_prefix("V:"))
            .map(|v| v.trim_end_matches("-SIP").to_owned())
            .unwrap_or_default();
        Some(UaInfo {
            vendor: Vendor::new(self.id()),
            model: model.to_owned(),
            firmware,
            mac,
        })
    }

    fn caps(&self, model: &str, firmware: &str) -> Caps {
        let model = model.to_ascii_lowercase();
        let m = model.as_str();
        // Softkey counts and multi-field support per Mitel's PHP classes
        // (Aastra_number_softkeys_supported, Aastra_is_multipleinputfields_supported).
        let softkeys = match m {
            "6730i" | "6731i" | "6753i" | "6863i" | "6865i" | "9143i" | "9112i" | "9133i"
            | "53i" => 0,
            "6869i" | "6930" | "6930w" => 8,
            "6739i" | "8000i" | "6873i" | "6940" | "6970" => 10,
            _ => 6,
        };
        let fw = firmware_tuple(firmware);
        let multi_field_input = match m {
            "55i" | "57i" | "57ict" | "9480i" | "6755i" | "6757i" | "6757ict" => fw >= (2, 0, 2),
            "6735i" | "6737i" | "6739i" | "6867i" | "6869i" | "6873i" | "6920" | "6930"
            | "6930w" | "6940" | "6970" => true,
            _ => false,
        };
        Caps {
            softkeys,
            multi_field_input,
            // 15 menu items before firmware 2.2.0, 30 after (Aastra_max_items_textmenu).
            max_menu_items: if fw >= (2, 2, 0) { 30 } else { 15 },
            max_bytes: XML_OBJECT_LIMIT,
            // The 6867i puts Submit at position 2 (Aastra scripts), others at 5; Exit at 6
            // (AXAPI p.199).
            submit_key: if m == "6867i" { 2 } else { 5 },
            exit_key: 6,
            fast_reboot: fw >= (2, 0, 2),
            identities: 1,
            dynamic_sip: fw >= (2, 5, 0) && m != "8000i",
        }
    }

    fn render(&self, screen: &Screen, target: Target<'_>, limits: Limits) -> Rendered {
        aastra_objects::render(&FLAVOR, screen, target, limits)
    }

    fn files(&self) -> FileNaming {
        FileNaming {
            prefix: "",
            suffix: ".cfg",
            upper: true,
        }
    }

    fn template(&self) -> Template {
        Template {
            folder: "aastra",
            extension: "cfg",
            source: include_str!("../../vendor-xml/aastra/provision.cfg.j2"),
        }
    }

    fn default_reload(&self) -> ReloadMethod {
        ReloadMethod::Push
    }

    fn live_push(&self) -> bool {
        true
    }

    /// The phone's own `<MAC>.cfg` as `key: value` settings, in pages of [`PUSH_PAGE`].
    fn push_pages(&self, file: &str) -> Option<Vec<Vec<(String, String)>>> {
        let settings: Vec<(String, String)> = file
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Some(settings.chunks(PUSH_PAGE).map(<[_]>::to_vec).collect())
    }
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Execute commands (AXAPI p.151-152; the Aastra scripts' logout.php), and the no-reboot
/// push where the firmware has dynamic SIP.
fn commands(action: &Action, t: Target<'_>, grant: Option<&str>) -> Vec<String> {
    let caps = &t.handset.caps;
    match (action, t.reload) {
        (Action::ClearCallLists, _) => {
            strs(&["Command: ClearCallersList", "Command: ClearRedialList"])
        }
        // One identity per phone: the reload re-registers from the new configuration.
        (Action::Unregister(_), _) => Vec::new(),
        (Action::Open(link), _) => vec![link.absolute(t.base)],
        (Action::Reload, ReloadMethod::None) => Vec::new(),
        (Action::Reload, ReloadMethod::Push) if caps.dynamic_sip => {
            let mut link = Link::new("/app/push");
            if let Some(g) = grant {
                link = link.with("t", g);
            }
            vec![link.absolute(t.base)]
        }
        (Action::Reload, ReloadMethod::Push | ReloadMethod::FastReboot | ReloadMethod::Resync)
            if caps.fast_reboot =>
        {
            strs(&["Command: FastReboot"])
        }
        (Action::Reload, _) => strs(&["Command: Reset"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_table() {
        let cases = [
            // model, firmware, softkeys, multi-field, fast reboot
            ("6731i", "3.2.0.70", 0, false, true),
            ("6863i", "4.1.0.128", 0, false, true),
            ("6737i", "3.2.2.6038", 6, true, true),
            ("6867i", "4.2.0.2023", 6, true, true),
            ("6739i", "3.2.1.1013", 10, true, true),
            ("6930", "6.4.0.140", 8, true, true),
            ("57i", "2.3.1.26", 6, true, true),
            ("57i", "1.4.2", 6, false, false),
        ];
        for (model, fw, softkeys, multi, fast) in cases {
            let c = AASTRA.caps(model, fw);
            assert_eq!(
                (c.softkeys, c.multi_field_input, c.fast_reboot),
                (softkeys, multi, fast),
                "{model} {fw}"
            );
        }
        assert_eq!(AASTRA.caps("6867i", "4.2").submit_key, 2);
        assert_eq!(AASTRA.caps("57i", "2.1.0").max_menu_items, 15);
    }

    #[test]
    fn push_pages_hold_at_most_thirty_settings_from_the_file() {
        let file: String = (0..65).map(|i| format!("key {i}: value {i}\n")).collect();
        let file = format!("# comment\n\n{file}sip line1 proxy ip: http://h:80\n");
        let pages = AASTRA.push_pages(&file).unwrap();
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [30, 30, 6]);
        assert_eq!(
            pages[2][5],
            ("sip line1 proxy ip".to_owned(), "http://h:80".to_owned()),
            "the value keeps its colons"
        );
    }
}
