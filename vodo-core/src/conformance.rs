//! Conformance suites: the behaviour every implementation of a store trait
//! must have. The in-memory and SQLite stores run them in this crate's
//! tests; a host's own store (PostgreSQL, ...) runs them with the
//! `conformance` feature. Each suite panics with a message on the first
//! difference, like any test assertion, and expects a fresh, empty store.

// A conformance suite is a test: failing loudly on the first difference is its job.
#![allow(clippy::panic)]

use vodo_scopes::{PluginScope, ScopeSet};

use crate::audit::{AuditAction, AuditEvent, AuditFilter, AuditKind, AuditLog, LifecycleChange};
use crate::decision::{Decision, DenyReason};
use crate::health::{Admission, BreakerConfig, HealthStatus, HealthTracker, Outcome};
use crate::keys::{ApiKeyRecord, ApiKeyStore};
use crate::permissions::{Grant, PermissionRegistry};
use crate::rate::{RateKey, RateLimit, RateLimiter};
use crate::{Error, InstallationId, PluginId, Timestamp};

fn scopes(v: &[&str]) -> ScopeSet {
    v.iter()
        .map(|s| s.parse::<PluginScope>())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("conformance suite scope: {e}"))
}

fn grant(installation: &str, plugin: &str, s: &[&str]) -> Grant {
    Grant {
        installation: InstallationId::new(installation),
        plugin: PluginId::new(plugin),
        plugin_version: "1.0.0".into(),
        scopes: scopes(s),
        rate_limit: None,
        granted_by: "user-7 (Zoë)".into(),
        granted_at: Timestamp(1_700_000_000_000),
        enabled: true,
    }
}

/// Grants are stored per (installation, plugin), replaced whole, listed and removed.
pub fn permission_registry(reg: &dyn PermissionRegistry) {
    let (shop1, shop2) = (
        InstallationId::new("conf-shop-1"),
        InstallationId::new("conf-shop-2"),
    );
    let (a, b) = (
        PluginId::new("conf-plugin-a"),
        PluginId::new("conf-plugin-b"),
    );
    assert_eq!(
        reg.get(&shop1, &a).ok(),
        Some(None),
        "a fresh registry has no grant"
    );
    let generation = || {
        reg.generation()
            .unwrap_or_else(|e| panic!("generation: {e}"))
    };
    let g0 = generation();

    let rich = grant(
        "conf-shop-1",
        "conf-plugin-a",
        &[
            "entities:read:order",
            "entities:write",
            "hooks:subscribe:order.*",
            "hooks:subscribe:*.deleted",
            "hooks:trigger:order.noted",
            "network:outbound:*.example.com:8443",
            "network:outbound:api.stripe.com",
            "storage:write",
            "users:read",
        ],
    );
    let mut rich = rich;
    rich.rate_limit = "250/hour".parse().ok();
    reg.put(&rich).unwrap_or_else(|e| panic!("put: {e}"));
    assert_eq!(
        reg.get(&shop1, &a).ok().flatten().as_ref(),
        Some(&rich),
        "a grant reads back unchanged, its rate limit included"
    );
    let g1 = generation();
    assert_ne!(g1, g0, "put changes the generation");

    let mut replaced = grant("conf-shop-1", "conf-plugin-a", &["api:access"]);
    replaced.enabled = false;
    replaced.plugin_version = "2.0.0-beta.1".into();
    reg.put(&replaced)
        .unwrap_or_else(|e| panic!("put again: {e}"));
    assert_eq!(
        reg.get(&shop1, &a).ok().flatten().as_ref(),
        Some(&replaced),
        "put replaces the whole grant"
    );

    for g in [
        grant("conf-shop-2", "conf-plugin-a", &["users:read"]),
        grant("conf-shop-1", "conf-plugin-b", &[]),
    ] {
        reg.put(&g).unwrap_or_else(|e| panic!("put: {e}"));
    }
    assert_eq!(
        reg.get(&shop2, &a).ok().flatten().map(|g| g.scopes),
        Some(scopes(&["users:read"])),
        "installations do not share grants"
    );
    let listed: Vec<String> = reg
        .list(&shop1)
        .unwrap_or_else(|e| panic!("list: {e}"))
        .into_iter()
        .map(|g| g.plugin.to_string())
        .collect();
    assert_eq!(
        listed,
        ["conf-plugin-a", "conf-plugin-b"],
        "list is by plugin id"
    );
    assert_eq!(
        reg.installations_of(&a).ok(),
        Some(vec![shop1.clone(), shop2.clone()]),
        "installations_of is sorted"
    );
    let g2 = generation();
    assert_ne!(g2, g1, "every put changes the generation");
    assert_eq!(reg.remove(&shop2, &a).ok(), Some(true));
    let g3 = generation();
    assert_ne!(g3, g2, "remove changes the generation");
    assert_eq!(
        reg.remove(&shop2, &a).ok(),
        Some(false),
        "removing twice reports nothing removed"
    );
    assert_eq!(reg.get(&shop2, &a).ok(), Some(None));
    assert_eq!(
        reg.get(&shop1, &b).ok().flatten().map(|g| g.scopes.len()),
        Some(0),
        "an empty grant is kept"
    );
}

fn key(id: &str, created: i64, installation: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        hash: [id.len() as u8; 32],
        installation: InstallationId::new(installation),
        plugin: PluginId::new("conf-plugin"),
        name: format!("key {id}"),
        scopes: scopes(&["api:access", "entities:read:order"]),
        created_at: Timestamp(created),
        expires_at: Some(Timestamp(created + 1000)),
        revoked_at: None,
        replaced_by: None,
        usage_count: 0,
        last_used_at: None,
    }
}

/// Key records are inserted once, read back whole, updated, listed per owner, and count usage.
pub fn api_key_store(store: &dyn ApiKeyStore) {
    let k1 = key("confAAA1", 20, "conf-shop");
    let k2 = key("confAAA2", 10, "conf-shop");
    let other = key("confAAA3", 5, "conf-elsewhere");
    for k in [&k1, &k2, &other] {
        store.insert(k).unwrap_or_else(|e| panic!("insert: {e}"));
    }
    assert!(store.insert(&k1).is_err(), "inserting an existing id fails");
    assert_eq!(
        store.get("confAAA1").ok().flatten().as_ref(),
        Some(&k1),
        "a record reads back unchanged"
    );
    assert_eq!(store.get("nope").ok(), Some(None));

    // Conditional changes: a replacement shortens the expiry and names the
    // successor once; a revocation happens once and ends replacements.
    assert_eq!(
        store.replace("confAAA1", "confAAA2", Timestamp(500)).ok(),
        Some(true)
    );
    assert_eq!(
        store.replace("confAAA1", "confAAA3", Timestamp(400)).ok(),
        Some(false),
        "a key is replaced once"
    );
    let replaced = store.get("confAAA1").ok().flatten();
    assert_eq!(
        replaced
            .as_ref()
            .map(|r| (r.replaced_by.as_deref(), r.expires_at)),
        Some((Some("confAAA2"), Some(Timestamp(500)))),
        "the replacement names its successor and shortens the expiry"
    );
    assert_eq!(store.revoke("confAAA1", Timestamp(99)).ok(), Some(true));
    assert_eq!(store.revoke("confAAA1", Timestamp(120)).ok(), Some(false));
    let mut expected = k1.clone();
    expected.replaced_by = Some("confAAA2".into());
    expected.expires_at = Some(Timestamp(500));
    expected.revoked_at = Some(Timestamp(99));
    assert_eq!(
        store.get("confAAA1").ok().flatten().as_ref(),
        Some(&expected)
    );
    assert!(
        matches!(
            store.revoke("missing1", Timestamp(1)),
            Err(Error::NotFound(_))
        ),
        "revoking a missing key is NotFound"
    );
    assert!(
        matches!(
            store.replace("missing1", "x", Timestamp(1)),
            Err(Error::NotFound(_))
        ),
        "replacing a missing key is NotFound"
    );

    let ids: Vec<String> = store
        .list(
            &InstallationId::new("conf-shop"),
            &PluginId::new("conf-plugin"),
        )
        .unwrap_or_else(|e| panic!("list: {e}"))
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(
        ids,
        ["confAAA2", "confAAA1"],
        "list is per owner, oldest first"
    );

    store
        .record_usage("confAAA2", 3, Timestamp(500))
        .unwrap_or_else(|e| panic!("usage: {e}"));
    store
        .record_usage("confAAA2", 2, Timestamp(400))
        .unwrap_or_else(|e| panic!("usage: {e}"));
    let k = store
        .get("confAAA2")
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("confAAA2 gone"));
    assert_eq!(
        (k.usage_count, k.last_used_at),
        (5, Some(Timestamp(500))),
        "usage adds up; last use never moves back"
    );
    assert!(store.record_usage("missing1", 1, Timestamp(1)).is_err());
}

fn event(plugin: &str, at: i64, action: AuditAction) -> AuditEvent {
    AuditEvent::now(action)
        .plugin(&PluginId::new(plugin))
        .installation(&InstallationId::new("conf-shop"))
        .at(Timestamp(at))
}

/// Events are kept in order with increasing sequence numbers and found by
/// plugin, kind, time range, and page.
pub fn audit_log(log: &dyn AuditLog) {
    let denied = |scope: &str| AuditAction::PermissionDenied {
        scope: scope.into(),
        reason: crate::decision::DenyReason::MissingScope {
            scope: scope.into(),
        },
    };
    log.record(&event("a", 100, denied("entities:write:order")))
        .unwrap_or_else(|e| panic!("record: {e}"));
    log.record(&event(
        "b",
        200,
        AuditAction::KeyUsed {
            key_id: "k".into(),
            uses: 2,
        },
    ))
    .unwrap_or_else(|e| panic!("record: {e}"));
    log.record_all(&[
        event(
            "a",
            300,
            AuditAction::Lifecycle {
                change: LifecycleChange::Disabled,
                detail: String::new(),
            },
        ),
        event(
            "a",
            400,
            AuditAction::SandboxViolation {
                violation: "memory".into(),
                detail: "64 MiB".into(),
            },
        ),
        event("b", 500, denied("network:outbound:evil.example")),
    ])
    .unwrap_or_else(|e| panic!("record_all: {e}"));
    log.flush().unwrap_or_else(|e| panic!("flush: {e}"));

    let all = log
        .query(&AuditFilter::default())
        .unwrap_or_else(|e| panic!("query: {e}"));
    assert_eq!(all.len(), 5);
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequence numbers increase"
    );
    assert_eq!(
        all[3].event,
        event(
            "a",
            400,
            AuditAction::SandboxViolation {
                violation: "memory".into(),
                detail: "64 MiB".into()
            }
        )
    );

    let q = |f: AuditFilter| -> Vec<i64> {
        log.query(&f)
            .unwrap_or_else(|e| panic!("query: {e}"))
            .into_iter()
            .map(|r| r.event.at.0)
            .collect()
    };
    assert_eq!(
        q(AuditFilter {
            plugin: Some("a".into()),
            ..Default::default()
        }),
        [100, 300, 400]
    );
    assert_eq!(
        q(AuditFilter {
            kinds: vec![AuditKind::PermissionDenied],
            ..Default::default()
        }),
        [100, 500]
    );
    assert_eq!(
        q(AuditFilter {
            kinds: vec![AuditKind::PermissionDenied, AuditKind::KeyUsed],
            plugin: Some("b".into()),
            ..Default::default()
        }),
        [200, 500]
    );
    assert_eq!(
        q(AuditFilter {
            from: Some(Timestamp(200)),
            until: Some(Timestamp(400)),
            ..Default::default()
        }),
        [200, 300]
    );
    assert_eq!(
        q(AuditFilter {
            installation: Some("other".into()),
            ..Default::default()
        }),
        Vec::<i64>::new()
    );
    let page1 = log
        .query(&AuditFilter {
            limit: Some(2),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let page2 = q(AuditFilter {
        limit: Some(2),
        after_seq: page1.last().map(|r| r.seq),
        ..Default::default()
    });
    assert_eq!(
        page2,
        [300, 400],
        "paging by after_seq continues where the last page ended"
    );
}

/// The behaviour every [`RateLimiter`] has: a burst of the limit's count,
/// then denials that say when to retry and use up nothing; keys and limits
/// independent; exact under concurrent checks. Expects a fresh limiter.
pub fn rate_limiter(limiter: &dyn RateLimiter) {
    let day: RateLimit = "3/day".parse().unwrap_or_else(|e| panic!("{e}"));
    let plugin = |i: &str| RateKey::Plugin(InstallationId::new(i), PluginId::new("conf-plugin"));
    let a = plugin("conf-shop-a");
    for n in 0..3 {
        assert_eq!(
            limiter.check(&a, day),
            Decision::Allow,
            "request {n} of a burst of 3"
        );
    }
    for _ in 0..5 {
        match limiter.check(&a, day) {
            Decision::Deny {
                reason: DenyReason::RateLimited { retry_after_ms },
            } => assert!(
                (1..=86_400_000 / 3 + 1).contains(&retry_after_ms),
                "retry after {retry_after_ms} ms is not within one interval of 3/day"
            ),
            other => panic!("the fourth request of 3/day was not limited: {other:?}"),
        }
    }
    assert_eq!(
        limiter.check(&plugin("conf-shop-b"), day),
        Decision::Allow,
        "another installation has its own budget"
    );
    assert_eq!(
        limiter.check(&RateKey::ApiKey("conf-key".into()), day),
        Decision::Allow,
        "an API key has its own budget"
    );
    let hour: RateLimit = "5/hour".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        limiter.check(&a, hour),
        Decision::Allow,
        "another limit is another budget"
    );

    // Concurrent checks of one key hand out exactly the limit.
    let fifty: RateLimit = "50/day".parse().unwrap_or_else(|e| panic!("{e}"));
    let shared = plugin("conf-shop-concurrent");
    let allowed = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    if limiter.check(&shared, fifty).is_allowed() {
                        allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(
        allowed.into_inner(),
        50,
        "200 concurrent requests against 50/day"
    );
}

/// The behaviour every [`HealthTracker`] has, for a tracker built with
/// `config` (whose `open_for` must be long enough that no cool-down ends
/// during the suite, a minute or more). Expects a fresh tracker.
pub fn health_tracker(tracker: &dyn HealthTracker, config: &BreakerConfig) {
    let shop = InstallationId::new("conf-shop");
    let other = InstallationId::new("conf-other-shop");
    let p = PluginId::new("conf-plugin");
    let status = |i: &InstallationId| tracker.report(i, &p).status;
    assert_eq!(
        status(&shop),
        HealthStatus::Healthy,
        "a fresh plugin is healthy"
    );
    let fail = |i: &InstallationId| {
        assert!(tracker.admit(i, &p).is_allowed(), "a closed circuit admits");
        tracker.record(i, &p, Outcome::Failure("conformance failure"))
    };

    // Neutral outcomes count for nothing, however many.
    for _ in 0..config.failure_threshold * 3 {
        assert_eq!(
            tracker.admit(&shop, &p),
            Admission::Closed,
            "a fresh circuit is closed"
        );
        assert_eq!(tracker.record(&shop, &p, Outcome::Neutral), None);
    }
    assert_eq!(
        status(&shop),
        HealthStatus::Healthy,
        "neutral outcomes count for nothing"
    );

    for _ in 1..config.failure_threshold {
        fail(&shop);
    }
    assert!(
        tracker.admit(&shop, &p).is_allowed(),
        "below the threshold the circuit stays closed"
    );
    let change = tracker.record(&shop, &p, Outcome::Failure("conformance failure"));
    assert_eq!(
        change.map(|c| c.to),
        Some(HealthStatus::Unhealthy),
        "the threshold-th failure opens the circuit"
    );
    assert_eq!(
        tracker.admit(&shop, &p),
        Admission::Refused(DenyReason::CircuitOpen),
        "an open circuit refuses calls"
    );
    assert!(
        !tracker.report(&shop, &p).recent_failures.is_empty(),
        "the report shows the failures"
    );

    // The same plugin in another installation is not touched.
    assert!(
        tracker.admit(&other, &p).is_allowed(),
        "breakers are per installation"
    );
    tracker.record(&other, &p, Outcome::Success);
    assert_eq!(status(&other), HealthStatus::Healthy);

    // Probes are never refused, and enough good ones close the circuit.
    for _ in 0..config.probe_successes {
        tracker.record_probe(&shop, &p, Outcome::Success);
    }
    assert_eq!(
        status(&shop),
        HealthStatus::Healthy,
        "successful probes close the circuit"
    );
    assert!(tracker.admit(&shop, &p).is_allowed());
    tracker.record(&shop, &p, Outcome::Success);

    tracker.reset(&shop, &p);
    assert_eq!(
        tracker.report(&shop, &p).trips,
        0,
        "reset forgets the trips"
    );

    // Repeated trips ask for the plugin to be disabled.
    if let Some(auto) = config.auto_disable {
        let mut last = None;
        for _ in 0..auto.trips {
            for _ in 0..config.failure_threshold {
                if let Some(c) = fail(&shop) {
                    last = Some(c.to);
                }
            }
            for _ in 0..config.probe_successes {
                tracker.record_probe(&shop, &p, Outcome::Success);
            }
        }
        assert_eq!(
            last,
            Some(HealthStatus::Disabled),
            "{} trips ask for the plugin to be disabled",
            auto.trips
        );
        tracker.reset(&shop, &p);
        assert_eq!(status(&shop), HealthStatus::Healthy);
    }
}

/// Changes of one key made at once from many threads, through `stores`:
/// handles over the same data (one store, or one per connection, as separate
/// processes would have). At most one replacement wins each race, a racing
/// revocation always lands, and no use is lost.
pub fn api_key_store_races(stores: &[&dyn ApiKeyStore]) {
    assert!(!stores.is_empty(), "give at least one store");
    let pick = |i: usize| stores[i % stores.len()];
    let store = pick(0);
    for round in 0..20 {
        let id = format!("race{round:04}");
        store
            .insert(&key(&id, 1, "race-shop"))
            .unwrap_or_else(|e| panic!("insert: {e}"));
        let (replaced, revoked) = std::thread::scope(|s| {
            let replacers: Vec<_> = (0..4)
                .map(|i| {
                    let id = &id;
                    s.spawn(move || pick(i).replace(id, &format!("succ{i}"), Timestamp(10_000)))
                })
                .collect();
            let revoker = s.spawn(|| pick(round + 1).revoke(&id, Timestamp(77)));
            let counters: Vec<_> = (0..4)
                .map(|i| {
                    let id = &id;
                    s.spawn(move || {
                        for _ in 0..25 {
                            pick(i + 1)
                                .record_usage(id, 1, Timestamp(5))
                                .unwrap_or_else(|e| panic!("usage: {e}"));
                        }
                    })
                })
                .collect();
            for c in counters {
                c.join()
                    .unwrap_or_else(|_| panic!("a usage thread panicked"));
            }
            let replaced = replacers
                .into_iter()
                .map(|r| r.join().ok())
                .filter(|r| matches!(r, Some(Ok(true))))
                .count();
            let revoked = matches!(revoker.join().ok(), Some(Ok(true)));
            (replaced, revoked)
        });
        let r = store
            .get(&id)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{id} is gone"));
        assert!(
            revoked,
            "round {round}: the revocation always wins its own race"
        );
        assert_eq!(
            r.revoked_at,
            Some(Timestamp(77)),
            "round {round}: the key stays revoked"
        );
        assert!(
            replaced <= 1,
            "round {round}: {replaced} replacements succeeded"
        );
        assert_eq!(
            r.replaced_by.is_some(),
            replaced == 1,
            "round {round}: the stored successor is the winner's"
        );
        assert_eq!(r.usage_count, 100, "round {round}: every use is counted");
    }
}
