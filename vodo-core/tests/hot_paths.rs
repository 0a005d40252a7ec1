//! The hot paths allocate nothing: scope checks, permission decisions that
//! allow, key verification against the cache, and rate-limit checks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use allocation_counter::measure;
use vodo_core::audit::NoAudit;
use vodo_core::health::{HealthMonitor, HealthTracker, Outcome};
use vodo_core::keys::{ApiKeyManager, IssueKey, MemoryKeyStore};
use vodo_core::rate::{MemoryRateLimiter, RateKey, RateLimiter};
use vodo_core::{
    Decision, Grant, InstallationId, MemoryRegistry, PermissionRegistry, Permissions, PluginId,
    SecretKey, Timestamp,
};
use vodo_scopes::{PluginScope, ScopeSet};

fn assert_no_alloc(what: &str, f: impl FnOnce()) {
    let info = measure(f);
    assert_eq!(info.count_total, 0, "{what} allocated: {info:?}");
}

#[test]
fn hot_paths_do_not_allocate() {
    // The counter itself works: it sees an allocation when there is one.
    let cold = measure(|| drop(std::hint::black_box(vec![1u8; 16])));
    assert!(cold.count_total > 0);

    let granted: ScopeSet = (0..1000)
        .map(|i| format!("entities:write:e{i}"))
        .chain([
            "hooks:subscribe:order.*".into(),
            "network:outbound:*.example.com".into(),
        ])
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect();
    let requested: PluginScope = "entities:read:e999".parse().unwrap();
    assert_no_alloc("ScopeSet::allows", || assert!(granted.allows(&requested)));
    assert_no_alloc("ScopeSet::can_subscribe", || {
        assert!(granted.can_subscribe("order.item.added"))
    });
    assert_no_alloc("ScopeSet::can_connect", || {
        assert!(granted.can_connect("API.Example.COM", 443))
    });

    let registry = Arc::new(MemoryRegistry::new());
    let (shop, plugin) = (InstallationId::new("shop"), PluginId::new("p"));
    registry
        .put(&Grant {
            installation: shop.clone(),
            plugin: plugin.clone(),
            plugin_version: "1.0.0".into(),
            scopes: granted.clone(),
            rate_limit: None,
            granted_by: "me".into(),
            granted_at: Timestamp(0),
            enabled: true,
        })
        .unwrap();
    let perms = Permissions::new(registry, Arc::new(NoAudit));
    assert_eq!(perms.check(&shop, &plugin, &requested), Decision::Allow); // fills the cache
    assert_no_alloc("Permissions::check", || {
        assert_eq!(perms.check(&shop, &plugin, &requested), Decision::Allow);
    });
    assert_no_alloc("Permissions::current", || {
        assert!(perms.current(&shop, &plugin).unwrap().is_some());
    });

    let health = HealthMonitor::default();
    assert!(health.admit(&shop, &plugin).is_allowed()); // makes the breaker
    health.record(&shop, &plugin, Outcome::Success);
    assert_no_alloc("HealthTracker::admit and record", || {
        assert!(health.admit(&shop, &plugin).is_allowed());
        assert!(health.record(&shop, &plugin, Outcome::Success).is_none());
    });

    let keys = ApiKeyManager::new(
        Arc::new(MemoryKeyStore::new()),
        &SecretKey::from_bytes([1; 32]),
        Arc::new(NoAudit),
    );
    let (key, _) = keys
        .issue(IssueKey {
            installation: shop.clone(),
            plugin: plugin.clone(),
            name: "k".into(),
            scopes: ScopeSet::new(),
            ttl: None,
        })
        .unwrap();
    keys.verify(key.expose_secret()).unwrap(); // fills the cache
    assert_no_alloc("ApiKeyManager::verify", || {
        keys.verify(key.expose_secret()).unwrap();
    });

    let limiter = MemoryRateLimiter::new();
    let rk = RateKey::Plugin(shop, plugin);
    let limit = "1000/second".parse().unwrap();
    assert_eq!(limiter.check(&rk, limit), Decision::Allow);
    assert_no_alloc("RateLimiter::check", || {
        assert_eq!(limiter.check(&rk, limit), Decision::Allow);
    });
}
