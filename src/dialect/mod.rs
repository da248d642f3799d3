//! Screen -> bytes, one module per vendor family. No business logic: a dialect only knows
//! its vendor's XML, limits and commands.

mod aastra;
mod snom;
pub mod text;

use crate::config::ReloadMethod;
use crate::phone::{Handset, Vendor};
use crate::screen::Screen;

/// The XML dialect a vendor's phone speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `AastraIPPhone*` (Aastra, Mitel).
    Aastra,
    /// `YealinkIPPhone*`, the Aastra object model under Yealink's prefix.
    Yealink,
    /// Unprefixed `TextMenu`, `InputScreen`, … (Htek and Sangoma S-series).
    Htek,
    /// The Snom minibrowser, `SnomIPPhone*`.
    Snom,
}

impl Dialect {
    pub fn for_vendor(vendor: Vendor) -> Self {
        match vendor {
            Vendor::Aastra => Dialect::Aastra,
            Vendor::Yealink => Dialect::Yealink,
            Vendor::Htek | Vendor::Sangoma => Dialect::Htek,
            Vendor::Snom => Dialect::Snom,
        }
    }
}

/// What to render for: the phone, the base URL its links start with, and how it reloads.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub handset: &'a Handset,
    pub base: &'a str,
    pub reload: ReloadMethod,
}

/// A rendered document, plus an optional timed follow-up for the HTTP `Refresh` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub refresh: Option<(u32, String)>,
}

/// Text lengths and menu size a document is rendered with; shrunk until it fits the phone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub title: usize,
    pub label: usize,
    pub text: usize,
    pub items: usize,
}

/// Renders `screen` for the target phone, within its byte and item limits: text is cut
/// first, then trailing menu items are dropped.
pub fn render(screen: &Screen, target: Target<'_>) -> Rendered {
    let max = target.handset.caps.max_bytes;
    let mut limits = Limits {
        title: 64,
        label: 64,
        text: 1000,
        items: target.handset.caps.max_menu_items,
    };
    loop {
        let out = render_with(screen, target, limits);
        if out.body.len() <= max {
            return out;
        }
        if limits.text >= 16 {
            limits.title = limits.title.div_ceil(2).max(12);
            limits.label = limits.label.div_ceil(2).max(12);
            limits.text /= 2;
        } else if limits.items > 1 {
            limits.items /= 2;
        } else {
            // Only a single link longer than the phone's limit gets here; ours are short.
            tracing::error!(
                bytes = out.body.len(),
                max,
                "document over the phone's size limit"
            );
            return out;
        }
    }
}

fn render_with(screen: &Screen, target: Target<'_>, limits: Limits) -> Rendered {
    match Dialect::for_vendor(target.handset.vendor) {
        Dialect::Aastra => aastra::render(&aastra::AASTRA, screen, target, limits),
        Dialect::Yealink => aastra::render(&aastra::YEALINK, screen, target, limits),
        Dialect::Htek => aastra::render(&aastra::HTEK, screen, target, limits),
        Dialect::Snom => snom::render(screen, target, limits),
    }
}

/// Builds an XML document with the declaration every vendor accepts.
pub(crate) fn document(
    build: impl FnOnce(&mut quick_xml::Writer<Vec<u8>>) -> std::io::Result<()>,
) -> Vec<u8> {
    use quick_xml::events::{BytesDecl, Event};
    let mut w = quick_xml::Writer::new_with_indent(Vec::with_capacity(2048), b' ', 1);
    // Writing to a Vec cannot fail.
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .and_then(|()| build(&mut w))
        .expect("writing XML to memory");
    let mut body = w.into_inner();
    body.push(b'\n');
    body
}

/// Writes `<name>text</name>`; the text must already be cleaned.
pub(crate) fn leaf(
    w: &mut quick_xml::Writer<Vec<u8>>,
    name: &str,
    text: &str,
) -> std::io::Result<()> {
    use quick_xml::events::BytesText;
    if text.is_empty() {
        w.create_element(name).write_empty()?;
    } else {
        w.create_element(name)
            .write_text_content(BytesText::new(text))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::identify;
    use crate::screen::{Link, Menu, MenuItem, Message, Next, Tone};
    use proptest::prelude::*;

    const UAS: [&str; 4] = [
        "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP",
        "Yealink SIP-T46S 66.86.0.15 80:5e:c0:2f:3c:2e",
        "Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9",
        "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 x 000413922D24)",
    ];

    /// Well-formed per quick-xml and made only of XML-1.0-legal characters.
    fn check(body: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
        if let Some(c) = text.chars().find(|&c| !text::is_xml_char(c)) {
            return Err(format!("illegal {c:?}"));
        }
        let mut r = quick_xml::Reader::from_str(text);
        let mut depth = 0i64;
        loop {
            match r.read_event().map_err(|e| e.to_string())? {
                quick_xml::events::Event::Start(_) => depth += 1,
                quick_xml::events::Event::End(_) => depth -= 1,
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        (depth == 0)
            .then_some(())
            .ok_or_else(|| "unbalanced".into())
    }

    proptest! {
        #[test]
        fn any_text_renders_to_legal_xml_within_limits(
            name in any::<String>(),
            text in proptest::collection::vec(any::<char>(), 0..4000),
            query in any::<String>(),
            ua in 0usize..UAS.len(),
        ) {
            let h = identify(Some(UAS[ua]), None, None).unwrap();
            let link = Link::new("/app/login").with("net", query.clone());
            let screens = [
                Screen::Menu(Menu {
                    title: name.clone(),
                    items: vec![MenuItem { label: name.clone(), link: link.clone() }; 40],
                    default_index: 99,
                }),
                Screen::Message(Message {
                    title: name.clone(),
                    text: text.into_iter().collect(),
                    tone: Tone::Error,
                    next: Some(Next { link, after_secs: 3 }),
                }),
            ];
            for screen in &screens {
                let out = render(screen, Target { handset: &h, base: "http://h", reload: ReloadMethod::Reboot });
                prop_assert!(out.body.len() <= h.caps.max_bytes);
                prop_assert_eq!(check(&out.body), Ok(()));
            }
        }
    }
}
