//! The platform on loopback for a load test with a real HTTP client
//! (`benches/load`, which drives it with Debian's `wrk`): a data folder in a
//! temporary directory, the bench plugin installed with a rate limit no
//! load test reaches, a record to read and a key for both. Prints
//! `KEY <key>` and `URL <base>` and serves until killed.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use vodo_core::keys::IssueKey;
use vodo_core::{InstallationId, Manifest};
use vodo_sandbox::{HostServices, Reuse};
use vodo_server::{Platform, PlatformConfig};

fn main() {
    let reuse = match std::env::args().nth(1).as_deref() {
        Some("warm") => Reuse::warm(),
        _ => Reuse::Fresh,
    };
    let data = tempfile::tempdir().unwrap();
    let mut config = PlatformConfig::new(data.path());
    config.limits.reuse = reuse;
    let platform = Arc::new(Platform::open(config).unwrap());
    let shop = InstallationId::new("shop");
    platform.store.put_installation(&shop, "Shop").unwrap();
    // A rate limit no load test on loopback reaches, and the orders resource.
    let manifest = benches::MANIFEST.replace(
        r#""api": { "rate_limit": "1000000/second" }"#,
        r#""api": { "rate_limit": "1000000/second", "endpoints": ["orders"] }"#,
    );
    assert_ne!(manifest, benches::MANIFEST);
    let m = Manifest::parse(&manifest).unwrap();
    platform
        .add_package(&manifest, &test_support::guest("bench"), None)
        .unwrap();
    let (_, diff, _) = platform.consent_for(&shop, m.slug.as_str()).unwrap();
    platform
        .install(&shop, m.slug.as_str(), &diff.added, "load")
        .unwrap();
    platform
        .store
        .put_entity(
            &shop,
            "order",
            "1001",
            r#"{"total":"49.90","currency":"SAR"}"#,
        )
        .unwrap();
    let (key, _) = platform
        .host
        .keys
        .issue(IssueKey {
            installation: shop.clone(),
            plugin: m.slug.clone(),
            name: "load".into(),
            scopes: m.scopes().clone(),
            ttl: None,
        })
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("KEY {}", key.expose_secret());
        println!("URL http://{}", listener.local_addr().unwrap());
        vodo_server::serve(
            platform,
            listener,
            std::future::pending(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    });
    drop(data);
}
