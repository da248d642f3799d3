//! A small strict-enough XML tree for tests: elements, attributes, text.

use quick_xml::Reader;
use quick_xml::events::Event;

#[derive(Debug, Clone, Default)]
pub struct El {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<El>,
    pub text: String,
}

impl El {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn all(&self, name: &str) -> Vec<&El> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    /// Text of a direct child, "" when absent.
    pub fn get(&self, name: &str) -> String {
        self.child(name).map(|c| c.text.clone()).unwrap_or_default()
    }
}

fn unescape(raw: &str) -> String {
    raw.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Parses a document and checks it is XML-1.0 clean.
pub fn parse(body: &[u8]) -> El {
    let text = std::str::from_utf8(body).expect("UTF-8 body");
    assert!(
        text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{text}"
    );
    assert!(
        text.chars().all(hotdesk::dialect::text::is_xml_char),
        "illegal XML character in {text:?}"
    );
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<El> = vec![El::default()];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(element(&e)),
            Event::Empty(e) => {
                let el = element(&e);
                stack.last_mut().unwrap().children.push(el);
            }
            Event::End(_) => {
                let mut el = stack.pop().unwrap();
                el.text = el.text.trim().to_owned();
                stack.last_mut().unwrap().children.push(el);
            }
            Event::Text(t) => {
                let raw = t.into_inner().into_owned();
                stack.last_mut().unwrap().text.push_str(&unescape(&raw));
            }
            Event::GeneralRef(r) => {
                let name = r.into_inner().into_owned();
                stack
                    .last_mut()
                    .unwrap()
                    .text
                    .push_str(&unescape(&format!("&{name};")));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "unbalanced document");
    let mut root = stack.pop().unwrap();
    assert_eq!(root.children.len(), 1, "one root element");
    root.children.pop().unwrap()
}

fn element(e: &quick_xml::events::BytesStart<'_>) -> El {
    El {
        name: e.name().as_ref().to_owned(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (a.key.as_ref().to_owned(), unescape(&a.value))
            })
            .collect(),
        ..El::default()
    }
}
