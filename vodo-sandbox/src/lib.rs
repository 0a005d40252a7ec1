//! Runs untrusted WebAssembly plugins under enforced permissions and
//! resource limits.
//!
//! Plugins are WebAssembly components built against the `vodo:plugin` WIT
//! package in `wit/` (with `vodo-pdk`). A [`Sandbox`] owns the one wasmtime
//! engine of the process (pooling allocator, epoch interruption, fuel when a
//! deterministic CPU budget is wanted) and, for each plugin installed in an
//! installation, an `InstancePre` built from a linker that holds **only**
//! the host interfaces the installer's grant covers. A plugin that imports
//! an interface it has no grant for is refused at install time with the
//! permission it lacks ([`LoadError::MissingPermission`]).
//!
//! Every call gets a fresh store with:
//!
//! - a memory limit across all its instances, with peak tracking;
//! - a wall-clock timeout (epochs) and, optionally, a fuel budget;
//! - limits on stack depth, tables, instances, output and host calls;
//! - WASI denied by default: no files, no sockets, no environment; stdout and
//!   stderr captured and bounded;
//! - host functions that check the exact scope of each call (entity kind,
//!   hook name, host, storage quota and file type), audit each denial, and
//!   count the manifest's rate limit.
//!
//! A call comes back as a [`Call`]: the plugin's answer or a [`CallError`]
//! (a [`SandboxViolation`] that names the limit or permission hit, or the
//! plugin's own error), and its [`Usage`]. Violations and usage spikes go
//! to the audit trail.
//!
//! ```ignore
//! use std::sync::Arc;
//! use vodo_core::{audit::MemoryAudit, InstallationId, Manifest};
//! use vodo_sandbox::{Limits, MemoryServices, Sandbox, SandboxConfig};
//!
//! let sandbox = Sandbox::new(SandboxConfig::default(), Arc::new(MemoryServices::new()), Arc::new(MemoryAudit::new()))?;
//! let manifest = Manifest::load("my-plugin/plugin.json".as_ref())?;
//! let wasm = std::fs::read("my-plugin/target/wasm32-wasip2/release/my_plugin.wasm")?;
//! let shop = InstallationId::new("shop-42");
//! // The installer consented to everything the manifest asks for.
//! let plugin = sandbox.install(&shop, &manifest, &wasm, manifest.scopes().clone(), Limits::default())?;
//! let call = sandbox.call_event(&plugin, "order.created", r#"{"id":1001}"#);
//! println!("{:?} in {:?}", call.result, call.usage.wall);
//! ```
//!
//! # Unsafe code
//!
//! The crate denies unsafe code except in one place: loading a component
//! this crate compiled into its own cache folder (`cache.rs`), which
//! wasmtime marks `unsafe` because the file is native code.

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod config;
mod dispatch;
mod error;
mod host;
mod net;
mod sandbox;
mod services;
mod storage;

pub use config::{Limits, SandboxConfig};
pub use dispatch::Delivery;
pub use error::{CallError, LoadError, SandboxViolation};
pub use host::{Request, Response};
pub use net::{Resolver, SystemResolver, is_private};
pub use sandbox::{Call, Installed, Sandbox, Usage, UsageSummary, UsageTotals, engine};
pub use services::{HostServices, LogLevel, MemoryServices};
pub use storage::MAX_FILES;
