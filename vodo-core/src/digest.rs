//! SHA-256 and hex: the two encodings every Vodo crate stores hashes,
//! key ids and MACs in, kept in one place.

use ring::digest;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The bytes of a hex string (either case), or `None` if it is not hex.
pub fn unhex(s: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    let s = s.as_ref();
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// The 32 bytes of a 64-digit hex string, or `None`.
pub fn unhex32(s: impl AsRef<[u8]>) -> Option<[u8; 32]> {
    unhex(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        let bytes = sha256(b"abc");
        assert_eq!(
            hex(&bytes),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(unhex32(hex(&bytes)), Some(bytes));
        assert_eq!(unhex("0aFF"), Some(vec![10, 255]));
        for bad in ["0", "+f", "zz", "0a0"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
        assert_eq!(unhex32("00"), None);
    }
}
