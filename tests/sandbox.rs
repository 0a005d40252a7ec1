//! The hostile-plugin suite: real plugins built from source try every way out
//! of the sandbox. Each attempt at breaking a sandbox rule must end in the
//! matching `SandboxViolation`; each attempt at what the grant does not allow
//! (a scope, the rate limit) must be refused and the refusal returned to the
//! plugin without counting against its health. Both land in the audit trail
//! and leave the host serving everyone else: after each one, a well-behaved
//! plugin still answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use tests::guest;
use vodo_core::audit::{AuditAction, AuditFilter, AuditKind, AuditLog, MemoryAudit};
use vodo_core::health::{BreakerConfig, HealthMonitor, HealthStatus};
use vodo_core::keys::MemoryKeyStore;
use vodo_core::{Consent, DenyReason, Host, InstallationId, Manifest, MemoryRegistry, SecretKey};
use vodo_sandbox::{
    CallError, Installed, Limits, LoadError, MemoryServices, Request, Resolver, Sandbox,
    SandboxConfig, SandboxViolation, SystemResolver, Wasm,
};
use vodo_scopes::{PluginScope, ScopeSet};

const HOSTILE: &str = r#"{
  "name": "Hostile", "slug": "hostile", "version": "0.1.0", "description": "tries everything",
  "author": "Mallory", "license": "MIT", "entry": "hostile.wasm",
  "routes": ["GET /", "GET /big-headers"],
  "permissions": {
    "entities": ["read:order"],
    "hooks": ["subscribe:*", "trigger:order.noted"],
    "api": { "rate_limit": "20/minute" },
    "storage": { "max_size": 1000, "allowed_types": ["json"] },
    "network": { "outbound": ["127.0.0.1", "internal.partner.example", "localhost"] },
    "users": "read"
  }
}"#;

const GOOD: &str = r#"{
  "name": "Good", "slug": "good", "version": "0.1.0", "description": "behaves",
  "author": "Alice", "license": "MIT", "entry": "good.wasm",
  "routes": ["GET /status"],
  "permissions": { "entities": ["read:order", "write:order_note"], "hooks": ["subscribe:order.*"] }
}"#;

/// Resolves one made-up name to a private address; everything else as the system does.
#[derive(Debug)]
struct SneakyDns;

impl Resolver for SneakyDns {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if host == "internal.partner.example" {
            return Ok(vec![SocketAddr::from(([10, 0, 0, 7], port))]);
        }
        SystemResolver.resolve(host, port)
    }
}

struct Suite {
    sandbox: Sandbox,
    audit: Arc<MemoryAudit>,
    services: Arc<MemoryServices>,
    storage: tempfile::TempDir,
    hostile: Vec<u8>,
    good: Vec<u8>,
}

/// A host in memory whose audit trail the test can read.
fn host(audit: &Arc<MemoryAudit>) -> Host {
    Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        audit.clone(),
        &SecretKey::from_bytes([7; 32]),
    )
}

static SUITE: LazyLock<Suite> = LazyLock::new(|| {
    let storage = tempfile::tempdir().unwrap();
    let audit = Arc::new(MemoryAudit::new());
    let services = Arc::new(MemoryServices::new());
    let sandbox = Sandbox::new(
        SandboxConfig {
            storage_root: Some(storage.path().to_path_buf()),
            ..SandboxConfig::default()
        },
        &host(&audit),
        services.clone(),
    )
    .unwrap()
    .with_resolver(Arc::new(SneakyDns));
    Suite {
        sandbox,
        audit,
        services,
        storage,
        hostile: guest("hostile"),
        good: guest("good"),
    }
});

fn limits() -> Limits {
    Limits {
        memory: 16 << 20,
        timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

fn install(installation: &str, manifest: &str, wasm: &[u8]) -> Arc<Installed> {
    let m = Manifest::parse(manifest).unwrap();
    // Attacks get a short timeout so the suite is quick; a well-behaved
    // plugin gets room, so a busy CI machine cannot fail it.
    let limits = if m.slug.as_str() == "hostile" {
        limits()
    } else {
        Limits {
            timeout: Duration::from_secs(5),
            ..limits()
        }
    };
    tests::install_all(&SUITE.sandbox, installation, manifest, wasm, limits)
}

/// A sandbox of its own with `config`, auditing to the returned log, and the
/// hostile plugin installed in `installation` with `limits`.
fn own_sandbox(
    config: SandboxConfig,
    installation: &str,
    limits: Limits,
) -> (Sandbox, Arc<MemoryAudit>, Arc<Installed>) {
    let audit = Arc::new(MemoryAudit::new());
    let sandbox = Sandbox::new(config, &host(&audit), Arc::new(MemoryServices::new())).unwrap();
    let m = Manifest::parse(HOSTILE).unwrap();
    let plugin = sandbox
        .install(
            &InstallationId::new(installation),
            &m,
            &SUITE.hostile,
            &Consent::all(&m, "merchant"),
            limits,
        )
        .unwrap();
    (sandbox, audit, plugin)
}

fn private_network() -> SandboxConfig {
    SandboxConfig {
        allow_private_network: true,
        ..SandboxConfig::default()
    }
}

/// Runs one attack in its own installation and checks everything the suite promises.
fn attack(installation: &str, event: &str, payload: &str) -> SandboxViolation {
    let s = &*SUITE;
    let hostile = install(installation, HOSTILE, &s.hostile);
    let good = install(installation, GOOD, &s.good);
    let call = s.sandbox.call_event(&hostile, event, payload);
    let violation = match call.result {
        Err(CallError::Violation(v)) => v,
        other => panic!("`{event}` was not stopped: {other:?}"),
    };
    // It is in the audit trail, for this installation.
    let recorded = s
        .audit
        .query(&AuditFilter {
            installation: Some(InstallationId::new(installation)),
            kinds: vec![AuditKind::SandboxViolation, AuditKind::PermissionDenied],
            ..Default::default()
        })
        .unwrap();
    assert!(!recorded.is_empty(), "`{event}` left no audit record");
    // The host goes on: a well-behaved plugin in the same installation still answers.
    let ok = s.sandbox.call_event(&good, "order.created", "1");
    assert_eq!(ok.result, Ok(()), "the good plugin failed after `{event}`");
    violation
}

/// Runs, in its own installation, an attempt at what the grant does not
/// allow: the host call must be refused and the refusal returned to the
/// plugin (which here gives up with it as its error), audited with `scope`,
/// and not counted against the plugin's health.
fn refused(installation: &str, event: &str, payload: &str, scope: &str) -> String {
    let s = &*SUITE;
    let hostile = install(installation, HOSTILE, &s.hostile);
    let good = install(installation, GOOD, &s.good);
    let call = s.sandbox.call_event(&hostile, event, payload);
    let message = match call.result {
        Err(CallError::Plugin(m)) => m,
        other => panic!("`{event}` was not refused to the plugin: {other:?}"),
    };
    assert!(call.usage.denied_host_calls >= 1, "{:?}", call.usage);
    let denied = s
        .audit
        .query(&AuditFilter {
            installation: Some(InstallationId::new(installation)),
            kinds: vec![AuditKind::PermissionDenied],
            ..Default::default()
        })
        .unwrap();
    assert!(
        denied.iter().any(|r| matches!(&r.event.action,
            AuditAction::PermissionDenied { scope: s, .. } if s == scope)),
        "no denial of `{scope}` audited: {denied:?}"
    );
    // The platform's refusal is not the plugin's fault.
    let health = s
        .sandbox
        .health()
        .report(&hostile.installation, &hostile.plugin);
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert!(health.recent_failures.is_empty(), "{health:?}");
    let ok = s.sandbox.call_event(&good, "order.created", "1");
    assert_eq!(ok.result, Ok(()), "the good plugin failed after `{event}`");
    message
}

#[test]
fn infinite_loop_times_out() {
    let start = Instant::now();
    let v = attack("loop", "loop", "");
    assert_eq!(
        v,
        SandboxViolation::Timeout {
            limit: Duration::from_millis(300)
        }
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let v = attack("memory", "memory", "");
    assert!(
        matches!(v, SandboxViolation::Memory { limit, .. } if limit == 16 << 20),
        "{v:?}"
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    assert_eq!(attack("recurse", "recurse", ""), SandboxViolation::Stack);
}

#[test]
fn huge_output_is_refused() {
    let v = attack("output", "output", "");
    assert_eq!(
        v,
        SandboxViolation::Output {
            what: "error message",
            limit: 1 << 20
        }
    );
    let v = attack("stdout", "stdout", "");
    assert_eq!(
        v,
        SandboxViolation::Output {
            what: "stdout or stderr",
            limit: 1 << 20
        }
    );
}

#[test]
fn a_trap_is_reported_as_a_trap() {
    let v = attack("trap", "trap", "");
    assert!(matches!(v, SandboxViolation::Trap(_)), "{v:?}");
}

#[test]
fn entity_write_without_the_scope_is_denied() {
    let m = refused("entity-write", "entity-write", "", "entities:write:order");
    assert_eq!(m, r#"Error::Denied("entities:write:order")"#);
}

#[test]
fn a_refused_host_call_is_the_plugins_to_handle() {
    let s = &*SUITE;
    let hostile = install("try-write", HOSTILE, &s.hostile);
    let call = s.sandbox.call_event(&hostile, "try-write", "");
    assert_eq!(
        call.result,
        Ok(()),
        "the plugin handled the refusal and carried on"
    );
    assert_eq!(
        (call.usage.host_calls, call.usage.denied_host_calls),
        (3, 1),
        "the refused write, the log line, the read"
    );
    assert!(
        s.services
            .logs
            .lock()
            .iter()
            .any(|(p, _, line)| p.as_str() == "hostile"
                && line == r#"write refused: Err(Error::Denied("entities:write:order"))"#)
    );
}

#[test]
fn user_write_needs_users_write_and_links_for_guests_built_against_0_1_1() {
    let m = refused("user-write", "user-write", "7", "users:write");
    assert_eq!(m, r#"Error::Denied("users:write")"#);
    assert!(SUITE.services.user(&"user-write".into(), "7").is_none());
    // With `users:write` granted, the same call changes the record.
    let writer = install(
        "user-write-granted",
        &HOSTILE.replace(r#""users": "read""#, r#""users": "write""#),
        &SUITE.hostile,
    );
    let call = SUITE.sandbox.call_event(&writer, "user-write", "7");
    assert_eq!(call.result, Ok(()));
    assert_eq!(
        SUITE
            .services
            .user(&"user-write-granted".into(), "7")
            .as_deref(),
        Some(r#"{"role":"admin"}"#)
    );
}

#[test]
fn a_guest_built_against_wit_0_1_0_still_links_and_runs() {
    let legacy = guest("legacy");
    let m = Manifest::parse(
        r#"{"name":"Legacy","slug":"legacy","version":"0.1.0","routes":["GET /"],
            "permissions":{"users":"read","hooks":["subscribe:user.*"]}}"#,
    )
    .unwrap();
    let shop = InstallationId::new("legacy");
    SUITE.services.add_user(&shop, "3", r#"{"name":"Zoë"}"#);
    let p = SUITE
        .sandbox
        .install(&shop, &m, &legacy, &Consent::all(&m, "merchant"), limits())
        .unwrap();
    assert_eq!(
        SUITE.sandbox.call_event(&p, "user.created", "3").result,
        Ok(())
    );
    assert!(
        SUITE
            .services
            .logs
            .lock()
            .iter()
            .any(|(p, _, line)| p.as_str() == "legacy" && line == "user 3 found: true")
    );
    let r = SUITE.sandbox.call_request(
        &p,
        &Request {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![],
            body: vec![],
        },
    );
    assert_eq!(r.result.unwrap().body, b"built against 0.1.0");
}

#[test]
fn hook_trigger_without_the_scope_is_denied() {
    let m = refused(
        "hook-trigger",
        "hook-trigger",
        "",
        "hooks:trigger:order.refunded",
    );
    assert_eq!(m, r#"Error::Denied("hooks:trigger:order.refunded")"#);
    assert!(
        SUITE
            .services
            .triggered
            .lock()
            .iter()
            .all(|t| t.2 != "order.refunded")
    );
}

#[test]
fn request_to_a_host_not_in_the_allowlist_is_refused() {
    let scope = "network:outbound:evil.example:80";
    let m = refused("http-other", "http", "http://evil.example/steal", scope);
    assert_eq!(m, format!("Error::Denied({scope:?})"));
    let net = SUITE
        .audit
        .query(&AuditFilter {
            installation: Some("http-other".into()),
            kinds: vec![AuditKind::NetworkRequest],
            ..Default::default()
        })
        .unwrap();
    assert!(matches!(&net[0].event.action,
        AuditAction::NetworkRequest { allowed: false, host, .. } if host == "evil.example"));
}

#[test]
fn request_to_loopback_is_refused_even_when_listed() {
    let v = attack("http-loopback", "http", "http://127.0.0.1:9/");
    assert!(
        matches!(&v, SandboxViolation::Network { reason, .. } if reason.contains("127.0.0.1")),
        "{v:?}"
    );
    let v = attack("http-localhost", "http", "http://localhost:9/");
    assert!(
        matches!(&v, SandboxViolation::Network { reason, .. } if reason.contains("loopback")),
        "{v:?}"
    );
}

#[test]
fn request_to_a_private_address_behind_an_allowed_name_is_refused() {
    let v = attack(
        "http-private",
        "http",
        "http://internal.partner.example/admin",
    );
    assert!(
        matches!(&v, SandboxViolation::Network { host, reason } if host == "internal.partner.example" && reason.contains("10.0.0.7")),
        "{v:?}"
    );
}

#[test]
fn file_escape_by_dotdot_is_refused() {
    let v = attack("fs-dotdot", "file-read", "../../../../etc/passwd");
    assert!(
        matches!(&v, SandboxViolation::Filesystem { reason, .. } if reason.contains("..")),
        "{v:?}"
    );
    let v = attack("fs-absolute", "file-read", "/etc/passwd");
    assert!(matches!(v, SandboxViolation::Filesystem { .. }), "{v:?}");
}

#[test]
fn file_escape_by_symlink_is_refused() {
    let s = &*SUITE;
    // Something outside the plugin's folder, and a symlink to it inside.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.json"), "{\"key\":\"hunter2\"}").unwrap();
    install("fs-symlink", HOSTILE, &s.hostile);
    let folder = s.storage.path().join("fs-symlink").join("hostile");
    std::os::unix::fs::symlink(outside.path(), folder.join("link")).unwrap();
    let v = attack("fs-symlink", "file-read", "link/secret.json");
    assert!(
        matches!(&v, SandboxViolation::Filesystem { reason, .. } if reason.contains("outside")),
        "{v:?}"
    );
}

#[test]
fn storage_quota_overflow_is_refused() {
    let s = &*SUITE;
    let hostile = install("fs-quota", HOSTILE, &s.hostile);
    // 600 bytes fit in the 1,000-byte quota once, not twice.
    assert_eq!(
        s.sandbox
            .call_event(&hostile, "file-write", "a.json")
            .result,
        Ok(())
    );
    let v = attack("fs-quota", "file-write", "b.json");
    assert_eq!(
        v,
        SandboxViolation::StorageQuota {
            requested: 1200,
            quota: 1000
        }
    );
    // Overwriting the same file stays within the quota.
    assert_eq!(
        s.sandbox
            .call_event(&hostile, "file-write", "a.json")
            .result,
        Ok(())
    );
    // A type the manifest does not allow.
    let v = attack("fs-quota", "file-write", "run.sh");
    assert!(
        matches!(&v, SandboxViolation::Filesystem { reason, .. } if reason.contains("allowed_types")),
        "{v:?}"
    );
}

#[test]
fn a_burst_over_the_rate_limit_is_refused_to_the_plugin() {
    let m = refused("rate", "rate-burst", "", "entities:read:order");
    assert!(
        m.starts_with("Error::Limit(\"rate limit exceeded: retry in "),
        "{m}"
    );
    // Exactly the manifest's 20 went through.
    let hostile = SUITE
        .sandbox
        .get(&"rate".into(), &"hostile".into())
        .unwrap();
    let used = hostile.usage();
    assert_eq!(
        (used.host_calls, used.denied_host_calls),
        (21, 1),
        "{used:?}"
    );
}

#[test]
fn an_import_without_a_grant_is_refused_at_install() {
    let s = &*SUITE;
    let m = Manifest::parse(HOSTILE).unwrap();
    let without_network: ScopeSet = m
        .scopes()
        .iter()
        .filter(|sc| !matches!(sc, PluginScope::NetworkOutbound(_)))
        .cloned()
        .collect();
    let err = s
        .sandbox
        .install(
            &"no-net".into(),
            &m,
            &s.hostile,
            &Consent::to(without_network, "merchant"),
            limits(),
        )
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LoadError::MissingPermission {
                capability: "network",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("network:outbound:{host}"), "{err}");
    assert!(s.sandbox.get(&"no-net".into(), &m.slug).is_none());
    // Nothing was recorded: a refused install grants nothing.
    assert!(
        s.sandbox
            .permissions()
            .current(&"no-net".into(), &m.slug)
            .unwrap()
            .is_none()
    );
}

#[test]
fn the_good_plugin_works_and_is_metered() {
    let s = &*SUITE;
    let good = install("metered", GOOD, &s.good);
    let call = s.sandbox.call_event(&good, "order.created", "7");
    assert_eq!(call.result, Ok(()));
    assert_eq!(call.usage.host_calls, 3, "log, get, put");
    assert!(call.usage.peak_memory > 0);
    assert!(call.usage.bytes_in > 0);
    let response = s.sandbox.call_request(
        &good,
        &Request {
            method: "GET".into(),
            path: "/status".into(),
            headers: vec![],
            body: vec![],
        },
    );
    assert_eq!(response.result.unwrap().body, b"GET /status ok");
    assert_eq!(s.sandbox.call_health(&good).result, Ok(()));
}

#[test]
fn uninstall_removes_the_plugin_and_its_data() {
    let s = &*SUITE;
    let hostile = install("uninstall", HOSTILE, &s.hostile);
    assert_eq!(
        s.sandbox
            .call_event(&hostile, "file-write", "data.json")
            .result,
        Ok(())
    );
    let folder = s.storage.path().join("uninstall").join("hostile");
    assert!(folder.join("data.json").is_file());
    assert!(
        s.sandbox
            .uninstall(&"uninstall".into(), &"hostile".into())
            .unwrap()
    );
    assert!(!folder.exists());
    assert!(
        s.sandbox
            .get(&"uninstall".into(), &"hostile".into())
            .is_none()
    );
    assert!(
        s.sandbox
            .permissions()
            .current(&"uninstall".into(), &"hostile".into())
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.sandbox.call_event(&hostile, "entity-read", "").result,
        Err(CallError::Refused(DenyReason::NotInstalled)),
        "a handle kept past the uninstall runs nothing"
    );
}

#[test]
fn fuel_budgets_stop_busy_plugins_deterministically() {
    let (sandbox, _, hostile) = own_sandbox(
        SandboxConfig {
            fuel: true,
            ..SandboxConfig::default()
        },
        "fuel",
        Limits {
            fuel: Some(5_000_000),
            timeout: Duration::from_secs(10),
            ..limits()
        },
    );
    let call = sandbox.call_event(&hostile, "loop", "");
    assert_eq!(
        call.result,
        Err(CallError::Violation(SandboxViolation::Fuel {
            budget: 5_000_000
        }))
    );
    assert_eq!(call.usage.fuel, Some(5_000_000));
}

#[test]
fn dispatch_reaches_only_subscribers_and_a_hanging_plugin_blocks_no_one() {
    let s = &*SUITE;
    // A host of its own, whose breakers open after 3 failures.
    let audit = Arc::new(MemoryAudit::new());
    let host = Host {
        health: Arc::new(
            HealthMonitor::new(BreakerConfig {
                failure_threshold: 3,
                ..BreakerConfig::default()
            })
            .unwrap(),
        ),
        ..host(&audit)
    };
    let sandbox = Sandbox::new(
        SandboxConfig::default(),
        &host,
        Arc::new(MemoryServices::new()),
    )
    .unwrap();
    let put = |installation: &str, manifest: &str, wasm: &[u8]| {
        let limits = Limits {
            timeout: Duration::from_millis(300),
            ..limits()
        };
        tests::install_all(&sandbox, installation, manifest, wasm, limits)
    };
    let hostile_subscribed = HOSTILE.replace(
        r#""subscribe:*", "trigger:order.noted""#,
        r#""subscribe:loop", "subscribe:trap", "trigger:order.noted""#,
    );
    assert_ne!(hostile_subscribed, HOSTILE);
    let good_subscribed = GOOD.replace(r#""subscribe:order.*""#, r#""subscribe:*""#);
    put("dispatch", &hostile_subscribed, &s.hostile);
    put("dispatch", &good_subscribed, &s.good);
    put(
        "dispatch",
        &GOOD
            .replace("\"good\"", "\"deaf\"")
            .replace(r#", "hooks": ["subscribe:order.*"]"#, ""),
        &s.good,
    );
    // Another shop's subscriber never sees this shop's events.
    put(
        "dispatch-other-shop",
        &good_subscribed.replace("\"good\"", "\"neighbour\""),
        &s.good,
    );

    let start = Instant::now();
    let deliveries = sandbox.dispatch(&"dispatch".into(), "loop", "1");
    let elapsed = start.elapsed();
    let by_plugin: Vec<(&str, bool)> = deliveries
        .iter()
        .map(|d| (d.plugin.as_str(), d.outcome.is_ok()))
        .collect();
    // `deaf` is not subscribed; `good` answered while `hostile` spun until its timeout.
    assert_eq!(by_plugin, [("good", true), ("hostile", false)]);
    assert!(matches!(
        deliveries[1].outcome,
        Err(CallError::Violation(SandboxViolation::Timeout { .. }))
    ));
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // Repeated failures open the hostile plugin's circuit; the good one keeps running.
    for _ in 0..2 {
        sandbox.dispatch(&"dispatch".into(), "trap", "1");
    }
    let deliveries = sandbox.dispatch(&"dispatch".into(), "trap", "1");
    assert!(deliveries[0].outcome.is_ok());
    assert_eq!(
        deliveries[1].outcome,
        Err(CallError::Refused(DenyReason::CircuitOpen)),
        "{deliveries:?}"
    );
}

#[test]
fn upgrade_and_hot_reload_replace_the_running_component() {
    let s = &*SUITE;
    let status = |p: &Installed| {
        let req = Request {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![],
            body: vec![],
        };
        s.sandbox.call_request(p, &req).result.unwrap().status
    };
    let first = install("reload", HOSTILE, &s.hostile);
    assert_eq!(status(&first), 404, "the hostile plugin has no endpoints");
    // A new version with another component: the next call runs the new code.
    let second = install(
        "reload",
        &HOSTILE.replace("\"0.1.0\"", "\"0.2.0\""),
        &s.good,
    );
    assert_ne!(first.component_hash, second.component_hash);
    let current = s.sandbox.get(&"reload".into(), &"hostile".into()).unwrap();
    assert_eq!(current.manifest.version.to_string(), "0.2.0");
    assert_eq!(status(&current), 200);
    // A reload whose component imports what the grant lacks is refused, and the running one stays.
    let narrow = Manifest::parse(&HOSTILE.replace("\"0.1.0\"", "\"0.3.0\"")).unwrap();
    let only_entities: ScopeSet = ["entities:read:order".parse::<PluginScope>().unwrap()]
        .into_iter()
        .collect();
    let err = s
        .sandbox
        .install(
            &"reload".into(),
            &narrow,
            &s.hostile,
            &Consent::to(only_entities, "merchant"),
            limits(),
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::MissingPermission { .. }), "{err}");
    let current = s.sandbox.get(&"reload".into(), &"hostile".into()).unwrap();
    assert_eq!(current.manifest.version.to_string(), "0.2.0");
    let grant = s
        .sandbox
        .permissions()
        .current(&"reload".into(), &"hostile".into())
        .unwrap()
        .unwrap();
    assert_eq!(
        grant.plugin_version, "0.2.0",
        "the refused reload recorded nothing"
    );
    let changes: Vec<String> = SUITE
        .audit
        .query(&AuditFilter {
            installation: Some("reload".into()),
            kinds: vec![AuditKind::Lifecycle],
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| format!("{:?}", r.event.action))
        .collect();
    assert!(
        changes.iter().any(|c| c.contains("Upgraded")),
        "{changes:?}"
    );
}

/// An upgrade whose new version fails its health probe is refused, audited,
/// and the running version keeps serving (marketplace reference RB-2).
#[test]
fn an_upgrade_that_fails_its_health_probe_leaves_the_running_version() {
    let s = &*SUITE;
    let inst: InstallationId = "upgrade-health".into();
    // Version 0.1.0 runs the well-behaved component under the hostile manifest.
    install("upgrade-health", HOSTILE, &s.good);
    let v2 = Manifest::parse(&HOSTILE.replace("\"0.1.0\"", "\"0.2.0\"")).unwrap();
    let err = s
        .sandbox
        .upgrade(&inst, &v2, &s.hostile, limits())
        .unwrap_err();
    assert!(
        matches!(&err, LoadError::Unhealthy { version, reason, .. }
            if version == "0.2.0" && reason.contains("never healthy")),
        "{err}"
    );
    let running = s.sandbox.get(&inst, &"hostile".into()).unwrap();
    assert_eq!(running.manifest.version.to_string(), "0.1.0");
    // The failed probe counted against the new version, not the running one.
    let health = s.sandbox.health().report(&inst, &"hostile".into());
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert!(health.recent_failures.is_empty(), "{health:?}");
    assert_eq!(running.usage().calls, 0);
    let grant = s
        .sandbox
        .permissions()
        .current(&inst, &"hostile".into())
        .unwrap()
        .unwrap();
    assert_eq!(grant.plugin_version, "0.1.0");
    assert_eq!(s.sandbox.call_health(&running).result, Ok(()));
    let refused = s
        .audit
        .query(&AuditFilter {
            installation: Some(inst.clone()),
            kinds: vec![AuditKind::Lifecycle],
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .any(|r| format!("{:?}", r.event.action).contains("UpgradeRefused"));
    assert!(refused, "the refusal is in the audit trail");
    // A healthy new version goes through.
    let v3 = Manifest::parse(&HOSTILE.replace("\"0.1.0\"", "\"0.3.0\"")).unwrap();
    s.sandbox.upgrade(&inst, &v3, &s.good, limits()).unwrap();
    assert_eq!(
        s.sandbox
            .get(&inst, &"hostile".into())
            .unwrap()
            .manifest
            .version
            .to_string(),
        "0.3.0"
    );
}

#[test]
fn upgrades_that_ask_for_more_need_consent_and_disabled_plugins_do_not_run() {
    let s = &*SUITE;
    install("lifecycle", GOOD, &s.good);
    let greedy = Manifest::parse(
        &GOOD
            .replace(
                r#""write:order_note""#,
                r#""write:order_note", "write:order""#,
            )
            .replace("\"0.1.0\"", "\"0.2.0\""),
    )
    .unwrap();
    let err = s
        .sandbox
        .upgrade(&"lifecycle".into(), &greedy, &s.good, limits())
        .unwrap_err();
    assert!(
        matches!(&err, LoadError::ConsentRequired { scopes, .. } if scopes == &["entities:write:order"]),
        "{err}"
    );
    assert_eq!(
        s.sandbox
            .get(&"lifecycle".into(), &"good".into())
            .unwrap()
            .manifest
            .version
            .to_string(),
        "0.1.0"
    );
    // A version that asks for no more upgrades without asking.
    let modest = Manifest::parse(&GOOD.replace("\"0.1.0\"", "\"0.1.1\"")).unwrap();
    let upgraded = s
        .sandbox
        .upgrade(&"lifecycle".into(), &modest, &s.good, limits())
        .unwrap();
    assert_eq!(upgraded.manifest.version.to_string(), "0.1.1");

    // The new version's health probe is its first call.
    assert_eq!(upgraded.usage().calls, 1);
    s.sandbox
        .set_enabled(&"lifecycle".into(), &"good".into(), false, "merchant")
        .unwrap();
    let call = s.sandbox.call_event(&upgraded, "order.created", "1");
    assert_eq!(
        call.result,
        Err(CallError::Refused(DenyReason::Disabled)),
        "{call:?}"
    );
    assert_eq!(upgraded.usage().calls, 1, "a disabled plugin is not run");
    s.sandbox
        .set_enabled(&"lifecycle".into(), &"good".into(), true, "merchant")
        .unwrap();
    assert_eq!(
        s.sandbox.call_event(&upgraded, "order.created", "1").result,
        Ok(())
    );
}

#[test]
fn allowed_requests_go_out_and_are_audited() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    // A host that allows private networks (as on a developer's machine).
    let (sandbox, audit, p) = own_sandbox(
        private_network(),
        "net",
        Limits {
            timeout: Duration::from_secs(5),
            ..limits()
        },
    );
    let call = sandbox.call_event(&p, "http", &format!("http://localhost:{port}/ping"));
    assert_eq!(call.result, Ok(()));
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /ping HTTP/1.1\r\n"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains(&format!("\r\nhost: localhost:{port}\r\n")),
        "{request}"
    );
    let net = audit
        .query(&AuditFilter {
            kinds: vec![AuditKind::NetworkRequest],
            ..Default::default()
        })
        .unwrap();
    assert!(
        matches!(&net[0].event.action, AuditAction::NetworkRequest { allowed: true, status: Some(200), host, .. } if host == "localhost")
    );
}

#[test]
fn compiled_components_are_cached_on_disk_and_a_broken_cache_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let m = Manifest::parse(GOOD).unwrap();
    let run = || {
        let sandbox = Sandbox::new(
            config.clone(),
            &host(&Arc::new(MemoryAudit::new())),
            Arc::new(MemoryServices::new()),
        )
        .unwrap();
        let p = sandbox
            .install(
                &"cache".into(),
                &m,
                &SUITE.good,
                &Consent::all(&m, "merchant"),
                limits(),
            )
            .unwrap();
        sandbox.call_event(&p, "order.created", "1").result
    };
    assert_eq!(run(), Ok(()));
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "cwasm"));
    let modified = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    // A second process loads the compiled form instead of compiling again.
    assert_eq!(run(), Ok(()));
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        modified
    );
    // A truncated artifact is refused by wasmtime and replaced by a fresh compile.
    std::fs::write(&files[0], b"not an artifact").unwrap();
    assert_eq!(run(), Ok(()));
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000);
}

#[test]
fn a_restart_loads_a_component_by_its_digest_and_nothing_else() {
    let cache = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let m = Manifest::parse(GOOD).unwrap();
    let consent = Consent::all(&m, "merchant");
    let new = |config: &SandboxConfig| {
        Sandbox::new(
            config.clone(),
            &host(&Arc::new(MemoryAudit::new())),
            Arc::new(MemoryServices::new()),
        )
        .unwrap()
    };
    let first = new(&config);
    let digest = first
        .install(&"shop".into(), &m, &SUITE.good, &consent, limits())
        .unwrap()
        .component_hash;
    drop(first);
    // A new process with the same cache folder, given only the digest.
    let restarted = new(&config);
    let p = restarted
        .install(
            &"shop".into(),
            &m,
            Wasm::compiled(digest),
            &consent,
            limits(),
        )
        .unwrap();
    assert_eq!(p.component_hash, digest);
    assert_eq!(
        restarted.call_event(&p, "order.created", "1").result,
        Ok(())
    );
    // A digest it never compiled names nothing: refused, and the running
    // plugin stays.
    let unknown = restarted.install(
        &"shop".into(),
        &m,
        Wasm::compiled([9; 32]),
        &consent,
        limits(),
    );
    assert!(
        matches!(&unknown, Err(LoadError::NotCompiled { plugin, digest })
            if plugin == "good" && *digest == "09".repeat(32)),
        "{unknown:?}"
    );
    let running = restarted.get(&"shop".into(), &"good".into()).unwrap();
    assert_eq!(running.component_hash, digest);
    // A broken artifact is not compiled from nothing: with only the digest,
    // the host is told to load the bytes. (The artifact is mapped into the
    // sandbox that loaded it, which must be gone before it is overwritten
    // in place; the cache itself only ever replaces files by renaming.)
    drop((p, running, restarted));
    for f in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(f.unwrap().path(), b"not an artifact").unwrap();
    }
    let broken = new(&config).install(
        &"shop".into(),
        &m,
        Wasm::compiled(digest),
        &consent,
        limits(),
    );
    assert!(
        matches!(broken, Err(LoadError::NotCompiled { .. })),
        "{broken:?}"
    );
}

#[test]
fn a_component_no_plugin_runs_any_more_is_forgotten() {
    let sandbox = Sandbox::new(
        SandboxConfig::default(),
        &host(&Arc::new(MemoryAudit::new())),
        Arc::new(MemoryServices::new()),
    )
    .unwrap();
    let m = Manifest::parse(GOOD).unwrap();
    let consent = Consent::all(&m, "merchant");
    let digest = sandbox
        .install(&"a".into(), &m, &SUITE.good, &consent, limits())
        .unwrap()
        .component_hash;
    sandbox
        .install(&"b".into(), &m, &SUITE.good, &consent, limits())
        .unwrap();
    let by_digest = |installation: &str| {
        sandbox.install(
            &installation.into(),
            &m,
            Wasm::compiled(digest),
            &consent,
            limits(),
        )
    };
    // Without a cache folder, the digest finds the component in memory
    // while some installation still runs it.
    assert!(sandbox.uninstall(&"a".into(), &"good".into()).unwrap());
    let c = by_digest("c").unwrap();
    assert_eq!(sandbox.call_event(&c, "order.created", "1").result, Ok(()));
    assert!(sandbox.uninstall(&"b".into(), &"good".into()).unwrap());
    assert!(sandbox.uninstall(&"c".into(), &"good".into()).unwrap());
    // Nobody runs it: it is gone (a review trying many packages does not
    // keep them all compiled).
    let gone = by_digest("d");
    assert!(
        matches!(gone, Err(LoadError::NotCompiled { .. })),
        "{gone:?}"
    );
    // Replacing the plugin with other bytes forgets the component it ran.
    let wide =
        Manifest::parse(&HOSTILE.replace(r#""slug": "hostile""#, r#""slug": "good""#)).unwrap();
    let wide_consent = Consent::all(&wide, "merchant");
    sandbox
        .install(&"e".into(), &wide, &SUITE.good, &wide_consent, limits())
        .unwrap();
    let replacement = sandbox
        .install(&"e".into(), &wide, &SUITE.hostile, &wide_consent, limits())
        .unwrap();
    assert_ne!(replacement.component_hash, digest);
    let replaced = by_digest("f");
    assert!(
        matches!(replaced, Err(LoadError::NotCompiled { .. })),
        "{replaced:?}"
    );
}

#[test]
fn host_call_limits_stop_chatty_plugins_and_spikes_are_audited() {
    let s = &*SUITE;
    let m = Manifest::parse(HOSTILE).unwrap();
    let chatty = s
        .sandbox
        .install(
            &"chatty".into(),
            &m,
            &s.hostile,
            &Consent::all(&m, "merchant"),
            Limits {
                host_calls: 10,
                ..limits()
            },
        )
        .unwrap();
    let call = s.sandbox.call_event(&chatty, "rate-burst", "");
    assert_eq!(
        call.result,
        Err(CallError::Violation(SandboxViolation::HostCalls {
            limit: 10
        }))
    );
    assert_eq!(call.usage.host_calls, 11);

    // The good plugin makes 3 host calls: at a limit of 3 that is a spike, not a violation.
    let g = Manifest::parse(GOOD).unwrap();
    let good = s
        .sandbox
        .install(
            &"spiky".into(),
            &g,
            &s.good,
            &Consent::all(&g, "merchant"),
            Limits {
                host_calls: 3,
                ..limits()
            },
        )
        .unwrap();
    assert_eq!(
        s.sandbox.call_event(&good, "order.created", "1").result,
        Ok(())
    );
    let spikes = s
        .audit
        .query(&AuditFilter {
            installation: Some("spiky".into()),
            kinds: vec![AuditKind::ResourceSpike],
            ..Default::default()
        })
        .unwrap();
    assert!(
        matches!(&spikes[0].event.action, AuditAction::ResourceSpike { resource, value: 3, .. } if resource == "host_calls"),
        "{spikes:?}"
    );
    let totals = good.usage();
    assert_eq!(
        (totals.calls, totals.failures, totals.host_calls),
        (1, 0, 3)
    );
    assert!(totals.peak_memory > 0);
}

#[test]
fn a_server_that_never_answers_cannot_stretch_a_call_past_its_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and then says nothing.
    let _server = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(5));
        drop(conn);
    });
    let (sandbox, _, p) = own_sandbox(private_network(), "slow", limits());
    let start = Instant::now();
    let call = sandbox.call_event(&p, "http", &format!("http://127.0.0.1:{port}/"));
    assert!(call.result.is_err(), "{call:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the call took {:?}",
        start.elapsed()
    );
}

#[test]
fn https_is_checked_like_http_and_an_untrusted_server_fails_the_handshake() {
    // The SSRF check comes before any TLS.
    let v = attack("https-private", "http", "https://internal.partner.example/");
    assert!(
        matches!(&v, SandboxViolation::Network { reason, .. } if reason.contains("10.0.0.7")),
        "{v:?}"
    );

    // A local server that speaks no TLS: the handshake fails, and the plugin is told so.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n\r\nplain text, not TLS");
        }
    });
    let (sandbox, _, p) = own_sandbox(
        private_network(),
        "tls",
        Limits {
            timeout: Duration::from_secs(5),
            ..limits()
        },
    );
    let call = sandbox.call_event(&p, "http", &format!("https://localhost:{port}/"));
    assert!(
        matches!(&call.result, Err(CallError::Plugin(m)) if m.contains("Internal")),
        "{call:?}"
    );
}

/// Serves one connection on loopback with `answer`, after reading the request.
fn hostile_server(answer: &'static [u8]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(answer);
        }
    });
    port
}

#[test]
fn a_hostile_allowed_server_cannot_crash_the_host_or_pass_a_truncated_body() {
    let (sandbox, _, p) = own_sandbox(private_network(), "evil-server", limits());
    // A chunk size that overflows: the plugin gets an error, the host lives on.
    let port = hostile_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    );
    let call = sandbox.call_event(&p, "http", &format!("http://127.0.0.1:{port}/"));
    assert!(
        matches!(&call.result, Err(CallError::Plugin(m)) if m.contains("Internal")),
        "{call:?}"
    );
    // A body shorter than its Content-Length is not accepted as complete.
    let port = hostile_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
    let call = sandbox.call_event(&p, "http", &format!("http://127.0.0.1:{port}/"));
    assert!(
        matches!(&call.result, Err(CallError::Plugin(m)) if m.contains("Internal")),
        "{call:?}"
    );
    // And the sandbox still runs the next call.
    let port = hostile_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let call = sandbox.call_event(&p, "http", &format!("http://127.0.0.1:{port}/"));
    assert_eq!(call.result, Ok(()));
}

#[test]
fn a_stalled_tls_handshake_ends_at_the_http_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(10));
        drop(conn);
    });
    let (sandbox, _, p) = own_sandbox(private_network(), "tls-stall", http_limits());
    let url = format!("https://localhost:{port}/");
    within_the_http_timeout(|| sandbox.call_event(&p, "http", &url));
}

#[test]
fn bytes_passed_into_the_host_are_limited_per_host_call_and_per_call() {
    // 8 triggers of 3 MiB: past the 16 MiB a call may pass in.
    let v = attack("push-total", "push", "8:3072");
    assert_eq!(
        v,
        SandboxViolation::HostInput {
            limit: 16 << 20,
            per: "in one call"
        }
    );
    // One trigger of 5 MiB: past the 4 MiB of one host call.
    let v = attack("push-one", "push", "1:5120");
    assert_eq!(
        v,
        SandboxViolation::HostInput {
            limit: 4 << 20,
            per: "in one host call"
        }
    );
    assert!(
        v.to_string()
            .contains("4194304 bytes to the host in one host call"),
        "{v}"
    );
}

#[test]
fn a_plugins_answer_counts_its_headers_against_the_output_limit() {
    let s = &*SUITE;
    let hostile = install("big-headers", HOSTILE, &s.hostile);
    let call = s.sandbox.call_request(
        &hostile,
        &Request {
            method: "GET".into(),
            path: "/big-headers".into(),
            headers: vec![],
            body: vec![],
        },
    );
    assert_eq!(
        call.result.map(|r| r.status),
        Err(CallError::Violation(SandboxViolation::Output {
            what: "result",
            limit: 1 << 20
        }))
    );
}

#[test]
fn concurrent_calls_of_one_installation_cannot_pass_its_storage_quota_together() {
    let s = &*SUITE;
    // Rounds, each in a fresh installation, so that a race has many chances.
    for round in 0..10 {
        let installation = format!("fs-race-{round}");
        let hostile = install(&installation, HOSTILE, &s.hostile);
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (hostile, barrier) = (&hostile, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        s.sandbox
                            .call_event(hostile, "file-write", &format!("f{i}.json"))
                            .result
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // 600 bytes fit the 1,000-byte quota once. The others were stopped
        // for the quota, or refused once those violations opened the circuit.
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results.iter().filter(|r| r.is_err()).all(|r| matches!(
                r,
                Err(CallError::Violation(SandboxViolation::StorageQuota {
                    quota: 1000,
                    ..
                })) | Err(CallError::Refused(DenyReason::CircuitOpen))
            )),
            "{results:?}"
        );
        let folder = s.storage.path().join(&installation).join("hostile");
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
    }
}

#[test]
fn empty_folders_do_not_pile_up_under_the_quota() {
    let s = &*SUITE;
    // A hundred folders made and removed per call: room for a busy machine.
    let hostile = tests::install_all(
        &s.sandbox,
        "fs-folders",
        HOSTILE,
        &s.hostile,
        Limits {
            timeout: Duration::from_secs(5),
            ..limits()
        },
    );
    let deep = format!("{}x.json", "d/".repeat(100));
    for _ in 0..50 {
        assert_eq!(
            s.sandbox.call_event(&hostile, "file-write", &deep).result,
            Ok(())
        );
        assert_eq!(
            s.sandbox.call_event(&hostile, "file-delete", &deep).result,
            Ok(())
        );
    }
    let folder = s.storage.path().join("fs-folders").join("hostile");
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
}

/// Resolves every name to `addrs`, after `delay`.
#[derive(Debug)]
struct FixedDns {
    addrs: Vec<SocketAddr>,
    delay: Duration,
}

impl Resolver for FixedDns {
    fn resolve(&self, _host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        std::thread::sleep(self.delay);
        Ok(self.addrs.clone())
    }
}

/// Limits with an 8 s call and a 1 s HTTP timeout.
fn http_limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(8),
        http_timeout: Duration::from_secs(1),
        ..limits()
    }
}

/// A sandbox whose every name resolves to `addrs` after `delay`, with the
/// hostile plugin installed under `limits`.
fn sandbox_with_dns(
    config: SandboxConfig,
    installation: &str,
    addrs: Vec<SocketAddr>,
    delay: Duration,
    limits: Limits,
) -> (Sandbox, Arc<Installed>) {
    let (sandbox, _, p) = own_sandbox(config, installation, limits);
    (
        sandbox.with_resolver(Arc::new(FixedDns { addrs, delay })),
        p,
    )
}

/// Runs `call`; it must fail with a plugin error about the time limit, well
/// within 1 s plus room for a busy machine (the old client took 4 to 10 s).
fn within_the_http_timeout(call: impl FnOnce() -> vodo_sandbox::Call<()>) {
    let start = Instant::now();
    let call = call();
    let took = start.elapsed();
    assert!(
        matches!(&call.result, Err(CallError::Plugin(m)) if m.contains("did not answer within")),
        "{call:?}"
    );
    assert!(took < Duration::from_millis(3500), "took {took:?}");
}

#[test]
fn ipv6_forms_that_embed_or_reach_private_addresses_are_refused() {
    for ip in [
        "::10.0.0.7",
        "2002:a00:7::1",
        "fec0::1",
        "::ffff:0:10.0.0.7",
        "64:ff9b:1::a00:7",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",
    ] {
        let addr = SocketAddr::new(ip.parse().unwrap(), 80);
        let (sandbox, p) = sandbox_with_dns(
            SandboxConfig::default(),
            "v6",
            vec![addr],
            Duration::ZERO,
            http_limits(),
        );
        let call = sandbox.call_event(&p, "http", "http://internal.partner.example/");
        assert!(
            matches!(
                &call.result,
                Err(CallError::Violation(SandboxViolation::Network { reason, .. })) if reason.contains(&addr.ip().to_string())
            ),
            "{ip}: {call:?}"
        );
    }
}

#[test]
fn a_slow_name_server_cannot_stretch_a_request_past_its_timeout() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let (sandbox, p) = sandbox_with_dns(
        private_network(),
        "slow-dns",
        vec![addr],
        Duration::from_secs(4),
        http_limits(),
    );
    within_the_http_timeout(|| sandbox.call_event(&p, "http", "http://internal.partner.example/"));
}

#[test]
fn five_addresses_that_never_answer_share_one_timeout() {
    // A listener whose accept queue is full: further connections hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        held.push(s);
        assert!(held.len() < 4096, "the accept queue never filled");
    }
    let (sandbox, p) = sandbox_with_dns(
        private_network(),
        "black-hole",
        vec![addr; 5],
        Duration::ZERO,
        http_limits(),
    );
    let url = format!("http://internal.partner.example:{}/", addr.port());
    within_the_http_timeout(|| sandbox.call_event(&p, "http", &url));
    drop((held, listener));
}

#[test]
fn a_slow_reading_server_cannot_stretch_an_upload_past_its_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Read;
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            for _ in 0..100 {
                if conn.read(&mut buf).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Room for the 24 MiB body in the plugin and through the host call.
    let limits = Limits {
        memory: 128 << 20,
        host_call_input: 32 << 20,
        host_input: 32 << 20,
        ..http_limits()
    };
    let (sandbox, p) = sandbox_with_dns(
        private_network(),
        "slow-read",
        vec![addr],
        Duration::ZERO,
        limits,
    );
    let url = format!("http://127.0.0.1:{port}/upload");
    within_the_http_timeout(|| sandbox.call_event(&p, "http-post", &url));
}
