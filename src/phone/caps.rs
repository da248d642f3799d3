//! What a phone can show and do. Each vendor module fills it in from its own table.

/// Per-model limits and features the dialects and the flow consult.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
pub const XML_OBJECT_LIMIT: usize = 10_000;
