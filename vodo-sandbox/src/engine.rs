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
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use wasmtime::{
    Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
};

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

/// How long the ticker thread stays parked with no engine to tick before it
/// ends; a process that makes sandboxes one after another keeps its one
/// thread instead of starting a new one for each.
const IDLE: Duration = Duration::from_secs(5);

/// The engines of the process that need ticking, and whether the one
/// thread that ticks them runs.
struct Clock {
    engines: Vec<Ticked>,
    running: bool,
    next_id: u64,
}

/// One engine's place on the clock.
struct Ticked {
    id: u64,
    engine: EngineWeak,
    tick: Duration,
    due: Instant,
}

static CLOCK: Mutex<Clock> = Mutex::new(Clock {
    engines: Vec::new(),
    running: false,
    next_id: 0,
});
/// Wakes the thread when an engine joins (its first tick may be sooner
/// than the one the thread sleeps towards).
static JOINED: Condvar = Condvar::new();

/// An engine's registration with the process's one epoch thread, which
/// advances every registered engine's epoch at that engine's tick. Dropping
/// it stops the ticks (as does dropping the engine).
///
/// One thread for all sandboxes of a process: a sandbox made after the
/// first starts no thread (a thread start is about 100 µs of a cold start).
pub(crate) struct Ticker {
    id: u64,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine, config: &SandboxConfig) -> Result<Self, LoadError> {
        let mut clock = CLOCK.lock();
        let id = clock.next_id;
        clock.next_id = clock.next_id.wrapping_add(1);
        clock.engines.push(Ticked {
            id,
            engine: engine.weak(),
            tick: config.epoch_tick,
            due: Instant::now() + config.epoch_tick,
        });
        if clock.running {
            JOINED.notify_one();
        } else {
            let started = std::thread::Builder::new()
                .name("vodo-epoch".into())
                .spawn(tick_all);
            if let Err(e) = started {
                clock.engines.retain(|t| t.id != id);
                return Err(LoadError::Config(format!(
                    "cannot start the epoch thread: {e}"
                )));
            }
            clock.running = true;
        }
        Ok(Self { id })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        CLOCK.lock().engines.retain(|t| t.id != self.id);
    }
}

/// The epoch thread: advances each engine's epoch when its tick is due, and
/// ends after [`IDLE`] with nothing to tick.
fn tick_all() {
    let mut due_now: Vec<Engine> = Vec::new();
    let mut clock = CLOCK.lock();
    loop {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        clock.engines.retain_mut(|t| {
            if t.due <= now {
                let Some(engine) = t.engine.upgrade() else {
                    return false;
                };
                due_now.push(engine);
                // A thread woken late ticks once and keeps the rhythm
                // from now: it never makes up missed ticks in a burst.
                t.due = (t.due + t.tick).max(now + t.tick / 2);
            }
            next = Some(next.map_or(t.due, |n| n.min(t.due)));
            true
        });
        if !due_now.is_empty() {
            // Incremented, and the strong references dropped (perhaps the
            // last one, which frees the engine), outside the lock.
            MutexGuard::unlocked(&mut clock, || {
                for engine in due_now.drain(..) {
                    engine.increment_epoch();
                }
            });
            continue;
        }
        match next {
            Some(at) => {
                JOINED.wait_until(&mut clock, at);
            }
            None => {
                let idle = JOINED.wait_for(&mut clock, IDLE);
                if idle.timed_out() && clock.engines.is_empty() {
                    clock.running = false;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threads of this process named `vodo-epoch`.
    fn epoch_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|name| name.trim() == "vodo-epoch")
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn one_thread_ticks_every_engine_at_its_own_tick() {
        let fast = SandboxConfig {
            epoch_tick: Duration::from_millis(1),
            max_concurrent: 2,
            ..SandboxConfig::default()
        };
        let slow = SandboxConfig {
            epoch_tick: Duration::from_millis(40),
            ..fast.clone()
        };
        let engines: Vec<(Engine, Ticker)> = [&fast, &slow, &fast]
            .iter()
            .map(|c| {
                let e = engine(c).unwrap();
                let t = Ticker::start(&e, c).unwrap();
                (e, t)
            })
            .collect();
        // A thread that found nothing to tick for its idle time may still be
        // exiting (other tests of this binary start and drop engines) while
        // its successor runs: wait for it to be gone.
        let mut threads = epoch_threads();
        for _ in 0..100 {
            if threads == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            threads = epoch_threads();
        }
        assert_eq!(threads, 1, "one epoch thread for three engines");
        // Epochs are observed through a store's deadline: a loop that never
        // ends is interrupted once its deadline's `ticks` ticks went by.
        let spin = |e: &Engine, ticks: u64| {
            // (module (func (export "f") (loop br 0)))
            const LOOP: &[u8] = &[
                0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
                0x03, 0x02, 0x01, 0x00, 0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, 0x0a, 0x09, 0x01,
                0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b,
            ];
            let module = wasmtime::Module::new(e, LOOP).unwrap();
            let mut store = wasmtime::Store::new(e, ());
            let start = Instant::now();
            store.set_epoch_deadline(ticks);
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let f = instance.get_typed_func::<(), ()>(&mut store, "f").unwrap();
            let trap = f.call(&mut store, ()).unwrap_err();
            assert_eq!(trap.downcast_ref(), Some(&wasmtime::Trap::Interrupt));
            start.elapsed()
        };
        // Each engine is interrupted (the loop would never end otherwise),
        // at its own pace: 20 ticks of 1 ms, and 3 ticks of 40 ms, of which
        // at least two whole ones went by.
        spin(&engines[0].0, 20);
        spin(&engines[2].0, 20);
        let slow = spin(&engines[1].0, 3);
        assert!(
            slow >= Duration::from_millis(80),
            "3 ticks of 40 ms took {slow:?}"
        );
        let ids: Vec<u64> = engines.iter().map(|(_, t)| t.id).collect();
        drop(engines);
        assert!(CLOCK.lock().engines.iter().all(|t| !ids.contains(&t.id)));
    }
}
