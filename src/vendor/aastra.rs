//! Aastra and Mitel SIP phones (67xx, 68xx, 69xx): `AastraIPPhone*` objects, `<MAC>.cfg`,
//! Execute commands, and the live configuration push where the firmware has dynamic SIP.
//! Sources in `vendor-xml/aastra/README.md`.

use super::{Family, FileNaming, Template, TemplateVar, UaInfo, firmware_tuple};
use crate::config::ReloadMethod;
use crate::dialect::aastra_objects::{self, ConfigItems, Flavor};
use crate::dialect::text::Charset;
use crate::dialect::{Limits, Rendered, Target};
use crate::phone::{Caps, Handset, Mac, Vendor, XML_OBJECT_LIMIT};
use crate::screen::{Action, Link, Screen};

pub struct Aastra;
pub static AASTRA: Aastra = Aastra;

const FLAVOR: Flavor = Flavor {
    prefix: "AastraIPPhone",
    softkeys_in_fields: true,
    backspace_key: true,
    destroy_on_exit: true,
    trigger_destroy: true,
    commands,
    done_action_on_exit: true,
    beep_off: false,
    charset: Charset::Latin1,
    exit_submit_only,
    config_items: ConfigItems::Aastra,
};

/// Items per `AastraIPPhoneConfiguration` page, as Aastra's own scripts page them.
const PUSH_PAGE: usize = 30;
/// Bytes the items of one page may take, escaped, leaving room for the declaration and
/// the root element within the phone's 10 000 bytes per object (AXAPI p.40).
const PUSH_PAGE_BYTES: usize = XML_OBJECT_LIMIT - 400;
/// Longest pushed value: one setting can never fill a page on its own.
const PUSH_VALUE_MAX: usize = 1000;
/// Pages a push may have: the Execute that fetches them (twice on 3.2.1) stays small.
const PUSH_MAX_PAGES: usize = 16;

/// The 6739i takes only `SoftKey:Exit` and `SoftKey:Submit` as special softkeys (AXAPI
/// p.158-159).
fn exit_submit_only(h: &Handset) -> bool {
    h.model.eq_ignore_ascii_case("6739i")
}

/// Firmware 3.2.1 needs every configuration page sent twice (Aastra's own scripts:
/// "3.2.1 bug double all the configuration messages", `startup.php`, `logout.php`).
fn doubles_push_pages(firmware: &str) -> bool {
    let (a, b, c) = firmware_tuple(firmware);
    (a, b, c) == (3, 2, 1)
}

impl Family for Aastra {
    fn id(&self) -> &'static str {
        "aastra"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["mitel"]
    }

    /// `Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP`, `Mitel6930 MAC:… V:…-SIP`,
    /// `MitelMINET_6930 MAC:…` (AXAPI p.197; Mitel's PHP `Aastra_decode_HTTP_header`).
    fn parse_user_agent<'a>(&self, ua: &'a str) -> Option<UaInfo<'a>> {
        let (head, rest) = ua.split_once(" MAC:")?;
        let (minet, model) = match head.strip_prefix("MitelMINET_") {
            Some(m) => (true, m),
            None => (
                false,
                head.strip_prefix("Aastra")
                    .or_else(|| head.strip_prefix("Mitel"))?,
            ),
        };
        if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        // MiNET phones keep the prefix in their model, so `unsupported` can refuse them.
        let model = if minet {
            format!("{MINET}{model}").into()
        } else {
            model.into()
        };
        let mut tokens = rest.split_ascii_whitespace();
        let mac = tokens.next()?.parse::<Mac>().ok();
        let firmware = tokens
            .find_map(|t| t.strip_prefix("V:"))
            .map(|v| v.trim_end_matches("-SIP"))
            .unwrap_or_default();
        Some(UaInfo {
            vendor: Vendor::new(self.id()),
            model,
            firmware,
            mac,
        })
    }

    /// MiNET firmware registers to MiVoice Business, not SIP: neither the SIP `<MAC>.cfg`
    /// nor the push can put a user on it (Mitel's PHP `Aastra_decode_HTTP_header` sets
    /// `minet` for this prefix).
    fn unsupported(&self, ua: &UaInfo<'_>) -> Option<&'static str> {
        ua.model.starts_with(MINET).then_some(
            "MiNET firmware registers to MiVoice Business, not SIP; hotdesk logs in SIP phones only (install the SIP firmware)",
        )
    }

    /// `aastra.cfg` and `<model>.cfg` (`6737i.cfg`, `6930.cfg`, `9480iCT.cfg`): every phone
    /// reads them before `<MAC>.cfg` from its one configuration server (SIP admin guide
    /// 41-001343-01 p.1-43; Wazo ships a common `aastra.cfg`).
    fn shared_file(&self, name: &str) -> bool {
        let Some(stem) = name.strip_suffix(".cfg") else {
            return false;
        };
        if stem == "aastra" {
            return true;
        }
        let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
        let rest = &stem[digits..];
        (2..=4).contains(&digits)
            && ["", "i", "iCT", "CT"]
                .iter()
                .any(|s| rest.eq_ignore_ascii_case(s))
    }

    /// After a logout the login menu opens at once, as Aastra's own `logout.php` ends its
    /// configuration pages with the `action uri startup` entry.
    fn push_finish(&self, logged_out: bool) -> Vec<Action> {
        if logged_out {
            vec![Action::Open(Link::new("/app"))]
        } else {
            Vec::new()
        }
    }

    /// `hotdesk_key`: `prgkey1` on models without display softkeys, `softkey1` elsewhere
    /// (Aastra SIP admin guide 41-001343-01 p.5-59; AXAPI p.174; Wazo's `_MODELS`).
    fn template_vars(&self, handset: &Handset) -> Vec<(&'static str, TemplateVar)> {
        let key = if handset.caps.softkeys == 0 {
            "prgkey1"
        } else {
            "softkey1"
        };
        vec![("hotdesk_key", TemplateVar::Text(key))]
    }

    fn caps(&self, model: &str, firmware: &str) -> Caps {
        let model = model.to_ascii_lowercase();
        let m = model.as_str();
        // Softkey counts and multi-field support per Mitel's PHP classes
        // (Aastra_number_softkeys_supported, Aastra_is_multipleinputfields_supported).
        let softkeys = match m {
            "6730i" | "6731i" | "6753i" | "6863i" | "6865i" | "9143i" | "9112i" | "9133i"
            | "53i" | "6905" | "6910" => 0,
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
            // (AXAPI p.199), at 10 on ten-key phones (Aastra's `login.php`), and on the 6867i
            // at 4, its last physical key (Mitel PHP `Aastra_number_physical_softkeys_supported`;
            // the 6869i's fifth key would collide with Submit, so it keeps 6).
            submit_key: if m == "6867i" { 2 } else { 5 },
            exit_key: match (m, softkeys) {
                ("6867i", _) => 4,
                (_, 10) => 10,
                _ => 6,
            },
            fast_reboot: fw >= (2, 0, 2),
            identities: 1,
            // The 6739i only from 3.2.1: Aastra's scripts enable it from 3.2.0 and add a
            // re-register step before 3.2.1, which hotdesk does not do (FastReboot instead).
            dynamic_sip: fw >= (2, 5, 0) && m != "8000i" && (m != "6739i" || fw >= (3, 2, 1)),
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

    fn charset(&self) -> Charset {
        FLAVOR.charset
    }

    fn live_push(&self) -> bool {
        true
    }

    /// The phone's own `<MAC>.cfg` as `key: value` settings, in pages of at most
    /// [`PUSH_PAGE`] settings and [`PUSH_PAGE_BYTES`], so every page is one object the
    /// phone accepts. A `^` (reset a local value, in the file) is not part of the name.
    fn push_pages(&self, file: &str) -> Option<Vec<Vec<(String, String)>>> {
        let mut pages: Vec<Vec<(String, String)>> = Vec::new();
        let mut bytes = 0;
        let settings = file
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| {
                let key = k.trim().trim_start_matches('^').trim();
                (clip_bytes(key, 200), clip_bytes(v.trim(), PUSH_VALUE_MAX))
            });
        for (key, value) in settings {
            let size = item_bytes(&key, &value);
            let full = pages
                .last()
                .is_none_or(|p| p.len() >= PUSH_PAGE || bytes + size > PUSH_PAGE_BYTES);
            if full {
                if pages.len() == PUSH_MAX_PAGES {
                    tracing::error!(
                        pages = PUSH_MAX_PAGES,
                        "the configuration file has more settings than a push can carry; the rest is left out"
                    );
                    break;
                }
                pages.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            pages.last_mut().expect("a page").push((key, value));
        }
        Some(pages)
    }
}

const MINET: &str = "MINET_";

/// `text` cut to at most `max` bytes on a character boundary.
fn clip_bytes(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Upper bound of one `ConfigurationItem` written out: every byte escaped at worst 6 bytes
/// (`&quot;`), plus the element tags and indentation.
fn item_bytes(key: &str, value: &str) -> usize {
    (key.len() + value.len()) * 6 + 100
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Execute commands (AXAPI p.151-152; the Aastra scripts' logout.php), and the no-reboot
/// push where the firmware has dynamic SIP.
fn commands(action: &Action, t: Target<'_>, grant: Option<&str>) -> Vec<String> {
    let caps = &t.handset.caps;
    match (action, t.reload) {
        // Firmware 2.3.0 and later (Aastra's `Aastra_is_local_reset_supported`); the local
        // directory too, as Aastra's own `logout.php` does (AXAPI p.151).
        (Action::ClearCallLists, _) if firmware_tuple(&t.handset.firmware) >= (2, 3, 0) => strs(&[
            "Command: ClearCallersList",
            "Command: ClearDirectory",
            "Command: ClearRedialList",
        ]),
        (Action::ClearCallLists, _) => Vec::new(),
        // One identity per phone: the reload re-registers from the new configuration.
        (Action::Unregister(_), _) => Vec::new(),
        (Action::Open(link), _)
            if link.path == "/app/push"
                && link.query.iter().any(|(k, _)| *k == "page")
                && doubles_push_pages(&t.handset.firmware) =>
        {
            vec![link.absolute(t.base); 2]
        }
        (Action::Open(link), _) => vec![link.absolute(t.base)],
        // check-sync is a NOTIFY sent beside the screen, never a command in it.
        (Action::Reload, ReloadMethod::None | ReloadMethod::CheckSync) => Vec::new(),
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
    fn site_and_model_files_are_shared_files() {
        for name in [
            "aastra.cfg",
            "6737i.cfg",
            "6867i.cfg",
            "55i.cfg",
            "6930.cfg",
            "9480iCT.cfg",
        ] {
            assert!(AASTRA.shared_file(name), "{name}");
        }
        for name in [
            "00085D30A6CE.cfg",
            "000856123456.cfg",
            "aastra.xml",
            "6737x.cfg",
            "6737i.cfg.bak",
            "y000000000028.cfg",
            "../aastra.cfg",
            "é.cfg",
        ] {
            assert!(!AASTRA.shared_file(name), "{name}");
        }
    }

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

    fn handset(ua: &str) -> Handset {
        crate::vendor::identify(Some(ua), None, None).unwrap()
    }

    #[test]
    fn the_hot_desk_key_is_a_programmable_key_where_the_model_has_no_softkeys() {
        for (ua, key) in [
            (
                "Aastra6731i MAC:00-08-5D-23-74-29 V:3.2.0.70-SIP",
                "prgkey1",
            ),
            (
                "Aastra6863i MAC:00-08-5D-23-74-29 V:4.1.0.128-SIP",
                "prgkey1",
            ),
            ("Mitel6910 MAC:00-08-5D-23-74-29 V:5.1.0.128-SIP", "prgkey1"),
            (
                "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP",
                "softkey1",
            ),
            (
                "Mitel6930 MAC:14-00-E9-00-00-01 V:6.4.0.140-SIP",
                "softkey1",
            ),
        ] {
            let vars = AASTRA.template_vars(&handset(ua));
            assert_eq!(vars, [("hotdesk_key", TemplateVar::Text(key))], "{ua}");
        }
    }

    #[test]
    fn minet_phones_are_refused_with_a_reason() {
        let e = crate::vendor::identify(
            Some("MitelMINET_6930 MAC:14-00-E9-00-00-01 V:6.4.0.140"),
            None,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(e, crate::vendor::IdentifyError::Unsupported(_)),
            "{e:?}"
        );
        assert!(e.to_string().contains("MiNET"), "{e}");
        assert!(
            crate::vendor::identify(
                Some("Mitel6930 MAC:14-00-E9-00-00-01 V:6.4.0.140-SIP"),
                None,
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn the_6739i_pushes_only_from_3_2_1_and_keeps_exit_on_its_tenth_key() {
        assert!(!AASTRA.caps("6739i", "3.0.1.2024").dynamic_sip);
        assert!(!AASTRA.caps("6739i", "3.2.0.70").dynamic_sip);
        assert!(AASTRA.caps("6739i", "3.2.1.1013").dynamic_sip);
        assert!(AASTRA.caps("6737i", "3.0.1.2024").dynamic_sip);
        assert_eq!(AASTRA.caps("6739i", "3.2.1").exit_key, 10);
        assert_eq!(AASTRA.caps("6867i", "4.2").exit_key, 4);
        for m in ["6737i", "6867i", "6869i", "6739i", "6930", "6940"] {
            let c = AASTRA.caps(m, "5.0");
            assert_ne!(c.submit_key, c.exit_key, "{m}");
            assert!(c.exit_key <= c.softkeys, "{m}");
        }
    }

    fn apply_items(ua: &str, actions: Vec<Action>) -> Vec<String> {
        let h = handset(ua);
        let t = Target {
            handset: &h,
            base: "http://h",
            reload: ReloadMethod::Push,
        };
        actions
            .iter()
            .flat_map(|a| commands(a, t, Some("g")))
            .collect()
    }

    #[test]
    fn firmware_3_2_1_fetches_every_push_page_twice() {
        let page = |n: &str| Action::Open(Link::new("/app/push").with("page", n));
        let on = |ua| apply_items(ua, vec![page("1"), page("2")]);
        assert_eq!(
            on("Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.1.1013-SIP"),
            [
                "http://h/app/push?page=1",
                "http://h/app/push?page=1",
                "http://h/app/push?page=2",
                "http://h/app/push?page=2"
            ]
        );
        assert_eq!(
            on("Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP"),
            ["http://h/app/push?page=1", "http://h/app/push?page=2"]
        );
        // The push itself is fetched once.
        let start = apply_items(
            "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.1.1013-SIP",
            vec![Action::Reload],
        );
        assert_eq!(start, ["http://h/app/push?t=g"]);
    }

    #[test]
    fn a_logout_push_ends_on_the_entry_screen() {
        assert_eq!(AASTRA.push_finish(true), [Action::Open(Link::new("/app"))]);
        assert!(AASTRA.push_finish(false).is_empty());
        let items = apply_items(
            "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP",
            AASTRA.push_finish(true),
        );
        assert_eq!(items, ["http://h/app"]);
    }

    #[test]
    fn logout_clears_the_directory_too_from_firmware_2_3_0() {
        let new = apply_items(
            "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP",
            vec![Action::ClearCallLists],
        );
        assert_eq!(
            new,
            [
                "Command: ClearCallersList",
                "Command: ClearDirectory",
                "Command: ClearRedialList"
            ]
        );
        let old = apply_items(
            "Aastra57i MAC:00-08-5D-30-A6-CE V:2.2.1.26-SIP",
            vec![Action::ClearCallLists],
        );
        assert!(old.is_empty(), "{old:?}");
    }

    #[test]
    fn a_huge_name_cannot_make_a_push_page_over_the_object_limit() {
        let name: String = "Zoë🦀\"<&".repeat(3000);
        let file = format!(
            "^sip line1 display name: {name}\n^sip line1 screen name: {name}\n^sip line1 auth name: 1001\n"
        );
        let pages = AASTRA.push_pages(&file).unwrap();
        assert_eq!(pages[0][0].0, "sip line1 display name", "no ^ in the name");
        let h = handset("Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP");
        for page in pages {
            let out = crate::vendor::render(
                &Screen::Configuration(page),
                Target {
                    handset: &h,
                    base: "http://h",
                    reload: ReloadMethod::Push,
                },
            );
            assert!(out.body.len() <= XML_OBJECT_LIMIT, "{}", out.body.len());
        }
    }
}
