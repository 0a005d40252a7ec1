//! OAuth and webhook benchmarks, each beside the cryptographic floor of the
//! same operation measured in the same run.
//!
//! Run with `cargo bench -p benches --bench oauth`; figures go to BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use ring::rand::{SecureRandom, SystemRandom};
use vodo_core::SecretKey;
use vodo_oauth::model::ClientKind;
use vodo_oauth::webhooks::{Signer, WebhookSecret, verify_at};
use vodo_oauth::{AuthServer, AuthServerConfig, HttpRequest, MemoryStore};
use vodo_scopes::{PluginScope, ScopeSet};

fn benches(c: &mut Criterion) {
    let server = AuthServer::new(
        AuthServerConfig::new("https://auth.shop.example"),
        Arc::new(MemoryStore::new()),
        &SecretKey::from_bytes([1; 32]),
    )
    .unwrap();
    let partner = server.register_partner("Acme", "dev@acme.example").unwrap();
    let scopes: ScopeSet = ["entities:read:order".parse::<PluginScope>().unwrap()]
        .into_iter()
        .collect();
    let (client, secret) = server
        .register_client(
            &partner.id,
            "Sync",
            ClientKind::Confidential,
            &["https://a.example/cb"],
            scopes,
        )
        .unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            client.id,
            secret.unwrap().expose_secret()
        ))
    );
    let token_req = HttpRequest {
        method: "POST".into(),
        path: "/oauth/token".into(),
        headers: vec![("authorization".into(), basic.clone())],
        body: b"grant_type=client_credentials".to_vec(),
        ..Default::default()
    };
    let issued: serde_json::Value =
        serde_json::from_slice(&server.handle(&token_req, None).body).unwrap();
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let introspect_req = HttpRequest {
        method: "POST".into(),
        path: "/oauth/introspect".into(),
        headers: vec![("authorization".into(), basic)],
        body: format!("token={access}").into_bytes(),
        ..Default::default()
    };
    assert!(
        String::from_utf8_lossy(&server.handle(&introspect_req, None).body)
            .contains("\"active\":true")
    );

    let mut g = c.benchmark_group("oauth");
    g.bench_function("token_issuance/client_credentials_via_handle", |b| {
        b.iter(|| assert_eq!(server.handle(black_box(&token_req), None).status, 200))
    });
    // The floor of issuing a token: 32 random bytes, base64url, SHA-256 for storage.
    let rng = SystemRandom::new();
    g.bench_function("token_issuance/floor_random_encode_hash", |b| {
        b.iter(|| {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes).unwrap();
            let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            ring::digest::digest(&ring::digest::SHA256, t.as_bytes())
        })
    });
    g.bench_function("introspection/via_handle", |b| {
        b.iter(|| assert_eq!(server.handle(black_box(&introspect_req), None).status, 200))
    });
    // The floor of a lookup by hash: SHA-256 and a map probe.
    let mut map = HashMap::new();
    map.insert(
        ring::digest::digest(&ring::digest::SHA256, access.as_bytes())
            .as_ref()
            .to_vec(),
        1u8,
    );
    g.bench_function("introspection/floor_hash_and_lookup", |b| {
        b.iter(|| {
            map.get(
                ring::digest::digest(&ring::digest::SHA256, black_box(&access).as_bytes()).as_ref(),
            )
            .copied()
        })
    });
    g.finish();

    let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let signer = Signer::new(vec![secret.clone()]).unwrap();
    let body = serde_json::json!({ "type": "order.created", "timestamp": "2026-11-25T00:00:00.000Z",
        "data": { "id": 1001, "total": "149.50", "currency": "SAR", "items": [{ "sku": "A-1", "qty": 2 }] } })
    .to_string();
    let (id, ts) = ("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553i64);
    let sig = signer.signature(id, ts, body.as_bytes());
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode("C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
    let signed = format!("{id}.{ts}.{body}");

    let mut g = c.benchmark_group("webhooks");
    g.bench_function("sign/vodo", |b| {
        b.iter(|| signer.signature(black_box(id), ts, black_box(body.as_bytes())))
    });
    g.bench_function("sign/floor_raw_hmac", |b| {
        b.iter(|| ring::hmac::sign(&key, black_box(signed.as_bytes())))
    });
    g.bench_function("verify/vodo", |b| {
        b.iter(|| {
            verify_at(
                &secret,
                black_box(id),
                "1649367553",
                black_box(&sig),
                body.as_bytes(),
                ts,
            )
            .unwrap()
        })
    });
    let tag = ring::hmac::sign(&key, signed.as_bytes());
    g.bench_function("verify/floor_raw_hmac_verify", |b| {
        b.iter(|| ring::hmac::verify(&key, black_box(signed.as_bytes()), tag.as_ref()).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = oauth;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(oauth);
