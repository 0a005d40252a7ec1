//! The foundation crates working together, and the hostile cases: adversarial
//! manifests, forged and stale API keys, and a tampered audit file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tests::FULL_MANIFEST;
use vodo_core::audit::{
    AuditFilter, AuditKind, AuditLog, FileAudit, FileAuditOptions, verify_file,
};
use vodo_core::keys::{ApiKeyManager, IssueKey, KeyError};
use vodo_core::{
    AccessError, Consent, DenyReason, Error, Host, InstallationId, Manifest, ManualClock, PluginId,
    SecretKey, SqliteStore, Timestamp,
};
use vodo_scopes::{PluginScope, ScopeSet};

fn secret() -> SecretKey {
    SecretKey::from_bytes([42; 32])
}

fn scope(s: &str) -> PluginScope {
    s.parse().unwrap()
}

#[test]
fn sqlite_store_passes_every_conformance_suite_from_outside_the_crate() {
    let store = SqliteStore::open_in_memory().unwrap();
    vodo_core::conformance::permission_registry(&store);
    vodo_core::conformance::api_key_store(&store);
    vodo_core::conformance::api_key_store_races(&[&store]);
    vodo_core::conformance::audit_log(&store);
}

#[test]
fn install_issue_authorize_and_limit_through_a_durable_host() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::parse(FULL_MANIFEST).unwrap();
    let shop = InstallationId::new("shop-1");
    let key = {
        let host = Host::open(dir.path(), &secret()).unwrap();
        // The installer consents to less than requested: no network.
        let consented: ScopeSet = manifest
            .scopes()
            .iter()
            .filter(|s| !matches!(s, PluginScope::NetworkOutbound(_)))
            .cloned()
            .collect();
        host.install(&manifest, &shop, &Consent::to(consented, "owner@shop-1"))
            .unwrap();
        // Granting more than the manifest asks for is refused.
        let greedy: ScopeSet = [scope("users:write")].into_iter().collect();
        assert!(
            host.install(&manifest, &shop, &Consent::to(greedy, "owner"))
                .is_err()
        );

        let (key, _) = host
            .keys
            .issue(IssueKey {
                installation: shop.clone(),
                plugin: manifest.slug.clone(),
                name: "back end".into(),
                scopes: [
                    scope("entities:read"),
                    scope("network:outbound:hooks.slack.com"),
                ]
                .into_iter()
                .collect(),
                ttl: None,
            })
            .unwrap();
        let k = key.expose_secret();
        host.authorize(k, "orders", &scope("entities:read:order"))
            .unwrap();
        // The key covers all entities, but the grant only `order` and `customer`.
        assert!(matches!(
            host.authorize(k, "orders", &scope("entities:read:product")),
            Err(AccessError::Denied(DenyReason::MissingScope { .. }))
        ));
        // The key allows network, the installer did not.
        assert!(matches!(
            host.authorize(k, "orders", &scope("network:outbound:hooks.slack.com")),
            Err(AccessError::Denied(DenyReason::MissingScope { .. }))
        ));
        // The manifest allows 5 per minute; three were used.
        host.authorize(k, "customers", &scope("entities:read:customer"))
            .unwrap();
        host.authorize(k, "customers", &scope("entities:read:customer"))
            .unwrap();
        assert!(matches!(
            host.authorize(k, "customers", &scope("entities:read:customer")),
            Err(AccessError::Denied(DenyReason::RateLimited { .. }))
        ));
        host.audit.flush().unwrap();
        key
    };
    // After a restart, grants and keys are still there, and the audit file verifies.
    let host = Host::open(dir.path(), &secret()).unwrap();
    let grant = host
        .permissions
        .registry()
        .get(&shop, &PluginId::new("order-notifier"))
        .unwrap()
        .unwrap();
    assert!(
        !grant
            .scopes
            .iter()
            .any(|s| matches!(s, PluginScope::NetworkOutbound(_)))
    );
    assert!(host.keys.verify(key.expose_secret()).is_ok());
    // The manifest's rate limit was stored with the grant: after the restart
    // it still applies (a fresh budget of 5, then a denial).
    assert_eq!(
        grant.rate_limit.map(|r| r.to_string()).as_deref(),
        Some("5/minute")
    );
    for _ in 0..5 {
        host.authorize(key.expose_secret(), "orders", &scope("entities:read:order"))
            .unwrap();
    }
    assert!(matches!(
        host.authorize(key.expose_secret(), "orders", &scope("entities:read:order")),
        Err(AccessError::Denied(DenyReason::RateLimited { .. }))
    ));
    drop(host);
    let report = verify_file(dir.path().join("audit.jsonl"), &secret(), None).unwrap();
    // installed, key issued, 3 denials; after the restart, 1 denial
    assert_eq!(report.records, 6);
}

/// The roadmap's example manifest, unchanged.
const ROADMAP: &str = test_support::ROADMAP_MANIFEST;

#[test]
fn an_api_key_of_the_roadmap_plugin_reaches_its_resources_and_no_other() {
    let host = Host::in_memory(&secret());
    let manifest = Manifest::parse(ROADMAP).unwrap();
    let shop = InstallationId::new("shop-7");
    host.install(&manifest, &shop, &Consent::all(&manifest, "owner"))
        .unwrap();
    let (key, _) = host
        .keys
        .issue(IssueKey {
            installation: shop.clone(),
            plugin: manifest.slug.clone(),
            name: "sync".into(),
            scopes: [scope("entities:read")].into_iter().collect(),
            ttl: None,
        })
        .unwrap();
    let k = key.expose_secret();
    host.authorize(k, "products", &scope("entities:read:product"))
        .unwrap();
    host.authorize(k, "orders", &scope("entities:read:order"))
        .unwrap();
    assert_eq!(
        host.authorize(k, "customers", &scope("entities:read:customer"))
            .unwrap_err(),
        AccessError::Denied(DenyReason::MissingScope {
            scope: "api:access:customers".into()
        })
    );
    assert!(matches!(
        host.authorize(k, "Customers", &scope("entities:read:customer")),
        Err(AccessError::BadResource { .. })
    ));
    // The denial names the resource in the audit trail too.
    let denied = host
        .permissions
        .check_resource(&shop, &manifest.slug, "customers");
    assert!(!denied.is_allowed());
    // A disabled plugin's key is refused before anything else.
    host.permissions
        .set_enabled(&shop, &manifest.slug, false, "owner")
        .unwrap();
    assert_eq!(
        host.authorize(k, "products", &scope("entities:read:product"))
            .unwrap_err(),
        AccessError::Denied(DenyReason::Disabled)
    );
}

#[test]
fn keys_in_sqlite_refuse_every_kind_of_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store = Arc::new(SqliteStore::open(dir.path().join("keys.db")).unwrap());
    let keys = ApiKeyManager::new(store.clone(), &secret(), store.clone())
        .with_clock(Arc::new(clock.clone()));
    let req = |ttl| IssueKey {
        installation: "shop".into(),
        plugin: "p".into(),
        name: "k".into(),
        scopes: ScopeSet::new(),
        ttl,
    };
    let (good, _) = keys.issue(req(None)).unwrap();
    let good = good.expose_secret().to_owned();

    // Wrong checksum: every single-character change is caught offline.
    for i in 5..good.len() {
        let mut b = good.clone().into_bytes();
        b[i] = if b[i] == b'z' { b'y' } else { b'z' };
        let mutated = String::from_utf8(b).unwrap();
        assert!(
            matches!(
                keys.verify(&mutated),
                Err(KeyError::BadChecksum | KeyError::Unknown)
            ),
            "position {i}"
        );
    }
    for junk in [
        "",
        "vodo_",
        "VODO_",
        "vodo_\u{0}",
        &good[..good.len() - 1],
        &format!(" {good}x"),
    ] {
        assert!(
            matches!(keys.verify(junk), Err(KeyError::Malformed(_))),
            "{junk:?}"
        );
    }

    let (expiring, _) = keys.issue(req(Some(Duration::from_secs(10)))).unwrap();
    let (revoked, revoked_rec) = keys.issue(req(None)).unwrap();
    let (rotated, rotated_rec) = keys.issue(req(None)).unwrap();
    keys.revoke(&revoked_rec.id).unwrap();
    let (successor, _) = keys
        .rotate(&rotated_rec.id, Duration::from_secs(60))
        .unwrap();
    assert!(keys.verify(rotated.expose_secret()).is_ok(), "in grace");
    clock.advance(Duration::from_secs(61));
    assert!(matches!(
        keys.verify(expiring.expose_secret()),
        Err(KeyError::Expired { .. })
    ));
    assert!(matches!(
        keys.verify(revoked.expose_secret()),
        Err(KeyError::Revoked { .. })
    ));
    assert!(matches!(
        keys.verify(rotated.expose_secret()),
        Err(KeyError::Rotated { .. })
    ));
    assert!(keys.verify(successor.expose_secret()).is_ok());
    assert!(keys.verify(&good).is_ok());

    // The database holds no secret: no key string, no secret part, appears in it.
    keys.flush_usage().unwrap();
    drop(keys);
    let raw = std::fs::read(dir.path().join("keys.db")).unwrap();
    let wal = std::fs::read(dir.path().join("keys.db-wal")).unwrap_or_default();
    for k in [&good, successor.expose_secret()] {
        let secret_part = &k.as_bytes()[13..45];
        assert!(!raw.windows(secret_part.len()).any(|w| w == secret_part));
        assert!(!wal.windows(secret_part.len()).any(|w| w == secret_part));
    }
    let rejected = store
        .query(&AuditFilter {
            kinds: vec![AuditKind::KeyRejected],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rejected.len(), 3);
}

/// Writes an audit file of `n` records and returns its lines.
fn audit_file(
    dir: &std::path::Path,
    n: usize,
) -> (std::path::PathBuf, Vec<String>, vodo_core::audit::ChainHead) {
    let path = dir.join("audit.jsonl");
    let log = FileAudit::open(
        &path,
        &secret(),
        FileAuditOptions {
            batch: 3,
            sync: true,
        },
    )
    .unwrap();
    let plugin = PluginId::new("order-notifier");
    let shop = InstallationId::new("shop");
    for i in 0..n {
        let event =
            vodo_core::audit::AuditEvent::now(vodo_core::audit::AuditAction::PermissionDenied {
                scope: format!("entities:write:e{i}"),
                reason: DenyReason::MissingScope {
                    scope: format!("entities:write:e{i}"),
                },
            })
            .plugin(&plugin)
            .installation(&shop);
        vodo_core::audit::AuditSink::record(&log, &event).unwrap();
    }
    let head = log.head();
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text.lines().map(str::to_owned).collect(), head)
}

fn rewrite(path: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn tampered_line(path: &std::path::Path, anchor: Option<vodo_core::audit::ChainHead>) -> u64 {
    match verify_file(path, &secret(), anchor) {
        Err(Error::Tampered { line, .. }) => line,
        other => panic!("tampering not detected: {other:?}"),
    }
}

#[test]
fn verify_catches_every_kind_of_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines, head) = audit_file(dir.path(), 10);
    assert_eq!(
        verify_file(&path, &secret(), Some(head)).unwrap().records,
        10
    );

    // An edited field.
    let mut edited = lines.clone();
    edited[4] = edited[4].replace("entities:write:e4", "entities:read:e4");
    rewrite(&path, &edited);
    assert_eq!(tampered_line(&path, None), 5);

    // A deleted record in the middle.
    let mut deleted = lines.clone();
    deleted.remove(6);
    rewrite(&path, &deleted);
    assert_eq!(tampered_line(&path, None), 7);

    // Two records swapped.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    rewrite(&path, &swapped);
    assert_eq!(tampered_line(&path, None), 3);

    // A valid record copied in again (replay).
    let mut replayed = lines.clone();
    replayed.insert(8, lines[7].clone());
    rewrite(&path, &replayed);
    assert_eq!(tampered_line(&path, None), 9);

    // A forged record whose MAC was recomputed with another key.
    let mut forged = lines.clone();
    forged.remove(0);
    rewrite(&path, &forged);
    assert_eq!(tampered_line(&path, None), 1);

    // The last records cut off: a valid chain by itself, caught by the anchor.
    rewrite(&path, &lines[..7]);
    assert_eq!(verify_file(&path, &secret(), None).unwrap().records, 7);
    assert_eq!(tampered_line(&path, Some(head)), 8);

    // A whitespace change, a removed newline, garbage appended.
    let mut spaced = lines.clone();
    spaced[0] = spaced[0].replacen("{\"seq\":1", "{ \"seq\":1", 1);
    rewrite(&path, &spaced);
    assert_eq!(tampered_line(&path, None), 1);
    let mut garbage = lines.clone();
    garbage.push("{\"seq\":11,\"event\":{}}".into());
    rewrite(&path, &garbage);
    assert_eq!(tampered_line(&path, None), 11);

    // The original verifies again: the checks above are not flaky.
    rewrite(&path, &lines);
    assert_eq!(
        verify_file(&path, &secret(), Some(head)).unwrap().head,
        head
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any mutation of a valid manifest is either valid or reported with paths; never a panic.
    #[test]
    fn mutated_manifests_never_panic(pos in 0usize..FULL_MANIFEST.len(), len in 0usize..20, insert in "\\PC{0,12}") {
        let mut s = FULL_MANIFEST.to_owned();
        let start = (0..=pos).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let end = (start + len).min(s.len());
        let end = (end..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
        s.replace_range(start..end, &insert);
        match Manifest::parse(&s) {
            Ok(m) => prop_assert!(!m.slug.as_str().is_empty()),
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert!(p.path.starts_with('$'), "{}", p);
                    prop_assert!(!p.message.is_empty());
                }
            }
        }
    }

    /// Any JSON value in any manifest position is refused with a path, never a panic.
    #[test]
    fn wrong_types_everywhere_are_reported(key in prop::sample::select(vec![
        "name", "slug", "version", "description", "author", "license", "entry", "host_api",
    ]), value in prop_oneof![
        Just(serde_json::json!(null)), Just(serde_json::json!(true)), Just(serde_json::json!(-1)),
        Just(serde_json::json!(1.5)), Just(serde_json::json!([])), Just(serde_json::json!({})),
        Just(serde_json::json!("")), Just(serde_json::json!(" \t ")),
    ]) {
        let mut v: serde_json::Value = serde_json::from_str(FULL_MANIFEST).unwrap();
        v[key] = value;
        let e = Manifest::from_value(&v).unwrap_err();
        let expected = format!("$.{key}");
        prop_assert!(e.problems.iter().any(|p| p.path.starts_with(&expected)), "{}", e);
    }
}

#[test]
fn adversarial_manifests_are_refused_with_precise_paths() {
    let cases: &[(&str, &str)] = &[
        // A permission with a misspelt key must never be silently dropped.
        (
            r#""network": { "outbound": ["hooks.slack.com"] }"#,
            r#""network": { "outbund": ["*.evil.example"] }"#,
        ),
        (
            r#""read:order", "read:customer""#,
            r#""read:order", "read:customer", "delete:order""#,
        ),
        // SSRF-ish and wildcard hosts.
        (r#""outbound": ["hooks.slack.com"]"#, r#""outbound": ["*"]"#),
        (
            r#""outbound": ["hooks.slack.com"]"#,
            r#""outbound": ["http://169.254.169.254/latest"]"#,
        ),
        (
            r#""outbound": ["hooks.slack.com"]"#,
            r#""outbound": ["hooks.slack.com@evil.example"]"#,
        ),
        // Path escapes.
        (
            r#""entry": "plugin.wasm""#,
            r#""entry": "/etc/passwd.wasm""#,
        ),
        (r#""entry": "plugin.wasm""#, r#""entry": "a/../../b.wasm""#),
        (r#""entry": "plugin.wasm""#, r#""entry": "C:\\x.wasm""#),
        // Resource asks past every bound.
        (
            r#""max_size": "10MB""#,
            r#""max_size": "18446744073709551615""#,
        ),
        (
            r#""rate_limit": "5/minute""#,
            r#""rate_limit": "99999999/second""#,
        ),
        // Look-alike and control characters.
        (
            r#""slug": "order-notifier""#,
            "\"slug\": \"order\u{2010}notifier\"",
        ),
        (
            r#""name": "Order Notifier""#,
            r#""name": "Order\u0000Notifier""#,
        ),
        (r#""subscribe:order.*""#, r#""subscribe:order.**""#),
        // A route where a platform API resource belongs.
        (
            r#""endpoints": ["orders""#,
            r#""endpoints": ["GET /status""#,
        ),
    ];
    for (from, to) in cases {
        assert!(FULL_MANIFEST.contains(from), "fixture drifted: {from}");
        let text = FULL_MANIFEST.replace(from, to);
        let e = Manifest::parse(&text).expect_err(to);
        assert!(!e.problems.is_empty(), "{to}");
        assert!(e.problems.iter().all(|p| p.path.starts_with("$")), "{e}");
    }
}
