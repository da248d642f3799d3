//! The XML formats phones read, as toolkits the vendor modules render with: the Aastra object
//! model (also Yealink's and Htek's, under other root names) and the Snom minibrowser. No
//! vendor decisions here: which flavour, which commands and limits is each vendor's module.

pub mod aastra_objects;
pub mod snom_objects;
pub mod text;

use crate::config::ReloadMethod;
use crate::phone::Handset;

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
pub struct Limits {
    pub title: usize,
    pub label: usize,
    pub text: usize,
    pub items: usize,
}

/// Builds an XML document with the declaration every vendor accepts.
pub fn document(
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
pub fn leaf(w: &mut quick_xml::Writer<Vec<u8>>, name: &str, text: &str) -> std::io::Result<()> {
    use quick_xml::events::BytesText;
    if text.is_empty() {
        w.create_element(name).write_empty()?;
    } else {
        w.create_element(name)
            .write_text_content(BytesText::new(text))?;
    }
    Ok(())
}
