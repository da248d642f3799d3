//! Making arbitrary directory text safe for a phone: XML-1.0-legal, single-line where the
//! vendor wants it, and short enough for the screen and the byte limit.

/// Whether XML 1.0 allows `c` in a document (the `Char` production).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Keeps only characters XML 1.0 allows (quick-xml writes C0 controls unchanged, which
/// strict phone parsers reject). Tabs and line breaks become spaces unless `multiline`.
pub fn clean(text: &str, multiline: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' if multiline => out.push('\n'),
            '\t' | '\n' | '\r' => out.push(' '),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// At most `max` characters, ending in an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `clean` then `clip`: the one call every dialect uses for display text.
pub fn display(text: &str, max: usize, multiline: bool) -> String {
    clip(clean(text, multiline).trim(), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn drops_what_xml_forbids() {
        assert_eq!(clean("a\u{0}b\u{7}c\u{1b}d\u{FFFE}e", false), "abcde");
        assert_eq!(clean("a\tb\nc\rd", false), "a b c d");
        assert_eq!(clean("a\nb", true), "a\nb");
        assert_eq!(clean("Zoë 🦀 <&>", false), "Zoë 🦀 <&>");
    }

    #[test]
    fn clips_on_characters() {
        assert_eq!(clip("Ünïcödé", 4), "Ünï…");
        assert_eq!(clip("abc", 3), "abc");
    }

    #[test]
    fn the_xml_char_production() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            'é',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
            '🦀',
        ] {
            assert!(is_xml_char(c), "{c:?}");
        }
        for c in [
            '\u{0}', '\u{7}', '\u{8}', '\u{B}', '\u{C}', '\u{1B}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!is_xml_char(c), "{c:?}");
        }
    }

    proptest! {
        #[test]
        fn output_is_always_legal(s in any::<String>(), max in 1usize..300, ml in any::<bool>()) {
            let out = display(&s, max, ml);
            prop_assert!(out.chars().all(is_xml_char));
            prop_assert!(out.chars().count() <= max);
        }
    }
}
