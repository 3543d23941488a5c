//! Text encodings shared by every layer: lowercase hex of 32-byte hashes
//! (the JSON API's form, design §1) and canonical decimal numbers (paths,
//! query strings, checkpoints, tiles).
//!
//! Pure: no I/O. Parsers are strict and fail closed: a value has exactly
//! one accepted spelling, so two programs never disagree on what was meant.

/// A 32-byte hash (same as [`crate::tree::Hash`], kept here so that this
/// module depends on nothing).
pub type Hash32 = [u8; 32];

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of a hash. Table-driven: this runs several times per
/// receipt, and a generic char iterator showed in profiles.
pub fn hex32(h: &Hash32) -> String {
    hex32_str(h, &mut [0; 64]).to_owned()
}

/// Lowercase hex of a hash written into `buf`, without allocating (a
/// proof's JSON has up to 64 of them).
pub fn hex32_str<'a>(h: &Hash32, buf: &'a mut [u8; 64]) -> &'a str {
    *buf = hex32_bytes(h);
    // Every byte is an ASCII hex digit.
    std::str::from_utf8(buf).unwrap_or_default()
}

/// Lowercase hex of a hash as bytes, for writers of JSON or text that
/// need no `str`.
pub fn hex32_bytes(h: &Hash32) -> [u8; 64] {
    let mut buf = [0u8; 64];
    for (pair, b) in buf.chunks_exact_mut(2).zip(h) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
    buf
}

/// Lowercase hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Exactly 64 lowercase hex digits.
pub fn parse_hex32(s: &str) -> Option<Hash32> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// True if `s` is 64 lowercase hex digits.
pub fn is_hex32(s: &str) -> bool {
    parse_hex32(s).is_some()
}

/// Parse a canonical ASCII decimal u64: digits only, no sign, no leading
/// zeros unless the number is 0, no overflow.
pub fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Percent-encode a path segment (ids may hold any printable character).
pub fn url_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_strictness() {
        let h: Hash32 = core::array::from_fn(|i| (i * 37) as u8);
        let s = hex32(&h);
        assert_eq!(s, hex(&h));
        assert_eq!(parse_hex32(&s), Some(h));
        assert_eq!(parse_hex32(&s.to_uppercase()), None);
        assert_eq!(parse_hex32(&s[..62]), None);
        assert_eq!(parse_hex32(&format!("{s}00")), None);
        assert_eq!(parse_hex32(&format!("{}g", &s[..63])), None);
        // Every byte value, against the standard library's formatting.
        for first in (0..=255u8).step_by(32) {
            let h: Hash32 = core::array::from_fn(|i| first + i as u8);
            let want: String = h.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex32(&h), want);
            assert_eq!(hex32_str(&h, &mut [b'x'; 64]), want);
        }
    }

    #[test]
    fn canonical_numbers() {
        assert_eq!(parse_canonical_u64("0"), Some(0));
        assert_eq!(parse_canonical_u64("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "18446744073709551616",
            "1e3",
        ] {
            assert_eq!(parse_canonical_u64(bad), None, "{bad:?}");
        }
    }
}
