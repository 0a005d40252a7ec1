//! Runs untrusted WebAssembly plugins under enforced permissions and
//! resource limits.
//!
//! Plugins are WebAssembly components built against the `vodo:plugin` WIT
//! package in `wit/` (with `vodo-pdk`). A [`Sandbox`] owns the one wasmtime
//! engine of the process (pooling allocator, epoch interruption, fuel when a
//! deterministic CPU budget is wanted) and is built from a
//! [`Host`](vodo_core::Host): the host's grants, rate limiter, circuit
//! breakers and audit trail are the ones it uses, with no defaults of its own.
//!
//! For each plugin loaded in an installation it keeps an `InstancePre` from
//! a linker that holds **only** the host interfaces the grant covers; a
//! plugin that imports an interface it has no grant for is refused with the
//! permission it lacks ([`LoadError::MissingPermission`]).
//!
//! Every call walks one pipeline (`call.rs` has the steps): the current
//! grant read from the host, the entry point's rule (a subscribed event, a
//! declared route), the circuit breaker of (installation, plugin), a fresh
//! store with
//!
//! - a memory limit across all its instances, with peak tracking;
//! - a wall-clock deadline on the monotonic clock (epoch ticks interrupt
//!   the guest to compare), and optionally a fuel budget;
//! - limits on stack depth, tables, instances, output and host calls;
//! - WASI denied by default: no files, no sockets, no environment; stdout and
//!   stderr captured and bounded;
//! - host functions that check the exact scope of each call against the
//!   grant as it is now (entity kind, hook name, host, storage quota and file
//!   type), count the manifest's rate limit in the host's one limiter, and
//!   return what they refuse to the plugin, audited;
//!
//! (or, for a plugin whose [`Limits::reuse`] asks for it, a warm instance of
//! the same version in the same installation with the same budgets: see
//! [`Reuse`]), then usage, violations and health recorded in one place. A call comes
//! back as a [`Call`]: the plugin's answer or a [`CallError`] (a
//! [`SandboxViolation`] that names the limit hit, the plugin's own error, or
//! the platform's refusal), and its [`Usage`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use vodo_core::{Consent, Host, InstallationId, Manifest, SecretKey};
//! use vodo_sandbox::{Limits, MemoryServices, Sandbox, SandboxConfig};
//!
//! let host = Host::open("data".as_ref(), &SecretKey::generate()?)?;
//! let sandbox = Sandbox::new(SandboxConfig::default(), &host, Arc::new(MemoryServices::new()))?;
//! let manifest = Manifest::load("my-plugin/plugin.json".as_ref())?;
//! let wasm = std::fs::read("my-plugin/target/wasm32-wasip2/release/my_plugin.wasm")?;
//! let shop = InstallationId::new("shop-42");
//! // The installer consented to everything the manifest asks for.
//! let consent = Consent::all(&manifest, "owner@shop-42");
//! let plugin = sandbox.install(&shop, &manifest, &wasm, &consent, Limits::default())?;
//! let call = sandbox.call_event(&plugin, "order.created", r#"{"id":1001}"#);
//! println!("{:?} in {:?}", call.result, call.usage.wall);
//! // The merchant turns it off: the next call is refused, without running it.
//! sandbox.set_enabled(&shop, &manifest.slug, false, "owner@shop-42")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Unsafe code
//!
//! The crate denies unsafe code except in one place: loading a component
//! this crate compiled into its own cache folder (`cache.rs`), which
//! wasmtime marks `unsafe` because the file is native code.

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod blocking;
mod cache;
mod call;
mod config;
mod dispatch;
mod engine;
mod error;
mod host;
mod host_async;
mod installed;
mod lifecycle;
mod linking;
mod net;
mod output;
mod sandbox;
mod services;
mod storage;
mod trial;
mod usage;
mod warm;

pub use call::Call;
pub use config::{Limits, Reuse, SandboxConfig};
pub use dispatch::Delivery;
pub use engine::engine;
pub use error::{CallError, LoadError, SandboxViolation};
pub use host::{Request, Response};
pub use installed::Installed;
pub use lifecycle::Wasm;
pub use net::{Resolver, SystemResolver, is_private};
pub use sandbox::Sandbox;
pub use services::{HostServices, LogLevel, MemoryServices, ServiceError, ServiceResult};
pub use storage::MAX_FILES;
pub use usage::{MinuteUsage, SERIES_MINUTES, Usage, UsageSummary, UsageTotals};
