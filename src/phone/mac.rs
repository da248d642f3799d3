//! A handset's MAC address, the key of every login.

use std::fmt;
use std::str::FromStr;

/// Six bytes, shown as 12 lowercase hex digits (the form the admin API and the store use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (expected 12 hex digits, optionally separated by : - or .)")]
pub struct BadMac(pub String);

impl FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, BadMac> {
        // Client text: shown and logged, so control characters are escaped.
        let bad = || BadMac(s.chars().take(40).flat_map(char::escape_debug).collect());
        // On the stack: every phone request parses a MAC.
        if s.len() > 17 {
            return Err(bad());
        }
        let mut digits = [0u8; 12];
        let mut n = 0;
        for b in s.bytes().filter(|b| !matches!(b, b':' | b'-' | b'.')) {
            *digits.get_mut(n).ok_or_else(bad)? = b;
            n += 1;
        }
        if n != 12 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(bad)?;
            let lo = hex_value(pair[1]).ok_or_else(bad)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Mac(out))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Mac {
    /// The twelve lower-case hex digits, on the stack: every access line and screen link
    /// shows a MAC.
    pub fn hex(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        crate::hex::lower_into(&self.0, &mut out);
        out
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_vendor_spelling() {
        let cases = [
            ("00-08-5D-23-74-29", Some("00085d237429")),
            ("00:15:65:4a:a9:37", Some("0015654aa937")),
            ("000413922D24", Some("000413922d24")),
            ("0008.5d23.7429", Some("00085d237429")),
            ("00085d23742", None),
            ("00085d2374299", None),
            ("00085d23742g", None),
            ("", None),
            ("::::::::::::00085d237429", None),
            ("é0085d23742", None),
        ];
        for (input, want) in cases {
            let got = input.parse::<Mac>().ok().map(|m| m.to_string());
            assert_eq!(got.as_deref(), want, "{input:?}");
        }
    }
}
