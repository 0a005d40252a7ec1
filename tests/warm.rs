//! Warm instances (`Limits::reuse`): what a reused instance keeps, what it
//! never shares, and the limits that still hold on it. The hostile plugin's
//! `remember`/`recall` keep a value in a global, `grow` keeps 4 MiB more on
//! every call and `flood-on-5` floods stdout on its fifth call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use tests::guest;
use vodo_core::audit::MemoryAudit;
use vodo_core::keys::MemoryKeyStore;
use vodo_core::{Host, MemoryRegistry, SecretKey};
use vodo_sandbox::{
    CallError, Installed, Limits, MemoryServices, Reuse, Sandbox, SandboxConfig, SandboxViolation,
};

const HOSTILE: &str = r#"{
  "name": "Hostile", "slug": "hostile", "version": "0.1.0", "description": "tries everything",
  "author": "Mallory", "license": "MIT", "entry": "hostile.wasm",
  "permissions": {
    "entities": ["read:order"],
    "hooks": ["subscribe:*", "trigger:order.noted"],
    "storage": { "max_size": 1000, "allowed_types": ["json"] },
    "network": { "outbound": ["127.0.0.1"] },
    "users": "read"
  }
}"#;

fn host() -> Host {
    Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        Arc::new(MemoryAudit::new()),
        &SecretKey::from_bytes([3; 32]),
    )
}

fn sandbox(config: SandboxConfig) -> Sandbox {
    Sandbox::new(config, &host(), Arc::new(MemoryServices::new())).unwrap()
}

fn warm(calls: u32, pool: u32) -> Limits {
    Limits {
        memory: 24 << 20,
        timeout: Duration::from_secs(5),
        reuse: Reuse::Warm {
            calls,
            age: Duration::from_secs(600),
            pool,
        },
        ..Limits::default()
    }
}

fn install(sandbox: &Sandbox, installation: &str, limits: Limits) -> Arc<Installed> {
    tests::install_all(sandbox, installation, HOSTILE, &guest("hostile"), limits)
}

/// What the plugin's global holds, as `recall` reports it.
fn recall(sandbox: &Sandbox, plugin: &Installed) -> String {
    match sandbox.call_event(plugin, "recall", "").result {
        Err(CallError::Plugin(m)) => m,
        other => panic!("recall answered {other:?}"),
    }
}

#[test]
fn a_warm_instance_keeps_its_state_for_its_own_installation_only() {
    let sandbox = sandbox(SandboxConfig::default());
    let a = install(&sandbox, "shop-a", warm(100, 1));
    let b = install(&sandbox, "shop-b", warm(100, 1));
    assert_eq!(
        sandbox
            .call_event(&a, "remember", "secret of shop-a")
            .result,
        Ok(())
    );
    // Reuse is real: shop-a's next call sees what its last one kept.
    assert_eq!(recall(&sandbox, &a), "remembered `secret of shop-a`");
    assert_eq!(a.warm_instances(), 1);
    // The same plugin in another installation never does.
    assert_eq!(recall(&sandbox, &b), "remembered ``");
    // Nor does a fresh-per-call installation of it.
    let fresh = install(&sandbox, "shop-c", Limits::default());
    assert_eq!(sandbox.call_event(&fresh, "remember", "c").result, Ok(()));
    assert_eq!(recall(&sandbox, &fresh), "remembered ``");
    assert_eq!(fresh.warm_instances(), 0);
}

#[test]
fn a_trap_or_a_timeout_drops_the_instance() {
    let sandbox = sandbox(SandboxConfig::default());
    for (attack, violation) in [("trap", "trap"), ("loop", "timeout")] {
        let plugin = install(
            &sandbox,
            attack,
            Limits {
                timeout: Duration::from_millis(200),
                ..warm(100, 1)
            },
        );
        assert_eq!(
            sandbox.call_event(&plugin, "remember", "kept").result,
            Ok(())
        );
        assert_eq!(recall(&sandbox, &plugin), "remembered `kept`");
        match sandbox.call_event(&plugin, attack, "").result {
            Err(CallError::Violation(v)) => assert_eq!(v.kind(), violation, "{v}"),
            other => panic!("{attack} answered {other:?}"),
        }
        assert_eq!(plugin.warm_instances(), 0, "after {attack}");
        // The next call runs on a new instance: nothing survived.
        assert_eq!(recall(&sandbox, &plugin), "remembered ``", "after {attack}");
    }
}

#[test]
fn an_upgrade_starts_with_new_instances() {
    let sandbox = sandbox(SandboxConfig::default());
    let old = install(&sandbox, "shop", warm(100, 1));
    assert_eq!(sandbox.call_event(&old, "remember", "v1").result, Ok(()));
    assert_eq!(recall(&sandbox, &old), "remembered `v1`");
    // Loaded again (as an upgrade does), the plugin has a pool of its own.
    let new = install(&sandbox, "shop", warm(100, 1));
    assert!(!Arc::ptr_eq(&old, &new));
    assert_eq!(recall(&sandbox, &new), "remembered ``");
}

#[test]
fn the_memory_limit_holds_over_the_life_of_a_warm_instance() {
    let sandbox = sandbox(SandboxConfig::default());
    let plugin = install(&sandbox, "shop", warm(100, 1));
    // 24 MiB of memory and 4 MiB more kept on every call: a few calls fit.
    let mut ran = 0;
    let violation = loop {
        match sandbox.call_event(&plugin, "grow", "").result {
            Ok(()) => ran += 1,
            Err(CallError::Violation(v)) => break v,
            Err(e) => panic!("grow answered {e:?} after {ran} calls"),
        }
        assert!(
            ran < 10,
            "the memory limit never stopped a growing instance"
        );
    };
    assert!(ran >= 2, "only {ran} calls fit");
    assert!(
        matches!(violation, SandboxViolation::Memory { limit, .. } if limit == 24 << 20),
        "{violation}"
    );
    // The instance is gone; a new one starts small and runs.
    assert_eq!(plugin.warm_instances(), 0);
    let call = sandbox.call_event(&plugin, "grow", "");
    assert_eq!(call.result, Ok(()));
    assert!(call.usage.peak_memory < 12 << 20, "{:?}", call.usage);
    // The same plugin without reuse never accumulates.
    let fresh = install(
        &sandbox,
        "fresh",
        Limits {
            reuse: Reuse::Fresh,
            ..warm(1, 1)
        },
    );
    for _ in 0..10 {
        assert_eq!(sandbox.call_event(&fresh, "grow", "").result, Ok(()));
    }
}

#[test]
fn each_call_on_a_warm_instance_has_its_own_output_budget_and_usage() {
    let sandbox = sandbox(SandboxConfig::default());
    let plugin = install(
        &sandbox,
        "shop",
        Limits {
            output: 1 << 20,
            ..warm(100, 1)
        },
    );
    for call in 1..=4 {
        let c = sandbox.call_event(&plugin, "flood-on-5", "");
        assert_eq!(c.result, Ok(()), "call {call}");
        assert_eq!(c.usage.host_calls, 0);
    }
    // The fifth call of the same instance floods: stopped, and dropped.
    let c = sandbox.call_event(&plugin, "flood-on-5", "");
    assert_eq!(
        c.result,
        Err(CallError::Violation(SandboxViolation::Output {
            what: "stdout or stderr",
            limit: 1 << 20
        }))
    );
    assert_eq!(plugin.warm_instances(), 0);
    // A new instance counts from one again.
    assert_eq!(sandbox.call_event(&plugin, "flood-on-5", "").result, Ok(()));
    // Per-call usage starts from zero on a reused instance.
    let a = sandbox.call_event(&plugin, "entity-read", "");
    let b = sandbox.call_event(&plugin, "entity-read", "");
    assert_eq!((a.usage.host_calls, b.usage.host_calls), (1, 1));
    assert_eq!(a.usage.bytes_in, b.usage.bytes_in);
}

#[test]
fn an_instance_serves_at_most_its_calls_and_the_pool_stays_bounded() {
    let sandbox = sandbox(SandboxConfig {
        max_warm: Some(3),
        ..SandboxConfig::default()
    });
    let plugin = install(&sandbox, "shop", warm(2, 4));
    assert_eq!(sandbox.call_event(&plugin, "remember", "x").result, Ok(()));
    // Second call: the last this instance may serve.
    assert_eq!(recall(&sandbox, &plugin), "remembered `x`");
    assert_eq!(plugin.warm_instances(), 0);
    assert_eq!(recall(&sandbox, &plugin), "remembered ``");

    // Concurrent calls take separate instances; no more are kept than the
    // sandbox's bound of 3, though the plugin's pool would take 4.
    let others: Vec<_> = (0..3)
        .map(|i| install(&sandbox, &format!("other-{i}"), warm(100, 4)))
        .collect();
    std::thread::scope(|s| {
        for p in &others {
            for _ in 0..4 {
                s.spawn(|| assert_eq!(sandbox.call_event(p, "entity-read", "").result, Ok(())));
            }
        }
    });
    assert!(
        sandbox.warm_instances() <= 3,
        "{}",
        sandbox.warm_instances()
    );
    // The first plugin's third call made a new instance, kept.
    assert_eq!(plugin.warm_instances(), 1);
    let kept: usize = others.iter().map(|p| p.warm_instances()).sum::<usize>() + 1;
    assert_eq!(kept as u32, sandbox.warm_instances());
    assert!(kept >= 1);
}

#[test]
fn warm_limits_that_cannot_work_are_refused() {
    let sandbox = sandbox(SandboxConfig::default());
    let m = vodo_core::Manifest::parse(HOSTILE).unwrap();
    let e = sandbox
        .install(
            &"shop".into(),
            &m,
            &guest("hostile"),
            &vodo_core::Consent::all(&m, "merchant"),
            warm(0, 1),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("`Limits::reuse`"), "{e}");
    assert!(e.contains("Reuse::Fresh"), "{e}");
    let e = Sandbox::new(
        SandboxConfig {
            max_concurrent: 8,
            max_warm: Some(8),
            dispatch_threads: 1,
            ..SandboxConfig::default()
        },
        &host(),
        Arc::new(MemoryServices::new()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`SandboxConfig::max_warm` (8)"), "{e}");
}

#[test]
fn warm_instances_serve_many_calls_with_host_calls() {
    let sandbox = sandbox(SandboxConfig::default());
    let plugin = install(&sandbox, "shop", warm(1_000, 1));
    for i in 0..2_500 {
        let call = sandbox.call_event(&plugin, "entity-read", "");
        assert_eq!(call.result, Ok(()), "call {i}");
    }
}
