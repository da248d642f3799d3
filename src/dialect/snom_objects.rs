//! The Snom XML minibrowser: `SnomIPPhoneMenu`, `SnomIPPhoneInput`, `SnomIPPhoneText`.
//! Snom has no Execute object; phone commands are `snom://` fragment URLs (Snom wiki,
//! "Fragments"), fetched here with a `Fetch` subtag.

use std::io;

use quick_xml::Writer;
use quick_xml::events::BytesText;

use super::text::display;
use super::{Limits, Rendered, Target, document, leaf};
use crate::screen::{Action, Apply, Input, Menu, Message, Screen};

/// The text that Snom replaces by what the user typed, one per input item.
const TOKENS: [&str; 5] = ["__X__", "__Y__", "__Z__", "__V__", "__W__"];

/// An action as a `snom://mb_exit#` fragment, or nothing (the vendor module decides).
pub type Fragment = fn(&Action, Target<'_>) -> Option<String>;

pub fn render(screen: &Screen, t: Target<'_>, lim: Limits, fragment: Fragment) -> Rendered {
    let body = match screen {
        Screen::Menu(m) => document(|w| menu(w, m, t, lim)),
        Screen::Input(i) => document(|w| input(w, i, t, lim)),
        Screen::Message(m) => document(|w| message(w, m, t, lim)),
        Screen::Apply(a) => document(|w| apply(w, a, t, fragment)),
        // Snom phones take settings from their settings file; nothing to push live.
        Screen::Configuration(_) => document(|w| {
            apply(
                w,
                &Apply {
                    actions: Vec::new(),
                    grant: None,
                },
                t,
                fragment,
            )
        }),
    };
    Rendered {
        body,
        refresh: None,
    }
}

fn menu(w: &mut Writer<Vec<u8>>, m: &Menu, t: Target<'_>, lim: Limits) -> io::Result<()> {
    let items = &m.items[..m.items.len().min(lim.items)];
    w.create_element("SnomIPPhoneMenu")
        .write_inner_content(|w| {
            leaf(w, "Title", &display(&m.title, lim.title, false))?;
            for item in items {
                w.create_element("MenuItem").write_inner_content(|w| {
                    leaf(w, "Name", &display(&item.label, lim.label, false))?;
                    leaf(w, "URL", &item.link.absolute(t.base))
                })?;
            }
            Ok(())
        })?;
    Ok(())
}

fn input(w: &mut Writer<Vec<u8>>, i: &Input, t: Target<'_>, lim: Limits) -> io::Result<()> {
    let fields = &i.fields[..i.fields.len().min(TOKENS.len())];
    // Snom substitutes the token inside the URL instead of appending a parameter.
    let mut url = i.submit.absolute(t.base);
    for (field, token) in fields.iter().zip(TOKENS) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(field.param);
        url.push('=');
        url.push_str(token);
    }
    w.create_element("SnomIPPhoneInput")
        .write_inner_content(|w| {
            leaf(w, "Title", &display(&i.title, lim.title, false))?;
            leaf(w, "Url", &url)?;
            for (field, token) in fields.iter().zip(TOKENS) {
                // `pn`: numeric password, `n`: number (Snom wiki, SnomIPPhoneInput).
                let flags = match (field.numeric, field.secret) {
                    (true, true) => "pn",
                    (true, false) => "n",
                    (false, true) => "p",
                    (false, false) => "a",
                };
                // DisplayName is what the phone shows as the title; `Title` has no effect
                // (Snom wiki, SnomIPPhoneInput), so a single field carries the title too.
                let name = if fields.len() == 1 && !field.prompt.starts_with(i.title.trim()) {
                    format!("{} - {}", i.title.trim(), field.prompt)
                } else {
                    field.prompt.clone()
                };
                w.create_element("InputItem").write_inner_content(|w| {
                    leaf(w, "DisplayName", &display(&name, lim.label, false))?;
                    leaf(w, "InputToken", token)?;
                    leaf(w, "DefaultValue", "")?;
                    leaf(w, "InputFlags", flags)
                })?;
            }
            Ok(())
        })?;
    Ok(())
}

fn message(w: &mut Writer<Vec<u8>>, m: &Message, t: Target<'_>, lim: Limits) -> io::Result<()> {
    w.create_element("SnomIPPhoneText")
        .write_inner_content(|w| {
            leaf(w, "Title", &display(&m.title, lim.title, false))?;
            leaf(w, "Text", &display(&m.text, lim.text, true))?;
            if let Some(next) = &m.next {
                let url = next.link.absolute(t.base);
                if next.after_secs > 0 {
                    let ms = (next.after_secs * 1000).to_string();
                    w.create_element("Fetch")
                        .with_attribute(("mil", ms.as_str()))
                        .write_text_content(BytesText::new(&url))?;
                }
                softkey(w, "F1", "OK", &url)?;
            }
            Ok(())
        })?;
    Ok(())
}

fn softkey(w: &mut Writer<Vec<u8>>, key: &str, label: &str, url: &str) -> io::Result<()> {
    w.create_element("SoftKeyItem").write_inner_content(|w| {
        leaf(w, "Name", key)?;
        leaf(w, "Label", label)?;
        leaf(w, "URL", url)
    })?;
    Ok(())
}

/// Phone commands as one fragment URL: `snom://mb_exit#calllistclear&reboot`.
fn apply(w: &mut Writer<Vec<u8>>, a: &Apply, t: Target<'_>, fragment: Fragment) -> io::Result<()> {
    let fragments: Vec<String> = a.actions.iter().filter_map(|x| fragment(x, t)).collect();
    w.create_element("SnomIPPhoneText")
        .write_inner_content(|w| {
            leaf(w, "Title", "hotdesk")?;
            leaf(w, "Text", "Please wait...")?;
            let url = if fragments.is_empty() {
                "snom://mb_exit".to_owned()
            } else {
                format!("snom://mb_exit#{}", fragments.join("&"))
            };
            w.create_element("Fetch")
                .with_attribute(("mil", "100"))
                .write_text_content(BytesText::new(&url))?;
            Ok(())
        })?;
    Ok(())
}
