//! User-Agent parsers, one per vendor family. Lenient by design: phones vary case,
//! spacing and token order between firmware versions.

use super::{Mac, Vendor};

/// What a User-Agent says about the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo {
    pub vendor: Vendor,
    pub model: String,
    pub firmware: String,
    /// Absent in some firmware (older Snom, possibly Sangoma): `?mac=` fills the gap.
    pub mac: Option<Mac>,
}

/// Tries every vendor parser; `None` when no vendor's format matches.
pub fn parse(ua: &str) -> Option<UaInfo> {
    let ua = ua.trim();
    aastra(ua)
        .or_else(|| yealink(ua))
        .or_else(|| htek_like(ua))
        .or_else(|| snom(ua))
}

/// `Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP`, `Mitel6930 MAC:… V:…-SIP`,
/// `MitelMINET_6930 MAC:…` (AXAPI p.197; Mitel's PHP `Aastra_decode_HTTP_header`).
fn aastra(ua: &str) -> Option<UaInfo> {
    let (head, rest) = ua.split_once(" MAC:")?;
    let model = head
        .strip_prefix("MitelMINET_")
        .or_else(|| head.strip_prefix("Aastra"))
        .or_else(|| head.strip_prefix("Mitel"))?;
    if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut tokens = rest.split_whitespace();
    let mac = tokens.next()?.parse::<Mac>().ok();
    let firmware = tokens
        .find_map(|t| t.strip_prefix("V:"))
        .map(|v| v.trim_end_matches("-SIP").to_owned())
        .unwrap_or_default();
    Some(UaInfo {
        vendor: Vendor::Aastra,
        model: model.to_owned(),
        firmware,
        mac,
    })
}

/// `Yealink SIP-T46G 28.72.0.1 00:15:65:4a:a9:37`, `yealink SIP-T28P …`,
/// `Yealink SIP VP-T49G …`, `Yealink CP860 …`, `Yealink-T46G 28.71.0.81 …` (Wazo provd).
fn yealink(ua: &str) -> Option<UaInfo> {
    let lower = ua.to_ascii_lowercase();
    let rest = if lower.starts_with("yealink-") || lower.starts_with("yealink ") {
        &ua[8..]
    } else if lower.starts_with("vp530") || lower.starts_with("w52p") {
        ua
    } else {
        return None;
    };
    let mut tokens: Vec<&str> = rest.split_whitespace().collect();
    // "SIP VP-T49G" is split in two tokens.
    if tokens
        .first()
        .is_some_and(|t| t.eq_ignore_ascii_case("SIP"))
    {
        tokens.remove(0);
    }
    let raw_model = *tokens.first()?;
    let model = strip_prefix_ci(raw_model, "SIP-")
        .or_else(|| strip_prefix_ci(raw_model, "VP-"))
        .unwrap_or(raw_model);
    let firmware = tokens.get(1).copied().unwrap_or_default();
    let mac = tokens.get(2).and_then(|t| t.parse::<Mac>().ok());
    valid_model(model).then(|| UaInfo {
        vendor: Vendor::Yealink,
        model: model.to_owned(),
        firmware: firmware.to_owned(),
        mac,
    })
}

/// `Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9` (Wazo provd). Sangoma S-series phones are Htek
/// OEMs; their User-Agent is unconfirmed, so `Sangoma S500 …` is accepted in the same shape.
fn htek_like(ua: &str) -> Option<UaInfo> {
    let mut tokens = ua.split_whitespace();
    let brand = tokens.next()?;
    let vendor = if brand.eq_ignore_ascii_case("Htek") {
        Vendor::Htek
    } else if brand.eq_ignore_ascii_case("Sangoma") {
        Vendor::Sangoma
    } else {
        return None;
    };
    let model = tokens.next()?;
    let firmware = tokens.next().unwrap_or_default();
    let mac = tokens.next().and_then(|t| t.parse::<Mac>().ok());
    valid_model(model).then(|| UaInfo {
        vendor,
        model: model.to_owned(),
        firmware: firmware.to_owned(),
        mac,
    })
}

/// `Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004-g9ba52f5 000413922D24 SXM:0 UXM:0)`;
/// older firmware omits the MAC (Wazo provd).
fn snom(ua: &str) -> Option<UaInfo> {
    let start = ua.find("snom")?;
    let after = &ua[start + 4..];
    let (model, rest) = after.split_once("-SIP")?;
    if !valid_model(model) {
        return None;
    }
    let mut tokens = rest
        .split(|c: char| c.is_whitespace() || c == ';' || c == ')' || c == '(')
        .filter(|t| !t.is_empty());
    let firmware = tokens.next().unwrap_or_default().to_owned();
    let mac = tokens
        .filter(|t| t.len() == 12)
        .find_map(|t| t.parse::<Mac>().ok());
    Some(UaInfo {
        vendor: Vendor::Snom,
        model: model.to_owned(),
        firmware,
        mac,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

fn valid_model(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 32
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Corpus {
        phone: Vec<Case>,
        unknown: Vec<Unknown>,
    }
    #[derive(Deserialize)]
    struct Case {
        ua: String,
        vendor: String,
        model: String,
        firmware: String,
        mac: String,
        source: String,
    }
    #[derive(Deserialize)]
    struct Unknown {
        ua: String,
        why: String,
    }

    fn corpus() -> Corpus {
        toml::from_str(include_str!("../../fixtures/user-agents.toml")).unwrap()
    }

    #[test]
    fn real_user_agents() {
        let corpus = corpus();
        assert!(
            corpus.phone.len() >= 30,
            "the corpus keeps at least 30 real strings"
        );
        for case in &corpus.phone {
            assert!(!case.source.is_empty(), "{} has no source", case.ua);
            let info = parse(&case.ua).unwrap_or_else(|| panic!("not recognised: {}", case.ua));
            assert_eq!(info.vendor.as_str(), case.vendor, "{}", case.ua);
            assert_eq!(info.model, case.model, "{}", case.ua);
            assert_eq!(info.firmware, case.firmware, "{}", case.ua);
            let mac = info.mac.map(|m| m.to_string()).unwrap_or_default();
            assert_eq!(mac, case.mac, "{}", case.ua);
        }
    }

    #[test]
    fn strangers_are_not_phones() {
        for case in corpus().unknown {
            assert_eq!(parse(&case.ua), None, "{} ({})", case.ua, case.why);
        }
    }

    #[test]
    fn sangoma_s_series_is_read_like_htek() {
        let info = parse("Sangoma S705 2.0.4.4.58 00:1f:c1:aa:bb:cc").unwrap();
        assert_eq!(info.vendor, Vendor::Sangoma);
        assert_eq!(info.model, "S705");
        assert!(parse("Sangoma S500 2.0.4.4").unwrap().mac.is_none());
    }
}
