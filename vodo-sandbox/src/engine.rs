//! The one wasmtime engine of a process: its configuration (pooling
//! allocator, epoch interruption, fuel), its compatibility hash for the
//! disk cache, and the epoch ticker.
//!
//! Wall-clock limits are measured against the monotonic clock. The ticker
//! only interrupts: each tick, a running call compares `Instant::now()` with
//! its deadline (`call.rs`), so a ticker thread that the scheduler wakes late
//! on a loaded machine delays the interrupt by that latency, but never
//! stretches the limit by counting fewer ticks than time went by.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::{LoadError, SandboxConfig};

/// Stack the host functions of an async call may use beside the guest's.
const ASYNC_HOST_STACK: usize = 1 << 20;

/// Builds the engine the sandbox uses, after validating `config`; public so
/// that benchmarks can measure raw wasmtime on the very same configuration.
pub fn engine(config: &SandboxConfig) -> Result<Engine, LoadError> {
    config.validate()?;
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .consume_fuel(config.fuel)
        .max_wasm_stack(config.max_wasm_stack)
        // Async calls run on a fiber: the guest's stack plus room for the
        // host functions that run in place.
        .async_stack_size(config.max_wasm_stack.saturating_add(ASYNC_HOST_STACK));
    let n = config.max_concurrent;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(4))
        .total_tables(n.saturating_mul(16))
        .max_memory_size(usize::try_from(config.max_memory_per_instance).unwrap_or(usize::MAX))
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .total_stacks(n)
        .max_unused_warm_slots(n.min(100))
        // Reset freed slots in place instead of with madvise: see
        // `SandboxConfig::keep_resident`.
        .linear_memory_keep_resident(config.keep_resident)
        .table_keep_resident(config.keep_resident);
    // Where the kernel has the PAGEMAP_SCAN ioctl (Linux 6.7), only the
    // pages a call dirtied are reset: no madvise, no TLB shootdown, no page
    // fault on the next call; elsewhere wasmtime falls back to madvise.
    pool.pagemap_scan(Enabled::Auto);
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&cfg).map_err(|e| LoadError::Config(format!("{e:#}")))
}

/// A stable name for the engine's configuration, part of cache keys.
pub(crate) fn compatibility_hash(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// The thread that advances the engine's epoch every tick; stopped when
/// dropped (or when the engine is gone).
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine, config: &SandboxConfig) -> Result<Self, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let tick = config.epoch_tick;
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("vodo-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| LoadError::Config(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
