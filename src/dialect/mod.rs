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

/// Text lengths a document is rendered with; halved until the document fits the phone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub title: usize,
    pub label: usize,
    pub text: usize,
}

const FULL: Limits = Limits {
    title: 64,
    label: 64,
    text: 1000,
};

/// Renders `screen` for the target phone, within its byte and item limits.
pub fn render(screen: &Screen, target: Target<'_>) -> Rendered {
    let max = target.handset.caps.max_bytes;
    let mut limits = FULL;
    loop {
        let out = render_with(screen, target, limits);
        if out.body.len() <= max || limits.text < 16 {
            debug_assert!(
                out.body.len() <= max,
                "minimal document still over the limit"
            );
            return out;
        }
        limits = Limits {
            title: limits.title.div_ceil(2).max(12),
            label: limits.label.div_ceil(2).max(12),
            text: limits.text / 2,
        };
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
