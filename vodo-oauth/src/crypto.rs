//! Random token strings, their hashes and PKCE.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

/// Prefix of access tokens.
pub const ACCESS_PREFIX: &str = "vodo_at_";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "vodo_rt_";
/// Prefix of authorization codes.
pub const CODE_PREFIX: &str = "vodo_ac_";
/// Prefix of client secrets.
pub const SECRET_PREFIX: &str = "vodo_cs_";
/// Prefix of device codes (RFC 8628).
pub const DEVICE_PREFIX: &str = "vodo_dc_";

/// The letters of user codes: consonants without look-alikes, so a code
/// spells no word and reads the same aloud (RFC 8628 section 6.1).
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Eight letters of [`USER_CODE_ALPHABET`] (20^8, about 34.5 bits).
pub(crate) fn random_user_code() -> Result<String> {
    let mut out = String::with_capacity(8);
    while out.len() < 8 {
        let mut byte = [0u8; 1];
        SystemRandom::new()
            .fill(&mut byte)
            .map_err(|_| Error::Internal("the system random source failed".into()))?;
        // 240 = 12 * 20: rejecting the rest keeps every letter equally likely.
        if byte[0] < 240 {
            out.push(char::from(USER_CODE_ALPHABET[usize::from(byte[0] % 20)]));
        }
    }
    Ok(out)
}

/// A stored user code as shown to people: `BCDF-GHJK`.
pub(crate) fn show_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) if !b.is_empty() => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

/// A user code as typed (any case, dashes and spaces) in stored form.
pub(crate) fn normalize_user_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .flat_map(char::to_uppercase)
        .collect()
}

/// `prefix` followed by 32 random bytes in base64url (256 bits).
pub(crate) fn random_token(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("the system random source failed".into()))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A short random id (96 bits), for client ids and token families.
pub(crate) fn random_id(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 12];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("the system random source failed".into()))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// SHA-256 of a secret string: how tokens, codes and secrets are stored.
pub(crate) fn hash(secret: &str) -> [u8; 32] {
    vodo_core::digest::sha256(secret.as_bytes())
}

/// Equality of two hashes in time that does not depend on where they differ.
pub(crate) fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Whether `verifier` is a valid PKCE verifier (43 to 128 unreserved characters).
pub fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Whether `verifier` answers `challenge`, compared in constant time.
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    valid_verifier(verifier) && ct_eq(&hash(&pkce_challenge(verifier)), &hash(challenge))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            pkce_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
    }

    #[test]
    fn verifiers_are_checked() {
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(50))));
        assert!(valid_verifier(&"a~.-_".repeat(10)));
    }

    #[test]
    fn tokens_carry_their_kind_and_256_bits() {
        let t = random_token(ACCESS_PREFIX).unwrap();
        assert!(t.starts_with("vodo_at_"));
        assert_eq!(t.len(), 8 + 43);
        assert_ne!(t, random_token(ACCESS_PREFIX).unwrap());
    }
}
