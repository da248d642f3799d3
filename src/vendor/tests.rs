//! Tests across every family: the User-Agent corpus, file names, document limits.

use super::*;
use crate::dialect::text;
use crate::screen::{Link, Menu, MenuItem, Message, Next, Tone};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    phone: Vec<Case>,
    unknown: Vec<Unknown>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    ua: String,
    vendor: String,
    model: String,
    firmware: String,
    mac: String,
    /// Where the exact string is public (`repo@commit path:line`, or a manual page).
    source: String,
    /// Made up for a test: does not count as real.
    #[serde(default)]
    synthetic: bool,
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
    /// Read, but refused for the screens with a reason (MiNET, DECT bases, PA1, Snom < 7).
    #[serde(default)]
    refused: bool,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Unknown {
    ua: String,
    why: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    synthetic: bool,
}

fn corpus() -> Corpus {
    toml::from_str(include_str!("../../fixtures/user-agents.toml")).unwrap()
}

#[test]
fn real_user_agents() {
    let corpus = corpus();
    let real = corpus.phone.iter().filter(|c| !c.synthetic).count();
    assert!(
        real >= 80,
        "the corpus keeps at least 80 real strings, has {real}"
    );
    for case in &corpus.phone {
        assert!(
            case.synthetic || (!case.source.is_empty() && case.source != "none found"),
            "{} has no source",
            case.ua
        );
        let info =
            parse_user_agent(&case.ua).unwrap_or_else(|| panic!("not recognised: {}", case.ua));
        assert_eq!(info.vendor.as_str(), case.vendor, "{}", case.ua);
        assert_eq!(info.model, case.model, "{}", case.ua);
        assert_eq!(info.firmware, case.firmware, "{}", case.ua);
        let mac = info.mac.map(|m| m.to_string()).unwrap_or_default();
        assert_eq!(mac, case.mac, "{}", case.ua);
        let refused = family(info.vendor).unsupported(&info).is_some();
        assert_eq!(refused, case.refused, "refused: {}", case.ua);
    }
}

#[test]
fn strangers_are_not_phones() {
    for case in corpus().unknown {
        assert!(
            case.synthetic || !case.source.is_empty(),
            "{} has no source",
            case.ua
        );
        assert_eq!(
            parse_user_agent(&case.ua),
            None,
            "{} ({})",
            case.ua,
            case.why
        );
    }
}

#[test]
fn every_family_is_registered_once_and_found_by_name() {
    let mut ids: Vec<&str> = all().iter().map(|f| f.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all().len());
    for f in all() {
        assert_eq!(
            by_name(&f.id().to_uppercase()).map(|x| x.id()),
            Some(f.id())
        );
        assert_eq!(family(Vendor::new(f.id())).id(), f.id());
    }
    assert_eq!(by_name("mitel").map(|f| f.id()), Some("aastra"));
    assert!(by_name("cisco").is_none());
}

#[test]
fn file_names_round_trip_and_strangers_are_refused() {
    let mac: Mac = "00085d30a6ce".parse().unwrap();
    for f in all() {
        let files = f.files();
        assert_eq!(files.parse(&files.file_name(mac)), Some(mac), "{}", f.id());
    }
    assert_eq!(aastra::AASTRA.files().file_name(mac), "00085D30A6CE.cfg");
    assert_eq!(htek::HTEK.files().file_name(mac), "cfg00085d30a6ce.xml");
    let yealink = yealink::YEALINK.files();
    for bad in [
        "aastra.cfg",
        "00085d30a6c.cfg",
        "00085d30a6cg.cfg",
        "../00085d30a6ce.cfg",
        "00:08:5d:30:a6:ce.cfg",
    ] {
        assert_eq!(yealink.parse(bad), None, "{bad}");
    }
    assert_eq!(htek::HTEK.files().parse("00085d30a6ce.xml"), None);
}

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
