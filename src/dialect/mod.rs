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

/// A document is written into this thread's buffer, kept from one document to the next (and
/// between the attempts of one that must shrink to fit its phone), then copied out at its exact
/// size. A buffer grown past this by a huge document is not kept.
const KEPT_BUFFER: usize = 64 * 1024;

thread_local! {
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Builds an XML document with the declaration every vendor accepts.
pub fn document(
    build: impl FnOnce(&mut quick_xml::Writer<Vec<u8>>) -> std::io::Result<()>,
) -> Vec<u8> {
    use quick_xml::events::{BytesDecl, Event};
    let mut buf = BUFFER.take();
    buf.clear();
    let mut w = quick_xml::Writer::new_with_indent(buf, b' ', 1);
    // Writing to a Vec cannot fail.
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .and_then(|()| build(&mut w))
        .expect("writing XML to memory");
    let mut buf = w.into_inner();
    buf.push(b'\n');
    let body = buf.clone();
    if buf.capacity() <= KEPT_BUFFER {
        BUFFER.set(buf);
    }
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
