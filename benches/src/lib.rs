//! What the sandbox benches share (`benches/sandbox.rs` here and the peer
//! comparison in `benches/peer`): the raw wasmtime host that is their
//! baseline, the host services both sides answer with, and the bench
//! plugin's manifest.
//!
//! The raw baseline is the least a correct wasmtime host does for the bench
//! plugin: a fresh `Store` with a deny-by-default `WasiCtx`, an epoch
//! deadline, instantiation from an `InstancePre`, the call, and a host
//! function that answers with a constant record (Vodo's host services
//! answer with the same constant), or, reused, the same instance called
//! again with a new epoch deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use vodo_core::audit::NoAudit;
use vodo_core::keys::MemoryKeyStore;
use vodo_core::{Host, InstallationId, MemoryRegistry, PluginId, SecretKey};
use vodo_sandbox::{HostServices, ServiceResult};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bindings of the plugin world for the raw host.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({ path: "../vodo-pdk/wit", world: "plugin" });
}

use bindings::vodo::plugin as iface;
pub use bindings::{Plugin, PluginPre};
pub use iface::types::{Request, Response};

/// The bench plugin's manifest: every event, one entity kind, the echo route.
pub const MANIFEST: &str = r#"{
  "name": "Bench", "slug": "bench", "version": "0.1.0", "description": "benchmark plugin",
  "author": "Vodo", "license": "MIT", "entry": "bench.wasm",
  "routes": ["POST /echo"],
  "permissions": { "entities": ["read:order"], "hooks": ["subscribe:*"],
                   "api": { "rate_limit": "1000000/second" } }
}"#;

/// The bench manifest for plugins that `reuse` instances so: without the
/// rate limit for warm instances, which answer more than 1,000,000 calls a
/// second, the highest limit a manifest may declare (the limit itself would
/// refuse the bench's host call).
pub fn manifest_for(reuse: vodo_sandbox::Reuse) -> String {
    match reuse {
        vodo_sandbox::Reuse::Fresh => MANIFEST.to_string(),
        vodo_sandbox::Reuse::Warm { .. } => MANIFEST.replace(
            r#",
                   "api": { "rate_limit": "1000000/second" }"#,
            "",
        ),
    }
}

/// The answer of the one host call, on both sides.
pub const RECORD: &str = r#"{"total":"1"}"#;

/// The raw host's state: WASI denied by default, nothing else.
pub struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl RawState {
    /// A store's state with no WASI capabilities.
    pub fn new() -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        }
    }
}

impl Default for RawState {
    fn default() -> Self {
        Self::new()
    }
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
        Ok(Some(RECORD.into()))
    }
    fn put(&mut self, _: String, _: String, _: String) -> Result<(), iface::types::Error> {
        Ok(())
    }
    fn delete(&mut self, _: String, _: String) -> Result<bool, iface::types::Error> {
        Ok(false)
    }
}

/// The raw host's instance template for `component`.
pub fn raw_pre(engine: &Engine, component: &Component) -> PluginPre<RawState> {
    let mut linker: Linker<RawState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    iface::types::add_to_linker::<RawState, HasSelf<RawState>>(&mut linker, |s| s).unwrap();
    iface::log::add_to_linker::<RawState, HasSelf<RawState>>(&mut linker, |s| s).unwrap();
    iface::entities::add_to_linker::<RawState, HasSelf<RawState>>(&mut linker, |s| s).unwrap();
    PluginPre::new(linker.instantiate_pre(component).unwrap()).unwrap()
}

/// A fresh store and instance, then `event`.
pub fn raw_call(engine: &Engine, pre: &PluginPre<RawState>, event: &str) {
    let (mut store, plugin) = raw_instance(engine, pre);
    plugin
        .call_on_event(&mut store, event, "")
        .unwrap()
        .unwrap();
}

/// A fresh store and instance, then `request`.
pub fn raw_request(engine: &Engine, pre: &PluginPre<RawState>, request: &Request) -> usize {
    let (mut store, plugin) = raw_instance(engine, pre);
    let response = plugin
        .call_on_request(&mut store, request)
        .unwrap()
        .unwrap();
    response.body.len()
}

/// A fresh store with an epoch deadline, and an instance in it.
pub fn raw_instance(engine: &Engine, pre: &PluginPre<RawState>) -> (Store<RawState>, Plugin) {
    let mut store = Store::new(engine, RawState::new());
    store.set_epoch_deadline(1_000);
    let plugin = pre.instantiate(&mut store).unwrap();
    (store, plugin)
}

/// The raw host reusing one instance: a new epoch deadline, then `event`.
pub fn raw_reused_call(store: &mut Store<RawState>, plugin: &Plugin, event: &str) {
    store.set_epoch_deadline(1_000);
    plugin
        .call_on_event(&mut *store, event, "")
        .unwrap()
        .unwrap();
}

/// The raw host reusing one instance for `request`.
pub fn raw_reused_request(
    store: &mut Store<RawState>,
    plugin: &Plugin,
    request: &Request,
) -> usize {
    store.set_epoch_deadline(1_000);
    let response = plugin
        .call_on_request(&mut *store, request)
        .unwrap()
        .unwrap();
    response.body.len()
}

/// A request to the echo route with `body`.
pub fn echo_request(body: Vec<u8>) -> Request {
    Request {
        method: "POST".into(),
        path: "/echo".into(),
        headers: Vec::new(),
        body,
    }
}

/// The same request as Vodo takes it.
pub fn vodo_echo_request(body: Vec<u8>) -> vodo_sandbox::Request {
    vodo_sandbox::Request {
        method: "POST".into(),
        path: "/echo".into(),
        headers: Vec::new(),
        body,
    }
}

/// Host components in memory, auditing nowhere (as the raw baseline does).
pub fn quiet_host() -> Host {
    Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        Arc::new(NoAudit),
        &SecretKey::from_bytes([5; 32]),
    )
}

/// The host's data as the raw baseline answers it: one constant record. Both
/// sides answer the host call the same way, so what is measured is the
/// sandbox, not a data store.
#[derive(Debug)]
pub struct Constant;

impl HostServices for Constant {
    fn waits(&self) -> bool {
        false
    }
    fn get_entity(&self, _: &InstallationId, _: &str, _: &str) -> ServiceResult<Option<String>> {
        Ok(Some(RECORD.into()))
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

/// Drift-free comparison on a noisy machine: `rounds` rounds, each running
/// `first` and then `second` once, timed; returns each round's two times.
pub fn paired(
    rounds: usize,
    mut first: impl FnMut(),
    mut second: impl FnMut(),
) -> Vec<(std::time::Duration, std::time::Duration)> {
    (0..rounds)
        .map(|_| {
            let t = std::time::Instant::now();
            first();
            let a = t.elapsed();
            let t = std::time::Instant::now();
            second();
            (a, t.elapsed())
        })
        .collect()
}

/// The median, first and third quartiles of `values` (not empty).
pub fn quartiles(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[n / 2], values[n / 4], values[n * 3 / 4])
}

/// The median of `values` (not empty).
pub fn median(values: Vec<f64>) -> f64 {
    quartiles(values).0
}

/// Resident memory of this process, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// TLB shootdown interrupts so far, summed over the CPUs (the `TLB` line of
/// `/proc/interrupts`; 0 where the kernel does not report them).
pub fn tlb_shootdowns() -> u64 {
    let all = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    all.lines()
        .find(|l| l.trim_start().starts_with("TLB:"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}
