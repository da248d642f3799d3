//! New PINs and SIP secrets: generated with the OS CSPRNG, or chosen by an admin and checked
//! against a strength rule whose text is the error message.

use crate::secret::Secret;

/// Shortest and longest PIN the admin API accepts or generates.
pub const PIN_MIN: usize = 6;
pub const PIN_MAX: usize = 12;
/// Shortest SIP secret accepted; generated ones are [`SIP_SECRET_LEN`] long.
pub const SIP_SECRET_MIN: usize = 20;
pub const SIP_SECRET_LEN: usize = 24;
/// No 0/O, 1/l/I: read aloud or typed from paper without mistakes.
const UNAMBIGUOUS: &[u8] = b"23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";

/// The rule, as an admin reads it.
pub const PIN_RULE: &str = "a PIN must be 6 to 12 digits, not a run (123456, 654321), not a repeated pattern (111111, 121212), and not contain the extension";

/// Why a chosen PIN is refused; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PIN refused ({reason}): {PIN_RULE}")]
pub struct WeakPin {
    pub reason: &'static str,
}

/// Checks a PIN an admin chose for `extension`.
pub fn check_pin(pin: &str, extension: &str) -> Result<(), WeakPin> {
    let weak = |reason| Err(WeakPin { reason });
    let d = pin.as_bytes();
    if !d.iter().all(u8::is_ascii_digit) {
        return weak("not only digits");
    }
    if !(PIN_MIN..=PIN_MAX).contains(&d.len()) {
        return weak("wrong length");
    }
    let step = |a: u8, b: u8| (b as i16 - a as i16).rem_euclid(10);
    let first = step(d[0], d[1]);
    if (first == 1 || first == 9) && d.windows(2).all(|w| step(w[0], w[1]) == first) {
        return weak("a run");
    }
    if (1..=d.len() / 2).any(|p| (p..d.len()).all(|i| d[i] == d[i - p])) {
        return weak("a repeated pattern");
    }
    let ext: String = extension.chars().filter(char::is_ascii_digit).collect();
    if !ext.is_empty() && (pin.contains(&ext) || ext.contains(pin)) {
        return weak("contains the extension");
    }
    Ok(())
}

/// `n` uniform draws from `alphabet` (rejection sampling, no modulo bias).
fn draw(alphabet: &[u8], n: usize) -> Result<String, String> {
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|e| format!("no randomness: {e}"))?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < n {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

/// A random PIN of `len` digits that passes [`check_pin`] for `extension`.
pub fn generate_pin(len: usize, extension: &str) -> Result<Secret, String> {
    let len = len.clamp(PIN_MIN, PIN_MAX);
    loop {
        let pin = draw(b"0123456789", len)?;
        if check_pin(&pin, extension).is_ok() {
            return Ok(Secret::new(pin));
        }
    }
}

/// A random SIP secret from the unambiguous alphabet.
pub fn generate_sip_secret() -> Result<Secret, String> {
    draw(UNAMBIGUOUS, SIP_SECRET_LEN).map(Secret::new)
}

/// Checks a SIP secret an admin chose: long enough, printable ASCII, no spaces.
pub fn check_sip_secret(secret: &str) -> Result<(), String> {
    if secret.len() < SIP_SECRET_MIN || secret.len() > 128 {
        return Err(format!(
            "a SIP secret must be {SIP_SECRET_MIN} to 128 characters"
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a SIP secret must be printable ASCII without spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_rule() {
        let cases = [
            ("583920", Ok(())),
            ("20481937", Ok(())),
            ("123456", Err("a run")),
            ("654321", Err("a run")),
            ("890123", Err("a run")),
            ("111111", Err("a repeated pattern")),
            ("121212", Err("a repeated pattern")),
            ("4074074", Err("a repeated pattern")),
            ("12345", Err("wrong length")),
            ("1234567890123", Err("wrong length")),
            ("58392a", Err("not only digits")),
            ("", Err("wrong length")),
            ("100142", Err("contains the extension")),
            ("971001", Err("contains the extension")),
        ];
        for (pin, want) in cases {
            assert_eq!(check_pin(pin, "1001").map_err(|e| e.reason), want, "{pin}");
        }
        assert_eq!(
            check_pin("583920", "583920").unwrap_err().reason,
            "contains the extension"
        );
        assert!(
            check_pin("589730", "*97").is_err(),
            "the digits of *97 are in it"
        );
        assert!(check_pin("583920", "*97").is_ok());
        let msg = check_pin("123456", "1001").unwrap_err().to_string();
        assert!(
            msg.contains("not a run") && msg.contains("repeated"),
            "{msg}"
        );
    }

    #[test]
    fn generated_pins_pass_and_differ() {
        let pins: Vec<String> = (0..50)
            .map(|_| generate_pin(8, "1001").unwrap().expose().to_owned())
            .collect();
        for p in &pins {
            assert_eq!(p.len(), 8);
            assert!(check_pin(p, "1001").is_ok(), "{p}");
        }
        let mut unique = pins.clone();
        unique.sort();
        unique.dedup();
        assert!(unique.len() > 45, "random enough");
        assert_eq!(generate_pin(3, "1").unwrap().expose().len(), PIN_MIN);
    }

    #[test]
    fn generated_sip_secrets_are_long_and_unambiguous() {
        let a = generate_sip_secret().unwrap();
        let b = generate_sip_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), SIP_SECRET_LEN);
        assert!(check_sip_secret(a.expose()).is_ok());
        for _ in 0..20 {
            let s = generate_sip_secret().unwrap();
            assert!(!s.expose().contains(['0', 'O', '1', 'l', 'I']), "{s:?}");
        }
        assert!(check_sip_secret("short").is_err());
        assert!(check_sip_secret(&"a b".repeat(10)).is_err());
    }
}
