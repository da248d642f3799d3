//! What each model can show: the capability table. Vendor quirks that change the screens
//! live here (and in the dialect modules), never in the flow.

use super::Vendor;

/// Per-model limits and features the dialects and the flow consult.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Programmable softkeys on the display (0 = the phone's own keys only).
    pub softkeys: u8,
    /// Whether one input screen can ask for extension and PIN together.
    pub multi_field_input: bool,
    /// Items a menu may hold.
    pub max_menu_items: usize,
    /// Largest document the phone accepts, in bytes.
    pub max_bytes: usize,
    /// Softkey position of Submit on input screens.
    pub submit_key: u8,
    /// Softkey position of Exit/Cancel.
    pub exit_key: u8,
    /// Aastra `Command: FastReboot` is available (firmware 2.0.2 and later).
    pub fast_reboot: bool,
    /// Users the phone can hold at once (Snom identities); 1 elsewhere.
    pub identities: u8,
    /// Aastra "dynamic SIP": line settings pushed by `AastraIPPhoneConfiguration` apply
    /// without a reboot (firmware 2.5.0 and later, not the 8000i; Aastra scripts).
    pub dynamic_sip: bool,
}

/// Aastra XML objects may not exceed 10000 bytes (AXAPI p.40); Yealink states the same (YXB p.9).
const XML_OBJECT_LIMIT: usize = 10_000;

/// Looks the model up; unknown models of a known vendor get that vendor's safe defaults.
pub fn caps_for(vendor: Vendor, model: &str, firmware: &str) -> Caps {
    match vendor {
        Vendor::Aastra => aastra(model, firmware),
        Vendor::Yealink => yealink(model),
        Vendor::Htek | Vendor::Sangoma => Caps {
            softkeys: 4,
            multi_field_input: true,
            max_menu_items: 30,
            max_bytes: XML_OBJECT_LIMIT,
            submit_key: 1,
            exit_key: 4,
            fast_reboot: false,
            identities: 1,
            dynamic_sip: false,
        },
        Vendor::Snom => Caps {
            softkeys: 4,
            // One InputToken per SnomIPPhoneInput (Snom wiki, SnomIPPhoneInput).
            multi_field_input: false,
            max_menu_items: 100,
            max_bytes: XML_OBJECT_LIMIT,
            submit_key: 1,
            exit_key: 4,
            fast_reboot: false,
            // Up to seven identities with log-off-one and log-off-all (Snom's hot-desk model).
            identities: 7,
            dynamic_sip: false,
        },
    }
}

fn aastra(model: &str, firmware: &str) -> Caps {
    let model = model.to_ascii_lowercase();
    let m = model.as_str();
    // Softkey counts and multi-field support per Mitel's PHP classes
    // (Aastra_number_softkeys_supported, Aastra_is_multipleinputfields_supported).
    let softkeys = match m {
        "6730i" | "6731i" | "6753i" | "6863i" | "6865i" | "9143i" | "9112i" | "9133i" | "53i" => 0,
        "6869i" | "6930" | "6930w" => 8,
        "6739i" | "8000i" | "6873i" | "6940" | "6970" => 10,
        _ => 6,
    };
    let fw = firmware_tuple(firmware);
    let multi_field_input = match m {
        "55i" | "57i" | "57ict" | "9480i" | "6755i" | "6757i" | "6757ict" => fw >= (2, 0, 2),
        "6735i" | "6737i" | "6739i" | "6867i" | "6869i" | "6873i" | "6920" | "6930" | "6930w"
        | "6940" | "6970" => true,
        _ => false,
    };
    Caps {
        softkeys,
        multi_field_input,
        // 15 menu items before firmware 2.2.0, 30 after (Aastra_max_items_textmenu).
        max_menu_items: if fw >= (2, 2, 0) { 30 } else { 15 },
        max_bytes: XML_OBJECT_LIMIT,
        // The 6867i puts Submit at position 2 (Aastra scripts), others at 5; Exit at 6 (AXAPI p.199).
        submit_key: if m == "6867i" { 2 } else { 5 },
        exit_key: 6,
        fast_reboot: fw >= (2, 0, 2),
        identities: 1,
        dynamic_sip: fw >= (2, 5, 0) && m != "8000i",
    }
}

fn yealink(model: &str) -> Caps {
    let upper = model.to_ascii_uppercase();
    // Small two-line displays: ask for one field at a time.
    let small = ["T19", "T20", "T21", "T22", "T26", "T28", "T30", "T31", "W5"]
        .iter()
        .any(|p| upper.starts_with(p));
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

/// `"3.2.2.6038"` -> `(3, 2, 2)`; anything unparsable counts as very old.
fn firmware_tuple(firmware: &str) -> (u32, u32, u32) {
    let mut parts = firmware
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aastra_table() {
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
            let c = caps_for(Vendor::Aastra, model, fw);
            assert_eq!(
                (c.softkeys, c.multi_field_input, c.fast_reboot),
                (softkeys, multi, fast),
                "{model} {fw}"
            );
        }
        assert_eq!(caps_for(Vendor::Aastra, "6867i", "4.2").submit_key, 2);
        assert_eq!(caps_for(Vendor::Aastra, "57i", "2.1.0").max_menu_items, 15);
    }

    #[test]
    fn yealink_small_screens_ask_one_field_at_a_time() {
        assert!(!caps_for(Vendor::Yealink, "T21P_E2", "52.80").multi_field_input);
        assert!(caps_for(Vendor::Yealink, "T46S", "66.86").multi_field_input);
    }
}
