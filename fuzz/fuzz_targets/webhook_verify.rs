//! A received webhook: its headers and body as any sender writes them.
#![no_main]
use std::sync::LazyLock;

use vodo_oauth::webhooks::{
    WebhookSecret, verify_at, verify_github, verify_salla, verify_stripe_at,
};

static SECRET: LazyLock<WebhookSecret> =
    LazyLock::new(|| WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap());

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (id, ts, sig) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let body = parts.next().unwrap_or("").as_bytes();
    let _ = WebhookSecret::parse(id);
    for now in [0, 1_700_000_000, i64::MIN, i64::MAX] {
        let _ = verify_at(&SECRET, id, ts, sig, body, now);
        let _ = verify_stripe_at("whsec_test", sig, body, now);
    }
    let _ = verify_github("secret", sig, body);
    let _ = verify_salla("secret", sig, body);
});
