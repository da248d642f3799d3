//! Every screen the hot-desk flow shows, as pure functions of plain data. The flow picks
//! which; golden tests render each one for every dialect.

use std::time::Duration;

use crate::screen::{
    Action, Apply, Field, Input, Link, Menu, MenuItem, Message, Next, Screen, Tone,
};

/// Seconds a success screen stays before the phone applies its new configuration.
pub const APPLY_AFTER_SECS: u32 = 3;

pub fn choose_network(networks: &[(String, String, Link)], default_index: usize) -> Screen {
    Screen::Menu(Menu {
        title: "Hot desk: log in via".into(),
        items: networks
            .iter()
            .map(|(_, label, link)| MenuItem {
                label: label.clone(),
                link: link.clone(),
            })
            .collect(),
        default_index,
    })
}

fn extension_field() -> Field {
    Field {
        prompt: "Extension:".into(),
        param: "ext",
        numeric: true,
        secret: false,
    }
}

fn pin_field() -> Field {
    Field {
        prompt: "PIN:".into(),
        param: "pin",
        numeric: true,
        secret: true,
    }
}

/// Extension and PIN on one screen, for phones that can show two fields.
pub fn credentials(submit: Link) -> Screen {
    Screen::Input(Input {
        title: "Hot desk login".into(),
        fields: vec![extension_field(), pin_field()],
        submit,
    })
}

/// Step 1 of 2 on phones with one field per screen.
pub fn ask_extension(submit: Link) -> Screen {
    Screen::Input(Input {
        title: "Hot desk login".into(),
        fields: vec![extension_field()],
        submit,
    })
}

/// Step 2 of 2: the extension travels in `submit`, the PIN only in the phone's request.
pub fn ask_pin(extension: &str, submit: Link) -> Screen {
    Screen::Input(Input {
        title: format!("PIN for {extension}"),
        // Phones without softkeys do not show an input's title (AXAPI p.100): the prompt
        // carries the extension too.
        fields: vec![Field {
            prompt: format!("PIN for {extension}:"),
            ..pin_field()
        }],
        submit,
    })
}

/// The label of the menu item that leads to [`ask_code`].
pub const CODE_ITEM: &str = "Log in with a code";

/// A one-time login code instead of extension and PIN (one numeric field).
pub fn ask_code(submit: Link) -> Screen {
    Screen::Input(Input {
        title: "Log in with a code".into(),
        fields: vec![Field {
            prompt: "One-time code:".into(),
            param: "code",
            numeric: true,
            secret: true,
        }],
        submit,
    })
}

/// A code that was wrong, used, or expired (which of them is not said).
pub fn wrong_code(tries_left: u32, retry: Link) -> Screen {
    let tries = match tries_left {
        1 => "1 try left".to_owned(),
        n => format!("{n} tries left"),
    };
    message(
        "Login failed",
        format!("Wrong, used or expired code, {tries}."),
        Tone::Error,
        Some(Next {
            link: retry,
            after_secs: 0,
        }),
    )
}

pub fn logged_in_menu(extension: &str, name: &str, logout: Link, switch: Link) -> Screen {
    Screen::Menu(Menu {
        title: format!("{extension} {name}"),
        items: vec![
            MenuItem {
                label: "Log out".into(),
                link: logout,
            },
            MenuItem {
                label: "Log in as someone else".into(),
                link: switch,
            },
        ],
        default_index: 1,
    })
}

fn message(title: &str, text: String, tone: Tone, next: Option<Next>) -> Screen {
    Screen::Message(Message {
        title: title.into(),
        text,
        tone,
        next,
    })
}

/// What the phone does after its success screen, so the screen says it honestly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyEffect {
    /// It restarts (a reboot, or a check-sync that reboots).
    Restart,
    /// It loads the new settings without restarting (Aastra push, a re-read).
    Live,
    /// hotdesk sends nothing; the phone changes when it next checks its configuration.
    Later,
}

pub fn logged_in(
    extension: &str,
    name: &str,
    network_label: &str,
    apply: Link,
    effect: ApplyEffect,
) -> Screen {
    let then = match effect {
        ApplyEffect::Restart => "It restarts to load your settings.",
        ApplyEffect::Live => "Your settings load in a moment.",
        ApplyEffect::Later => "Your settings load when the phone next checks its configuration.",
    };
    message(
        "Logged in",
        format!(
            "Welcome, {name}. Extension {extension} ({network_label}) is now on this phone. {then}"
        ),
        Tone::Success,
        Some(Next {
            link: apply,
            after_secs: APPLY_AFTER_SECS,
        }),
    )
}

pub fn logged_out(extension: &str, apply: Link, effect: ApplyEffect) -> Screen {
    let then = match effect {
        ApplyEffect::Restart => "It restarts with the shared profile.",
        ApplyEffect::Live => "It goes back to the shared profile in a moment.",
        ApplyEffect::Later => {
            "It goes back to the shared profile when it next checks its configuration."
        }
    };
    message(
        "Logged out",
        format!("Extension {extension} has left this phone. {then}"),
        Tone::Success,
        Some(Next {
            link: apply,
            after_secs: APPLY_AFTER_SECS,
        }),
    )
}

pub fn not_logged_in(back: Link) -> Screen {
    message(
        "Not logged in",
        "Nobody is logged in on this phone.".into(),
        Tone::Info,
        Some(Next {
            link: back,
            after_secs: 0,
        }),
    )
}

/// The same text for an unknown extension and a wrong PIN, so neither can be probed.
pub fn wrong_credentials(tries_left: u32, retry: Link) -> Screen {
    let tries = match tries_left {
        1 => "1 try left".to_owned(),
        n => format!("{n} tries left"),
    };
    message(
        "Login failed",
        format!("Wrong extension or PIN, {tries}."),
        Tone::Error,
        Some(Next {
            link: retry,
            after_secs: 0,
        }),
    )
}

pub fn locked_out(wait: Duration) -> Screen {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let when = match minutes {
        1 => "1 minute".to_owned(),
        n => format!("{n} minutes"),
    };
    message(
        "Login locked",
        format!("Too many failed attempts. Try again in {when}."),
        Tone::Error,
        None,
    )
}

pub fn too_many_devices(extension: &str, max: usize) -> Screen {
    message(
        "Login refused",
        format!(
            "Extension {extension} is already logged in on {max} phones, the most allowed. Log out on one of them first."
        ),
        Tone::Error,
        None,
    )
}

pub fn missing(what: &str, retry: Link) -> Screen {
    message(
        "Login",
        format!("Please enter your {what}."),
        Tone::Error,
        Some(Next {
            link: retry,
            after_secs: 0,
        }),
    )
}

pub fn unknown_network(back: Link) -> Screen {
    message(
        "Login",
        "That network is not configured any more. Please choose again.".into(),
        Tone::Error,
        Some(Next {
            link: back,
            after_secs: 0,
        }),
    )
}

/// The directory knows the user but has no SIP secret for them (an adhoc device, a
/// mailbox without a line): a login would leave the phone unregistered.
pub fn no_line(extension: &str) -> Screen {
    message(
        "Login refused",
        format!("Extension {extension} has no phone line set up. Ask your administrator."),
        Tone::Error,
        None,
    )
}

pub fn try_later(what: &str) -> Screen {
    message(
        "Please try later",
        format!("{what} Please try again in a minute."),
        Tone::Error,
        None,
    )
}

pub fn apply(actions: Vec<Action>) -> Screen {
    Screen::Apply(Apply {
        actions,
        grant: None,
    })
}

/// A phone holding several users (Snom identities): log one off, all off, or add one.
pub fn identities_menu(
    logins: &[(String, String, Link)],
    log_off_all: Link,
    add: Option<Link>,
) -> Screen {
    let mut items: Vec<MenuItem> = logins
        .iter()
        .map(|(ext, name, link)| MenuItem {
            label: format!("Log off {ext} {name}"),
            link: link.clone(),
        })
        .collect();
    if logins.len() > 1 {
        items.push(MenuItem {
            label: "Log off all".into(),
            link: log_off_all,
        });
    }
    if let Some(add) = add {
        items.push(MenuItem {
            label: "Log in another user".into(),
            link: add,
        });
    }
    Screen::Menu(Menu {
        title: match logins.len() {
            1 => "Hot desk: 1 user".to_owned(),
            n => format!("Hot desk: {n} users"),
        },
        items,
        default_index: 1,
    })
}

pub fn no_free_identity(max: u8) -> Screen {
    message(
        "Login refused",
        format!("All {max} identities of this phone are in use. Log one off first."),
        Tone::Error,
        None,
    )
}

pub fn logged_off_one(extension: &str, apply: Link) -> Screen {
    message(
        "Logged off",
        format!("Extension {extension} has left this phone."),
        Tone::Success,
        Some(Next {
            link: apply,
            after_secs: APPLY_AFTER_SECS,
        }),
    )
}

/// Logging out from the phone needs the user's PIN (`logout_requires_pin`).
pub fn ask_logout_pin(extension: &str, submit: Link) -> Screen {
    Screen::Input(Input {
        title: format!("Log out {extension}"),
        fields: vec![pin_field()],
        submit,
    })
}

pub fn logout_refused() -> Screen {
    message(
        "Logout refused",
        "This phone's network address changed since the login, so hotdesk cannot tell it is the same phone. Ask your administrator to log it out, or log in again.".into(),
        Tone::Error,
        None,
    )
}

/// The step outlived the phone's patience but goes on; the phone is not told an outcome
/// that might not be the one recorded.
pub fn still_working() -> Screen {
    message(
        "Please wait",
        "hotdesk is busy and still working on this. Press the app key again in a moment to see whether it went through.".into(),
        Tone::Error,
        None,
    )
}

/// Someone else is logged in on this phone from another address: a login from here would
/// log them out, which only their own phone (or an admin) may do.
pub fn replace_refused() -> Screen {
    message(
        "Login refused",
        "Someone is logged in on this phone from another network address. Ask your administrator to log them out first.".into(),
        Tone::Error,
        None,
    )
}
