//! [`SecretKey`]: the host's own key for hashing API keys and chaining the audit file.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// A 32-byte key that never leaves the host: it keys the HMAC under which API
/// keys are stored and the HMAC chain of the audit file.
///
/// Keep it outside the database it protects (an environment variable, a
/// secrets manager, a file only the host can read): a leaked database is then
/// useless for forging keys, and an attacker who can edit the audit file
/// cannot recompute its chain. `Debug` prints `[redacted]`; the bytes are
/// zeroed on drop.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| Error::Invalid("the system random source failed".into()))?;
        Ok(Self(bytes))
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A key from 64 hex digits, as stored in a config file.
    pub fn from_hex(hex: &str) -> Result<Self> {
        let hex = hex.trim();
        let bad = || {
            Error::Invalid(
                "a secret key is 64 hex digits (32 bytes): generate one with `SecretKey::generate`"
                    .into(),
            )
        };
        let bytes = Zeroizing::new(crate::digest::unhex32(hex).ok_or_else(bad)?);
        Ok(Self(bytes))
    }

    /// The key as 64 hex digits, to store it in a config file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::digest::hex(self.0.as_ref()))
    }

    /// An HMAC-SHA256 key derived from this key for one `purpose` (such as
    /// `b"vodo oauth csrf v1"`), so that no tag made for one use can be
    /// replayed as another.
    pub fn hmac_key(&self, purpose: &[u8]) -> ring::hmac::Key {
        // One host key serves several purposes; derive a distinct key for each
        // so that a tag made for one can never be replayed as the other.
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_ref());
        let derived = ring::hmac::sign(&root, purpose);
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}
