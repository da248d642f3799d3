//! The Aastra XML object model (TextMenu, InputScreen, TextScreen, Execute), rendered under
//! three root spellings: `AastraIPPhone*` (Aastra/Mitel), `YealinkIPPhone*` (Yealink) and
//! unprefixed (Htek, Sangoma S-series). Differences between them are data in [`Flavor`].

use std::io;

use quick_xml::Writer;

use super::text::{Charset, clean, display_in};
use super::{Limits, Rendered, Target, document, leaf};
use crate::phone::{Caps, Handset};
use crate::screen::{Action, Apply, Input, Menu, Message, Screen, Tone};

/// What differs between the vendors that share the Aastra object model: each vendor module
/// holds its own.
pub struct Flavor {
    pub prefix: &'static str,
    /// Aastra's schema allows softkeys inside each `InputField` but not at the root of an
    /// InputScreen; Yealink's and Htek's samples put them at the root.
    pub softkeys_in_fields: bool,
    /// `SoftKey:BackSpace` is documented for Aastra only.
    pub backspace_key: bool,
    /// `triggerDestroyOnExit` on Execute (Aastra, AXAPI p.191).
    pub trigger_destroy: bool,
    /// `destroyOnExit="yes"` on UI objects (Aastra AXAPI p.191; Htek's attribute tables lack it).
    pub destroy_on_exit: bool,
    /// The Execute URIs for an action (the apply grant is for the live push).
    pub commands: fn(&Action, Target<'_>, Option<&str>) -> Vec<String>,
    /// `ConfigurationItem/Parameter/Value` (Aastra) or `Item` with `key = value` (Yealink).
    pub config_items: ConfigItems,
    /// `doneAction` also answers `SoftKey:Exit` (Aastra, AXAPI p.67), so a "Close" key next
    /// to it would not close.
    pub done_action_on_exit: bool,
    /// Writes `Beep="no"` where no beep is wanted: Yealink documents `Beep` on UI objects
    /// without a default, and "yes" as the default of its Status object (YXB p.9, p.29).
    pub beep_off: bool,
    /// What the display fonts show; other text is transliterated.
    pub charset: Charset,
    /// The model takes only `SoftKey:Exit` and `SoftKey:Submit` as special softkeys (the
    /// 6739i, AXAPI p.159): no Select or BackSpace keys then.
    pub exit_submit_only: fn(&Handset) -> bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ConfigItems {
    Aastra,
    Yealink,
}

struct Key {
    index: u8,
    label: &'static str,
    uri: String,
}

pub fn render(f: &Flavor, screen: &Screen, t: Target<'_>, lim: Limits) -> Rendered {
    let mut refresh = None;
    let body = match screen {
        Screen::Menu(m) => document(|w| menu(f, w, m, t, lim)),
        Screen::Input(i) => document(|w| input(f, w, i, t, lim)),
        Screen::Message(m) => {
            refresh = m
                .next
                .as_ref()
                .filter(|n| n.after_secs > 0)
                .map(|n| (n.after_secs, n.link.absolute(t.base)));
            document(|w| message(f, w, m, t, lim))
        }
        Screen::Apply(a) => document(|w| execute(f, w, a, t)),
        Screen::Configuration(items) => document(|w| configuration(f, w, items)),
    };
    Rendered { body, refresh }
}

/// `Beep="no"` where the flavour wants it said.
fn destroy(f: &Flavor) -> Option<(&'static str, &'static str)> {
    f.destroy_on_exit.then_some(("destroyOnExit", "yes"))
}

fn quiet(f: &Flavor) -> Option<(&'static str, &'static str)> {
    f.beep_off.then_some(("Beep", "no"))
}

fn root(f: &Flavor, object: &str) -> String {
    format!("{}{object}", f.prefix)
}

fn softkeys(w: &mut Writer<Vec<u8>>, caps: &Caps, keys: &[Key]) -> io::Result<()> {
    for key in keys.iter().filter(|k| k.index <= caps.softkeys) {
        w.create_element("SoftKey")
            .with_attribute(("index", key.index.to_string().as_str()))
            .write_inner_content(|w| {
                leaf(w, "Label", key.label)?;
                leaf(w, "URI", &key.uri)
            })?;
    }
    Ok(())
}

fn exit_key(caps: &Caps, label: &'static str) -> Key {
    Key {
        index: caps.exit_key,
        label,
        uri: "SoftKey:Exit".into(),
    }
}

fn menu(
    f: &Flavor,
    w: &mut Writer<Vec<u8>>,
    m: &Menu,
    t: Target<'_>,
    lim: Limits,
) -> io::Result<()> {
    let caps = &t.handset.caps;
    // Never more items than the phone takes (30 on current Aastra firmware, AXSD maxOccurs).
    let items = &m.items[..m.items.len().min(lim.items)];
    let default_index = m.default_index.clamp(1, items.len().max(1)).to_string();
    w.create_element(root(f, "TextMenu").as_str())
        .with_attributes(destroy(f))
        .with_attributes(quiet(f))
        .with_attribute(("defaultIndex", default_index.as_str()))
        .write_inner_content(|w| {
            leaf(
                w,
                "Title",
                &display_in(&m.title, lim.title, false, f.charset),
            )?;
            for item in items {
                w.create_element("MenuItem").write_inner_content(|w| {
                    leaf(
                        w,
                        "Prompt",
                        &display_in(&item.label, lim.label, false, f.charset),
                    )?;
                    leaf(w, "URI", &item.link.absolute(t.base))
                })?;
            }
            let mut keys = Vec::new();
            if !(f.exit_submit_only)(t.handset) {
                keys.push(Key {
                    index: 1,
                    label: "Select",
                    uri: "SoftKey:Select".into(),
                });
            }
            keys.push(exit_key(caps, "Exit"));
            softkeys(w, caps, &keys)
        })?;
    Ok(())
}

fn input(
    f: &Flavor,
    w: &mut Writer<Vec<u8>>,
    i: &Input,
    t: Target<'_>,
    lim: Limits,
) -> io::Result<()> {
    let caps = &t.handset.caps;
    let mut keys = Vec::new();
    if f.backspace_key && caps.submit_key != 1 && !(f.exit_submit_only)(t.handset) {
        keys.push(Key {
            index: 1,
            label: "Backspace",
            uri: "SoftKey:BackSpace".into(),
        });
    }
    keys.push(Key {
        index: caps.submit_key,
        label: "Submit",
        uri: "SoftKey:Submit".into(),
    });
    keys.push(exit_key(caps, "Cancel"));
    let title = display_in(&i.title, lim.title, false, f.charset);
    let url = i.submit.absolute(t.base);
    let field_type = |numeric: bool| if numeric { "number" } else { "string" };
    let yes_no = |b: bool| if b { "yes" } else { "no" };

    if let [field] = i.fields.as_slice() {
        // The single-field form every model understands (AXAPI p.109); Aastra phones
        // supply their own Backspace/Submit keys for it.
        w.create_element(root(f, "InputScreen").as_str())
            .with_attribute(("type", field_type(field.numeric)))
            .with_attribute(("password", yes_no(field.secret)))
            .with_attributes(destroy(f))
            .with_attributes(quiet(f))
            .write_inner_content(|w| {
                leaf(w, "Title", &title)?;
                leaf(
                    w,
                    "Prompt",
                    &display_in(&field.prompt, lim.label, false, f.charset),
                )?;
                leaf(w, "URL", &url)?;
                leaf(w, "Parameter", field.param)?;
                leaf(w, "Default", "")?;
                if !f.softkeys_in_fields {
                    softkeys(w, caps, &keys)?;
                }
                Ok(())
            })?;
        return Ok(());
    }

    // Several fields on one screen (AXAPI p.123): the phone appends each Parameter to URL.
    w.create_element(root(f, "InputScreen").as_str())
        .with_attribute(("type", "string"))
        .with_attributes(destroy(f))
        .with_attributes(quiet(f))
        .write_inner_content(|w| {
            leaf(w, "Title", &title)?;
            leaf(w, "URL", &url)?;
            for field in &i.fields {
                w.create_element("InputField")
                    .with_attribute(("type", field_type(field.numeric)))
                    .with_attribute(("password", yes_no(field.secret)))
                    .write_inner_content(|w| {
                        leaf(
                            w,
                            "Prompt",
                            &display_in(&field.prompt, lim.label, false, f.charset),
                        )?;
                        leaf(w, "Parameter", field.param)?;
                        leaf(w, "Default", "")?;
                        if f.softkeys_in_fields {
                            softkeys(w, caps, &keys)?;
                        }
                        Ok(())
                    })?;
            }
            if !f.softkeys_in_fields {
                softkeys(w, caps, &keys)?;
            }
            Ok(())
        })?;
    Ok(())
}

fn message(
    f: &Flavor,
    w: &mut Writer<Vec<u8>>,
    m: &Message,
    t: Target<'_>,
    lim: Limits,
) -> io::Result<()> {
    let caps = &t.handset.caps;
    let next = m.next.as_ref().map(|n| n.link.absolute(t.base));
    let name = root(f, "TextScreen");
    let mut el = w.create_element(name.as_str()).with_attributes(destroy(f));
    if m.tone == Tone::Error {
        el = el.with_attribute(("Beep", "yes"));
    } else {
        el = el.with_attributes(quiet(f));
    }
    // On Aastra doneAction is where the phone's own Done key *and* SoftKey:Exit lead (AXAPI
    // p.67), so it would turn "Close" into "retry": only a step that must follow (the apply
    // after a login) or a phone without softkeys gets it; elsewhere OK (softkey 1) leads on.
    // Yealink shows "Invalid URI" on OK without it, so the others always get it.
    let automatic = m.next.as_ref().is_some_and(|n| n.after_secs > 0);
    let keep = !f.done_action_on_exit || automatic || caps.softkeys == 0;
    if let Some(next) = next.as_ref().filter(|_| keep) {
        el = el.with_attribute(("doneAction", next.as_str()));
    }
    el.write_inner_content(|w| {
        leaf(
            w,
            "Title",
            &display_in(&m.title, lim.title, false, f.charset),
        )?;
        leaf(w, "Text", &display_in(&m.text, lim.text, true, f.charset))?;
        let mut keys = Vec::new();
        if let Some(next) = &next {
            keys.push(Key {
                index: 1,
                label: "OK",
                uri: next.clone(),
            });
        }
        keys.push(exit_key(caps, "Close"));
        softkeys(w, caps, &keys)
    })?;
    Ok(())
}

fn execute(f: &Flavor, w: &mut Writer<Vec<u8>>, a: &Apply, t: Target<'_>) -> io::Result<()> {
    let commands: Vec<String> = a
        .actions
        .iter()
        .flat_map(|action| (f.commands)(action, t, a.grant.as_deref()))
        .collect();
    let name = root(f, "Execute");
    let mut el = w.create_element(name.as_str());
    if f.trigger_destroy {
        el = el.with_attribute(("triggerDestroyOnExit", "yes"));
    }
    el.with_attribute(("Beep", "no")).write_inner_content(|w| {
        if commands.is_empty() {
            // An empty URI is the documented no-op.
            w.create_element("ExecuteItem")
                .with_attribute(("URI", ""))
                .write_empty()?;
        }
        for c in &commands {
            w.create_element("ExecuteItem")
                .with_attribute(("URI", c.as_str()))
                .write_empty()?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Settings applied live: Aastra `ConfigurationItem`s (AXAPI p.154-157), or Yealink's
/// `Item` lines in `.cfg` syntax.
fn configuration(
    f: &Flavor,
    w: &mut Writer<Vec<u8>>,
    items: &[(String, String)],
) -> io::Result<()> {
    let name = root(f, "Configuration");
    let mut el = w
        .create_element(name.as_str())
        .with_attribute(("Beep", "no"));
    if f.config_items == ConfigItems::Yealink {
        el = el.with_attribute(("setType", "config"));
    }
    el.write_inner_content(|w| {
        for (key, value) in items {
            let (key, value) = (clean(key, false), clean(value, false));
            match f.config_items {
                ConfigItems::Aastra => {
                    w.create_element("ConfigurationItem")
                        .write_inner_content(|w| {
                            leaf(w, "Parameter", &key)?;
                            leaf(w, "Value", &value)
                        })?;
                }
                ConfigItems::Yealink => leaf(w, "Item", &format!("{key} = {value}"))?,
            }
        }
        Ok(())
    })?;
    Ok(())
}
