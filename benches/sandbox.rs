//! Sandbox benchmarks, each beside raw wasmtime doing the same work on the
//! same engine configuration in the same run.
//!
//! Run with `cargo bench -p benches --bench sandbox`; figures go to BENCHMARKS.md.
//! The raw baseline is the least a correct wasmtime host does for this
//! plugin: a fresh `Store` with a deny-by-default `WasiCtx`, an epoch
//! deadline, instantiation from an `InstancePre`, the call, and a host
//! function that answers with a constant record (Vodo's host services answer
//! with the same constant). Vodo adds the call pipeline: the grant read, the
//! breaker, the memory limiter, output capture, the permission and rate
//! checks of the host call, metering and audit.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use benches::{
    Constant, MANIFEST, PluginPre, RawState, echo_request, median, paired, quartiles, quiet_host,
    raw_call, raw_instance, raw_pre, raw_request, raw_reused_call, raw_reused_request, rss_bytes,
    tlb_shootdowns, vodo_echo_request,
};
use criterion::{Criterion, criterion_group, criterion_main};
use vodo_core::{Consent, InstallationId, Manifest};
use vodo_sandbox::{Installed, Limits, Reuse, Sandbox, SandboxConfig};
use wasmtime::Engine;
use wasmtime::component::Component;

#[inline(never)]
fn vodo_calls(sandbox: &Sandbox, plugin: &Installed, event: &str, n: u32) {
    for _ in 0..n {
        assert!(sandbox.call_event(plugin, event, "").result.is_ok());
    }
}

async fn vodo_calls_async(sandbox: &Sandbox, plugin: &Installed, event: &str, n: u32) {
    for _ in 0..n {
        let call = sandbox.call_event_async(black_box(plugin), event, "").await;
        assert!(call.result.is_ok());
    }
}

#[inline(never)]
fn raw_calls(engine: &Engine, pre: &PluginPre<RawState>, event: &str, n: u32) {
    for _ in 0..n {
        raw_call(engine, pre, event);
    }
}

#[inline(never)]
fn raw_reused_calls(
    store: &mut wasmtime::Store<RawState>,
    plugin: &benches::Plugin,
    event: &str,
    n: u32,
) {
    for _ in 0..n {
        raw_reused_call(store, plugin, event);
    }
}

/// `n` raw instantiate-and-calls spread over `threads` threads.
fn raw_parallel(engine: &Engine, pre: &PluginPre<RawState>, threads: usize, n: usize) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    raw_call(engine, pre, "order.created");
                }
            });
        }
    });
}

fn install_many(
    sandbox: &Sandbox,
    installation: &InstallationId,
    wasm: &[u8],
    n: usize,
    limits: &Limits,
) {
    let manifest = benches::manifest_for(limits.reuse);
    for i in 0..n {
        let m = Manifest::parse(&manifest.replace("\"bench\"", &format!("\"bench-{i}\""))).unwrap();
        sandbox
            .install(
                installation,
                &m,
                wasm,
                &Consent::all(&m, "bench"),
                limits.clone(),
            )
            .unwrap();
    }
}

fn cold_counts(wasm: &[u8], n: u32) {
    let cache = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        max_concurrent: 2,
        cache_dir: Some(cache.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let shop = InstallationId::new("cold");
    cold_vodo(&config, &shop, wasm, 1);
    cold_vodo(&config, &shop, wasm, n);
}

/// Where a cold start's wall-clock time goes: medians of `n` runs of the
/// engine alone, `Sandbox::new` (which builds the engine), `Sandbox::new`
/// and an install from the cache, and a bare thread spawn.
fn cold_split(wasm: &[u8], n: usize) {
    let cache = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let shop = InstallationId::new("cold");
    let host = quiet_host();
    cold_vodo(&config, &shop, wasm, 1);
    let manifest = Manifest::parse(MANIFEST).unwrap();
    let consent = Consent::all(&manifest, "bench");
    let digest = vodo_core::digest::sha256(wasm);
    // The grant that `load` finds.
    Sandbox::new(config.clone(), &host, Arc::new(Constant))
        .unwrap()
        .install(&shop, &manifest, wasm, &consent, Limits::default())
        .unwrap();
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    // Each round runs every variant once, in an order that rotates, so that
    // drift on a noisy machine hits them alike; the ratios are per round.
    let mut rows: Vec<[Duration; 6]> = Vec::with_capacity(n);
    for round in 0..n {
        let mut row = [Duration::ZERO; 6];
        for k in 0..6 {
            let k = (k + round) % 6;
            row[k] = match k {
                0 => time(&mut || {
                    let s = Sandbox::new(config.clone(), &host, Arc::new(Constant)).unwrap();
                    s.load(&shop, &manifest, wasm, Limits::default()).unwrap();
                }),
                1 => time(&mut || {
                    let s = Sandbox::new(config.clone(), &host, Arc::new(Constant)).unwrap();
                    s.install(&shop, &manifest, wasm, &consent, Limits::default())
                        .unwrap();
                }),
                2 => time(&mut || {
                    let s = Sandbox::new(config.clone(), &host, Arc::new(Constant)).unwrap();
                    s.install(
                        &shop,
                        &manifest,
                        vodo_sandbox::Wasm::compiled(digest),
                        &consent,
                        Limits::default(),
                    )
                    .unwrap();
                }),
                3 => time(&mut || drop(black_box(vodo_sandbox::engine(&config).unwrap()))),
                4 => time(&mut || {
                    drop(black_box(
                        Sandbox::new(config.clone(), &host, Arc::new(Constant)).unwrap(),
                    ))
                }),
                _ => time(&mut || {
                    black_box(vodo_core::digest::sha256(black_box(wasm)));
                }),
            };
        }
        rows.push(row);
    }
    let us = |k: usize| median(rows.iter().map(|r| r[k].as_secs_f64() * 1e6).collect());
    println!(
        "cold start (medians of {n} rounds, µs): Sandbox::new + load (grant exists) {:.0}; + install from bytes {:.0}; + install from the digest {:.0}; engine alone {:.0}; Sandbox::new alone {:.0}; SHA-256 of the component {:.1}",
        us(0),
        us(1),
        us(2),
        us(3),
        us(4),
        us(5)
    );
}

#[inline(never)]
fn cold_vodo(config: &SandboxConfig, shop: &InstallationId, wasm: &[u8], n: u32) {
    let manifest = Manifest::parse(MANIFEST).unwrap();
    for _ in 0..n {
        let s = Sandbox::new(config.clone(), &quiet_host(), Arc::new(Constant)).unwrap();
        let consent = Consent::all(&manifest, "bench");
        s.install(shop, &manifest, wasm, &consent, Limits::default())
            .unwrap();
    }
}

/// Why two threads were slower than one: the same 1,000 fresh calls on one
/// and on two threads, raw wasmtime and Vodo, with freed pool slots handed
/// back to the kernel (`keep_resident` 0, wasmtime's default) and kept
/// resident; the median of `rounds` rounds and the TLB shootdowns per call.
fn fanout_sweep(wasm: &[u8], rounds: usize) {
    let fanout = InstallationId::new("sweep");
    for keep in [0usize, 1 << 20] {
        for threads in [1usize, 2] {
            let config = SandboxConfig {
                max_concurrent: 1100,
                max_warm: Some(0),
                dispatch_threads: threads,
                keep_resident: keep,
                ..SandboxConfig::default()
            };
            let engine = vodo_sandbox::engine(&config).unwrap();
            let pre = raw_pre(&engine, &Component::new(&engine, wasm).unwrap());
            let sandbox = Sandbox::new(config, &quiet_host(), Arc::new(Constant)).unwrap();
            install_many(&sandbox, &fanout, wasm, 1000, &Limits::default());
            let measure = |f: &dyn Fn()| {
                f();
                let mut times = Vec::with_capacity(rounds);
                let tlb = tlb_shootdowns();
                for _ in 0..rounds {
                    let t = Instant::now();
                    f();
                    times.push(t.elapsed());
                }
                let tlb = (tlb_shootdowns() - tlb) as f64 / (rounds * 1000) as f64;
                times.sort();
                (times[rounds / 2], tlb)
            };
            let (raw, raw_tlb) = measure(&|| raw_parallel(&engine, &pre, threads, 1000));
            let (vodo, vodo_tlb) = measure(&|| {
                assert_eq!(sandbox.dispatch(&fanout, "order.created", "").len(), 1000);
            });
            println!(
                "sweep keep_resident={keep} threads={threads}: raw {raw:.2?} ({raw_tlb:.2} TLB shootdowns per call), vodo dispatch {vodo:.2?} ({vodo_tlb:.2} per call)"
            );
        }
    }
}

fn benches(c: &mut Criterion) {
    let dir = test_support::build_plugins("tests/plugins").unwrap();
    let wasm = std::fs::read(test_support::wasm_path(&dir, "bench")).unwrap();
    if let Some(rounds) = std::env::var("VODO_FANOUT_SWEEP")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        fanout_sweep(&wasm, rounds);
        std::process::exit(0);
    }
    // With VODO_COUNT_COLD=N: N loads from a disk cache with a fresh engine
    // (`cold_vodo`), for callgrind to say where a cold start goes (raw
    // wasmtime's side, which needs `unsafe`, is in `benches/peer`).
    if let Some(n) = std::env::var("VODO_COLD_SPLIT")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        cold_split(&wasm, n);
        std::process::exit(0);
    }
    if let Some(n) = std::env::var("VODO_COUNT_COLD")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    {
        cold_counts(&wasm, n);
        std::process::exit(0);
    }
    let counting = std::env::var("VODO_COUNT_CALLS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok());
    // Under valgrind the pool must be small enough for it to reserve.
    let config = SandboxConfig {
        max_concurrent: if counting.is_some() { 2 } else { 1100 },
        max_warm: if counting.is_some() {
            Some(1)
        } else {
            Some(1050)
        },
        dispatch_threads: if counting.is_some() {
            1
        } else {
            SandboxConfig::default().dispatch_threads
        },
        ..SandboxConfig::default()
    };
    let shop = InstallationId::new("shop");
    let sandbox = Sandbox::new(config.clone(), &quiet_host(), Arc::new(Constant)).unwrap();
    let install = |installation: &InstallationId, limits: Limits| {
        let manifest = Manifest::parse(&benches::manifest_for(limits.reuse)).unwrap();
        sandbox
            .install(
                installation,
                &manifest,
                &wasm,
                &Consent::all(&manifest, "bench"),
                limits,
            )
            .unwrap()
    };
    let plugin = install(&shop, Limits::default());
    assert_eq!(sandbox.call_event(&plugin, "one-call", "").result, Ok(()));
    let warm_limits = Limits {
        reuse: Reuse::warm(),
        ..Limits::default()
    };
    let warm = install(&InstallationId::new("warm-shop"), warm_limits.clone());

    // Raw wasmtime on an engine built from the very same configuration.
    let engine = vodo_sandbox::engine(&config).unwrap();
    let pre = raw_pre(&engine, &Component::new(&engine, &wasm).unwrap());
    raw_call(&engine, &pre, "one-call");

    // Deterministic counts for a noisy machine: with VODO_COUNT_CALLS=N, run N
    // calls of VODO_COUNT_EVENT (`empty` or `one-call`) each way and stop,
    // for `valgrind --tool=callgrind` to count the
    // instructions of `vodo_calls` and `raw_calls` (see BENCHMARKS.md).
    // Drift-free wall-clock ratios on a noisy machine: with VODO_PAIRED=rounds,
    // alternate 200 Vodo and 200 raw calls per round and print the median of
    // the rounds' ratios.
    if let Some(rounds) = std::env::var("VODO_PAIRED")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        for event in ["empty", "one-call"] {
            let rows = paired(
                rounds,
                || vodo_calls(&sandbox, &plugin, event, 200),
                || raw_calls(&engine, &pre, event, 200),
            );
            let total = |k: fn(&(Duration, Duration)) -> Duration| {
                rows.iter().map(k).sum::<Duration>().as_secs_f64()
            };
            let (median, q1, q3) = quartiles(
                rows.iter()
                    .map(|(v, r)| v.as_secs_f64() / r.as_secs_f64())
                    .collect(),
            );
            println!(
                "paired {event}: vodo {:.2} us, raw {:.2} us per call; median ratio of {rounds} rounds {median:.3} (quartiles {q1:.3}..{q3:.3})",
                total(|r| r.0) * 1e6 / (200.0 * rounds as f64),
                total(|r| r.1) * 1e6 / (200.0 * rounds as f64),
            );
        }
        std::process::exit(0);
    }

    // With VODO_PAIRED_WARM=rounds: 2,000 calls on a warm instance and
    // 2,000 raw calls on one reused instance per round, alternated.
    if let Some(rounds) = std::env::var("VODO_PAIRED_WARM")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let (mut store, instance) = raw_instance(&engine, &pre);
        for event in ["empty", "one-call"] {
            let rows = paired(
                rounds,
                || vodo_calls(&sandbox, &warm, event, 2000),
                || raw_reused_calls(&mut store, &instance, event, 2000),
            );
            let total = |k: fn(&(Duration, Duration)) -> Duration| {
                rows.iter().map(k).sum::<Duration>().as_secs_f64()
            };
            let (median, q1, q3) = quartiles(
                rows.iter()
                    .map(|(v, r)| v.as_secs_f64() / r.as_secs_f64())
                    .collect(),
            );
            println!(
                "paired warm {event}: vodo {:.0} ns, raw reused {:.0} ns per call; median ratio of {rounds} rounds {median:.3} (quartiles {q1:.3}..{q3:.3})",
                total(|r| r.0) * 1e9 / (2000.0 * rounds as f64),
                total(|r| r.1) * 1e9 / (2000.0 * rounds as f64),
            );
        }
        std::process::exit(0);
    }

    // With VODO_PAIRED_ASYNC=rounds: 200 synchronous and 200 asynchronous
    // fresh calls per round, alternated, and the median of their ratios.
    if let Some(rounds) = std::env::var("VODO_PAIRED_ASYNC")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for event in ["empty", "one-call"] {
            let rows = paired(
                rounds,
                || vodo_calls(&sandbox, &plugin, event, 200),
                || runtime.block_on(vodo_calls_async(&sandbox, &plugin, event, 200)),
            );
            let (median, q1, q3) = quartiles(
                rows.iter()
                    .map(|(sync, r#async)| r#async.as_secs_f64() / sync.as_secs_f64())
                    .collect(),
            );
            println!(
                "paired async/sync {event}: median ratio of {rounds} rounds {median:.3} (quartiles {q1:.3}..{q3:.3})",
            );
        }
        std::process::exit(0);
    }

    // With VODO_COUNT_WARM set, the same counts for a warm instance beside
    // raw wasmtime calling one instance again.
    if let Some(n) = counting {
        let event = std::env::var("VODO_COUNT_EVENT").unwrap_or_else(|_| "one-call".into());
        if std::env::var("VODO_COUNT_ASYNC").is_ok() {
            // The asynchronous path beside the synchronous one.
            vodo_calls(&sandbox, &plugin, &event, n);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(vodo_calls_async(&sandbox, &plugin, &event, n));
        } else if std::env::var("VODO_COUNT_WARM").is_ok() {
            vodo_calls(&sandbox, &warm, &event, n);
            let (mut store, instance) = raw_instance(&engine, &pre);
            raw_reused_calls(&mut store, &instance, &event, n);
        } else {
            vodo_calls(&sandbox, &plugin, &event, n);
            raw_calls(&engine, &pre, &event, n);
        }
        std::process::exit(0);
    }

    // Each workload four ways: Vodo fresh, Vodo warm, raw fresh, raw reused
    // (and Vodo's two ways again on the asynchronous path).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (mut raw_store, raw_plugin) = raw_instance(&engine, &pre);
    let body = vec![b'x'; 64 << 10];
    let (request, raw_echo) = (vodo_echo_request(body.clone()), echo_request(body));
    let mut g = c.benchmark_group("calls");
    for (name, event) in [("empty_handler", "empty"), ("one_host_call", "one-call")] {
        g.bench_function(format!("{name}/vodo_fresh"), |b| {
            b.iter(|| {
                assert!(
                    sandbox
                        .call_event(black_box(&plugin), event, "")
                        .result
                        .is_ok()
                )
            })
        });
        g.bench_function(format!("{name}/vodo_warm"), |b| {
            b.iter(|| {
                assert!(
                    sandbox
                        .call_event(black_box(&warm), event, "")
                        .result
                        .is_ok()
                )
            })
        });
        // The asynchronous path, awaited on a current-thread runtime.
        g.bench_function(format!("{name}/vodo_fresh_async"), |b| {
            // Inside the runtime, as a server's handler is.
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let call = sandbox
                            .call_event_async(black_box(&plugin), event, "")
                            .await;
                        assert!(call.result.is_ok());
                    }
                    t.elapsed()
                })
            })
        });
        g.bench_function(format!("{name}/vodo_warm_async"), |b| {
            // Inside the runtime, as a server's handler is.
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let call = sandbox.call_event_async(black_box(&warm), event, "").await;
                        assert!(call.result.is_ok());
                    }
                    t.elapsed()
                })
            })
        });
        g.bench_function(format!("{name}/raw_fresh"), |b| {
            b.iter(|| raw_call(&engine, black_box(&pre), event))
        });
        g.bench_function(format!("{name}/raw_reused"), |b| {
            b.iter(|| raw_reused_call(&mut raw_store, black_box(&raw_plugin), event))
        });
    }
    g.bench_function("echo_64k/vodo_fresh", |b| {
        b.iter(|| {
            let r = sandbox.call_request(black_box(&plugin), &request).result;
            assert_eq!(r.unwrap().body.len(), 64 << 10)
        })
    });
    g.bench_function("echo_64k/vodo_warm", |b| {
        b.iter(|| {
            let r = sandbox.call_request(black_box(&warm), &request).result;
            assert_eq!(r.unwrap().body.len(), 64 << 10)
        })
    });
    g.bench_function("echo_64k/raw_fresh", |b| {
        b.iter(|| assert_eq!(raw_request(&engine, black_box(&pre), &raw_echo), 64 << 10))
    });
    g.bench_function("echo_64k/raw_reused", |b| {
        b.iter(|| {
            let n = raw_reused_request(&mut raw_store, black_box(&raw_plugin), &raw_echo);
            assert_eq!(n, 64 << 10)
        })
    });
    g.finish();

    // 1,000 installed plugins: memory per idle plugin, then one event to all
    // of them, fresh and warm.
    let before = rss_bytes();
    let fanout = InstallationId::new("fanout");
    install_many(&sandbox, &fanout, &wasm, 1000, &Limits::default());
    let after = rss_bytes();
    println!(
        "idle_memory: 1000 installed plugins added {} KiB of resident memory, {:.1} KiB per plugin",
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) as f64 / 1000.0 / 1024.0
    );
    assert_eq!(sandbox.dispatch(&fanout, "order.created", "").len(), 1000);
    let warm_fanout = InstallationId::new("warm-fanout");
    install_many(&sandbox, &warm_fanout, &wasm, 1000, &warm_limits);
    let before = rss_bytes();
    assert_eq!(
        sandbox.dispatch(&warm_fanout, "order.created", "").len(),
        1000
    );
    let after = rss_bytes();
    println!(
        "warm_memory: {} warm instances added {} KiB of resident memory, {:.1} KiB per warm instance",
        sandbox.warm_instances(),
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) as f64 / f64::from(sandbox.warm_instances().max(1)) / 1024.0
    );

    let mut g = c.benchmark_group("fanout_1000_plugins");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("vodo_dispatch_fresh", |b| {
        b.iter(|| {
            let d = sandbox.dispatch(&fanout, "order.created", "");
            assert!(d.iter().all(|d| d.outcome.is_ok()));
        })
    });
    g.bench_function("vodo_dispatch_warm", |b| {
        b.iter(|| {
            let d = sandbox.dispatch(&warm_fanout, "order.created", "");
            assert!(d.iter().all(|d| d.outcome.is_ok()));
        })
    });
    let plugins = sandbox.installed_in(&fanout);
    g.bench_function("vodo_loop_one_thread_fresh", |b| {
        b.iter(|| {
            for p in &plugins {
                assert!(sandbox.call_event(p, "order.created", "").result.is_ok());
            }
        })
    });
    // Baselines: the same 1,000 instantiate-and-calls on as many threads as
    // Vodo uses, and in a loop on one.
    g.bench_function("raw_wasmtime_parallel", |b| {
        b.iter(|| raw_parallel(&engine, &pre, config.dispatch_threads, 1000))
    });
    g.bench_function("raw_wasmtime_loop_one_thread", |b| {
        b.iter(|| raw_calls(&engine, &pre, "order.created", 1000))
    });
    g.finish();

    // One event in one shop, while 10,000 other shops have plugins installed:
    // the cost of an event must not grow with the number of tenants.
    for i in 0..10_000 {
        install(
            &InstallationId::new(format!("tenant-{i}")),
            Limits::default(),
        );
    }
    assert_eq!(sandbox.dispatch(&shop, "order.created", "").len(), 1);
    let mut g = c.benchmark_group("one_shop_among_10000");
    g.bench_function("vodo_dispatch", |b| {
        b.iter(|| {
            let d = sandbox.dispatch(black_box(&shop), "order.created", "");
            assert!(d[0].outcome.is_ok());
        })
    });
    g.bench_function("vodo_call_event", |b| {
        b.iter(|| {
            assert!(
                sandbox
                    .call_event(black_box(&plugin), "order.created", "")
                    .result
                    .is_ok()
            )
        })
    });
    g.bench_function("raw_wasmtime_call", |b| {
        b.iter(|| raw_call(&engine, black_box(&pre), "order.created"))
    });
    g.finish();
}

criterion_group! {
    name = sandbox;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(sandbox);
