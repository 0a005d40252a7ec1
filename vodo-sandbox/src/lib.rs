//! The Vodo sandbox (not built yet; tracked by the sandbox issue).
//!
//! This crate will own the wasmtime engine: component loading and an on-disk
//! cache keyed by content hash, one `InstancePre` per (plugin, grant set),
//! capability linking (only the WIT interfaces a plugin's grants cover are
//! linked), memory, fuel, epoch and stack limits, the WASI policy (a cap-std
//! preopened folder per plugin, no sockets), the outbound HTTP allowlist with
//! SSRF checks, usage metering and the typed `SandboxViolation`.
//!
//! It implements the host-facing traits of `vodo-core` and depends on no other
//! domain crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
