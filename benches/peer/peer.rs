//! Vodo beside raw wasmtime 48 and Extism 1.30, on guests with the same
//! handlers (`tests/plugins/bench` for Vodo and raw wasmtime, a component;
//! `benches/peer/guest-extism` for Extism, a core module built with
//! `extism-pdk`), both with `opt-level = "s"`, in one criterion run.
//!
//! Run with `benches/peer/run`; the figures and the command go to
//! BENCHMARKS.md ("Beside Extism").

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use benches::{
    Constant, RECORD, echo_request, median, quiet_host, raw_call, raw_instance, raw_pre,
    raw_request, raw_reused_call, raw_reused_request, vodo_echo_request,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use extism::{CompiledPlugin, PTR, Plugin, PluginBuilder, UserData};
use parking_lot::Mutex;
use vodo_core::audit::{AuditSink, FileAudit, FileAuditOptions, MemoryAudit};
use vodo_core::keys::MemoryKeyStore;
use vodo_core::{Consent, Host, InstallationId, Manifest, MemoryRegistry, SecretKey};
use vodo_sandbox::{Limits, Reuse, Sandbox, SandboxConfig, Wasm};
use wasmtime::component::Component;

extism::host_fn!(get_entity(_kind: String, _id: String) -> String {
    Ok(RECORD.to_string())
});

fn extism_compiled(wasm: &[u8]) -> CompiledPlugin {
    PluginBuilder::new(extism::Manifest::new([extism::Wasm::data(wasm.to_vec())]))
        .with_wasi(false)
        .with_function(
            "get_entity",
            [PTR, PTR],
            [PTR],
            UserData::new(()),
            get_entity,
        )
        .compile()
        .unwrap()
}

fn extism_call(plugin: &mut Plugin, handler: &str) {
    let out: &[u8] = plugin.call(handler, "order.created").unwrap();
    black_box(out);
}

/// A sandbox on the same host as `benches/sandbox.rs`, auditing to `audit`.
fn host_with(audit: Arc<dyn AuditSink>) -> Host {
    Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        audit,
        &SecretKey::from_bytes([5; 32]),
    )
}

fn install<'a>(
    sandbox: &Sandbox,
    installation: &InstallationId,
    slug: &str,
    wasm: impl Into<vodo_sandbox::Wasm<'a>>,
    reuse: Reuse,
) {
    let manifest = benches::manifest_for(reuse);
    let m = Manifest::parse(&manifest.replace("\"bench\"", &format!("\"{slug}\""))).unwrap();
    let limits = Limits {
        reuse,
        ..Limits::default()
    };
    sandbox
        .install(installation, &m, wasm, &Consent::all(&m, "bench"), limits)
        .unwrap();
}

/// Installs `wasm` once with `config` (whose cache folder it fills) and
/// returns the compiled artifact's path.
fn fill_cache(
    config: &SandboxConfig,
    host: &Host,
    shop: &InstallationId,
    wasm: &[u8],
) -> std::path::PathBuf {
    let sandbox = Sandbox::new(config.clone(), host, Arc::new(Constant)).unwrap();
    install(&sandbox, shop, "bench", wasm, Reuse::Fresh);
    let dir = config.cache_dir.as_deref().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap()
}

/// Drift-free cold-start ratios on a noisy machine: each round loads from
/// the disk cache with a fresh engine once each way, raw wasmtime and Vodo
/// (from the bytes and from the digest, auditing to memory and to the
/// chained file), in an order that rotates; prints the medians of the
/// rounds' times and of their ratios to raw wasmtime's.
fn cold_paired(wasm: &[u8], rounds: usize) {
    let cache = tempfile::tempdir().unwrap();
    let cached = SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let shop = InstallationId::new("cold");
    let memory_host = host_with(Arc::new(MemoryAudit::new()));
    let audit_dir = tempfile::tempdir().unwrap();
    let file = FileAudit::open(
        audit_dir.path().join("audit.log"),
        &SecretKey::from_bytes([6; 32]),
        FileAuditOptions::default(),
    )
    .unwrap();
    let file_host = host_with(Arc::new(file));
    let artifact = fill_cache(&cached, &memory_host, &shop, wasm);
    let digest = vodo_core::digest::sha256(wasm);
    const NAMES: [&str; 4] = [
        "raw wasmtime",
        "Vodo from the bytes, memory audit",
        "Vodo from the digest, memory audit",
        "Vodo from the digest, file audit",
    ];
    let run = |k: usize| {
        let t = std::time::Instant::now();
        match k {
            0 => {
                let engine = vodo_sandbox::engine(&cached).unwrap();
                // SAFETY: the artifact was compiled by this configuration's engine.
                #[allow(unsafe_code)]
                let component = unsafe { Component::deserialize_file(&engine, &artifact).unwrap() };
                black_box(raw_pre(&engine, &component));
            }
            1 => {
                let s = Sandbox::new(cached.clone(), &memory_host, Arc::new(Constant)).unwrap();
                install(&s, &shop, "bench", wasm, Reuse::Fresh);
            }
            2 => {
                let s = Sandbox::new(cached.clone(), &memory_host, Arc::new(Constant)).unwrap();
                install(&s, &shop, "bench", Wasm::compiled(digest), Reuse::Fresh);
            }
            _ => {
                let s = Sandbox::new(cached.clone(), &file_host, Arc::new(Constant)).unwrap();
                install(&s, &shop, "bench", Wasm::compiled(digest), Reuse::Fresh);
            }
        }
        t.elapsed().as_secs_f64()
    };
    // One variant only, for `perf stat`: VODO_COLD_ONLY=k.
    if let Some(k) = std::env::var("VODO_COLD_ONLY")
        .ok()
        .and_then(|k| k.parse::<usize>().ok())
    {
        let total: f64 = (0..rounds).map(|_| run(k)).sum();
        println!(
            "{}: {:.0} µs on average",
            NAMES[k.min(3)],
            total / rounds as f64 * 1e6
        );
        return;
    }
    let mut rows = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut row = [0.0; 4];
        for i in 0..4 {
            let k = (i + round) % 4;
            row[k] = run(k);
        }
        rows.push(row);
    }
    println!("cold start from the disk cache, fresh engine, medians of {rounds} rounds:");
    for (k, name) in NAMES.iter().enumerate() {
        let time = median(rows.iter().map(|r| r[k]).collect());
        let ratio = median(rows.iter().map(|r| r[k] / r[0]).collect());
        println!("  {name}: {:.0} µs, {ratio:.3}x raw", time * 1e6);
    }
    // The same, each variant `rounds` times back to back (as criterion
    // runs them), twice over.
    for pass in 0..2 {
        let times: Vec<f64> = (0..4)
            .map(|k| median((0..rounds).map(|_| run(k)).collect()))
            .collect();
        println!("back to back, pass {pass}:");
        for (k, name) in NAMES.iter().enumerate() {
            println!(
                "  {name}: {:.0} µs, {:.3}x raw",
                times[k] * 1e6,
                times[k] / times[0]
            );
        }
    }
}

fn benches(c: &mut Criterion) {
    let dir = test_support::build_plugins("tests/plugins").unwrap();
    let wasm = std::fs::read(test_support::wasm_path(&dir, "bench")).unwrap();
    if let Some(rounds) = std::env::var("VODO_COLD_PAIRED")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        cold_paired(&wasm, rounds);
        std::process::exit(0);
    }
    let extism_wasm = std::env::var("VODO_EXTISM_GUEST")
        .map_err(|_| "VODO_EXTISM_GUEST is not set: run this bench with benches/peer/run")
        .and_then(|p| std::fs::read(p).map_err(|_| "cannot read the Extism guest"))
        .unwrap();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let config = SandboxConfig {
        max_concurrent: 1100,
        max_warm: Some(1050),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config.clone(), &quiet_host(), Arc::new(Constant)).unwrap();
    let (fresh_shop, warm_shop) = (InstallationId::new("fresh"), InstallationId::new("warm"));
    install(&sandbox, &fresh_shop, "bench", &wasm, Reuse::Fresh);
    install(&sandbox, &warm_shop, "bench", &wasm, Reuse::warm());
    let fresh = sandbox.get(&fresh_shop, &"bench".into()).unwrap();
    let warm = sandbox.get(&warm_shop, &"bench".into()).unwrap();
    let engine = vodo_sandbox::engine(&config).unwrap();
    let pre = raw_pre(&engine, &Component::new(&engine, &wasm).unwrap());
    let (mut raw_store, raw_plugin) = raw_instance(&engine, &pre);
    let compiled = extism_compiled(&extism_wasm);
    let mut extism = Plugin::new_from_compiled(&compiled).unwrap();

    let mut g = c.benchmark_group("calls");
    for (name, event, handler) in [
        ("empty_handler", "empty", "empty"),
        ("one_host_call", "one-call", "one_call"),
    ] {
        g.bench_function(format!("{name}/vodo_fresh"), |b| {
            b.iter(|| assert!(sandbox.call_event(&fresh, event, "").result.is_ok()))
        });
        g.bench_function(format!("{name}/vodo_warm"), |b| {
            b.iter(|| assert!(sandbox.call_event(&warm, event, "").result.is_ok()))
        });
        g.bench_function(format!("{name}/raw_fresh"), |b| {
            b.iter(|| raw_call(&engine, &pre, event))
        });
        g.bench_function(format!("{name}/raw_reused"), |b| {
            b.iter(|| raw_reused_call(&mut raw_store, &raw_plugin, event))
        });
        g.bench_function(format!("{name}/extism_reused"), |b| {
            b.iter(|| extism_call(&mut extism, handler))
        });
        g.bench_function(format!("{name}/extism_fresh"), |b| {
            b.iter(|| extism_call(&mut Plugin::new_from_compiled(&compiled).unwrap(), handler))
        });
    }
    let body = vec![b'x'; 64 << 10];
    let (request, raw_echo) = (vodo_echo_request(body.clone()), echo_request(body.clone()));
    let echo = |r: &vodo_sandbox::Call<vodo_sandbox::Response>| {
        assert_eq!(r.result.as_ref().unwrap().body.len(), 64 << 10)
    };
    g.bench_function("echo_64k/vodo_fresh", |b| {
        b.iter(|| echo(&sandbox.call_request(&fresh, &request)))
    });
    g.bench_function("echo_64k/vodo_warm", |b| {
        b.iter(|| echo(&sandbox.call_request(&warm, &request)))
    });
    g.bench_function("echo_64k/raw_fresh", |b| {
        b.iter(|| assert_eq!(raw_request(&engine, &pre, &raw_echo), 64 << 10))
    });
    g.bench_function("echo_64k/raw_reused", |b| {
        b.iter(|| {
            assert_eq!(
                raw_reused_request(&mut raw_store, &raw_plugin, &raw_echo),
                64 << 10
            )
        })
    });
    let extism_echo = |p: &mut Plugin| {
        let out: &[u8] = p.call("echo", body.as_slice()).unwrap();
        assert_eq!(out.len(), 64 << 10);
    };
    g.bench_function("echo_64k/extism_reused", |b| {
        b.iter(|| extism_echo(&mut extism))
    });
    g.bench_function("echo_64k/extism_fresh", |b| {
        b.iter(|| extism_echo(&mut Plugin::new_from_compiled(&compiled).unwrap()))
    });
    g.finish();

    // One event to 1,000 plugins, each side on all cores and in a loop on one.
    let (fan_fresh, fan_warm) = (
        InstallationId::new("fan-fresh"),
        InstallationId::new("fan-warm"),
    );
    for i in 0..1000 {
        install(
            &sandbox,
            &fan_fresh,
            &format!("bench-{i}"),
            &wasm,
            Reuse::Fresh,
        );
        install(
            &sandbox,
            &fan_warm,
            &format!("bench-{i}"),
            &wasm,
            Reuse::warm(),
        );
    }
    assert_eq!(sandbox.dispatch(&fan_warm, "order.created", "").len(), 1000);
    let extism_plugins: Vec<Mutex<Plugin>> = (0..1000)
        .map(|_| Mutex::new(Plugin::new_from_compiled(&compiled).unwrap()))
        .collect();
    let mut g = c.benchmark_group("fanout_1000_plugins");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for (name, shop) in [
        ("vodo_dispatch_fresh", &fan_fresh),
        ("vodo_dispatch_warm", &fan_warm),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let d = sandbox.dispatch(shop, "order.created", "");
                assert!(d.iter().all(|d| d.outcome.is_ok()));
            })
        });
    }
    let plugins = sandbox.installed_in(&fan_fresh);
    g.bench_function("vodo_loop_one_thread_fresh", |b| {
        b.iter(|| {
            for p in &plugins {
                assert!(sandbox.call_event(p, "order.created", "").result.is_ok());
            }
        })
    });
    g.bench_function("raw_parallel_fresh", |b| {
        b.iter(|| {
            let next = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        while next.fetch_add(1, Ordering::Relaxed) < 1000 {
                            raw_call(&engine, &pre, "order.created");
                        }
                    });
                }
            });
        })
    });
    g.bench_function("raw_loop_one_thread_fresh", |b| {
        b.iter(|| (0..1000).for_each(|_| raw_call(&engine, &pre, "order.created")))
    });
    g.bench_function("extism_parallel_reused", |b| {
        b.iter(|| {
            let next = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        while let Some(p) = extism_plugins.get(next.fetch_add(1, Ordering::Relaxed))
                        {
                            extism_call(&mut p.lock(), "empty");
                        }
                    });
                }
            });
        })
    });
    g.bench_function("extism_loop_one_thread_reused", |b| {
        b.iter(|| {
            for p in &extism_plugins {
                extism_call(&mut p.lock(), "empty");
            }
        })
    });
    g.finish();
    drop(extism_plugins);

    // Cold start: compiling, and loading the compiled form from a disk cache
    // with a fresh engine, as a process that starts does.
    let cache = tempfile::tempdir().unwrap();
    let cached = SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let shop = InstallationId::new("cold");
    let artifact = fill_cache(&cached, &quiet_host(), &shop, &wasm);
    let audit_dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("cold_start");
    g.sample_size(10);
    g.bench_function("compile_from_bytes/vodo_install", |b| {
        b.iter_batched(
            || Sandbox::new(SandboxConfig::default(), &quiet_host(), Arc::new(Constant)).unwrap(),
            |s| install(&s, &shop, "bench", &wasm, Reuse::Fresh),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("compile_from_bytes/raw_wasmtime", |b| {
        b.iter(|| black_box(Component::new(&engine, &wasm).unwrap()))
    });
    g.bench_function("compile_from_bytes/extism", |b| {
        b.iter(|| black_box(extism_compiled(&extism_wasm)))
    });
    g.sample_size(50);
    g.bench_function("load_from_cache/raw_wasmtime", |b| {
        b.iter(|| {
            let engine = vodo_sandbox::engine(&cached).unwrap();
            // SAFETY: the artifact was compiled by this configuration's engine.
            #[allow(unsafe_code)]
            let component = unsafe { Component::deserialize_file(&engine, &artifact).unwrap() };
            black_box(raw_pre(&engine, &component));
        })
    });
    // The host (its stores, breakers and rate limiter) exists before any
    // plugin loads, as it does in a process; the engine and the sandbox are
    // made anew each time, as raw wasmtime's engine is.
    let memory_host = host_with(Arc::new(MemoryAudit::new()));
    g.bench_function("load_from_cache/vodo_memory_audit", |b| {
        b.iter(|| {
            let s = Sandbox::new(cached.clone(), &memory_host, Arc::new(Constant)).unwrap();
            install(&s, &shop, "bench", &wasm, Reuse::Fresh);
        })
    });
    // As a host that kept the digest of what it installed loads it after a
    // restart: raw wasmtime above is given the artifact's path, Vodo its
    // digest; neither reads nor hashes the component.
    let digest = vodo_core::digest::sha256(&wasm);
    g.bench_function("load_from_cache/vodo_digest_memory_audit", |b| {
        b.iter(|| {
            let s = Sandbox::new(cached.clone(), &memory_host, Arc::new(Constant)).unwrap();
            install(&s, &shop, "bench", Wasm::compiled(digest), Reuse::Fresh);
        })
    });
    let file = FileAudit::open(
        audit_dir.path().join("audit.log"),
        &SecretKey::from_bytes([6; 32]),
        FileAuditOptions::default(),
    )
    .unwrap();
    let file: Arc<dyn AuditSink> = Arc::new(file);
    let file_host = host_with(Arc::clone(&file));
    g.bench_function("load_from_cache/vodo_file_audit", |b| {
        b.iter(|| {
            let s = Sandbox::new(cached.clone(), &file_host, Arc::new(Constant)).unwrap();
            install(&s, &shop, "bench", &wasm, Reuse::Fresh);
        })
    });
    g.bench_function("load_from_cache/vodo_digest_file_audit", |b| {
        b.iter(|| {
            let s = Sandbox::new(cached.clone(), &file_host, Arc::new(Constant)).unwrap();
            install(&s, &shop, "bench", Wasm::compiled(digest), Reuse::Fresh);
        })
    });
    g.finish();
}

criterion_group! {
    name = peer;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(peer);
