//! The host runtime as one piece: the grant is the one source of truth and
//! reaches a loaded plugin at its next call (from this process at once,
//! from another over the same data within the staleness bound), every entry
//! point walks one pipeline, and only the plugin's own faults count against
//! its health.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tests::guest;
use vodo_core::audit::{
    AuditAction, AuditFilter, AuditKind, AuditLog, LifecycleChange, MemoryAudit, verify_file,
};
use vodo_core::health::{
    AlertFn, AutoDisable, BreakerConfig, HealthChange, HealthMonitor, HealthStatus,
};
use vodo_core::keys::{IssueKey, MemoryKeyStore};
use vodo_core::{
    AccessError, Consent, DenyReason, Host, InstallationId, Manifest, MemoryRegistry, PluginId,
    SecretKey,
};
use vodo_sandbox::{
    CallError, HostServices, Installed, Limits, LoadError, LogLevel, MemoryServices, Request,
    Sandbox, SandboxConfig, SandboxViolation, ServiceError, ServiceResult,
};
use vodo_scopes::{PluginScope, ScopeSet};

const GOOD: &str = r#"{
  "name": "Good", "slug": "good", "version": "0.1.0", "description": "behaves",
  "routes": ["GET /status"],
  "permissions": { "entities": ["read:order", "write:order_note"], "hooks": ["subscribe:order.*"] }
}"#;

/// Everything the hostile component imports, and a small rate limit.
const HOSTILE: &str = r#"{
  "name": "Hostile", "slug": "hostile", "version": "0.1.0", "description": "tries everything",
  "routes": ["GET /"],
  "permissions": {
    "entities": ["read:order"],
    "hooks": ["subscribe:*", "trigger:order.noted"],
    "api": { "rate_limit": "5/minute", "endpoints": ["orders"] },
    "storage": { "max_size": 1000, "allowed_types": ["json"] },
    "network": { "outbound": ["example.com"] },
    "users": "read"
  }
}"#;

fn secret() -> SecretKey {
    SecretKey::from_bytes([11; 32])
}

fn host(audit: &Arc<MemoryAudit>) -> Host {
    Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        audit.clone(),
        &secret(),
    )
}

fn with_breaker(audit: &Arc<MemoryAudit>, health: HealthMonitor) -> Host {
    Host {
        health: Arc::new(health.with_audit(audit.clone())),
        ..host(audit)
    }
}

fn sandbox(host: &Host) -> Sandbox {
    Sandbox::new(
        SandboxConfig::default(),
        host,
        Arc::new(MemoryServices::new()),
    )
    .unwrap()
}

fn limits() -> Limits {
    Limits {
        memory: 16 << 20,
        timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

fn install(sandbox: &Sandbox, installation: &str, manifest: &str, wasm: &[u8]) -> Arc<Installed> {
    tests::install_all(sandbox, installation, manifest, wasm, limits())
}

fn scopes(v: &[&str]) -> ScopeSet {
    v.iter()
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect()
}

fn request(method: &str, path: &str) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        headers: vec![],
        body: vec![],
    }
}

fn records(audit: &MemoryAudit, installation: &str, kind: AuditKind) -> Vec<AuditAction> {
    audit
        .query(&AuditFilter {
            installation: Some(installation.into()),
            kinds: vec![kind],
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.event.action)
        .collect()
}

#[test]
fn revoke_narrow_and_disable_reach_a_loaded_plugin_on_its_next_call() {
    let audit = Arc::new(MemoryAudit::new());
    let sandbox = sandbox(&host(&audit));
    let perms = sandbox.permissions().clone();
    let shop = InstallationId::new("live");
    let good_m = Manifest::parse(GOOD).unwrap();
    let good = install(&sandbox, "live", GOOD, &guest("good"));
    assert_eq!(
        sandbox.call_event(&good, "order.created", "1").result,
        Ok(())
    );

    // Narrowed within the same interfaces: the next call's host call is refused.
    perms
        .install(
            &good_m,
            &shop,
            &Consent::to(
                scopes(&["entities:read:order", "hooks:subscribe:order.*"]),
                "merchant",
            ),
        )
        .unwrap();
    let call = sandbox.call_event(&good, "order.created", "2");
    assert_eq!(
        call.result,
        Err(CallError::Plugin(
            r#"Error::Denied("entities:write:order_note")"#.into()
        ))
    );
    assert_eq!(call.usage.denied_host_calls, 1);
    // Widened again: the same loaded plugin writes again.
    perms
        .install(&good_m, &shop, &Consent::all(&good_m, "merchant"))
        .unwrap();
    assert_eq!(
        sandbox.call_event(&good, "order.created", "3").result,
        Ok(())
    );

    // Disabled and enabled, without touching the sandbox.
    perms
        .set_enabled(&shop, &good_m.slug, false, "merchant")
        .unwrap();
    assert_eq!(
        sandbox.call_event(&good, "order.created", "4").result,
        Err(CallError::Refused(DenyReason::Disabled))
    );
    assert!(sandbox.subscribers(&shop, "order.created").is_empty());
    perms
        .set_enabled(&shop, &good_m.slug, true, "merchant")
        .unwrap();
    assert_eq!(
        sandbox.call_event(&good, "order.created", "5").result,
        Ok(())
    );

    // A narrowing that removes an interface the component imports refuses its
    // next instantiation, naming the import; a widening links it again.
    let hostile_m = Manifest::parse(HOSTILE).unwrap();
    let hostile = install(&sandbox, "live", HOSTILE, &guest("hostile"));
    assert_eq!(
        sandbox.call_event(&hostile, "entity-read", "").result,
        Ok(())
    );
    let without_network: ScopeSet = hostile_m
        .scopes()
        .iter()
        .filter(|s| !matches!(s, PluginScope::NetworkOutbound(_)))
        .cloned()
        .collect();
    perms
        .install(&hostile_m, &shop, &Consent::to(without_network, "merchant"))
        .unwrap();
    match sandbox.call_event(&hostile, "entity-read", "").result {
        Err(CallError::Refused(DenyReason::MissingCapability { import, capability })) => {
            assert!(import.starts_with("vodo:plugin/http@"), "{import}");
            assert_eq!(capability, "network");
        }
        other => panic!("{other:?}"),
    }
    assert!(records(&audit, "live", AuditKind::CallRefused).iter().any(|a| matches!(a,
        AuditAction::CallRefused { reason: DenyReason::MissingCapability { .. }, call } if call == "event entity-read")));
    perms
        .install(&hostile_m, &shop, &Consent::all(&hostile_m, "merchant"))
        .unwrap();
    assert_eq!(
        sandbox.call_event(&hostile, "entity-read", "").result,
        Ok(())
    );

    // Revoked: the loaded plugin runs nothing.
    perms.revoke(&shop, &good_m.slug, "merchant").unwrap();
    assert_eq!(
        sandbox.call_event(&good, "order.created", "6").result,
        Err(CallError::Refused(DenyReason::NotInstalled))
    );
    // Each change wrote one lifecycle record: install, narrow, widen, disable,
    // enable, and the hostile plugin's install, narrow, widen, then the revoke.
    use LifecycleChange::*;
    let changes: Vec<_> = records(&audit, "live", AuditKind::Lifecycle)
        .into_iter()
        .map(|a| match a {
            AuditAction::Lifecycle { change, .. } => change,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        changes,
        [
            Installed,
            Granted,
            Granted,
            Disabled,
            Enabled,
            Installed,
            Granted,
            Granted,
            Uninstalled
        ]
    );
}

/// Polls `f` until it returns `true` or `within` has passed; returns how long it took.
fn within(within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "not seen within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// The folder and the change for [`grant_changing_process`].
const OTHER_PROCESS_DATA: &str = "VODO_TEST_GRANT_DATA";
const OTHER_PROCESS_CHANGE: &str = "VODO_TEST_GRANT_CHANGE";

/// Not a test: the other process of the test below (a CLI command beside a
/// running server), started from this test binary. It opens the host on the
/// data folder it is given, makes one change to the `good` plugin's grant in
/// `shop`, audits it, and exits.
#[test]
#[ignore = "a helper process, started by a_change_by_another_process_reaches_a_loaded_plugin_within_the_staleness"]
fn grant_changing_process() {
    let (Ok(dir), Ok(change)) = (
        std::env::var(OTHER_PROCESS_DATA),
        std::env::var(OTHER_PROCESS_CHANGE),
    ) else {
        return;
    };
    let host = Host::open(dir.as_ref(), &secret()).unwrap();
    let good_m = Manifest::parse(GOOD).unwrap();
    let shop = InstallationId::new("shop");
    match change.as_str() {
        "disable" => {
            host.permissions
                .set_enabled(&shop, &good_m.slug, false, "cli")
                .unwrap();
        }
        "narrow" => {
            host.permissions
                .install(
                    &good_m,
                    &shop,
                    &Consent::to(
                        scopes(&["entities:read:order", "hooks:subscribe:order.*"]),
                        "cli",
                    ),
                )
                .unwrap();
        }
        "revoke" => {
            host.permissions.revoke(&shop, &good_m.slug, "cli").unwrap();
        }
        other => panic!("unknown change `{other}`"),
    }
    host.audit.flush().unwrap();
}

/// Runs [`grant_changing_process`] in another process and waits for it.
fn in_another_process(dir: &std::path::Path, change: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "grant_changing_process", "--quiet"])
        .env(OTHER_PROCESS_DATA, dir)
        .env(OTHER_PROCESS_CHANGE, change)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the other process failed to {change}");
}

#[test]
fn a_change_by_another_process_reaches_a_loaded_plugin_within_the_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let server = Host::open(dir.path(), &secret()).unwrap();
    let staleness = server.permissions.staleness();
    assert_eq!(staleness, Duration::from_secs(1), "the documented default");
    let bound = staleness + Duration::from_millis(500);

    let sandbox = sandbox(&server);
    let good = install(&sandbox, "shop", GOOD, &guest("good"));
    assert_eq!(
        sandbox.call_event(&good, "order.created", "1").result,
        Ok(())
    );

    // Each change is made by another process on the same SQLite file and
    // audit file; the server's loaded plugin sees it within the bound,
    // counted from when that process finished.
    type Seen<'a> = &'a dyn Fn(&Result<(), CallError>) -> bool;
    let cases: [(&str, Seen<'_>); 3] = [
        ("disable", &|r| {
            *r == Err(CallError::Refused(DenyReason::Disabled))
        }),
        (
            "narrow",
            &|r| matches!(r, Err(CallError::Plugin(m)) if m.contains("entities:write:order_note")),
        ),
        ("revoke", &|r| {
            *r == Err(CallError::Refused(DenyReason::NotInstalled))
        }),
    ];
    for (change, seen) in cases {
        in_another_process(dir.path(), change);
        let took = within(bound * 2, || {
            seen(&sandbox.call_event(&good, "order.created", "1").result)
        });
        assert!(
            took <= bound,
            "`{change}` took {took:?} to reach the loaded plugin"
        );
    }

    // Both processes wrote to one audit file, under its lock: it is one
    // chain, with the server's install and the other process's three changes.
    server.audit.flush().unwrap();
    drop((sandbox, server));
    let report = verify_file(dir.path().join("audit.jsonl"), &secret(), None).unwrap();
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    for change in [
        "\"installed\"",
        "\"disabled\"",
        "\"granted\"",
        "\"uninstalled\"",
    ] {
        assert!(text.contains(change), "no {change} record in\n{text}");
    }
    assert!(report.records >= 4, "{report:?}");
}

#[test]
fn a_plugins_rate_limit_is_one_budget_for_its_keys_and_its_host_calls_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = guest("hostile");
    let m = Manifest::parse(HOSTILE).unwrap();
    let shop = InstallationId::new("shop");
    let read: PluginScope = "entities:read:order".parse().unwrap();
    let key = {
        let host = Host::open(dir.path(), &secret()).unwrap();
        let sandbox = sandbox(&host);
        let p = install(&sandbox, "shop", HOSTILE, &hostile);
        let (key, _) = host
            .keys
            .issue(IssueKey {
                installation: shop.clone(),
                plugin: m.slug.clone(),
                name: "back end".into(),
                scopes: [read.clone()].into_iter().collect(),
                ttl: None,
            })
            .unwrap();
        for _ in 0..3 {
            host.authorize(key.expose_secret(), "orders", &read)
                .unwrap();
        }
        // 5 per minute in all: the plugin's own calls get the 2 that are left.
        let call = sandbox.call_event(&p, "rate-burst", "");
        assert!(
            matches!(&call.result, Err(CallError::Plugin(m)) if m.starts_with("Error::Limit(")),
            "{call:?}"
        );
        assert_eq!(
            (call.usage.host_calls, call.usage.denied_host_calls),
            (3, 1)
        );
        assert!(matches!(
            host.authorize(key.expose_secret(), "orders", &read),
            Err(AccessError::Denied(DenyReason::RateLimited { .. }))
        ));
        // Outside traffic that drains the budget cannot switch the plugin off:
        // its calls that fail on the limit count for nothing.
        for _ in 0..10 {
            let call = sandbox.call_event(&p, "rate-burst", "");
            assert!(matches!(call.result, Err(CallError::Plugin(_))));
        }
        let health = host.health.report(&shop, &m.slug);
        assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
        key
    };
    // After a restart the limit, stored with the grant, still applies: a fresh
    // budget of 5 shared by the key and the plugin.
    let host = Host::open(dir.path(), &secret()).unwrap();
    let sandbox = sandbox(&host);
    let p = sandbox.load(&shop, &m, &hostile, limits()).unwrap();
    host.authorize(key.expose_secret(), "orders", &read)
        .unwrap();
    let call = sandbox.call_event(&p, "rate-burst", "");
    assert_eq!(
        (call.usage.host_calls, call.usage.denied_host_calls),
        (5, 1),
        "{call:?}"
    );
    assert!(matches!(
        host.authorize(key.expose_secret(), "orders", &read),
        Err(AccessError::Denied(DenyReason::RateLimited { .. }))
    ));
    // Loading asks for the grant's own version.
    let v2 = Manifest::parse(&HOSTILE.replace("\"0.1.0\"", "\"0.2.0\"")).unwrap();
    assert!(matches!(
        sandbox.load(&shop, &v2, &hostile, limits()),
        Err(LoadError::VersionMismatch { .. })
    ));
}

#[test]
fn a_breaker_tripped_in_one_installation_leaves_the_plugin_running_in_another() {
    let audit = Arc::new(MemoryAudit::new());
    let sandbox = sandbox(&host(&audit));
    let hostile = guest("hostile");
    let a = install(&sandbox, "shop-a", HOSTILE, &hostile);
    let b = install(&sandbox, "shop-b", HOSTILE, &hostile);
    // The default breaker: five failures open it.
    for _ in 0..5 {
        assert!(matches!(
            sandbox.call_event(&a, "trap", "").result,
            Err(CallError::Violation(SandboxViolation::Trap(_)))
        ));
    }
    assert_eq!(
        sandbox.call_event(&a, "entity-read", "").result,
        Err(CallError::Refused(DenyReason::CircuitOpen))
    );
    assert_eq!(sandbox.call_event(&b, "entity-read", "").result, Ok(()));
    assert_eq!(
        sandbox.health().report(&b.installation, &b.plugin).status,
        HealthStatus::Healthy
    );
}

#[test]
fn a_host_at_capacity_opens_no_circuit() {
    let audit = Arc::new(MemoryAudit::new());
    let host = host(&audit);
    let sandbox = Sandbox::new(
        SandboxConfig {
            max_concurrent: 1,
            dispatch_threads: 1,
            ..SandboxConfig::default()
        },
        &host,
        Arc::new(MemoryServices::new()),
    )
    .unwrap();
    let spinner = tests::install_all(
        &sandbox,
        "busy",
        HOSTILE,
        &guest("hostile"),
        Limits {
            timeout: Duration::from_secs(2),
            ..limits()
        },
    );
    let good = install(&sandbox, "busy", GOOD, &guest("good"));
    std::thread::scope(|s| {
        s.spawn(|| sandbox.call_event(&spinner, "loop", ""));
        std::thread::sleep(Duration::from_millis(300));
        // The one slot is taken: ten refusals, more than the breaker's threshold.
        for _ in 0..10 {
            assert_eq!(
                sandbox.call_event(&good, "order.created", "1").result,
                Err(CallError::AtCapacity)
            );
        }
    });
    let health = sandbox.health().report(&good.installation, &good.plugin);
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert_eq!(
        sandbox.call_event(&good, "order.created", "1").result,
        Ok(())
    );
}

#[test]
fn requests_and_health_probes_walk_the_same_pipeline_as_events() {
    let audit = Arc::new(MemoryAudit::new());
    let host = with_breaker(
        &audit,
        HealthMonitor::new(BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(600),
            ..BreakerConfig::default()
        })
        .unwrap(),
    );
    let sandbox = sandbox(&host);
    // Three host calls per event over a limit of one: every event is a violation;
    // requests and probes make none.
    let good = tests::install_all(
        &sandbox,
        "pipe",
        GOOD,
        &guest("good"),
        Limits {
            host_calls: 1,
            ..limits()
        },
    );
    let status = request("GET", "/status");
    assert_eq!(
        sandbox.call_request(&good, &status).result.unwrap().status,
        200
    );
    for _ in 0..2 {
        assert!(matches!(
            sandbox.call_event(&good, "order.created", "1").result,
            Err(CallError::Violation(SandboxViolation::HostCalls {
                limit: 1
            }))
        ));
    }
    // The open circuit refuses requests as it refuses events.
    assert_eq!(
        sandbox.call_request(&good, &status).result.err(),
        Some(CallError::Refused(DenyReason::CircuitOpen))
    );
    // A probe is never refused, and its success closes the circuit.
    assert_eq!(sandbox.call_health(&good).result, Ok(()));
    assert_eq!(
        sandbox
            .health()
            .report(&good.installation, &good.plugin)
            .status,
        HealthStatus::Healthy
    );
    assert_eq!(
        sandbox.call_request(&good, &status).result.unwrap().status,
        200
    );
    // One set of books for every entry point: 2 requests, 2 events, 1 probe ran.
    let used = good.usage();
    assert_eq!((used.calls, used.failures), (5, 2), "{used:?}");
    assert_eq!(
        records(&audit, "pipe", AuditKind::SandboxViolation).len(),
        2
    );

    // A request for an endpoint the manifest does not declare is refused, audited.
    assert_eq!(
        sandbox
            .call_request(&good, &request("POST", "/status"))
            .result
            .err(),
        Some(CallError::Refused(DenyReason::UndeclaredRoute {
            method: "POST".into(),
            path: "/status".into()
        }))
    );
    assert_eq!(
        sandbox
            .call_request(&good, &request("GET", "/admin/users"))
            .result
            .err(),
        Some(CallError::Refused(DenyReason::UndeclaredRoute {
            method: "GET".into(),
            path: "/admin/users".into()
        }))
    );
    assert!(records(&audit, "pipe", AuditKind::CallRefused).iter().any(|a| matches!(a,
        AuditAction::CallRefused { call, reason: DenyReason::UndeclaredRoute { .. } } if call == "request GET /admin/users")));
    assert_eq!(good.usage().calls, 5, "refused requests do not run");

    // An event the grant does not subscribe to is refused, audited.
    assert_eq!(
        sandbox.call_event(&good, "user.created", "1").result,
        Err(CallError::Refused(DenyReason::MissingScope {
            scope: "hooks:subscribe:user.created".into()
        }))
    );
}

#[test]
fn repeated_trips_disable_the_plugin_with_an_alert_and_a_person_re_enables_it() {
    let audit = Arc::new(MemoryAudit::new());
    let alerts: Arc<Mutex<Vec<HealthChange>>> = Arc::default();
    let seen = alerts.clone();
    let host = with_breaker(
        &audit,
        HealthMonitor::new(BreakerConfig {
            failure_threshold: 1,
            window: Duration::from_secs(60),
            open_for: Duration::from_millis(50),
            probe_calls: 1,
            probe_successes: 1,
            auto_disable: Some(AutoDisable {
                trips: 3,
                within: Duration::from_secs(3600),
            }),
        })
        .unwrap()
        .with_alert(Arc::new(AlertFn(
            move |_: &InstallationId, _: &PluginId, c: &HealthChange| seen.lock().push(c.clone()),
        ))),
    );
    let sandbox = sandbox(&host);
    let p = install(&sandbox, "trips", HOSTILE, &guest("hostile"));
    for trip in 1..=3 {
        assert!(
            matches!(
                sandbox.call_event(&p, "trap", "").result,
                Err(CallError::Violation(SandboxViolation::Trap(_)))
            ),
            "trip {trip}"
        );
        std::thread::sleep(Duration::from_millis(80));
    }
    assert_eq!(
        alerts.lock().last().map(|c| c.to),
        Some(HealthStatus::Disabled)
    );
    let grant = sandbox
        .permissions()
        .current(&p.installation, &p.plugin)
        .unwrap()
        .unwrap();
    assert!(!grant.enabled, "the grant, the one enabled flag, is off");
    assert_eq!(
        sandbox.call_event(&p, "entity-read", "").result,
        Err(CallError::Refused(DenyReason::Disabled))
    );
    let lifecycle = records(&audit, "trips", AuditKind::Lifecycle);
    assert!(lifecycle.iter().any(|a| matches!(a,
        AuditAction::Lifecycle { change: LifecycleChange::Disabled, detail } if detail.contains("circuit breaker") && detail.contains("3 trips"))),
        "{lifecycle:?}");

    // A person enables it again: audited, and it starts afresh.
    sandbox
        .set_enabled(&p.installation, &p.plugin, true, "merchant@trips")
        .unwrap();
    assert!(records(&audit, "trips", AuditKind::Lifecycle).iter().any(|a| matches!(a,
        AuditAction::Lifecycle { change: LifecycleChange::Enabled, detail } if detail == "merchant@trips")));
    assert_eq!(sandbox.health().report(&p.installation, &p.plugin).trips, 0);
    assert_eq!(sandbox.call_event(&p, "entity-read", "").result, Ok(()));
}

/// Host services whose database is down for entity reads.
#[derive(Debug, Default)]
struct Outage(MemoryServices);

impl HostServices for Outage {
    fn get_entity(&self, _: &InstallationId, _: &str, _: &str) -> ServiceResult<Option<String>> {
        Err(ServiceError::Unavailable(
            "the orders database is down".into(),
        ))
    }
    fn put_entity(&self, i: &InstallationId, k: &str, id: &str, j: &str) -> ServiceResult<()> {
        self.0.put_entity(i, k, id, j)
    }
    fn delete_entity(&self, i: &InstallationId, k: &str, id: &str) -> ServiceResult<bool> {
        self.0.delete_entity(i, k, id)
    }
    fn trigger_hook(
        &self,
        i: &InstallationId,
        p: &PluginId,
        n: &str,
        d: &str,
    ) -> ServiceResult<()> {
        self.0.trigger_hook(i, p, n, d)
    }
    fn get_user(&self, i: &InstallationId, id: &str) -> ServiceResult<Option<String>> {
        self.0.get_user(i, id)
    }
    fn put_user(&self, i: &InstallationId, id: &str, j: &str) -> ServiceResult<()> {
        self.0.put_user(i, id, j)
    }
    fn get_setting(
        &self,
        i: &InstallationId,
        p: &PluginId,
        k: &str,
    ) -> ServiceResult<Option<String>> {
        self.0.get_setting(i, p, k)
    }
    fn set_setting(&self, i: &InstallationId, p: &PluginId, k: &str, v: &str) -> ServiceResult<()> {
        self.0.set_setting(i, p, k, v)
    }
    fn log(&self, i: &InstallationId, p: &PluginId, level: LogLevel, message: &str) {
        self.0.log(i, p, level, message)
    }
}

#[test]
fn a_host_service_outage_is_not_the_plugins_failure() {
    let audit = Arc::new(MemoryAudit::new());
    let sandbox = Sandbox::new(
        SandboxConfig::default(),
        &host(&audit),
        Arc::new(Outage::default()),
    )
    .unwrap();
    let good = install(&sandbox, "outage", GOOD, &guest("good"));
    for _ in 0..10 {
        let call = sandbox.call_event(&good, "order.created", "1");
        assert_eq!(
            call.result,
            Err(CallError::Plugin(
                r#"Error::Internal("the orders database is down")"#.into()
            ))
        );
        assert_eq!(call.usage.failed_host_calls, 1);
    }
    let health = sandbox.health().report(&good.installation, &good.plugin);
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
}

#[test]
fn impossible_limits_and_settings_are_refused_naming_them() {
    let audit = Arc::new(MemoryAudit::new());
    let host = host(&audit);
    let sandbox = sandbox(&host);
    let m = Manifest::parse(GOOD).unwrap();
    let e = sandbox
        .install(
            &"limits".into(),
            &m,
            &guest("good"),
            &Consent::all(&m, "merchant"),
            Limits {
                timeout: Duration::from_millis(1),
                ..limits()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`Limits::timeout`") && e.contains("`SandboxConfig::epoch_tick`"),
        "{e}"
    );
    assert!(
        sandbox
            .permissions()
            .current(&"limits".into(), &m.slug)
            .unwrap()
            .is_none()
    );
    for config in [
        SandboxConfig {
            max_concurrent: 0,
            ..SandboxConfig::default()
        },
        SandboxConfig {
            max_concurrent: 1,
            dispatch_threads: 2,
            ..SandboxConfig::default()
        },
    ] {
        let e = Sandbox::new(config, &host, Arc::new(MemoryServices::new()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`SandboxConfig::max_concurrent`"), "{e}");
    }
}
