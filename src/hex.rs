//! Lower-case hex, as tokens, keys, digests, signatures and MACs are written
//! (`format!("{b:02x}")` per byte was an allocation each: a login's apply token cost 9,000
//! instructions).

/// Writes `bytes` as hex into the first `2 * bytes.len()` bytes of `out` (a stack buffer on
/// the hot paths: link signatures, MACs).
pub fn lower_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

pub fn lower(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    lower_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_byte_as_two_lower_case_digits() {
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(super::lower(&all), want);
        assert_eq!(super::lower(&[]), "");
        let mut out = [0u8; 4];
        super::lower_into(&[0xaf, 0x1e], &mut out);
        assert_eq!(&out, b"af1e");
    }
}
