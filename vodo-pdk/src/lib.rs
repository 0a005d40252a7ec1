//! The Vodo plugin development kit (not built yet; tracked by the sandbox issue).
//!
//! Plugin authors will depend on this crate to write plugins in Rust for the
//! `wasm32-wasip2` target: ergonomic wrappers over the bindings generated from
//! the `vodo:plugin` WIT package in `wit/`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
