//! Hex text of bytes and back, for every crate of flowgate that writes ids,
//! signatures, tokens or keys as text.
//!
//! Reading is strict: hex digits only (upper or lower case), so a value has
//! exactly one spelling per case and a signature, id or token cannot verify
//! in a second one. [`from_lower_hex`] is stricter still, for text that
//! names something (ids, tokens): only the one spelling [`to_hex`] writes.
//!
//! ```
//! use flowgate_hex::{from_hex, to_hex};
//! assert_eq!(to_hex(&[0x0f, 0xa0]), "0fa0");
//! assert_eq!(from_hex::<2>("0FA0\n"), Some([0x0f, 0xa0]));
//! assert_eq!(from_hex::<1>("+f"), None);
//! ```

use std::fmt::Write;

/// Lower-case hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Bytes from hex; `None` when not hex of the right length. Surrounding
/// whitespace is ignored (key files end with a newline).
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != N * 2 {
        return None;
    }
    decode_hex(text)?.try_into().ok()
}

/// Bytes from exactly `2 * N` lower-case hex digits, nothing around them:
/// the spelling [`to_hex`] writes and no other. For text that names
/// something: a name with a second spelling is a second key to every map
/// keyed by it (a rate limiter's cells, a throttle's counts), so a caller
/// could multiply its allowance by changing case or adding a space.
pub fn from_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let lower = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if text.len() != N * 2 || !text.as_bytes().iter().all(lower) {
        return None;
    }
    decode_hex(text)?.try_into().ok()
}

/// Hex digits (upper or lower case, nothing else) as bytes.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    // Digit by digit: `u8::from_str_radix` also takes a sign, so `+f` would
    // read as `0f` and a signature, id or token would verify in a second
    // spelling (found by fuzzing, `fuzz/fuzz_targets/webhook.rs`).
    let digit = |c: u8| char::from(c).to_digit(16);
    text.chunks_exact(2)
        .map(|pair| u8::try_from(digit(pair[0])? << 4 | digit(pair[1])?).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes: [u8; 4] = [0, 0xab, 0x10, 0xff];
        assert_eq!(from_hex::<4>(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex::<4>("00ab10"), None);
        assert_eq!(from_hex::<2>("zzzz"), None);
        assert_eq!(from_hex::<2>(" 0aFf\n"), Some([0x0a, 0xff]));
    }

    #[test]
    fn lower_hex_takes_only_the_spelling_to_hex_writes() {
        assert_eq!(from_lower_hex::<2>("0aff"), Some([0x0a, 0xff]));
        assert_eq!(from_lower_hex::<2>("0aFf"), None);
        assert_eq!(from_lower_hex::<2>(" 0aff"), None);
        assert_eq!(from_lower_hex::<2>("0aff\n"), None);
        assert_eq!(from_lower_hex::<2>("0af"), None);
        assert_eq!(from_lower_hex::<1>("+f"), None);
    }

    #[test]
    fn hex_takes_digits_only_not_signs() {
        // `u8::from_str_radix` reads `+f` as 15; hex must not.
        assert_eq!(from_hex::<1>("+f"), None);
        assert_eq!(from_hex::<2>("0f+f"), None);
        assert_eq!(from_hex::<1>("-0"), None);
        assert_eq!(from_hex::<1>("é"), None);
        assert_eq!(from_hex::<1>("0f"), Some([0x0f]));
    }
}
