//! The wall-clock limit holds on a loaded machine: a 1 s limit ends a call
//! within 10% of 1 s while every core is kept busy by other threads.
//!
//! This binary holds only this test, so that its busy threads neither slow
//! other tests nor are slowed by them (cargo runs test binaries one at a
//! time). The deadline is measured on the monotonic clock; epoch ticks only
//! interrupt the guest to compare, so ticks delayed by the load cannot
//! stretch the limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tests::guest;
use vodo_core::{Consent, Host, InstallationId, Manifest, SecretKey};
use vodo_sandbox::{CallError, Limits, MemoryServices, Sandbox, SandboxConfig, SandboxViolation};

#[test]
fn a_one_second_limit_holds_within_ten_percent_while_every_core_is_busy() {
    let wasm = guest("hostile");
    let host = Host::in_memory(&SecretKey::generate().unwrap());
    let sandbox = Sandbox::new(
        SandboxConfig::default(),
        &host,
        Arc::new(MemoryServices::new()),
    )
    .unwrap();
    let m = Manifest::parse(
        r#"{"name":"Spinner","slug":"spinner","version":"1.0.0","permissions":{"hooks":["subscribe:loop","trigger:x.y"],
            "entities":["read:order"],"users":"read","storage":{"max_size":1000,"allowed_types":["json"]},
            "network":{"outbound":["example.com"]}}}"#,
    )
    .unwrap();
    let limit = Duration::from_secs(1);
    let plugin = sandbox
        .install(
            &InstallationId::new("timing"),
            &m,
            &wasm,
            &Consent::all(&m, "merchant"),
            Limits {
                timeout: limit,
                ..Limits::default()
            },
        )
        .unwrap();

    let stop = AtomicBool::new(false);
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let mut walls = Vec::new();
    std::thread::scope(|s| {
        // Four spinning threads per core: the ticker and the guest compete
        // for the CPU with all of them. With sixteen per core the figure
        // measured the scheduler's round instead (each thread waits for
        // sixteen others' slices, and a call that needs three turns after
        // its deadline once took 1.126 s on CI); with four, 24 runs ended
        // between 1.000 s and 1.025 s.
        for _ in 0..cores * 4 {
            s.spawn(|| {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            let start = Instant::now();
            let call = sandbox.call_event(&plugin, "loop", "");
            let wall = start.elapsed();
            assert_eq!(
                call.result,
                Err(CallError::Violation(SandboxViolation::Timeout { limit })),
                "{call:?}"
            );
            walls.push(wall);
        }
        stop.store(true, Ordering::Relaxed);
    });
    for wall in &walls {
        assert!(
            *wall >= limit && *wall <= limit + limit / 10,
            "a 1 s limit took {wall:?} under load (all: {walls:?})"
        );
    }
}
