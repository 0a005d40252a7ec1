//! Webhooks for partner apps, signed per the Standard Webhooks spec.
//!
//! Each delivery carries `webhook-id` (stable across retries, so receivers
//! can drop duplicates), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`: `v1,` + base64 of HMAC-SHA256 over
//! `{id}.{timestamp}.{body}` under the endpoint's `whsec_` secret. During a
//! secret rotation several signatures are sent, space-separated, and a
//! receiver accepts the message if any one verifies.
//!
//! Events go through a durable [`Outbox`] ([`SqliteOutbox`] by default) and a [`Deliverer`]
//! that retries with backoff and jitter, keeps a delivery log, disables an
//! endpoint that fails for days and tells its owner, and can send a test
//! event. Subscriptions may carry [`Rule`]s over the event's fields.

mod deliver;
mod memory;
mod outbox;
mod rules;
mod sign;

pub use deliver::{
    Deliverer, DeliveryConfig, DeliveryWorker, EndpointNotifier, LogNotifier, TestDelivery,
    event_body,
};
pub use memory::MemoryOutbox;
pub use outbox::{Attempt, Claimed, DeliveryStatus, Endpoint, Message, Outbox, SqliteOutbox};
pub use rules::{Rule, all_match};
pub use sign::{
    SignatureScheme, Signer, VerifyError, WebhookSecret, verify, verify_at, verify_github,
    verify_salla, verify_stripe_at,
};
