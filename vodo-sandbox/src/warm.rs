//! Warm instances: the instances that [`Reuse::Warm`] keeps between calls of
//! one plugin version in one installation.
//!
//! Each [`Installed`](crate::Installed) has its own pool, so an instance can
//! never serve another installation or another version of the plugin. A
//! call takes an instance out (so concurrent calls never share one) and
//! gives it back when it ended well; a trap, a violation or a timeout drops
//! it. The sandbox counts the instances its pools keep (idle, or out serving
//! a call) against [`SandboxConfig::max_warm`](crate::SandboxConfig::max_warm):
//! an instance that would go over is dropped instead of kept. A kept
//! instance holds its [`Reservation`] while it serves a call, so taking and
//! giving back costs no update of the sandbox-wide count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use vodo_core::runtime::InterfaceSet;
use wasmtime::Store;

use crate::config::Reuse;
use crate::host::HostState;

/// An instance and the store it lives in, between calls. `I` is the
/// instance as the synchronous or the asynchronous bindings see it: a store
/// made for one path is never used by the other.
pub(crate) struct Warm<I> {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: I,
    /// The host interfaces it was linked with.
    pub(crate) linked: InterfaceSet,
    /// Calls it has served.
    pub(crate) calls: u32,
    /// When it was made.
    pub(crate) born: Instant,
    /// Its place in the sandbox's count, once a pool has kept it.
    pub(crate) reservation: Option<Reservation>,
}

/// The sandbox-wide count of kept warm instances, and its bound.
#[derive(Debug)]
pub(crate) struct WarmBudget {
    kept: AtomicU32,
    max: u32,
}

impl WarmBudget {
    pub(crate) fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            kept: AtomicU32::new(0),
            max,
        })
    }

    /// Warm instances kept by all pools.
    pub(crate) fn kept(&self) -> u32 {
        self.kept.load(Ordering::Relaxed)
    }

    fn reserve(self: &Arc<Self>) -> Option<Reservation> {
        self.kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Reservation(Arc::clone(self)))
    }
}

/// One unit of the [`WarmBudget`], given back when dropped (with the
/// instance that held it).
pub(crate) struct Reservation(Arc<WarmBudget>);

impl Drop for Reservation {
    fn drop(&mut self) {
        self.0.kept.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The idle warm instances of one (installation, plugin version).
pub(crate) struct WarmPool<I> {
    idle: Mutex<Vec<Warm<I>>>,
    budget: Arc<WarmBudget>,
}

impl<I> WarmPool<I> {
    pub(crate) fn new(budget: Arc<WarmBudget>) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            budget,
        }
    }

    /// Idle instances in this pool.
    pub(crate) fn len(&self) -> usize {
        self.idle.lock().len()
    }

    /// An idle instance linked with `linked` and still within `reuse`'s age
    /// at `now`, if there is one; instances that no longer qualify are dropped.
    pub(crate) fn take(&self, reuse: Reuse, linked: InterfaceSet, now: Instant) -> Option<Warm<I>> {
        let Reuse::Warm { age, .. } = reuse else {
            return None;
        };
        let mut idle = self.idle.lock();
        while let Some(warm) = idle.pop() {
            if warm.linked == linked && now.saturating_duration_since(warm.born) < age {
                return Some(warm);
            }
        }
        None
    }

    /// Keeps `warm` for a later call, unless it has served its calls or its
    /// age at `now`, the pool is full or the sandbox keeps as many as it may.
    pub(crate) fn give(&self, mut warm: Warm<I>, reuse: Reuse, now: Instant) {
        let Reuse::Warm { calls, age, pool } = reuse else {
            return;
        };
        if warm.calls >= calls || now.saturating_duration_since(warm.born) >= age {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() >= pool as usize {
            return;
        }
        if warm.reservation.is_none() {
            warm.reservation = self.budget.reserve();
        }
        if warm.reservation.is_some() {
            idle.push(warm);
        }
    }
}
