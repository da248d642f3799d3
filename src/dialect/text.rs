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

/// The ellipsis a cut text ends in: three ASCII dots, which every phone font has (U+2026
/// is missing from some monochrome LCD fonts).
pub const ELLIPSIS: &str = "...";

/// At most `max` characters, ending in [`ELLIPSIS`] when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(ELLIPSIS.len());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&ELLIPSIS[..max.min(ELLIPSIS.len())]);
    out
}

/// Which characters a vendor's display fonts are assumed to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Anything Unicode; the phone's own fonts decide.
    Unicode,
    /// ISO 8859-1 only: everything else is transliterated to ASCII, or `?`.
    Latin1,
}

/// `text` in `charset`: common letters outside Latin-1 become their ASCII look-alikes
/// (`ł` -> `l`, `Œ` -> `OE`, `“` -> `"`), anything else `?`, so a display never shows boxes.
pub fn to_charset(text: &str, charset: Charset) -> String {
    match charset {
        Charset::Unicode => text.to_owned(),
        Charset::Latin1 => {
            let mut out = String::with_capacity(text.len());
            for c in text.chars() {
                if u32::from(c) <= 0xFF {
                    out.push(c);
                } else {
                    out.push_str(ascii_for(c));
                }
            }
            out
        }
    }
}

/// ASCII for the letters and punctuation of Latin Extended-A and common typography.
fn ascii_for(c: char) -> &'static str {
    const TABLE: &[(&str, &str)] = &[
        ("ĀĂĄ", "A"),
        ("āăą", "a"),
        ("ĆĈĊČ", "C"),
        ("ćĉċč", "c"),
        ("ĎĐ", "D"),
        ("ďđ", "d"),
        ("ĒĔĖĘĚ", "E"),
        ("ēĕėęě", "e"),
        ("ĜĞĠĢ", "G"),
        ("ĝğġģ", "g"),
        ("ĤĦ", "H"),
        ("ĥħ", "h"),
        ("ĨĪĬĮİ", "I"),
        ("ĩīĭįı", "i"),
        ("Ĵ", "J"),
        ("ĵ", "j"),
        ("Ķ", "K"),
        ("ķĸ", "k"),
        ("ĹĻĽĿŁ", "L"),
        ("ĺļľŀł", "l"),
        ("ŃŅŇŊ", "N"),
        ("ńņňŉŋ", "n"),
        ("ŌŎŐ", "O"),
        ("ōŏő", "o"),
        ("Œ", "OE"),
        ("œ", "oe"),
        ("ŔŖŘ", "R"),
        ("ŕŗř", "r"),
        ("ŚŜŞŠȘ", "S"),
        ("śŝşšș", "s"),
        ("ŢŤŦȚ", "T"),
        ("ţťŧț", "t"),
        ("ŨŪŬŮŰŲ", "U"),
        ("ũūŭůűų", "u"),
        ("Ŵ", "W"),
        ("ŵ", "w"),
        ("ŶŸ", "Y"),
        ("ŷ", "y"),
        ("ŹŻŽ", "Z"),
        ("źżž", "z"),
        ("‘’‚‛′", "'"),
        ("“”„‟″", "\""),
        ("‐‑‒–—―−", "-"),
        ("…", "..."),
        ("•", "*"),
        ("€", "EUR"),
    ];
    TABLE
        .iter()
        .find(|(from, _)| from.contains(c))
        .map_or("?", |(_, to)| to)
}

/// `clean` then `clip`: the one call every dialect uses for display text.
pub fn display(text: &str, max: usize, multiline: bool) -> String {
    // Most text is already clean, trimmed and short enough: one copy instead of three.
    if text.trim().len() == text.len()
        && text.chars().all(|c| keeps(c, multiline))
        && text.chars().count() <= max
    {
        return text.to_owned();
    }
    clip(clean(text, multiline).trim(), max)
}

/// Whether [`clean`] keeps `c` as it is.
fn keeps(c: char, multiline: bool) -> bool {
    match c {
        '\n' => multiline,
        '\t' | '\r' => false,
        c => is_xml_char(c),
    }
}

/// [`display`] for a display that shows only `charset`.
pub fn display_in(text: &str, max: usize, multiline: bool, charset: Charset) -> String {
    match charset {
        Charset::Latin1 if !text.chars().all(|c| u32::from(c) <= 0xFF) => {
            display(&to_charset(text, charset), max, multiline)
        }
        _ => display(text, max, multiline),
    }
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
        assert_eq!(clip("Ünïcödé", 6), "Ünï...");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 2), "..");
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

    #[test]
    fn latin1_displays_get_ascii_look_alikes_not_boxes() {
        assert_eq!(
            to_charset("Zoë Łukasz Dvořák “Œuvre” – 🦀 …", Charset::Latin1),
            "Zoë Lukasz Dvorák \"OEuvre\" - ? ..."
        );
        assert_eq!(to_charset("Łódź 🦀", Charset::Unicode), "Łódź 🦀");
    }

    proptest! {
        /// The shortcut for text that needs no change gives what the three steps give.
        #[test]
        fn display_is_clean_trim_clip(
            s in prop_oneof![any::<String>(), "[ a-zA-Z\t\n\r\u{7}é€]{0,40}"],
            max in 1usize..50,
            ml in any::<bool>(),
        ) {
            prop_assert_eq!(display(&s, max, ml), clip(clean(&s, ml).trim(), max));
            prop_assert_eq!(
                display_in(&s, max, ml, Charset::Latin1),
                clip(clean(&to_charset(&s, Charset::Latin1), ml).trim(), max)
            );
        }

        #[test]
        fn latin1_output_stays_latin1(s in any::<String>(), max in 1usize..300) {
            let out = display_in(&s, max, false, Charset::Latin1);
            prop_assert!(out.chars().all(|c| u32::from(c) <= 0xFF && is_xml_char(c)));
            prop_assert!(out.chars().count() <= max);
        }

        #[test]
        fn output_is_always_legal(s in any::<String>(), max in 1usize..300, ml in any::<bool>()) {
            let out = display(&s, max, ml);
            prop_assert!(out.chars().all(is_xml_char));
            prop_assert!(out.chars().count() <= max);
        }
    }
}
