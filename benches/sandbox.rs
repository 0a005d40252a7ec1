//! Sandbox benchmarks, each beside raw wasmtime doing the same work on the
//! same engine configuration in the same run.
//!
//! Run with `cargo bench -p benches --bench sandbox`; figures go to BENCHMARKS.md.
//! The raw baseline is the least a correct wasmtime host does for this
//! plugin: a fresh `Store` with a deny-by-default `WasiCtx`, an epoch
//! deadline, instantiation from an `InstancePre`, the call. Vodo adds the
//! memory limiter, output capture, the permission and rate checks of the
//! host call, metering and audit.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vodo_core::audit::NoAudit;
use vodo_core::keys::MemoryKeyStore;
use vodo_core::{Consent, Host, InstallationId, Manifest, MemoryRegistry, SecretKey};
use vodo_sandbox::{HostServices, Limits, MemoryServices, Sandbox, SandboxConfig};
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
    let config = SandboxConfig {
        max_concurrent: 1100,
        ..SandboxConfig::default()
    };
    let services = Arc::new(MemoryServices::new());
    let shop = InstallationId::new("shop");
    services
        .put_entity(&shop, "order", "1", r#"{"total":"1"}"#)
        .unwrap();
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
