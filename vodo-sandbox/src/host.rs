//! The per-call host state and the host side of every `vodo:plugin` interface.
//!
//! Every function counts as a host call, and every function that touches
//! data first checks the exact scope (entity kind, hook name, host, storage)
//! against the grant. A denial is audited and stops the call with a
//! [`SandboxViolation`]: a plugin that reaches past its grant is not trusted
//! to carry on.

use std::sync::Arc;

use vodo_core::audit::{AuditAction, AuditEvent, AuditSink};
use vodo_core::rate::{RateKey, RateLimit, RateLimiter};
use vodo_core::{Decision, DenyReason, InstallationId, PluginId};
use vodo_scopes::ScopeSet;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::error::Stop;
use crate::net::{self, FetchError, Resolver};
use crate::services::{HostServices, LogLevel};
use crate::storage::{Storage, StorageError};
use crate::{Limits, SandboxViolation};

/// Bindings generated from `wit/plugin.wit`.
#[allow(missing_docs)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: trappable },
    });
}

pub use bindings::{Plugin, PluginPre, Request, Response, vodo};
pub(crate) use vodo::plugin::types::Error as GuestError;

/// Memory, table and instance limits of one store, with peak tracking.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    pub max_memory: u64,
    pub max_table_elements: u64,
    pub max_instances: usize,
    pub total: u64,
    pub peak: u64,
    pub denied: Option<SandboxViolation>,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let requested =
            (self.total - (current as u64).min(self.total)).saturating_add(desired as u64);
        if requested > self.max_memory || maximum.is_some_and(|m| desired > m) {
            let v = SandboxViolation::Memory {
                requested,
                limit: self.max_memory,
            };
            self.denied = Some(v.clone());
            return Err(wasmtime::Error::new(Stop(v)));
        }
        self.total = requested;
        self.peak = self.peak.max(requested);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_table_elements || maximum.is_some_and(|m| desired > m) {
            let v = SandboxViolation::Resources(format!(
                "a table grew to {desired} elements, over the limit of {}",
                self.max_table_elements
            ));
            self.denied = Some(v.clone());
            return Err(wasmtime::Error::new(Stop(v)));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn memories(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances
    }
}

/// Everything a call's host functions need.
pub(crate) struct CallCtx {
    pub plugin: PluginId,
    pub installation: InstallationId,
    pub scopes: Arc<ScopeSet>,
    pub services: Arc<dyn HostServices>,
    pub audit: Arc<dyn AuditSink>,
    pub limits: Limits,
    pub storage: Option<Arc<Storage>>,
    pub rate: Option<(Arc<RateLimiter>, RateLimit)>,
    pub resolver: Arc<dyn Resolver>,
    pub allow_private: bool,
    /// When the call's wall-clock limit runs out; host calls that block
    /// (HTTP) get no more than what is left.
    pub deadline: std::time::Instant,
    pub host_calls: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub logged: u64,
    /// The first violation a host function stopped the call for.
    pub stopped: Option<SandboxViolation>,
}

/// The data of one store: WASI (deny-by-default), limits and the call context.
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    /// The captured stdout and stderr, to tell a full pipe from other traps.
    pub pipes: [wasmtime_wasi::p2::pipe::MemoryOutputPipe; 2],
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub call: CallCtx,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

type HostResult<T> = wasmtime::Result<Result<T, GuestError>>;

impl CallCtx {
    fn event(&self, action: AuditAction) {
        let event = AuditEvent::now(action)
            .plugin(&self.plugin)
            .installation(&self.installation);
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(error = %e, "audit sink failed");
        }
    }

    fn stop(&mut self, v: SandboxViolation) -> wasmtime::Error {
        self.stopped.get_or_insert_with(|| v.clone());
        wasmtime::Error::new(Stop(v))
    }

    /// Counts a host call carrying `bytes` from the guest.
    fn enter(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.host_calls += 1;
        self.bytes_in += bytes as u64;
        if self.host_calls > self.limits.host_calls {
            let limit = self.limits.host_calls;
            return Err(self.stop(SandboxViolation::HostCalls { limit }));
        }
        Ok(())
    }

    /// A call of the host API proper (entities, users, settings, hooks):
    /// counted against the manifest's rate limit for this installation.
    fn api(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.enter(bytes)?;
        if let Some((limiter, limit)) = &self.rate {
            let key = RateKey::Plugin(self.installation.clone(), self.plugin.clone());
            if let Decision::Deny {
                reason: DenyReason::RateLimited { retry_after_ms },
            } = limiter.check(&key, *limit)
            {
                let limit = limit.to_string();
                return Err(self.stop(SandboxViolation::RateLimit {
                    limit,
                    retry_after_ms,
                }));
            }
        }
        Ok(())
    }

    /// Refuses `scope`: audited, and the call stops.
    fn deny(&mut self, scope: String) -> wasmtime::Error {
        self.event(AuditAction::PermissionDenied {
            scope: scope.clone(),
            reason: DenyReason::MissingScope {
                scope: scope.clone(),
            },
        });
        self.stop(SandboxViolation::Permission { scope })
    }

    fn returned(&mut self, bytes: usize) {
        self.bytes_out += bytes as u64;
    }
}

fn internal(e: String) -> GuestError {
    GuestError::Internal(e)
}

impl vodo::plugin::types::Host for HostState {}

impl vodo::plugin::log::Host for HostState {
    fn write(&mut self, level: vodo::plugin::log::Level, message: String) -> wasmtime::Result<()> {
        let c = &mut self.call;
        c.enter(message.len())?;
        c.logged += message.len() as u64;
        if c.logged > c.limits.output {
            let limit = c.limits.output;
            return Err(c.stop(SandboxViolation::Output { what: "log", limit }));
        }
        use vodo::plugin::log::Level as L;
        let level = match level {
            L::Debug => LogLevel::Debug,
            L::Info => LogLevel::Info,
            L::Warn => LogLevel::Warn,
            L::Error => LogLevel::Error,
        };
        c.services.log(&c.plugin, level, &message);
        Ok(())
    }
}

impl vodo::plugin::entities::Host for HostState {
    fn get(&mut self, kind: String, id: String) -> HostResult<Option<String>> {
        let c = &mut self.call;
        c.api(kind.len() + id.len())?;
        if !c.scopes.can_read_entity(&kind) {
            return Err(c.deny(format!("entities:read:{kind}")));
        }
        let out = c
            .services
            .get_entity(&c.installation, &kind, &id)
            .map_err(internal);
        if let Ok(Some(json)) = &out {
            c.returned(json.len());
        }
        Ok(out)
    }

    fn put(&mut self, kind: String, id: String, json: String) -> HostResult<()> {
        let c = &mut self.call;
        c.api(kind.len() + id.len() + json.len())?;
        if !c.scopes.can_write_entity(&kind) {
            return Err(c.deny(format!("entities:write:{kind}")));
        }
        Ok(c.services
            .put_entity(&c.installation, &kind, &id, &json)
            .map_err(internal))
    }

    fn delete(&mut self, kind: String, id: String) -> HostResult<bool> {
        let c = &mut self.call;
        c.api(kind.len() + id.len())?;
        if !c.scopes.can_write_entity(&kind) {
            return Err(c.deny(format!("entities:write:{kind}")));
        }
        Ok(c.services
            .delete_entity(&c.installation, &kind, &id)
            .map_err(internal))
    }
}

impl vodo::plugin::hooks::Host for HostState {
    fn trigger(&mut self, name: String, payload: String) -> HostResult<()> {
        let c = &mut self.call;
        c.api(name.len() + payload.len())?;
        if !c.scopes.can_trigger(&name) {
            return Err(c.deny(format!("hooks:trigger:{name}")));
        }
        Ok(c.services
            .trigger_hook(&c.installation, &c.plugin, &name, &payload)
            .map_err(internal))
    }
}

impl vodo::plugin::users::Host for HostState {
    fn get(&mut self, id: String) -> HostResult<Option<String>> {
        let c = &mut self.call;
        c.api(id.len())?;
        if !c.scopes.allows(&vodo_scopes::PluginScope::UsersRead) {
            return Err(c.deny("users:read".into()));
        }
        let out = c.services.get_user(&c.installation, &id).map_err(internal);
        if let Ok(Some(json)) = &out {
            c.returned(json.len());
        }
        Ok(out)
    }
}

impl vodo::plugin::settings::Host for HostState {
    fn get(&mut self, key: String) -> HostResult<Option<String>> {
        let c = &mut self.call;
        c.api(key.len())?;
        if !c.scopes.allows(&vodo_scopes::PluginScope::SettingsRead) {
            return Err(c.deny("settings:read".into()));
        }
        Ok(c.services
            .get_setting(&c.installation, &c.plugin, &key)
            .map_err(internal))
    }

    fn set(&mut self, key: String, value: String) -> HostResult<()> {
        let c = &mut self.call;
        c.api(key.len() + value.len())?;
        if !c.scopes.allows(&vodo_scopes::PluginScope::SettingsWrite) {
            return Err(c.deny("settings:write".into()));
        }
        Ok(c.services
            .set_setting(&c.installation, &c.plugin, &key, &value)
            .map_err(internal))
    }
}

impl HostState {
    fn storage<T>(&mut self, f: impl FnOnce(&Storage) -> Result<T, StorageError>) -> HostResult<T> {
        let c = &mut self.call;
        let Some(storage) = c.storage.clone() else {
            return Err(c.deny("storage:read".into()));
        };
        match f(&storage) {
            Ok(v) => Ok(Ok(v)),
            Err(StorageError::Violation(SandboxViolation::Permission { scope })) => {
                Err(c.deny(scope))
            }
            Err(StorageError::Violation(v)) => {
                c.event(AuditAction::SandboxViolation {
                    violation: v.kind().into(),
                    detail: v.to_string(),
                });
                Err(c.stop(v))
            }
            Err(StorageError::NotFound(m)) => Ok(Err(GuestError::NotFound(m))),
            Err(StorageError::Io(m)) => Ok(Err(GuestError::Internal(m))),
        }
    }
}

impl vodo::plugin::storage::Host for HostState {
    fn read(&mut self, path: String) -> HostResult<Vec<u8>> {
        self.call.enter(path.len())?;
        let max = self.call.limits.output;
        let out = self.storage(|s| s.read(&path, max))?;
        if let Ok(data) = &out {
            self.call.returned(data.len());
        }
        Ok(out)
    }

    fn write(&mut self, path: String, data: Vec<u8>) -> HostResult<()> {
        self.call.enter(path.len() + data.len())?;
        self.storage(|s| s.write(&path, &data))
    }

    fn delete(&mut self, path: String) -> HostResult<bool> {
        self.call.enter(path.len())?;
        self.storage(|s| s.delete(&path))
    }

    fn list_files(&mut self) -> HostResult<Vec<String>> {
        self.call.enter(0)?;
        self.storage(Storage::list)
    }
}

impl vodo::plugin::http::Host for HostState {
    fn fetch(
        &mut self,
        request: vodo::plugin::http::Outgoing,
    ) -> HostResult<vodo::plugin::http::Incoming> {
        let c = &mut self.call;
        c.enter(request.url.len() + request.body.len())?;
        let left = c
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            let limit = c.limits.timeout;
            return Err(c.stop(SandboxViolation::Timeout { limit }));
        }
        let policy = net::Policy {
            scopes: &c.scopes,
            resolver: &*c.resolver,
            allow_private: c.allow_private,
            timeout: c.limits.http_timeout.min(left),
            max_body: c.limits.http_response,
        };
        let outgoing = net::Outgoing {
            method: &request.method,
            url: &request.url,
            headers: &request.headers,
            body: &request.body,
        };
        let result = net::fetch(&policy, &outgoing);
        let host = net::host_of(&request.url);
        let (allowed, status) = match &result {
            Ok(r) => (true, Some(r.status)),
            Err(FetchError::Violation(_)) => (false, None),
            Err(_) => (true, None),
        };
        c.event(AuditAction::NetworkRequest {
            method: request.method.clone(),
            host,
            allowed,
            status,
        });
        match result {
            Ok(r) => {
                c.returned(r.body.len());
                Ok(Ok(vodo::plugin::http::Incoming {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                }))
            }
            Err(FetchError::Violation(v)) => Err(c.stop(v)),
            Err(FetchError::Invalid(m)) => Ok(Err(GuestError::Invalid(m))),
            Err(FetchError::Failed(m)) => Ok(Err(GuestError::Internal(m))),
        }
    }
}
