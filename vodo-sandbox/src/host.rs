//! The per-call host state and the host side of every `vodo:plugin` interface.
//!
//! Every function counts as a host call, and every function that touches
//! data first checks the exact scope (entity kind, hook name, host, storage)
//! against the grant **as it is now** (the call holds the current grant).
//! What the platform refuses, a missing permission or the manifest's rate
//! limit, is audited and returned to the plugin (`denied`, `limit`), which
//! may handle it; the call goes on and its health is not blamed. What breaks
//! the sandbox's rules (a limit, an escape from its folder, a private
//! address) is a [`SandboxViolation`] that stops the call.

use std::sync::Arc;

use vodo_core::audit::{AuditAction, AuditEvent, AuditSinkExt};
use vodo_core::rate::RateKey;
use vodo_core::{CurrentGrant, Decision, DenyReason, InstallationId, PluginId};
use vodo_scopes::{PluginScope, ScopeSet};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::blocking::{Inline, Runner, now};
use crate::error::Stop;
use crate::net::{self, FetchError};
use crate::sandbox::Shared;
use crate::services::{HostServices, LogLevel, ServiceError, ServiceResult};
use crate::storage::{Storage, StorageError};
use crate::{Limits, SandboxViolation};

/// Bindings generated from `vodo-pdk/wit/plugin.wit`: the contract ships
/// inside the guest kit, so a plugin built outside this repository has it.
#[allow(missing_docs)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../vodo-pdk/wit",
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
    /// The grant as it was when the call started.
    pub grant: Arc<CurrentGrant>,
    /// The sandbox's services, audit trail, rate limiter and resolver.
    pub shared: Arc<Shared>,
    pub limits: Limits,
    pub storage: Option<Arc<Storage>>,
    /// The plugin's key in the rate limiter, once a host call needed it.
    pub rate_key: Option<RateKey>,
    /// When the call's wall-clock limit runs out, on the monotonic clock:
    /// the epoch callback interrupts the guest past it, and host calls that
    /// block (HTTP) get no more than what is left.
    pub deadline: std::time::Instant,
    pub host_calls: u64,
    pub denied: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub logged: u64,
    /// The first violation a host function stopped the call for.
    pub stopped: Option<SandboxViolation>,
}

/// The data of one store: WASI (deny-by-default), limits and the call context.
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    /// stdout and stderr, counted (one bound), to tell a full pipe from
    /// other traps.
    pub output: crate::output::Captured,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub call: CallCtx,
}

impl HostState {
    /// Readies a warm instance's state for a new call: the grant as it is
    /// now, a new deadline, and every per-call count back to zero. Memory the
    /// instance holds stays counted against the limit; its peak starts there.
    pub(crate) fn rearm(&mut self, grant: Arc<CurrentGrant>, deadline: std::time::Instant) {
        self.output.reset();
        self.limiter.peak = self.limiter.total;
        self.limiter.denied = None;
        let c = &mut self.call;
        c.grant = grant;
        c.deadline = deadline;
        c.host_calls = 0;
        c.denied = 0;
        c.failed = 0;
        c.bytes_in = 0;
        c.bytes_out = 0;
        c.logged = 0;
        c.stopped = None;
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

pub(crate) type HostResult<T> = wasmtime::Result<Result<T, GuestError>>;

/// Whether a host call counts against the manifest's API rate limit: the
/// host API proper (entities, users, settings, hooks) does; the plugin's
/// own log, storage and outbound HTTP do not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Counted,
    Free,
}

impl CallCtx {
    fn event(&self, action: AuditAction) {
        self.shared.audit.record_or_log(
            &AuditEvent::now(action)
                .plugin(&self.plugin)
                .installation(&self.installation),
        );
    }

    fn stop(&mut self, v: SandboxViolation) -> wasmtime::Error {
        self.stopped.get_or_insert_with(|| v.clone());
        wasmtime::Error::new(Stop(v))
    }

    /// Counts a host call carrying `bytes` from the guest.
    fn enter(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.host_calls += 1;
        let bytes = bytes as u64;
        self.bytes_in = self.bytes_in.saturating_add(bytes);
        if self.host_calls > self.limits.host_calls {
            let limit = self.limits.host_calls;
            return Err(self.stop(SandboxViolation::HostCalls { limit }));
        }
        if bytes > self.limits.host_call_input {
            let limit = self.limits.host_call_input;
            let per = "in one host call";
            return Err(self.stop(SandboxViolation::HostInput { limit, per }));
        }
        if self.bytes_in > self.limits.host_input {
            let limit = self.limits.host_input;
            let per = "in one call";
            return Err(self.stop(SandboxViolation::HostInput { limit, per }));
        }
        Ok(())
    }

    /// The platform's decision on one host call: the current grant must
    /// allow it (`granted`, for the scope `scope` names), and a counted call
    /// must fit the manifest's rate limit, shared with the plugin's API keys.
    /// A refusal is audited and becomes the plugin's error.
    fn admit(
        &mut self,
        granted: impl FnOnce(&ScopeSet) -> bool,
        scope: impl FnOnce() -> String,
        api: Api,
    ) -> Result<(), GuestError> {
        if !granted(&self.grant.scopes) {
            let scope = scope();
            return Err(self.refuse(
                DenyReason::MissingScope {
                    scope: scope.clone(),
                },
                scope,
            ));
        }
        if api == Api::Counted
            && let Some(limit) = self.grant.rate_limit
        {
            // Made once a call, at its first counted host call.
            let key = self.rate_key.get_or_insert_with(|| {
                RateKey::Plugin(self.installation.clone(), self.plugin.clone())
            });
            if let Decision::Deny { reason } = self.shared.rate.check(key, limit) {
                return Err(self.refuse(reason, scope()));
            }
        }
        Ok(())
    }

    /// Audits a refused host call and says why to the plugin.
    fn refuse(&mut self, reason: DenyReason, scope: String) -> GuestError {
        self.denied += 1;
        let error = match &reason {
            DenyReason::RateLimited { .. } | DenyReason::RateLimiterFull { .. } => {
                GuestError::Limit(reason.to_string())
            }
            _ => GuestError::Denied(scope.clone()),
        };
        self.event(AuditAction::PermissionDenied { scope, reason });
        error
    }

    /// A host service's answer, for the plugin.
    fn service<T>(&mut self, result: ServiceResult<T>) -> Result<T, GuestError> {
        result.map_err(|e| match e {
            ServiceError::NotFound(m) => GuestError::NotFound(m),
            ServiceError::Invalid(m) => GuestError::Invalid(m),
            ServiceError::Unavailable(m) => {
                self.failed += 1;
                GuestError::Internal(m)
            }
        })
    }

    fn returned(&mut self, bytes: usize) {
        self.bytes_out += bytes as u64;
    }
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
        c.shared
            .services
            .log(&c.installation, &c.plugin, level, &message);
        Ok(())
    }
}

/// The host functions that may wait, each written once over a [`Runner`]:
/// the synchronous bindings below run them [`Inline`], the asynchronous ones
/// (`host_async.rs`) on the sandbox's blocking [`Pool`](crate::blocking::Pool).
impl CallCtx {
    /// Runs `work` on the host's services, where `run` says: off the async
    /// worker when the services may wait on I/O.
    async fn serve<T: Send + 'static>(
        &mut self,
        run: &impl Runner,
        work: impl FnOnce(&Arc<dyn HostServices>, &InstallationId, &PluginId) -> ServiceResult<T>
        + Send
        + 'static,
    ) -> HostResult<T> {
        let waits = self.shared.services.waits();
        if !run.offloads(waits) {
            let out = work(&self.shared.services, &self.installation, &self.plugin);
            return Ok(self.service(out));
        }
        let services = Arc::clone(&self.shared.services);
        let job = service_job(
            services,
            self.installation.clone(),
            self.plugin.clone(),
            work,
        );
        let out = run.run(waits, job).await?;
        Ok(self.service(out))
    }

    pub(crate) async fn entity_get(
        &mut self,
        run: &impl Runner,
        kind: String,
        id: String,
    ) -> HostResult<Option<String>> {
        self.enter(kind.len() + id.len())?;
        let granted = |s: &ScopeSet| s.can_read_entity(&kind);
        if let Err(e) = self.admit(granted, || format!("entities:read:{kind}"), Api::Counted) {
            return Ok(Err(e));
        }
        let out = self
            .serve(run, move |s, i, _| s.get_entity(i, &kind, &id))
            .await?;
        if let Ok(Some(json)) = &out {
            self.returned(json.len());
        }
        Ok(out)
    }

    pub(crate) async fn entity_put(
        &mut self,
        run: &impl Runner,
        kind: String,
        id: String,
        json: String,
    ) -> HostResult<()> {
        self.enter(kind.len() + id.len() + json.len())?;
        let granted = |s: &ScopeSet| s.can_write_entity(&kind);
        if let Err(e) = self.admit(granted, || format!("entities:write:{kind}"), Api::Counted) {
            return Ok(Err(e));
        }
        self.serve(run, move |s, i, _| s.put_entity(i, &kind, &id, &json))
            .await
    }

    pub(crate) async fn entity_delete(
        &mut self,
        run: &impl Runner,
        kind: String,
        id: String,
    ) -> HostResult<bool> {
        self.enter(kind.len() + id.len())?;
        let granted = |s: &ScopeSet| s.can_write_entity(&kind);
        if let Err(e) = self.admit(granted, || format!("entities:write:{kind}"), Api::Counted) {
            return Ok(Err(e));
        }
        self.serve(run, move |s, i, _| s.delete_entity(i, &kind, &id))
            .await
    }

    pub(crate) async fn hook_trigger(
        &mut self,
        run: &impl Runner,
        name: String,
        payload: String,
    ) -> HostResult<()> {
        self.enter(name.len() + payload.len())?;
        let granted = |s: &ScopeSet| s.can_trigger(&name);
        if let Err(e) = self.admit(granted, || format!("hooks:trigger:{name}"), Api::Counted) {
            return Ok(Err(e));
        }
        self.serve(run, move |s, i, p| s.trigger_hook(i, p, &name, &payload))
            .await
    }

    pub(crate) async fn user_get(
        &mut self,
        run: &impl Runner,
        id: String,
    ) -> HostResult<Option<String>> {
        self.enter(id.len())?;
        let granted = |s: &ScopeSet| s.allows(&PluginScope::UsersRead);
        if let Err(e) = self.admit(granted, || "users:read".into(), Api::Counted) {
            return Ok(Err(e));
        }
        let out = self.serve(run, move |s, i, _| s.get_user(i, &id)).await?;
        if let Ok(Some(json)) = &out {
            self.returned(json.len());
        }
        Ok(out)
    }

    pub(crate) async fn user_put(
        &mut self,
        run: &impl Runner,
        id: String,
        json: String,
    ) -> HostResult<()> {
        self.enter(id.len() + json.len())?;
        let granted = |s: &ScopeSet| s.allows(&PluginScope::UsersWrite);
        if let Err(e) = self.admit(granted, || "users:write".into(), Api::Counted) {
            return Ok(Err(e));
        }
        self.serve(run, move |s, i, _| s.put_user(i, &id, &json))
            .await
    }

    pub(crate) async fn setting_get(
        &mut self,
        run: &impl Runner,
        key: String,
    ) -> HostResult<Option<String>> {
        self.enter(key.len())?;
        let granted = |s: &ScopeSet| s.allows(&PluginScope::SettingsRead);
        if let Err(e) = self.admit(granted, || "settings:read".into(), Api::Counted) {
            return Ok(Err(e));
        }
        self.serve(run, move |s, i, p| s.get_setting(i, p, &key))
            .await
    }

    pub(crate) async fn setting_set(
        &mut self,
        run: &impl Runner,
        key: String,
        value: String,
    ) -> HostResult<()> {
        self.enter(key.len() + value.len())?;
        let granted = |s: &ScopeSet| s.allows(&PluginScope::SettingsWrite);
        if let Err(e) = self.admit(granted, || "settings:write".into(), Api::Counted) {
            return Ok(Err(e));
        }
        self.serve(run, move |s, i, p| s.set_setting(i, p, &key, &value))
            .await
    }

    /// Runs a storage operation that needs `write` (or read) access.
    async fn storage<T: Send + 'static>(
        &mut self,
        run: &impl Runner,
        write: bool,
        f: impl FnOnce(&Storage) -> Result<T, StorageError> + Send + 'static,
    ) -> HostResult<T> {
        let (granted, scope): (fn(&ScopeSet) -> bool, _) = if write {
            (ScopeSet::can_write_storage, "storage:write")
        } else {
            (ScopeSet::can_read_storage, "storage:read")
        };
        if let Err(e) = self.admit(granted, || scope.into(), Api::Free) {
            return Ok(Err(e));
        }
        let Some(storage) = self.storage.clone() else {
            self.failed += 1;
            return Ok(Err(GuestError::Internal(
                "this host keeps no plugin storage".into(),
            )));
        };
        // Files are disk I/O: always off the async worker.
        match run.run(true, move || f(&storage)).await? {
            Ok(v) => Ok(Ok(v)),
            Err(StorageError::Denied(scope)) => Ok(Err(self.refuse(
                DenyReason::MissingScope {
                    scope: scope.clone(),
                },
                scope,
            ))),
            Err(StorageError::Violation(v)) => {
                self.event(AuditAction::SandboxViolation {
                    violation: v.kind().into(),
                    detail: v.to_string(),
                });
                Err(self.stop(v))
            }
            Err(StorageError::NotFound(m)) => Ok(Err(GuestError::NotFound(m))),
            Err(StorageError::Io(m)) => {
                self.failed += 1;
                Ok(Err(GuestError::Internal(m)))
            }
        }
    }

    pub(crate) async fn file_read(
        &mut self,
        run: &impl Runner,
        path: String,
    ) -> HostResult<Vec<u8>> {
        self.enter(path.len())?;
        let max = self.limits.output;
        let out = self
            .storage(run, false, move |s| s.read(&path, max))
            .await?;
        if let Ok(data) = &out {
            self.returned(data.len());
        }
        Ok(out)
    }

    pub(crate) async fn file_write(
        &mut self,
        run: &impl Runner,
        path: String,
        data: Vec<u8>,
    ) -> HostResult<()> {
        self.enter(path.len() + data.len())?;
        self.storage(run, true, move |s| s.write(&path, &data))
            .await
    }

    pub(crate) async fn file_delete(
        &mut self,
        run: &impl Runner,
        path: String,
    ) -> HostResult<bool> {
        self.enter(path.len())?;
        self.storage(run, true, move |s| s.delete(&path)).await
    }

    pub(crate) async fn file_list(&mut self, run: &impl Runner) -> HostResult<Vec<String>> {
        self.enter(0)?;
        self.storage(run, false, |s| s.list()).await
    }

    pub(crate) async fn fetch(&mut self, run: &impl Runner, request: Fetch) -> HostResult<Fetched> {
        let headers: usize = request.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.enter(request.method.len() + request.url.len() + headers + request.body.len())?;
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            let limit = self.limits.timeout;
            return Err(self.stop(SandboxViolation::Timeout { limit }));
        }
        let grant = Arc::clone(&self.grant);
        let egress = Arc::clone(&self.shared.egress);
        let deadline = std::time::Instant::now() + self.limits.http_timeout.min(left);
        let max_response = self.limits.http_response;
        let (result, request) = run
            .run(true, move || {
                let policy = net::Policy {
                    scopes: &grant.scopes,
                    egress: &egress,
                    deadline,
                    max_response,
                };
                let outgoing = net::Outgoing {
                    method: &request.method,
                    url: &request.url,
                    headers: &request.headers,
                    body: &request.body,
                };
                (net::fetch(&policy, &outgoing), request)
            })
            .await?;
        let host = net::host_of(&request.url);
        let (allowed, status) = match &result {
            Ok(r) => (true, Some(r.status)),
            Err(FetchError::Violation(_) | FetchError::Denied(_)) => (false, None),
            Err(_) => (true, None),
        };
        self.event(AuditAction::NetworkRequest {
            method: request.method,
            host,
            allowed,
            status,
        });
        match result {
            Ok(r) => {
                self.returned(r.body.len());
                Ok(Ok(Fetched {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                }))
            }
            Err(FetchError::Denied(scope)) => Ok(Err(self.refuse(
                DenyReason::MissingScope {
                    scope: scope.clone(),
                },
                scope,
            ))),
            Err(FetchError::Violation(v)) => Err(self.stop(v)),
            Err(FetchError::Invalid(m)) => Ok(Err(GuestError::Invalid(m))),
            Err(FetchError::Failed(m)) => Ok(Err(GuestError::Internal(m))),
        }
    }
}

/// `work` with what it runs on, as one job that owns all of it.
fn service_job<T, W>(
    services: Arc<dyn HostServices>,
    installation: InstallationId,
    plugin: PluginId,
    work: W,
) -> impl FnOnce() -> ServiceResult<T> + Send + 'static
where
    W: FnOnce(&Arc<dyn HostServices>, &InstallationId, &PluginId) -> ServiceResult<T>
        + Send
        + 'static,
    T: 'static,
{
    move || work(&services, &installation, &plugin)
}

/// An outbound request, whichever bindings it came through.
pub(crate) struct Fetch {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Its response.
pub(crate) struct Fetched {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl vodo::plugin::entities::Host for HostState {
    fn get(&mut self, kind: String, id: String) -> HostResult<Option<String>> {
        now(self.call.entity_get(&Inline, kind, id))
    }

    fn put(&mut self, kind: String, id: String, json: String) -> HostResult<()> {
        now(self.call.entity_put(&Inline, kind, id, json))
    }

    fn delete(&mut self, kind: String, id: String) -> HostResult<bool> {
        now(self.call.entity_delete(&Inline, kind, id))
    }
}

impl vodo::plugin::hooks::Host for HostState {
    fn trigger(&mut self, name: String, payload: String) -> HostResult<()> {
        now(self.call.hook_trigger(&Inline, name, payload))
    }
}

impl vodo::plugin::users::Host for HostState {
    fn get(&mut self, id: String) -> HostResult<Option<String>> {
        now(self.call.user_get(&Inline, id))
    }

    fn put(&mut self, id: String, json: String) -> HostResult<()> {
        now(self.call.user_put(&Inline, id, json))
    }
}

impl vodo::plugin::settings::Host for HostState {
    fn get(&mut self, key: String) -> HostResult<Option<String>> {
        now(self.call.setting_get(&Inline, key))
    }

    fn set(&mut self, key: String, value: String) -> HostResult<()> {
        now(self.call.setting_set(&Inline, key, value))
    }
}

impl vodo::plugin::storage::Host for HostState {
    fn read(&mut self, path: String) -> HostResult<Vec<u8>> {
        now(self.call.file_read(&Inline, path))
    }

    fn write(&mut self, path: String, data: Vec<u8>) -> HostResult<()> {
        now(self.call.file_write(&Inline, path, data))
    }

    fn delete(&mut self, path: String) -> HostResult<bool> {
        now(self.call.file_delete(&Inline, path))
    }

    fn list_files(&mut self) -> HostResult<Vec<String>> {
        now(self.call.file_list(&Inline))
    }
}

impl vodo::plugin::http::Host for HostState {
    fn fetch(
        &mut self,
        request: vodo::plugin::http::Outgoing,
    ) -> HostResult<vodo::plugin::http::Incoming> {
        let request = Fetch {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        Ok(
            now(self.call.fetch(&Inline, request))?.map(|r| vodo::plugin::http::Incoming {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
        )
    }
}
