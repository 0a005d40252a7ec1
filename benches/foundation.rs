//! Benchmarks of the foundation crates, each beside its baseline in the same run.
//!
//! Run with `cargo bench -p benches --bench foundation`; figures go to BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vodo_core::audit::{
    AuditAction, AuditEvent, AuditSink, FileAudit, FileAuditOptions, MemoryAudit, NoAudit,
};
use vodo_core::keys::{ApiKeyManager, IssueKey, MemoryKeyStore};
use vodo_core::rate::{MemoryRateLimiter, RateKey, RateLimit, RateLimiter};
use vodo_core::{
    DenyReason, Grant, InstallationId, MemoryRegistry, PermissionRegistry, Permissions, PluginId,
    SecretKey, Timestamp,
};
use vodo_scopes::{PluginScope, ScopeSet};

/// 1,000 granted scopes of every shape: entities, hooks, patterns and hosts.
fn thousand_scopes() -> Vec<String> {
    (0..1000)
        .map(|i| match i % 4 {
            0 => format!("entities:read:entity_{i}"),
            1 => format!("entities:write:entity_{i}"),
            2 => format!("hooks:subscribe:topic_{i}.*"),
            _ => format!("network:outbound:api{i}.example.com"),
        })
        .collect()
}

fn scope_check(c: &mut Criterion) {
    let strings = thousand_scopes();
    let set: ScopeSet = strings
        .iter()
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect();
    // The last-granted entity: the naive scan's worst case, the set's usual case.
    let present: PluginScope = "entities:write:entity_997".parse().unwrap();
    let present_str = present.to_string();
    let absent: PluginScope = "entities:write:customer".parse().unwrap();
    let absent_str = absent.to_string();
    assert!(set.allows(&present) && !set.allows(&absent));

    let mut g = c.benchmark_group("scope_check_1000");
    g.bench_function("vodo_scopeset/present", |b| {
        b.iter(|| black_box(&set).allows(black_box(&present)))
    });
    g.bench_function("naive_vec_scan/present", |b| {
        b.iter(|| {
            black_box(&strings)
                .iter()
                .any(|s| s == black_box(&present_str))
        })
    });
    g.bench_function("vodo_scopeset/absent", |b| {
        b.iter(|| black_box(&set).allows(black_box(&absent)))
    });
    g.bench_function("naive_vec_scan/absent", |b| {
        b.iter(|| {
            black_box(&strings)
                .iter()
                .any(|s| s == black_box(&absent_str))
        })
    });
    // What the naive version cannot even express: pattern and wildcard implication.
    g.bench_function("vodo_scopeset/hook_event_via_pattern", |b| {
        b.iter(|| black_box(&set).can_subscribe(black_box("topic_998.created")))
    });
    g.bench_function("vodo_scopeset/host", |b| {
        b.iter(|| black_box(&set).can_connect(black_box("api999.example.com"), 443))
    });
    g.finish();
}

fn permission_decision(c: &mut Criterion) {
    let registry = Arc::new(MemoryRegistry::new());
    let audit = Arc::new(MemoryAudit::with_capacity(10_000));
    let set: ScopeSet = thousand_scopes()
        .iter()
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect();
    let mut naive: HashMap<(String, String), Vec<String>> = HashMap::new();
    for shop in 0..100 {
        let inst = InstallationId::new(format!("shop-{shop}"));
        for p in 0..10 {
            let plugin = PluginId::new(format!("plugin-{p}"));
            registry
                .put(&Grant {
                    installation: inst.clone(),
                    plugin: plugin.clone(),
                    plugin_version: "1.0.0".into(),
                    scopes: set.clone(),
                    rate_limit: None,
                    granted_by: "bench".into(),
                    granted_at: Timestamp(0),
                    enabled: true,
                })
                .unwrap();
            naive.insert((inst.to_string(), plugin.to_string()), thousand_scopes());
        }
    }
    let perms = Permissions::new(registry, audit.clone());
    let (inst, plugin) = (InstallationId::new("shop-42"), PluginId::new("plugin-7"));
    let allowed: PluginScope = "entities:read:entity_996".parse().unwrap();
    let denied: PluginScope = "entities:write:customer".parse().unwrap();
    let (allowed_str, inst_str, plugin_str) =
        (allowed.to_string(), inst.to_string(), plugin.to_string());

    let mut g = c.benchmark_group("permission_decision");
    g.bench_function("vodo/allow", |b| {
        b.iter(|| perms.check(black_box(&inst), black_box(&plugin), black_box(&allowed)))
    });
    g.bench_function("vodo/deny_and_audit", |b| {
        b.iter(|| perms.check(black_box(&inst), black_box(&plugin), black_box(&denied)))
    });
    g.bench_function("naive_map_and_scan/allow", |b| {
        b.iter(|| {
            let key = (black_box(&inst_str).clone(), black_box(&plugin_str).clone());
            naive
                .get(&key)
                .is_some_and(|v| v.iter().any(|s| s == black_box(&allowed_str)))
        })
    });
    g.finish();
    // A denial is audited, whichever benchmarks a filter ran.
    let _ = perms.check(&inst, &plugin, &denied);
    assert!(!audit.is_empty());
}

fn key_verification(c: &mut Criterion) {
    let keys = ApiKeyManager::new(
        Arc::new(MemoryKeyStore::new()),
        &SecretKey::from_bytes([9; 32]),
        Arc::new(NoAudit),
    );
    let mut issued = Vec::new();
    for i in 0..10_000 {
        let (k, _) = keys
            .issue(IssueKey {
                installation: InstallationId::new(format!("shop-{}", i % 100)),
                plugin: PluginId::new("p"),
                name: String::new(),
                scopes: ScopeSet::new(),
                ttl: None,
            })
            .unwrap();
        issued.push(k);
    }
    let key = issued[5_000].expose_secret().to_owned();
    keys.verify(&key).unwrap();
    // Baseline: what a naive implementation does: SHA-256 of the whole key, hex, map lookup.
    let mut naive: HashMap<String, usize> = HashMap::new();
    for (i, k) in issued.iter().enumerate() {
        naive.insert(
            hex(ring::digest::digest(&ring::digest::SHA256, k.expose_secret().as_bytes()).as_ref()),
            i,
        );
    }

    let mut g = c.benchmark_group("key_verification_10k_keys");
    g.bench_function("vodo/valid", |b| {
        b.iter(|| keys.verify(black_box(&key)).unwrap())
    });
    let bad_checksum = format!(
        "{}{}",
        &key[..key.len() - 1],
        if key.ends_with('0') { '1' } else { '0' }
    );
    g.bench_function("vodo/bad_checksum", |b| {
        b.iter(|| keys.verify(black_box(&bad_checksum)).is_err())
    });
    g.bench_function("naive_sha256_hex_map/valid", |b| {
        b.iter(|| {
            let h = hex(
                ring::digest::digest(&ring::digest::SHA256, black_box(&key).as_bytes()).as_ref(),
            );
            naive.get(&h).copied()
        })
    });
    g.finish();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rate_limit(c: &mut Criterion) {
    let limiter = MemoryRateLimiter::new();
    let limit: RateLimit = "1000000/second".parse().unwrap();
    let keys: Vec<RateKey> = (0..1000)
        .map(|i| RateKey::Plugin(InstallationId::new(format!("shop-{i}")), PluginId::new("p")))
        .collect();
    for k in &keys {
        let _ = limiter.check(k, limit);
    }
    let raw = governor::RateLimiter::keyed(governor::Quota::per_second(
        NonZeroU32::new(1_000_000).unwrap(),
    ));
    for k in &keys {
        let _ = raw.check_key(k);
    }
    let mut g = c.benchmark_group("rate_limit_check_1000_keys");
    let mut i = 0usize;
    g.bench_function("vodo", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            limiter.check(black_box(&keys[i]), limit)
        })
    });
    let mut j = 0usize;
    g.bench_function("raw_governor_keyed", |b| {
        b.iter(|| {
            j = (j + 1) % keys.len();
            raw.check_key(black_box(&keys[j])).is_ok()
        })
    });
    g.finish();
}

fn event(i: u64) -> AuditEvent {
    AuditEvent::now(AuditAction::PermissionDenied {
        scope: "entities:write:order".into(),
        reason: DenyReason::MissingScope {
            scope: format!("entities:write:order_{}", i % 10),
        },
    })
    .plugin(&PluginId::new("order-notifier"))
    .installation(&InstallationId::new("shop-42"))
}

fn audit_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let secret = SecretKey::from_bytes([5; 32]);
    let mut g = c.benchmark_group("audit_append");
    g.throughput(Throughput::Elements(1));
    let ev = event(1);

    let memory = MemoryAudit::with_capacity(100_000);
    g.bench_function("memory", |b| {
        b.iter(|| memory.record(black_box(&ev)).unwrap())
    });

    for (name, batch) in [("file_chained/batch_64", 64), ("file_chained/batch_1", 1)] {
        let path = dir.path().join(format!("{}.jsonl", batch));
        let file =
            FileAudit::open(&path, &secret, FileAuditOptions { batch, sync: false }).unwrap();
        g.bench_function(name, |b| b.iter(|| file.record(black_box(&ev)).unwrap()));
        file.flush().unwrap();
    }
    // Baseline: plain JSON lines through a BufWriter, no chain.
    let mut plain = std::io::BufWriter::with_capacity(
        64 * 1024,
        std::fs::File::create(dir.path().join("plain.jsonl")).unwrap(),
    );
    g.bench_function("baseline_plain_jsonl_bufwriter", |b| {
        b.iter(|| {
            serde_json::to_writer(&mut plain, black_box(&ev)).unwrap();
            plain.write_all(b"\n").unwrap();
        })
    });
    g.finish();

    // Durable batches: 64 events per write with fsync, measured per event.
    let mut g = c.benchmark_group("audit_append_fsync");
    g.throughput(Throughput::Elements(64));
    g.sample_size(20);
    let events: Vec<AuditEvent> = (0..64).map(event).collect();
    let path = dir.path().join("sync.jsonl");
    let file = FileAudit::open(
        &path,
        &secret,
        FileAuditOptions {
            batch: 64,
            sync: true,
        },
    )
    .unwrap();
    g.bench_function("file_chained/batch_64_fsync", |b| {
        b.iter_batched(
            || (),
            |()| file.record_all(black_box(&events)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = scope_check, permission_decision, key_verification, rate_limit, audit_append
}
criterion_main!(benches);
