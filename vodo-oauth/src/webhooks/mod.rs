//! Webhooks for partner apps, signed per the Standard Webhooks spec.
//!
//! Each delivery carries `webhook-id` (stable across retries, so receivers
//! can drop duplicates), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`: `v1,` + base64 of HMAC-SHA256 over
//! `{id}.{timestamp}.{body}` under the endpoint's `whsec_` secret. During a
//! secret rotation several signatures are sent, space-separated, and a
//! receiver accepts the message if any one verifies.

mod sign;

pub use sign::{Signer, VerifyError, WebhookSecret, verify, verify_at};
