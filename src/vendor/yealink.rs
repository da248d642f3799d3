//! Yealink (T2x/T4x/T5x, CP, VP, W): the Aastra object model as `YealinkIPPhone*`, and
//! `<mac>.cfg`. Sources in `vendor-xml/yealink/README.md`.

use super::{
    Family, FileNaming, Template, TemplateVar, UaInfo, firmware_tuple, strip_prefix_ci, valid_model,
};
use crate::config::ReloadMethod;
use crate::dialect::aastra_objects::{self, ConfigItems, Flavor};
use crate::dialect::text::Charset;
use crate::dialect::{Limits, Rendered, Target};
use crate::phone::{Caps, Handset, Mac, Vendor, XML_OBJECT_LIMIT};
use crate::screen::{Action, Screen};

pub struct Yealink;
pub static YEALINK: Yealink = Yealink;

const FLAVOR: Flavor = Flavor {
    prefix: "YealinkIPPhone",
    softkeys_in_fields: false,
    backspace_key: false,
    destroy_on_exit: true,
    trigger_destroy: false,
    commands,
    done_action_on_exit: false,
    beep_off: true,
    charset: Charset::Unicode,
    exit_submit_only: |_| false,
    config_items: ConfigItems::Yealink,
};

impl Family for Yealink {
    fn id(&self) -> &'static str {
        "yealink"
    }

    /// `Yealink SIP-T46G 28.72.0.1 00:15:65:4a:a9:37`, `yealink SIP-T28P …`,
    /// `Yealink SIP VP-T49G …`, `Yealink CP860 …`, `Yealink-T46G 28.71.0.81 …` (Wazo provd).
    fn parse_user_agent<'a>(&self, ua: &'a str) -> Option<UaInfo<'a>> {
        let rest = strip_prefix_ci(ua, "yealink-")
            .or_else(|| strip_prefix_ci(ua, "yealink "))
            .or_else(|| {
                (strip_prefix_ci(ua, "vp530").is_some() || strip_prefix_ci(ua, "w52p").is_some())
                    .then_some(ua)
            })?;
        let mut tokens = rest.split_ascii_whitespace();
        let mut raw_model = tokens.next()?;
        // "SIP VP-T49G" is split in two tokens.
        if raw_model.eq_ignore_ascii_case("SIP") {
            raw_model = tokens.next()?;
        }
        let model = strip_prefix_ci(raw_model, "SIP-")
            .or_else(|| strip_prefix_ci(raw_model, "VP-"))
            .unwrap_or(raw_model);
        let firmware = tokens.next().unwrap_or_default();
        let mac = tokens.next().and_then(|t| t.parse::<Mac>().ok());
        valid_model(model).then(|| UaInfo {
            vendor: Vendor::new(self.id()),
            model: model.into(),
            firmware,
            mac,
        })
    }

    fn caps(&self, model: &str, _firmware: &str) -> Caps {
        // Small two-line displays: ask for one field at a time.
        let small = ["T19", "T20", "T21", "T22", "T26", "T28", "T30", "T31", "W5"]
            .iter()
            .any(|p| strip_prefix_ci(model, p).is_some());
        Caps {
            softkeys: 4,
            multi_field_input: !small,
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
            prefix: "",
            suffix: ".cfg",
            upper: false,
        }
    }

    fn template(&self) -> Template {
        Template {
            folder: "yealink",
            extension: "cfg",
            source: include_str!("../../vendor-xml/yealink/provision.cfg.j2"),
        }
    }

    /// DECT bases (W52P, W60B, W70B, W80B/W80DM, W90B/W90DM …: every Yealink `W<digits>` that
    /// sends HTTP requests) have no XML browser for hot-desk screens; their handsets are
    /// registered to the base, not logged in at a desk.
    fn unsupported(&self, ua: &UaInfo<'_>) -> Option<&'static str> {
        is_dect_base(&ua.model)
            .then_some("Yealink W-series DECT bases have no XML browser for hot-desk screens")
    }

    /// A DECT base that takes its base profile from hotdesk keeps getting it.
    fn file_served_when_unsupported(&self, ua: &UaInfo<'_>) -> bool {
        is_dect_base(&ua.model)
    }

    /// SIP NOTIFY `check-sync`: the mechanism the vendor documents (see the vendor README);
    /// the Execute/fragment restarts are opt-in and unverified.
    fn default_reload(&self) -> ReloadMethod {
        ReloadMethod::CheckSync
    }

    /// `hotdesk_key`: line key 2 (XML Browser, type 27), or programmable key 2 on models
    /// without line keys (Wazo `_NB_LINEKEY`: T19P/T19P_E2, CP860/CP920/CP960, W52P = 0;
    /// `programablekey.2` is the idle-screen key public Yealink templates use).
    /// `legacy_server_keys`: firmware V70/V71 (`<hw>.70.x.y`) names the server
    /// `account.N.sip_server_host/_port` (Wazo's XiVO v70 template), V72 and later
    /// `account.N.sip_server.1.address`.
    fn template_vars(&self, handset: &Handset) -> Vec<(&'static str, TemplateVar)> {
        let key = if has_line_keys(&handset.model) {
            "linekey.2"
        } else {
            "programablekey.2"
        };
        let (_, generation, _) = firmware_tuple(&handset.firmware);
        vec![
            ("hotdesk_key", TemplateVar::Text(key)),
            (
                "legacy_server_keys",
                TemplateVar::Flag((1..72).contains(&generation)),
            ),
        ]
    }
}

/// `W52P`, `W60B`, `W80DM` …: Yealink's DECT bases (the Wazo provd plugins list them by
/// these UAs beside the desk phones).
fn is_dect_base(model: &str) -> bool {
    let mut chars = model.chars();
    chars.next().is_some_and(|c| c.eq_ignore_ascii_case(&'W'))
        && chars.next().is_some_and(|c| c.is_ascii_digit())
}

/// Models with no line (DSS) keys beside the screen (Wazo provd `_NB_LINEKEY` = 0).
fn has_line_keys(model: &str) -> bool {
    let m = model.to_ascii_uppercase();
    !["T19", "CP860", "CP920", "CP960", "W5", "W6"]
        .iter()
        .any(|p| m.starts_with(p))
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Execute commands shared with Htek (its firmware is a Yealink descendant). Unverified by
/// a primary source: see the vendor README.
pub(super) fn commands(action: &Action, t: Target<'_>, _grant: Option<&str>) -> Vec<String> {
    match (action, t.reload) {
        // No documented Execute URI clears Yealink call lists.
        (Action::ClearCallLists, _) | (Action::Unregister(_), _) => Vec::new(),
        (Action::Open(link), _) => vec![link.absolute(t.base)],
        // check-sync is a NOTIFY sent beside the screen, never a command in it.
        (Action::Reload, ReloadMethod::None | ReloadMethod::CheckSync) => Vec::new(),
        (Action::Reload, ReloadMethod::Resync) => strs(&["Command: AutoP"]),
        (Action::Reload, _) => strs(&["Command: Reboot"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(ua: &str) -> Vec<(&'static str, TemplateVar)> {
        let h = crate::vendor::identify(Some(ua), None, Some("001565aabbcc")).unwrap();
        YEALINK.template_vars(&h)
    }

    #[test]
    fn models_without_line_keys_get_a_programmable_key() {
        let key = |ua| vars(ua)[0].clone();
        let text = |k| ("hotdesk_key", TemplateVar::Text(k));
        assert_eq!(
            key("Yealink SIP-T19P_E2 53.84.0.15"),
            text("programablekey.2")
        );
        assert_eq!(key("Yealink CP920 78.84.0.15"), text("programablekey.2"));
        assert_eq!(key("Yealink SIP-T46S 66.86.0.15"), text("linekey.2"));
    }

    #[test]
    fn v70_firmware_names_the_server_host_and_port() {
        let legacy = |ua| vars(ua)[1].clone();
        let flag = |b| ("legacy_server_keys", TemplateVar::Flag(b));
        assert_eq!(legacy("Yealink SIP-T38G  38.70.0.125"), flag(true));
        assert_eq!(legacy("yealink SIP-T28P 2.70.0.140"), flag(true));
        assert_eq!(legacy("Yealink SIP-T26P 6.72.0.30"), flag(false));
        assert_eq!(legacy("Yealink SIP-T46S 66.86.0.15"), flag(false));
    }

    #[test]
    fn dect_bases_are_refused_for_screens_and_keep_their_file() {
        // Real UAs from Wazo provd's Yealink plugins (fixtures/user-agents.toml).
        for ua in [
            "W52P 25.30.0.2 00:15:65:44:b3:7c",
            "Yealink W60B 77.81.0.35 80:5e:c0:09:ab:dc",
            "Yealink W70B 146.85.0.5 80:5e:0c:1d:65:4e",
            "Yealink W80DM 103.83.0.122 24:9a:d8:d1:a6:31",
            "Yealink W90DM 130.85.0.15 80:5e:c0:d9:c7:44",
        ] {
            assert!(
                matches!(
                    crate::vendor::identify(Some(ua), None, None),
                    Err(crate::vendor::IdentifyError::Unsupported(why)) if why.contains("DECT")
                ),
                "{ua}"
            );
            assert!(
                crate::vendor::identify_file(Some(ua), None, None).is_ok(),
                "{ua}"
            );
        }
        for ua in [
            "Yealink SIP-T46S 66.86.0.15 80:5e:c0:2f:3c:2e",
            "Yealink CP920 78.84.0.15 805ec0aabbcc",
        ] {
            assert!(
                crate::vendor::identify(Some(ua), None, None).is_ok(),
                "{ua}"
            );
        }
    }

    #[test]
    fn small_screens_ask_one_field_at_a_time() {
        assert!(!YEALINK.caps("T21P_E2", "52.80").multi_field_input);
        assert!(YEALINK.caps("T46S", "66.86").multi_field_input);
    }

    #[test]
    fn non_ascii_user_agents_are_read_without_panicking() {
        // The old prefix slicing panicked on a multi-byte character at the cut.
        assert!(YEALINK.parse_user_agent("Yealink SIPé 1 2").is_none());
        assert!(YEALINK.parse_user_agent("Yealinké").is_none());
        assert!(YEALINK.parse_user_agent("Yé").is_none());
    }
}
