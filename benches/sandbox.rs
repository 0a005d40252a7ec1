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
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vodo_core::PluginId;
use vodo_core::audit::NoAudit;
use vodo_core::keys::MemoryKeyStore;
use vodo_core::{Consent, Host, InstallationId, Manifest, MemoryRegistry, SecretKey};
use vodo_sandbox::{HostServices, Limits, Sandbox, SandboxConfig, ServiceResult};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod raw {
    wasmtime::component::bindgen!({ path: "../wit", world: "plugin" });
}

use raw::vodo::plugin as iface;

/// The raw host: answers the one host call with a constant.
struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl iface::types::Host for RawState {}
impl iface::log::Host for RawState {
    fn write(&mut self, _: iface::log::Level, _: String) {}
}
impl iface::entities::Host for RawState {
    fn get(&mut self, _: String, _: String) -> Result<Option<String>, iface::types::Error> {
        Ok(Some(r#"{"total":"1"}"#.into()))
    }
    fn put(&mut self, _: String, _: String, _: String) -> Result<(), iface::types::Error> {
        Ok(())
    }
    fn delete(&mut self, _: String, _: String) -> Result<bool, iface::types::Error> {
        Ok(false)
    }
}

fn raw_pre(engine: &Engine, wasm: &[u8]) -> raw::PluginPre<RawState> {
    let component = Component::new(engine, wasm).unwrap();
    let mut linker: Linker<RawState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    iface::types::add_to_linker::<RawState, HasSelf<RawState>>(&mut linker, |s| s).unwrap();
    iface::log::add_to_linker::<RawState, HasSelf<RawState>>(&mut linker, |s| s).unwrap();
    iface::entities::add_to_linker::<RawState, HasSelf<RawState>>(&mut linker, |s| s).unwrap();
    raw::PluginPre::new(linker.instantiate_pre(&component).unwrap()).unwrap()
}

fn raw_call(engine: &Engine, pre: &raw::PluginPre<RawState>, event: &str) {
    let mut store = Store::new(
        engine,
        RawState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    store.set_epoch_deadline(1_000);
    let plugin = pre.instantiate(&mut store).unwrap();
    plugin
        .call_on_event(&mut store, event, "")
        .unwrap()
        .unwrap();
}

#[inline(never)]
fn vodo_calls(sandbox: &Sandbox, plugin: &vodo_sandbox::Installed, event: &str, n: u32) {
    for _ in 0..n {
        assert!(sandbox.call_event(plugin, event, "").result.is_ok());
    }
}

#[inline(never)]
fn raw_calls(engine: &Engine, pre: &raw::PluginPre<RawState>, event: &str, n: u32) {
    for _ in 0..n {
        raw_call(engine, pre, event);
    }
}

/// The host's data as the raw baseline answers it: one constant record. Both
/// sides answer the host call the same way, so what is measured is the
/// sandbox, not a data store.
#[derive(Debug)]
struct Constant;

impl HostServices for Constant {
    fn get_entity(&self, _: &InstallationId, _: &str, _: &str) -> ServiceResult<Option<String>> {
        Ok(Some(r#"{"total":"1"}"#.into()))
    }
    fn put_entity(&self, _: &InstallationId, _: &str, _: &str, _: &str) -> ServiceResult<()> {
        Ok(())
    }
    fn delete_entity(&self, _: &InstallationId, _: &str, _: &str) -> ServiceResult<bool> {
        Ok(false)
    }
    fn trigger_hook(
        &self,
        _: &InstallationId,
        _: &PluginId,
        _: &str,
        _: &str,
    ) -> ServiceResult<()> {
        Ok(())
    }
    fn get_user(&self, _: &InstallationId, _: &str) -> ServiceResult<Option<String>> {
        Ok(None)
    }
    fn put_user(&self, _: &InstallationId, _: &str, _: &str) -> ServiceResult<()> {
        Ok(())
    }
    fn get_setting(
        &self,
        _: &InstallationId,
        _: &PluginId,
        _: &str,
    ) -> ServiceResult<Option<String>> {
        Ok(None)
    }
    fn set_setting(&self, _: &InstallationId, _: &PluginId, _: &str, _: &str) -> ServiceResult<()> {
        Ok(())
    }
}

const MANIFEST: &str = r#"{
  "name": "Bench", "slug": "bench", "version": "0.1.0", "description": "benchmark plugin",
  "author": "Vodo", "license": "MIT", "entry": "bench.wasm",
  "permissions": { "entities": ["read:order"], "hooks": ["subscribe:*"],
                   "api": { "rate_limit": "1000000/second" } }
}"#;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn benches(c: &mut Criterion) {
    let dir = test_support::build_plugins("tests/plugins").unwrap();
    let wasm = std::fs::read(test_support::wasm_path(&dir, "bench")).unwrap();
    let counting = std::env::var("VODO_COUNT_CALLS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok());
    // Under valgrind the pool must be small enough for it to reserve.
    let config = SandboxConfig {
        max_concurrent: if counting.is_some() { 1 } else { 1100 },
        dispatch_threads: if counting.is_some() {
            1
        } else {
            SandboxConfig::default().dispatch_threads
        },
        ..SandboxConfig::default()
    };
    let services = Arc::new(Constant);
    let shop = InstallationId::new("shop");
    // The reference host components, auditing nowhere (as the raw baseline does).
    let host = Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        Arc::new(NoAudit),
        &SecretKey::from_bytes([5; 32]),
    );
    let sandbox = Sandbox::new(config.clone(), &host, services).unwrap();
    let manifest = Manifest::parse(MANIFEST).unwrap();
    let plugin = sandbox
        .install(
            &shop,
            &manifest,
            &wasm,
            &Consent::all(&manifest, "bench"),
            Limits::default(),
        )
        .unwrap();
    assert_eq!(sandbox.call_event(&plugin, "one-call", "").result, Ok(()));

    // Raw wasmtime on an engine built from the very same configuration.
    let engine = vodo_sandbox::engine(&config).unwrap();
    let pre = raw_pre(&engine, &wasm);
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
            let mut ratios = Vec::with_capacity(rounds);
            let (mut vodo_total, mut raw_total) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..rounds {
                let t = std::time::Instant::now();
                vodo_calls(&sandbox, &plugin, event, 200);
                let v = t.elapsed();
                let t = std::time::Instant::now();
                raw_calls(&engine, &pre, event, 200);
                let r = t.elapsed();
                ratios.push(v.as_secs_f64() / r.as_secs_f64());
                vodo_total += v;
                raw_total += r;
            }
            ratios.sort_by(f64::total_cmp);
            println!(
                "paired {event}: vodo {:.2} us, raw {:.2} us per call; median ratio of {rounds} rounds {:.3} (quartiles {:.3}..{:.3})",
                vodo_total.as_secs_f64() * 1e6 / (200.0 * rounds as f64),
                raw_total.as_secs_f64() * 1e6 / (200.0 * rounds as f64),
                ratios[rounds / 2],
                ratios[rounds / 4],
                ratios[rounds * 3 / 4],
            );
        }
        std::process::exit(0);
    }

    if let Some(n) = counting {
        let event = std::env::var("VODO_COUNT_EVENT").unwrap_or_else(|_| "one-call".into());
        vodo_calls(&sandbox, &plugin, &event, n);
        raw_calls(&engine, &pre, &event, n);
        std::process::exit(0);
    }

    let mut g = c.benchmark_group("instantiate_and_call");
    g.bench_function("empty_handler/vodo", |b| {
        b.iter(|| {
            assert!(
                sandbox
                    .call_event(black_box(&plugin), "empty", "")
                    .result
                    .is_ok()
            )
        })
    });
    g.bench_function("empty_handler/raw_wasmtime", |b| {
        b.iter(|| raw_call(&engine, black_box(&pre), "empty"))
    });
    g.bench_function("one_host_call/vodo", |b| {
        b.iter(|| {
            assert!(
                sandbox
                    .call_event(black_box(&plugin), "one-call", "")
                    .result
                    .is_ok()
            )
        })
    });
    g.bench_function("one_host_call/raw_wasmtime", |b| {
        b.iter(|| raw_call(&engine, black_box(&pre), "one-call"))
    });
    g.finish();

    // 1,000 installed plugins: memory per idle plugin, then one event to all of them.
    let before = rss_bytes();
    let fanout = InstallationId::new("fanout");
    for i in 0..1000 {
        let m = Manifest::parse(&MANIFEST.replace("\"bench\"", &format!("\"bench-{i}\""))).unwrap();
        sandbox
            .install(
                &fanout,
                &m,
                &wasm,
                &Consent::all(&m, "bench"),
                Limits::default(),
            )
            .unwrap();
    }
    let after = rss_bytes();
    println!(
        "idle_memory: 1000 installed plugins added {} KiB of resident memory, {:.1} KiB per plugin",
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) as f64 / 1000.0 / 1024.0
    );
    assert_eq!(sandbox.dispatch(&fanout, "order.created", "").len(), 1000);

    let mut g = c.benchmark_group("fanout_1000_plugins");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("vodo_dispatch", |b| {
        b.iter(|| {
            let d = sandbox.dispatch(&fanout, "order.created", "");
            assert!(d.iter().all(|d| d.outcome.is_ok()));
        })
    });
    // Baseline: the same 1,000 instantiate-and-calls on as many threads as Vodo uses.
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    g.bench_function("raw_wasmtime_parallel", |b| {
        b.iter(|| {
            let next = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..workers {
                    s.spawn(|| {
                        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 1000 {
                            raw_call(&engine, &pre, "order.created");
                        }
                    });
                }
            });
        })
    });
    g.finish();

    // One event in one shop, while 10,000 other shops have plugins installed:
    // the cost of an event must not grow with the number of tenants.
    for i in 0..10_000 {
        let tenant = InstallationId::new(format!("tenant-{i}"));
        sandbox
            .install(
                &tenant,
                &manifest,
                &wasm,
                &Consent::all(&manifest, "bench"),
                Limits::default(),
            )
            .unwrap();
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
