//! Signing and verifying Standard Webhooks messages.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

/// How far a message's timestamp may be from the receiver's clock (5 min),
/// as every reference implementation uses.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// An endpoint's signing secret: `whsec_` + base64 of its key bytes.
/// `Debug` is redacted.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    /// A fresh secret of 32 random bytes.
    pub fn generate() -> Result<Self> {
        let mut key = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| Error::Internal("the system random source failed".into()))?;
        Ok(Self { key })
    }

    /// Parses `whsec_...` (the prefix is optional, as in the spec's libraries).
    pub fn parse(s: &str) -> Result<Self> {
        let b64 = s.strip_prefix("whsec_").unwrap_or(s);
        let key = STANDARD.decode(b64).map_err(|_| {
            Error::Invalid("a webhook secret is `whsec_` followed by base64".into())
        })?;
        if !(24..=64).contains(&key.len()) {
            return Err(Error::Invalid(
                "a webhook secret holds 24 to 64 bytes".into(),
            ));
        }
        Ok(Self { key })
    }

    /// The secret as `whsec_...`, to show to the endpoint's owner.
    pub fn expose_secret(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.key))
    }

    fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
    }
}

/// Signs messages with one or more secrets (several during a rotation).
#[derive(Debug, Clone)]
pub struct Signer {
    secrets: Vec<WebhookSecret>,
}

impl Signer {
    /// A signer with these secrets, newest first.
    pub fn new(secrets: Vec<WebhookSecret>) -> Result<Self> {
        if secrets.is_empty() {
            return Err(Error::Invalid("a signer needs at least one secret".into()));
        }
        Ok(Self { secrets })
    }

    /// The `webhook-signature` header value for a message.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.secrets
            .iter()
            .map(|s| s.sign(id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The three headers of a message.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
        [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", self.signature(id, timestamp, body)),
        ]
    }
}

/// Why a received webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is missing or malformed.
    #[error("webhook header `{0}` is missing or malformed")]
    Header(&'static str),
    /// The timestamp is outside the tolerance: too old (a replay) or in the future.
    #[error("webhook timestamp is {0} s away from now, beyond the 300 s tolerance")]
    Timestamp(i64),
    /// No signature matched.
    #[error("no webhook signature matches: wrong secret, or the body was changed")]
    Signature,
}

/// Verifies a received message against `secret`, now.
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    verify_at(secret, id, timestamp, signatures, body, now)
}

/// Verifies a received message against `secret` at Unix time `now`.
pub fn verify_at(
    secret: &WebhookSecret,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    if id.is_empty() || id.contains('.') {
        return Err(VerifyError::Header("webhook-id"));
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Header("webhook-timestamp"))?;
    let skew = now.saturating_sub(ts);
    if skew.abs() > TOLERANCE_SECS {
        return Err(VerifyError::Timestamp(skew));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.key);
    let mut signed = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(ts.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let mut any = false;
    for sig in signatures.split(' ').filter(|s| !s.is_empty()) {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue; // other versions (v1a, ...) are not ours to check
        };
        let Ok(tag) = STANDARD.decode(b64) else {
            continue;
        };
        // `hmac::verify` compares in constant time.
        any |= hmac::verify(&key, &signed, &tag).is_ok();
    }
    if any {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn standard_webhooks_reference_signature() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let signer = Signer::new(vec![secret.clone()]).unwrap();
        assert_eq!(signer.signature(ID, TS, BODY), SIG);
        assert_eq!(
            verify_at(&secret, ID, &TS.to_string(), SIG, BODY, TS + 10),
            Ok(())
        );
        assert_eq!(secret.expose_secret(), SECRET);
    }

    #[test]
    fn tampering_stale_and_future_messages_are_refused() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let ts = TS.to_string();
        assert_eq!(
            verify_at(&secret, ID, &ts, SIG, b"{}", TS),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify_at(&secret, "msg_other", &ts, SIG, BODY, TS),
            Err(VerifyError::Signature)
        );
        assert!(matches!(
            verify_at(&secret, ID, &ts, SIG, BODY, TS + 301),
            Err(VerifyError::Timestamp(_))
        ));
        assert!(matches!(
            verify_at(&secret, ID, &ts, SIG, BODY, TS - 301),
            Err(VerifyError::Timestamp(_))
        ));
        assert_eq!(
            verify_at(&secret, ID, "soon", SIG, BODY, TS),
            Err(VerifyError::Header("webhook-timestamp"))
        );
        assert_eq!(
            verify_at(&secret, "a.b", &ts, SIG, BODY, TS),
            Err(VerifyError::Header("webhook-id"))
        );
        let other = WebhookSecret::generate().unwrap();
        assert_eq!(
            verify_at(&other, ID, &ts, SIG, BODY, TS),
            Err(VerifyError::Signature)
        );
    }

    #[test]
    fn during_rotation_either_signature_verifies() {
        let old = WebhookSecret::parse(SECRET).unwrap();
        let new = WebhookSecret::generate().unwrap();
        let signer = Signer::new(vec![new.clone(), old.clone()]).unwrap();
        let header = signer.signature(ID, TS, BODY);
        assert_eq!(header.split(' ').count(), 2);
        let ts = TS.to_string();
        assert_eq!(verify_at(&old, ID, &ts, &header, BODY, TS), Ok(()));
        assert_eq!(verify_at(&new, ID, &ts, &header, BODY, TS), Ok(()));
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
    }
}
