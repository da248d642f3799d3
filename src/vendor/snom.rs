//! Snom (D1xx/D3xx/D7xx, older 3xx/7xx/8xx): the `SnomIPPhone*` minibrowser, `<mac>.xml`
//! settings files, up to seven identities. Sources in `vendor-xml/snom/README.md`.

use super::{Family, FileNaming, Template, TemplateVar, UaInfo, valid_model};
use crate::config::ReloadMethod;
use crate::dialect::{Limits, Rendered, Target, snom_objects};
use crate::phone::{Caps, Handset, Mac, Vendor, XML_OBJECT_LIMIT};
use crate::screen::{Action, Screen};

pub struct Snom;
pub static SNOM: Snom = Snom;

impl Family for Snom {
    fn id(&self) -> &'static str {
        "snom"
    }

    /// `Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004-g9ba52f5 000413922D24
    /// SXM:0 UXM:0)`; older firmware omits the MAC (Wazo provd).
    fn parse_user_agent<'a>(&self, ua: &'a str) -> Option<UaInfo<'a>> {
        let start = ua.find("snom")?;
        let after = &ua[start + 4..];
        let (model, rest) = after.split_once("-SIP")?;
        if !valid_model(model) {
            return None;
        }
        let mut tokens = rest
            .split(|c: char| c.is_whitespace() || c == ';' || c == ')' || c == '(')
            .filter(|t| !t.is_empty());
        let firmware = tokens.next().unwrap_or_default();
        let mac = tokens
            .filter(|t| t.len() == 12)
            .find_map(|t| t.parse::<Mac>().ok());
        Some(UaInfo {
            vendor: Vendor::new(self.id()),
            model: model.into(),
            firmware,
            mac,
        })
    }

    fn caps(&self, model: &str, _firmware: &str) -> Caps {
        Caps {
            softkeys: 4,
            // One InputToken per SnomIPPhoneInput (Snom wiki, SnomIPPhoneInput).
            multi_field_input: false,
            max_menu_items: 100,
            max_bytes: XML_OBJECT_LIMIT,
            submit_key: 1,
            exit_key: 4,
            fast_reboot: false,
            identities: identities(model),
            dynamic_sip: false,
        }
    }

    /// Fragments are documented for firmware 10 only (vendors.md S2: the v7/v8 minibrowser
    /// pages list none; `SnomIPPhoneSilent` exists "since 10.1.82.0"): older firmware gets a
    /// bare `snom://mb_exit` that leaves the browser, and applies by the check-sync NOTIFY.
    fn render(&self, screen: &Screen, target: Target<'_>, limits: Limits) -> Rendered {
        if fragments_documented(&target.handset.firmware) {
            snom_objects::render(screen, target, limits, fragment)
        } else {
            snom_objects::render(screen, target, limits, |_, _| None)
        }
    }

    fn files(&self) -> FileNaming {
        FileNaming {
            prefix: "",
            suffix: ".xml",
            upper: false,
        }
    }

    fn template(&self) -> Template {
        Template {
            folder: "snom",
            extension: "xml",
            source: include_str!("../../vendor-xml/snom/provision.xml.j2"),
        }
    }

    /// SIP NOTIFY `check-sync`: the mechanism the vendor documents (see the vendor README);
    /// the Execute/fragment restarts are opt-in and unverified.
    fn default_reload(&self) -> ReloadMethod {
        ReloadMethod::CheckSync
    }

    /// `hotdesk_fkey`: the function key (0-based `fkey idx`, as Wazo writes it) after the
    /// identities' line keys, so no identity loses its key [I: the factory line keys are
    /// the first ones, one per identity].
    fn template_vars(&self, handset: &Handset) -> Vec<(&'static str, TemplateVar)> {
        let key = u32::from(handset.caps.identities);
        vec![("hotdesk_fkey", TemplateVar::Number(key))]
    }

    /// Firmware 8 and older send no MAC in the User-Agent (Wazo provd).
    fn key_url_needs_mac(&self) -> bool {
        true
    }

    /// The PA1 paging amplifier has no display and no minibrowser; firmware before 7 reads
    /// no XML settings (Wazo provd rates it incompatible), so no login could reach it.
    fn unsupported(&self, ua: &UaInfo<'_>) -> Option<&'static str> {
        if ua.model.eq_ignore_ascii_case("PA1") {
            return Some(
                "the snom PA1 is a paging amplifier without a display or XML minibrowser; it cannot show hot-desk screens",
            );
        }
        (super::firmware_tuple(ua.firmware).0 < 7).then_some(
            "Snom firmware before 7 reads no XML settings file, so a login could never reach the phone; update the firmware",
        )
    }

    /// Its settings file is served as before (a PA1 may take its base profile from hotdesk).
    fn file_served_when_unsupported(&self, _ua: &UaInfo) -> bool {
        true
    }

    /// `check-sync;reboot=false`: the phone re-reads its settings without a restart, so a
    /// second identity's login does not cut the others' calls (Wazo provd's Snom plugin,
    /// firmware 7 to 10, `synchronize(event='check-sync;reboot=false')`; FusionPBX sends the
    /// same for its Snom `check_sync`).
    fn check_sync_reboot(&self) -> Option<bool> {
        Some(false)
    }
}

/// Snom documents `snom://` fragments for firmware 10 (see [`Snom::render`]); a forced
/// `?vendor=snom` without a Snom User-Agent (no firmware known) keeps them.
fn fragments_documented(firmware: &str) -> bool {
    firmware.is_empty() || super::firmware_tuple(firmware).0 >= 10
}

/// Users a model can hold: up to seven with log-off-one and log-off-all (Snom's hot-desk
/// model), fewer where the phone has fewer identities. The small counts follow Snom's
/// datasheets as remembered, not a stored source [I]: D1xx 2, D305/D315/D710/D712 4.
fn identities(model: &str) -> u8 {
    let m = model.to_ascii_uppercase();
    if m.starts_with("D1") {
        2
    } else if ["D305", "D315", "D710", "D712"]
        .iter()
        .any(|p| m.starts_with(p))
    {
        4
    } else {
        7
    }
}

/// One action as a `snom://mb_exit#…` fragment (Snom wiki, "Fragments"); `unregister` takes
/// the 0-based identity or -1 for all.
fn fragment(action: &Action, t: Target<'_>) -> Option<String> {
    match (action, t.reload) {
        (Action::ClearCallLists, _) => Some("calllistclear".to_owned()),
        (Action::Unregister(Some(i)), _) => Some(format!("unregister={i}")),
        (Action::Unregister(None), _) => Some("unregister=-1".to_owned()),
        (Action::Open(_), _) => None,
        // check-sync is a NOTIFY sent beside the screen, never a fragment in it.
        (Action::Reload, ReloadMethod::None | ReloadMethod::CheckSync) => None,
        (Action::Reload, _) => Some("reboot".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pa1_and_firmware_before_7_are_refused_firmware_8_is_not() {
        use crate::vendor::{IdentifyError, identify, identify_file};
        // Real UAs: Wazo provd's Snom plugin (fixtures/user-agents.toml).
        let pa1 = "Mozilla/4.0 (compatible; snomPA1-SIP 8.4.35 1.1.3-s)";
        let v6 = "Mozilla/4.0 (compatible; snom360-SIP 6.5.2; snom360 ramdisk v3.31; snom360 linux 3.25)";
        let v8 = "Mozilla/4.0 (compatible; snom320-SIP 8.4.18 1.1.3-s)";
        for ua in [pa1, v6] {
            assert!(matches!(
                identify(Some(ua), None, Some("000413aabbcc")),
                Err(IdentifyError::Unsupported(_))
            ));
            assert!(identify_file(Some(ua), None, Some("000413aabbcc")).is_ok());
        }
        assert!(identify(Some(v8), None, Some("000413aabbcc")).is_ok());
        assert!(!fragments_documented("8.7.5.35") && fragments_documented("10.1.33.33"));
        assert_eq!(SNOM.check_sync_reboot(), Some(false));
    }

    #[test]
    fn identities_per_model_and_the_key_after_them() {
        assert_eq!(SNOM.caps("D785", "10.1").identities, 7);
        assert_eq!(SNOM.caps("D120", "10.1").identities, 2);
        assert_eq!(SNOM.caps("D315", "10.1").identities, 4);
        let h = crate::vendor::identify(
            Some("Mozilla/4.0 (compatible; snomD120-SIP 10.1.33.33 x 000413922D24)"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            SNOM.template_vars(&h),
            [("hotdesk_fkey", TemplateVar::Number(2))]
        );
    }
}
