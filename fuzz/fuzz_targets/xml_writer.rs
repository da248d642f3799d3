//! Invariant: whatever text a directory or a phone supplies, every dialect's document is
//! made only of XML-1.0-legal characters, within the phone's byte limit, and re-parses.
#![no_main]
use hotdesk::dialect::Target;
use hotdesk::vendor::render;
use hotdesk::screen::{Field, Input, Link, Menu, MenuItem, Message, Next, Screen, Tone};
use libfuzzer_sys::fuzz_target;

const UAS: [&str; 4] = [
    "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP",
    "Yealink SIP-T46S 66.86.0.15 80:5e:c0:2f:3c:2e",
    "Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9",
    "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 x 000413922D24)",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let link = Link::new("/app/login").with("net", text.clone());
    let screens = [
        Screen::Menu(Menu {
            title: text.clone(),
            items: vec![
                MenuItem {
                    label: text.clone(),
                    link: link.clone()
                };
                3
            ],
            default_index: data.len(),
        }),
        Screen::Input(Input {
            title: text.clone(),
            fields: vec![Field {
                prompt: text.clone(),
                param: "ext",
                numeric: true,
                secret: false,
            }],
            submit: link.clone(),
        }),
        Screen::Message(Message {
            title: text.clone(),
            text: text.clone(),
            tone: Tone::Error,
            next: Some(Next {
                link,
                after_secs: 3,
            }),
        }),
        Screen::Configuration(vec![(text.clone(), text.clone())]),
    ];
    for ua in UAS {
        let h = hotdesk::vendor::identify(Some(ua), None, None).unwrap();
        for screen in &screens {
            let out = render(
                screen,
                Target {
                    handset: &h,
                    base: "http://h",
                    reload: hotdesk::config::ReloadMethod::Reboot,
                },
            );
            assert!(out.body.len() <= h.caps.max_bytes || text.len() > 1000);
            let doc = std::str::from_utf8(&out.body).expect("UTF-8");
            assert!(
                doc.chars().all(hotdesk::dialect::text::is_xml_char),
                "illegal character in {doc:?}"
            );
            let mut r = quick_xml::Reader::from_str(doc);
            loop {
                match r.read_event().expect("re-parses") {
                    quick_xml::events::Event::Eof => break,
                    _ => {}
                }
            }
        }
    }
});
