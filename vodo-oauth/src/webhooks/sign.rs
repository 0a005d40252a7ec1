//! Signing and verifying Standard Webhooks messages, and, opt-in per
//! endpoint, the signature headers of Salla, Stripe and GitHub for
//! receivers written against those platforms.

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

/// How an endpoint's requests are signed. [`Standard`](Self::Standard) is
/// the default and the one to use; the others exist so that receivers
/// written for another platform work unchanged. They sign with the bytes of
/// the secret *as shown to the owner* (`whsec_...`), since that is the
/// string such receivers are configured with, and every request also
/// carries `webhook-id` for deduplication.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{ts}.{body}")>`.
    #[default]
    Standard,
    /// Salla: `X-Salla-Security-Strategy: Signature` and
    /// `X-Salla-Signature: <hex HMAC-SHA256(body)>`. No timestamp is signed,
    /// so a receiver must dedupe by `webhook-id` to resist replays.
    Salla,
    /// Stripe's format: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256("{ts}.{body}")>`,
    /// one `v1` per secret during a rotation.
    Stripe,
    /// GitHub's format: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`,
    /// newest secret only. No timestamp is signed.
    GitHub,
}

impl SignatureScheme {
    /// The name stored and shown (`standard`, `salla`, `stripe`, `git_hub`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Salla => "salla",
            Self::Stripe => "stripe",
            Self::GitHub => "git_hub",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "standard" => Self::Standard,
            "salla" => Self::Salla,
            "stripe" => Self::Stripe,
            "git_hub" | "github" => Self::GitHub,
            other => {
                return Err(Error::Invalid(format!(
                    "`{other}` is not a signature scheme: use standard, salla, stripe or github"
                )));
            }
        })
    }
}

/// Lowercase hex of HMAC-SHA256 of `parts` under `key`.
fn hex_hmac(key: &[u8], parts: &[&[u8]]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    vodo_core::digest::hex(ctx.sign().as_ref())
}

/// Constant-time check of a hex HMAC-SHA256 of `parts` under `key`.
fn hex_hmac_matches(key: &[u8], parts: &[&[u8]], hex_tag: &str) -> bool {
    let Some(tag) = vodo_core::digest::unhex(hex_tag.trim()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let data: Vec<u8> = parts.concat();
    hmac::verify(&key, &data, &tag).is_ok()
}

/// Verifies a Salla-style `X-Salla-Signature` against the secret the
/// receiver was given (`whsec_...`). Nothing here resists replays: dedupe
/// by `webhook-id`.
pub fn verify_salla(secret: &str, signature: &str, body: &[u8]) -> Result<(), VerifyError> {
    if hex_hmac_matches(secret.as_bytes(), &[body], signature) {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}

/// Verifies a GitHub-style `X-Hub-Signature-256` (`sha256=<hex>`).
pub fn verify_github(secret: &str, signature: &str, body: &[u8]) -> Result<(), VerifyError> {
    let hex_tag = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or(VerifyError::Header("x-hub-signature-256"))?;
    if hex_hmac_matches(secret.as_bytes(), &[body], hex_tag) {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}

/// Verifies a Stripe-style `Stripe-Signature` at Unix time `now`, with the
/// same 5-minute tolerance as Standard Webhooks.
pub fn verify_stripe_at(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let mut ts = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => ts = v.parse::<i64>().ok(),
            Some(("v1", v)) => tags.push(v),
            _ => {}
        }
    }
    let ts = ts.ok_or(VerifyError::Header("stripe-signature"))?;
    let skew = now.saturating_sub(ts);
    if skew.unsigned_abs() > TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::Timestamp(skew));
    }
    let stamp = ts.to_string();
    let parts: [&[u8]; 3] = [stamp.as_bytes(), b".", body];
    if tags
        .iter()
        .any(|t| hex_hmac_matches(secret.as_bytes(), &parts, t))
    {
        Ok(())
    } else {
        Err(VerifyError::Signature)
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

    /// The headers of a message signed with `scheme`.
    pub fn headers_for(
        &self,
        scheme: SignatureScheme,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        // The shown secret's bytes: what a receiver for that platform is configured with.
        let shown = |s: &WebhookSecret| s.expose_secret().into_bytes();
        let newest = self.secrets.first().map(shown).unwrap_or_default();
        match scheme {
            SignatureScheme::Standard => self.headers(id, timestamp, body).to_vec(),
            SignatureScheme::Salla => vec![
                ("webhook-id", id.to_owned()),
                ("x-salla-security-strategy", "Signature".to_owned()),
                ("x-salla-signature", hex_hmac(&newest, &[body])),
            ],
            SignatureScheme::Stripe => {
                let stamp = timestamp.to_string();
                let mut value = format!("t={stamp}");
                for s in &self.secrets {
                    value.push_str(",v1=");
                    value.push_str(&hex_hmac(&shown(s), &[stamp.as_bytes(), b".", body]));
                }
                vec![("webhook-id", id.to_owned()), ("stripe-signature", value)]
            }
            SignatureScheme::GitHub => vec![
                ("webhook-id", id.to_owned()),
                (
                    "x-hub-signature-256",
                    format!("sha256={}", hex_hmac(&newest, &[body])),
                ),
            ],
        }
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
    if skew.unsigned_abs() > TOLERANCE_SECS.unsigned_abs() {
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

    /// GitHub's published example: secret "It's a Secret to Everybody",
    /// payload "Hello, World!".
    #[test]
    fn github_reference_signature() {
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            format!(
                "sha256={}",
                hex_hmac(b"It's a Secret to Everybody", &[b"Hello, World!"])
            ),
            sig
        );
        assert_eq!(
            verify_github("It's a Secret to Everybody", sig, b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            verify_github("It's a Secret to Everybody", sig, b"Hello, World?"),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify_github("It's a Secret to Everybody", "757107ea", b"Hello, World!"),
            Err(VerifyError::Header("x-hub-signature-256"))
        );
    }

    #[test]
    fn compat_schemes_verify_with_the_shown_secret_and_catch_tampering() {
        let old = WebhookSecret::generate().unwrap();
        let new = WebhookSecret::generate().unwrap();
        let signer = Signer::new(vec![new.clone(), old.clone()]).unwrap();
        let header = |scheme, name: &str| {
            signer
                .headers_for(scheme, ID, TS, BODY)
                .into_iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
                .unwrap()
        };
        let shown = new.expose_secret();
        assert_eq!(header(SignatureScheme::Salla, "webhook-id"), ID);
        assert_eq!(
            header(SignatureScheme::Salla, "x-salla-security-strategy"),
            "Signature"
        );
        let salla = header(SignatureScheme::Salla, "x-salla-signature");
        assert_eq!(verify_salla(&shown, &salla, BODY), Ok(()));
        assert!(verify_salla(&shown, &salla, b"{}").is_err());
        assert!(verify_salla(&old.expose_secret(), &salla, BODY).is_err());
        let github = header(SignatureScheme::GitHub, "x-hub-signature-256");
        assert_eq!(verify_github(&shown, &github, BODY), Ok(()));
        // Stripe: every secret of a rotation signs; the timestamp is bound.
        let stripe = header(SignatureScheme::Stripe, "stripe-signature");
        assert!(stripe.starts_with(&format!("t={TS},v1=")));
        assert_eq!(stripe.matches("v1=").count(), 2);
        assert_eq!(verify_stripe_at(&shown, &stripe, BODY, TS + 5), Ok(()));
        assert_eq!(
            verify_stripe_at(&old.expose_secret(), &stripe, BODY, TS),
            Ok(())
        );
        assert!(verify_stripe_at(&shown, &stripe, b"{}", TS).is_err());
        assert_eq!(
            verify_stripe_at(&shown, &stripe, BODY, TS + 301),
            Err(VerifyError::Timestamp(301))
        );
        let replayed = stripe.replacen(&format!("t={TS}"), &format!("t={}", TS + 100), 1);
        assert_eq!(
            verify_stripe_at(&shown, &replayed, BODY, TS + 100),
            Err(VerifyError::Signature)
        );
        // The standard scheme is what `headers` gives.
        assert_eq!(
            signer.headers_for(SignatureScheme::Standard, ID, TS, BODY),
            signer.headers(ID, TS, BODY).to_vec()
        );
        for scheme in [
            SignatureScheme::Standard,
            SignatureScheme::Salla,
            SignatureScheme::Stripe,
            SignatureScheme::GitHub,
        ] {
            assert_eq!(SignatureScheme::parse(scheme.as_str()).unwrap(), scheme);
        }
        assert!(SignatureScheme::parse("md5").is_err());
    }

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
