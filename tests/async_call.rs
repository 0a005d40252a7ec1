//! The asynchronous call path (`Sandbox::call_event_async` and its
//! siblings): the same pipeline as the synchronous one, and a tokio worker
//! that stays free while a plugin computes or waits on I/O.
//!
//! Most tests run on a current-thread runtime, where a blocked worker is
//! visible at once: a ticker task beside the call counts how often it ran
//! while the plugin's call was under way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tests::guest;
use vodo_core::audit::MemoryAudit;
use vodo_core::keys::MemoryKeyStore;
use vodo_core::{DenyReason, Host, MemoryRegistry, SecretKey};
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

struct Fixture {
    sandbox: Arc<Sandbox>,
    host: Host,
    _storage: tempfile::TempDir,
}

fn fixture(config: SandboxConfig) -> Fixture {
    let storage = tempfile::tempdir().unwrap();
    let host = Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        Arc::new(MemoryAudit::new()),
        &SecretKey::from_bytes([3; 32]),
    );
    let config = SandboxConfig {
        allow_private_network: true,
        storage_root: Some(storage.path().to_path_buf()),
        ..config
    };
    let sandbox = Sandbox::new(config, &host, Arc::new(MemoryServices::new())).unwrap();
    Fixture {
        sandbox: Arc::new(sandbox),
        host,
        _storage: storage,
    }
}

fn limits(timeout: Duration) -> Limits {
    Limits {
        memory: 24 << 20,
        timeout,
        ..Limits::default()
    }
}

fn install(f: &Fixture, installation: &str, limits: Limits) -> Arc<Installed> {
    tests::install_all(&f.sandbox, installation, HOSTILE, &guest("hostile"), limits)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Counts, every millisecond, until `stop`: how often the worker was free.
fn ticker(stop: Arc<AtomicU32>) -> (Arc<AtomicU32>, tokio::task::JoinHandle<()>) {
    let ticks = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&ticks);
    let task = tokio::spawn(async move {
        while stop.load(Ordering::Relaxed) == 0 {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    (ticks, task)
}

/// A server on loopback that answers each connection after `delay`, and
/// the largest number of connections it held at once.
fn slow_server(delay: Duration, connections: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::clone(&most);
    std::thread::spawn(move || {
        for _ in 0..connections {
            let (mut conn, _) = listener.accept().unwrap();
            let (now, most) = (Arc::clone(&now), Arc::clone(&most));
            std::thread::spawn(move || {
                let open = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(open, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                std::thread::sleep(delay);
                now.fetch_sub(1, Ordering::SeqCst);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            });
        }
    });
    (port, seen)
}

#[test]
fn a_plugin_that_never_stops_yields_its_worker_and_still_times_out() {
    let f = fixture(SandboxConfig::default());
    let plugin = install(&f, "shop", limits(Duration::from_millis(400)));
    current_thread().block_on(async {
        let stop = Arc::new(AtomicU32::new(0));
        let (ticks, task) = ticker(Arc::clone(&stop));
        tokio::task::yield_now().await;
        let before = ticks.load(Ordering::Relaxed);
        let start = Instant::now();
        let call = f.sandbox.call_event_async(&plugin, "loop", "").await;
        let took = start.elapsed();
        let during = ticks.load(Ordering::Relaxed) - before;
        stop.store(1, Ordering::Relaxed);
        task.await.unwrap();
        assert_eq!(
            call.result,
            Err(CallError::Violation(SandboxViolation::Timeout {
                limit: Duration::from_millis(400)
            }))
        );
        assert!(
            took >= Duration::from_millis(400),
            "stopped early: {took:?}"
        );
        // The ticker shares the one worker: it ran all along the call
        // (every 5 ms tick at least), not only after it.
        assert!(
            during >= 20,
            "the worker was blocked: {during} ticks in {took:?}"
        );
    });
    // The synchronous call on the same worker blocks it: what the test
    // above would see if the async path did not yield.
    current_thread().block_on(async {
        let stop = Arc::new(AtomicU32::new(0));
        let (ticks, task) = ticker(Arc::clone(&stop));
        tokio::task::yield_now().await;
        let before = ticks.load(Ordering::Relaxed);
        let call = f.sandbox.call_event(&plugin, "loop", "");
        let during = ticks.load(Ordering::Relaxed) - before;
        stop.store(1, Ordering::Relaxed);
        task.await.unwrap();
        assert!(matches!(
            call.result,
            Err(CallError::Violation(SandboxViolation::Timeout { .. }))
        ));
        assert_eq!(during, 0);
    });
}

#[test]
fn outbound_http_waits_off_the_worker() {
    let f = fixture(SandboxConfig::default());
    let plugin = install(&f, "shop", limits(Duration::from_secs(5)));
    let (port, _) = slow_server(Duration::from_millis(300), 1);
    current_thread().block_on(async {
        let stop = Arc::new(AtomicU32::new(0));
        let (ticks, task) = ticker(Arc::clone(&stop));
        tokio::task::yield_now().await;
        let before = ticks.load(Ordering::Relaxed);
        let url = format!("http://127.0.0.1:{port}/slow");
        let call = f.sandbox.call_event_async(&plugin, "http", &url).await;
        let during = ticks.load(Ordering::Relaxed) - before;
        stop.store(1, Ordering::Relaxed);
        task.await.unwrap();
        assert_eq!(call.result, Ok(()));
        assert_eq!(call.usage.host_calls, 1);
        // 300 ms of waiting on the server, with the worker free all along.
        assert!(during >= 50, "the worker was blocked: {during} ticks");
    });
}

#[test]
fn host_calls_that_wait_are_bounded_by_max_blocking() {
    let f = fixture(SandboxConfig {
        max_blocking: 1,
        ..SandboxConfig::default()
    });
    let plugin = install(&f, "shop", limits(Duration::from_secs(10)));
    let (port, most) = slow_server(Duration::from_millis(150), 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("http://127.0.0.1:{port}/slow");
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let (sandbox, plugin, url) =
                    (Arc::clone(&f.sandbox), Arc::clone(&plugin), url.clone());
                tokio::spawn(async move { sandbox.call_event_async(&plugin, "http", &url).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().result, Ok(()));
        }
    });
    // Three calls at once, one blocking permit: the server never held two.
    assert_eq!(most.load(Ordering::SeqCst), 1);
}

#[test]
fn files_and_refusals_behave_as_on_the_synchronous_path() {
    let f = fixture(SandboxConfig::default());
    let plugin = install(&f, "shop", limits(Duration::from_secs(5)));
    current_thread().block_on(async {
        let s = &f.sandbox;
        // The plugin's folder, through the blocking pool: 600 bytes fit the
        // 1,000-byte quota once, not twice.
        assert_eq!(
            s.call_event_async(&plugin, "file-write", "a.json")
                .await
                .result,
            Ok(())
        );
        let second = s.call_event_async(&plugin, "file-write", "b.json").await;
        assert_eq!(
            second.result,
            Err(CallError::Violation(SandboxViolation::StorageQuota {
                requested: 1200,
                quota: 1000
            }))
        );
        // A host call the grant does not cover is refused to the plugin.
        let denied = s.call_event_async(&plugin, "hook-trigger", "").await;
        assert_eq!(denied.usage.denied_host_calls, 1);
        assert!(
            matches!(denied.result, Err(CallError::Plugin(_))),
            "{:?}",
            denied.result
        );
        // A disabled plugin is refused before it runs.
        f.host
            .permissions
            .set_enabled(&plugin.installation, &plugin.plugin, false, "paused")
            .unwrap();
        let call = s.call_event_async(&plugin, "remember", "x").await;
        assert_eq!(call.result, Err(CallError::Refused(DenyReason::Disabled)));
        assert_eq!(call.usage.host_calls, 0);
    });
}

#[test]
fn warm_instances_serve_async_calls_and_a_trap_drops_them() {
    let f = fixture(SandboxConfig::default());
    let plugin = install(
        &f,
        "shop",
        Limits {
            reuse: Reuse::Warm {
                calls: 100,
                age: Duration::from_secs(600),
                pool: 1,
            },
            ..limits(Duration::from_secs(5))
        },
    );
    current_thread().block_on(async {
        let s = &f.sandbox;
        assert_eq!(
            s.call_event_async(&plugin, "remember", "kept").await.result,
            Ok(())
        );
        assert_eq!(plugin.warm_instances(), 1);
        let recall = s.call_event_async(&plugin, "recall", "").await.result;
        assert_eq!(recall, Err(CallError::Plugin("remembered `kept`".into())));
        let trap = s.call_event_async(&plugin, "trap", "").await;
        assert!(
            matches!(trap.result, Err(CallError::Violation(_))),
            "{:?}",
            trap.result
        );
        assert_eq!(plugin.warm_instances(), 0);
        let recall = s.call_event_async(&plugin, "recall", "").await.result;
        assert_eq!(recall, Err(CallError::Plugin("remembered ``".into())));
    });
}

#[test]
fn a_cancelled_call_leaves_the_plugin_callable() {
    let f = fixture(SandboxConfig::default());
    let plugin = install(&f, "shop", limits(Duration::from_secs(5)));
    current_thread().block_on(async {
        let s = &f.sandbox;
        let cancelled = tokio::time::timeout(
            Duration::from_millis(50),
            s.call_event_async(&plugin, "loop", ""),
        )
        .await;
        assert!(cancelled.is_err(), "the loop should still run at 50 ms");
        // Nothing was recorded for the cancelled call, and the next runs.
        assert_eq!(plugin.usage().calls, 0);
        assert_eq!(
            s.call_event_async(&plugin, "remember", "x").await.result,
            Ok(())
        );
        assert_eq!(plugin.usage().calls, 1);
        // Probes run on the async path too (this plugin is never healthy).
        let probe = s.call_health_async(&plugin).await.result;
        assert_eq!(
            probe,
            Err(CallError::Plugin(
                "the hostile plugin is never healthy".into()
            ))
        );
    });
}
