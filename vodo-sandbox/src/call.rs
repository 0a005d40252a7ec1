//! The one invocation pipeline. Every entry point walks it: hook events
//! ([`Sandbox::call_event`], and [`Sandbox::dispatch`] for each subscriber),
//! the plugin's HTTP endpoints ([`Sandbox::call_request`]), health probes
//! ([`Sandbox::call_health`]), upgrade probes and review trials.
//!
//! 1. The grant is read from the host's [`Permissions`](vodo_core::Permissions)
//!    (cached): a plugin not installed, or disabled, is refused.
//! 2. The entry point's own rule: an event must be one the grant subscribes
//!    to; a request must be for one of the manifest's `routes`.
//! 3. The circuit breaker of (installation, plugin) admits the call; a health
//!    probe is never refused by it (probes are how an open circuit closes).
//! 4. With [`Reuse::Warm`](crate::Reuse::Warm), an idle warm instance of
//!    this plugin version in this installation, linked as the grant links
//!    now, is taken from its pool. Otherwise, if the grant now links other
//!    interfaces than the plugin was loaded with (it was narrowed or
//!    widened), the plugin is prepared again; an import the grant no longer
//!    covers refuses the call, naming it.
//! 5. A fresh store with the plugin's limits (memory, a deadline on the
//!    monotonic clock, fuel, output, host calls), or the warm instance's
//!    store with this call's deadline, fuel and budgets, its counts at zero.
//! 6. The guest runs; its host calls check the current grant and the rate
//!    limit, and what they refuse is returned to the plugin.
//! 7. In one place: usage, spikes and violations audited, and the outcome
//!    recorded for the plugin's health. Only faults of the plugin's own code
//!    count against it: traps, timeouts, broken limits, and errors its
//!    handler returns, unless the platform refused or failed one of the
//!    call's host calls first. Refusals, the host at capacity and host
//!    faults count for nothing. A breaker that trips too often disables the
//!    plugin's grant. A warm instance goes back to its pool unless the call
//!    trapped, broke a limit or timed out.

use std::sync::Arc;
use std::time::Instant;

use vodo_core::CurrentGrant;
use vodo_core::DenyReason;
use vodo_core::audit::AuditAction;
use vodo_core::health::{Admission, HealthStatus, Outcome};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{ResourceTable, WasiCtx};

use crate::config::Reuse;
use crate::error::Stop;
use crate::host::{CallCtx, HostState, Limiter, Plugin, PluginPre, Request, Response};
use crate::installed::Installed;
use crate::linking::missing_import;
use crate::output::Captured;
use crate::usage::{Usage, spikes};
use crate::warm::Warm;
use crate::{CallError, Sandbox, SandboxViolation};

/// The outcome of one call and what it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<T> {
    /// The plugin's answer, or why there is none.
    pub result: Result<T, CallError>,
    /// What the call used (zero if it did not run).
    pub usage: Usage,
}

impl<T> Call<T> {
    fn refused(reason: DenyReason) -> Self {
        Self {
            result: Err(CallError::Refused(reason)),
            usage: Usage::default(),
        }
    }
}

/// How a call meets the plugin's grant and breaker.
pub(crate) enum Mode {
    /// A call of the platform: the current grant, through the breaker.
    Live,
    /// A health probe: the current grant; the breaker does not refuse it,
    /// and its outcome counts toward closing (or keeping open) the circuit.
    Probe,
    /// The health probe of a version being upgraded to, under the grant it
    /// will get; it counts against that version only, not the running one.
    Candidate(Arc<CurrentGrant>),
}

/// The longest path a refusal records.
const MAX_RECORDED_PATH: usize = 200;

impl Sandbox {
    /// Delivers a hook event to a plugin's `on-event` export. The plugin's
    /// grant must subscribe to the event.
    pub fn call_event(&self, plugin: &Installed, name: &str, payload: &str) -> Call<()> {
        self.invoke(
            plugin,
            Mode::Live,
            || format!("event {}", truncate(name)),
            |grant| {
                if grant.scopes.can_subscribe(name) {
                    Ok(())
                } else {
                    Err(DenyReason::MissingScope {
                        scope: format!("hooks:subscribe:{}", truncate(name)),
                    })
                }
            },
            |store, p| p.call_on_event(store, name, payload),
            |_| 0,
        )
    }

    /// Sends a request to one of the plugin's endpoints: a method and path
    /// that none of the manifest's `routes` declares is refused
    /// ([`DenyReason::UndeclaredRoute`]).
    pub fn call_request(&self, plugin: &Installed, request: &Request) -> Call<Response> {
        self.invoke(
            plugin,
            Mode::Live,
            || {
                format!(
                    "request {} {}",
                    truncate(&request.method),
                    truncate(&request.path)
                )
            },
            |_| match plugin.manifest.route(&request.method, &request.path) {
                Some(_) => Ok(()),
                None => Err(DenyReason::UndeclaredRoute {
                    method: truncate(&request.method),
                    path: truncate(&request.path),
                }),
            },
            |store, p| p.call_on_request(store, request),
            |r: &Response| {
                let headers = r.headers.iter().map(|(n, v)| (n.len() + v.len()) as u64);
                headers.sum::<u64>() + r.body.len() as u64
            },
        )
    }

    /// Calls the plugin's health probe. An open circuit does not refuse it:
    /// a probe that succeeds closes the circuit, one that fails keeps it open.
    pub fn call_health(&self, plugin: &Installed) -> Call<()> {
        self.health_call(plugin, Mode::Probe)
    }

    pub(crate) fn health_call(&self, plugin: &Installed, mode: Mode) -> Call<()> {
        self.invoke(
            plugin,
            mode,
            || "health".into(),
            |_| Ok(()),
            |store, p| p.call_health(store),
            |_| 0,
        )
    }

    /// Refuses a call: audited (an open circuit is not: its opening was).
    fn refuse<T>(&self, plugin: &Installed, call: String, reason: DenyReason) -> Call<T> {
        if reason != DenyReason::CircuitOpen {
            self.audit_event(
                &plugin.installation,
                &plugin.plugin,
                AuditAction::CallRefused {
                    call,
                    reason: reason.clone(),
                },
            );
        }
        Call::refused(reason)
    }

    fn invoke<T>(
        &self,
        plugin: &Installed,
        mode: Mode,
        call: impl Fn() -> String,
        gate: impl FnOnce(&CurrentGrant) -> Result<(), DenyReason>,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<Result<T, String>>,
        output_size: impl Fn(&T) -> u64,
    ) -> Call<T> {
        let (installation, id) = (&plugin.installation, &plugin.plugin);
        // 1. The grant, as it is now.
        let grant = match &mode {
            Mode::Candidate(g) => Arc::clone(g),
            Mode::Live | Mode::Probe => match self.permissions.current(installation, id) {
                Err(e) => {
                    let reason = DenyReason::StoreUnavailable {
                        error: e.to_string(),
                    };
                    return self.refuse(plugin, call(), reason);
                }
                Ok(None) => return self.refuse(plugin, call(), DenyReason::NotInstalled),
                Ok(Some(g)) if !g.enabled => {
                    return self.refuse(plugin, call(), DenyReason::Disabled);
                }
                Ok(Some(g)) => g,
            },
        };
        // 2. The entry point's rule.
        if let Err(reason) = gate(&grant) {
            return self.refuse(plugin, call(), reason);
        }
        // 3. The breaker.
        let admission = match mode {
            Mode::Live => match self.health.admit(installation, id) {
                Admission::Refused(reason) => return self.refuse(plugin, call(), reason),
                admitted => Some(admitted),
            },
            Mode::Probe | Mode::Candidate(_) => None,
        };
        // 4. A warm instance linked as the grant links now, if the plugin
        // reuses instances and one is idle; else the instance template for
        // those interfaces.
        let reuse = plugin.limits.reuse;
        let linked = grant.interfaces;
        let start = Instant::now();
        let warm = plugin.warm.take(reuse, linked, start);
        let pre = match warm {
            Some(_) => None,
            None => match self.pre_for(plugin, &grant) {
                Ok(pre) => Some(pre),
                Err(refusal) => {
                    self.judge(plugin, &mode, admission.as_ref(), Outcome::Neutral);
                    return match refusal {
                        Refusal::Denied(reason) => self.refuse(plugin, call(), reason),
                        Refusal::Host(e) => Call {
                            result: Err(CallError::Host(e)),
                            usage: Usage::default(),
                        },
                    };
                }
            },
        };
        // 5. and 6. A fresh store (or the warm one, with this call's
        // budgets), and the guest.
        let deadline = start + plugin.limits.timeout;
        let (mut store, mut instance, served, born) = match warm {
            Some(w) => {
                let mut store = w.store;
                store.data_mut().rearm(grant, deadline);
                store.set_epoch_deadline(1);
                (store, Some(w.instance), w.calls, w.born)
            }
            None => (self.store(plugin, grant, deadline), None, 0, start),
        };
        let fuel_budget = if self.config.fuel {
            let budget = plugin.limits.fuel.unwrap_or(u64::MAX);
            // Fuel is enabled on this engine, so setting it cannot fail.
            let _ = store.set_fuel(budget);
            Some(budget)
        } else {
            None
        };
        let outcome = match (instance.take(), pre) {
            (Some(warm), _) => {
                let outcome = f(&mut store, &warm);
                instance = Some(warm);
                outcome
            }
            (None, Some(pre)) => pre.instantiate(&mut store).and_then(|fresh| {
                let outcome = f(&mut store, &fresh);
                instance = Some(fresh);
                outcome
            }),
            // `pre` is only missing when a warm instance was taken.
            (None, None) => Err(wasmtime::Error::msg("no instance to call")),
        };
        // 7. Bookkeeping, in one place.
        let state = store.data();
        let usage = Usage {
            wall: start.elapsed(),
            fuel: fuel_budget.map(|b| b - store.get_fuel().unwrap_or(0)),
            peak_memory: state.limiter.peak,
            host_calls: state.call.host_calls,
            denied_host_calls: state.call.denied,
            failed_host_calls: state.call.failed,
            bytes_in: state.call.bytes_in,
            bytes_out: state.call.bytes_out,
        };
        let result = match outcome {
            Ok(Ok(value)) => {
                if output_size(&value) > plugin.limits.output {
                    Err(CallError::Violation(SandboxViolation::Output {
                        what: "result",
                        limit: plugin.limits.output,
                    }))
                } else {
                    Ok(value)
                }
            }
            Ok(Err(message)) => {
                if message.len() as u64 > plugin.limits.output {
                    Err(CallError::Violation(SandboxViolation::Output {
                        what: "error message",
                        limit: plugin.limits.output,
                    }))
                } else {
                    Err(CallError::Plugin(message))
                }
            }
            Err(e) => Err(classify(e, state, plugin, fuel_budget)),
        };
        // A warm instance goes back to its pool only after a call that ended
        // well or with the plugin's own error: never after a trap, a
        // violation or a timeout.
        if let (Reuse::Warm { .. }, Some(instance), Ok(_) | Err(CallError::Plugin(_))) =
            (reuse, instance, &result)
        {
            let warm = Warm {
                store,
                instance,
                linked,
                calls: served + 1,
                born,
            };
            plugin.warm.give(warm, reuse, start + usage.wall);
        } else {
            drop(store);
        }
        if let Err(CallError::Violation(v)) = &result {
            self.audit_event(
                installation,
                id,
                AuditAction::SandboxViolation {
                    violation: v.kind().into(),
                    detail: v.to_string(),
                },
            );
        }
        for spike in spikes(&usage, &plugin.limits) {
            self.audit_event(installation, id, spike);
        }
        if !matches!(result, Err(CallError::AtCapacity)) {
            let failed = matches!(result, Err(CallError::Violation(_) | CallError::Plugin(_)));
            plugin.totals.add(&usage, failed);
        }
        let message;
        let health = match &result {
            Ok(_) => Outcome::Success,
            Err(CallError::Violation(v)) => {
                message = v.to_string();
                Outcome::Failure(&message)
            }
            // An error the handler returned after the platform refused or
            // failed one of its host calls is the platform's doing.
            Err(CallError::Plugin(m))
                if usage.denied_host_calls == 0 && usage.failed_host_calls == 0 =>
            {
                Outcome::Failure(m)
            }
            Err(_) => Outcome::Neutral,
        };
        self.judge(plugin, &mode, admission.as_ref(), health);
        Call { result, usage }
    }

    /// Records a call's outcome for the plugin's health, as its mode says;
    /// a breaker that tripped once too often disables the plugin's grant.
    fn judge(
        &self,
        plugin: &Installed,
        mode: &Mode,
        admission: Option<&Admission>,
        outcome: Outcome<'_>,
    ) {
        let (installation, id) = (&plugin.installation, &plugin.plugin);
        let change = match mode {
            Mode::Live if admission.is_some_and(|a| !a.must_record(outcome)) => None,
            Mode::Live => self.health.record(installation, id, outcome),
            Mode::Probe => self.health.record_probe(installation, id, outcome),
            Mode::Candidate(_) => None,
        };
        if let Some(change) = change
            && change.to == HealthStatus::Disabled
        {
            let why = format!("disabled by its circuit breaker: {}", change.reason);
            if let Err(e) = self.permissions.set_enabled(installation, id, false, &why) {
                tracing::error!(installation = %installation, plugin = %id, error = %e, "could not disable a plugin that tripped too often");
            }
        }
    }

    /// The instance template for the interfaces `grant` links.
    fn pre_for(
        &self,
        plugin: &Installed,
        grant: &CurrentGrant,
    ) -> Result<PluginPre<HostState>, Refusal> {
        if grant.interfaces == plugin.linked {
            return Ok(plugin.pre.clone());
        }
        match missing_import(self, &plugin.plugin, &plugin.component, grant.interfaces) {
            Err(e) => return Err(Refusal::Host(e.to_string())),
            Ok(Some((import, interface))) => {
                return Err(Refusal::Denied(DenyReason::MissingCapability {
                    import,
                    capability: interface.permission().to_owned(),
                }));
            }
            Ok(None) => {}
        }
        self.pre(plugin.component_hash, &plugin.component, grant.interfaces)
            .map_err(|e| Refusal::Host(e.to_string()))
    }

    fn store(
        &self,
        plugin: &Installed,
        grant: Arc<CurrentGrant>,
        deadline: Instant,
    ) -> Store<HostState> {
        let limits = &plugin.limits;
        // Deny by default: no args, no env, no preopened folders, no sockets;
        // stdout and stderr are counted together and bounded.
        let output_pipe = Captured::new(limits.output);
        let wasi = WasiCtx::builder()
            .stdout(output_pipe.clone())
            .stderr(output_pipe.clone())
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(10_000);
        let state = HostState {
            wasi,
            output: output_pipe,
            table,
            limiter: Limiter {
                max_memory: limits.memory,
                max_table_elements: limits.table_elements,
                max_instances: limits.instances as usize,
                ..Limiter::default()
            },
            call: CallCtx {
                plugin: plugin.plugin.clone(),
                installation: plugin.installation.clone(),
                grant,
                shared: Arc::clone(&self.shared),
                limits: limits.clone(),
                storage: plugin.storage.clone(),
                deadline,
                host_calls: 0,
                denied: 0,
                failed: 0,
                bytes_in: 0,
                bytes_out: 0,
                logged: 0,
                stopped: None,
            },
        };
        let mut store = Store::new(self.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // The ticks only interrupt; the deadline is the monotonic clock's.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().call.deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        store
    }
}

/// Why a call could not be prepared.
enum Refusal {
    Denied(DenyReason),
    Host(String),
}

/// At most [`MAX_RECORDED_PATH`] characters of a caller-supplied string.
fn truncate(s: &str) -> String {
    s.chars().take(MAX_RECORDED_PATH).collect()
}

/// What a trapped or failed call broke.
fn classify(
    e: wasmtime::Error,
    state: &HostState,
    plugin: &Installed,
    fuel: Option<u64>,
) -> CallError {
    if let Some(Stop(v)) = e.downcast_ref::<Stop>() {
        return CallError::Violation(v.clone());
    }
    if let Some(v) = state
        .call
        .stopped
        .clone()
        .or_else(|| state.limiter.denied.clone())
    {
        return CallError::Violation(v);
    }
    // A guest whose stdout or stderr filled up usually panics on the
    // failed write; the full pipe is the cause, not the panic.
    if state.output.overflowed() {
        return CallError::Violation(SandboxViolation::Output {
            what: "stdout or stderr",
            limit: plugin.limits.output,
        });
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return CallError::AtCapacity;
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return CallError::Violation(match *trap {
            Trap::Interrupt => SandboxViolation::Timeout {
                limit: plugin.limits.timeout,
            },
            Trap::OutOfFuel => SandboxViolation::Fuel {
                budget: fuel.unwrap_or(0),
            },
            Trap::StackOverflow => SandboxViolation::Stack,
            other => SandboxViolation::Trap(other.to_string()),
        });
    }
    let message = format!("{e:#}");
    // The two limits wasmtime reports only as messages; each has a test.
    if message.contains("resource limit exceeded") {
        return CallError::Violation(SandboxViolation::Resources(message));
    }
    if message.contains("memory minimum size") {
        return CallError::Violation(SandboxViolation::Memory {
            requested: 0,
            limit: plugin.limits.memory,
        });
    }
    CallError::Violation(SandboxViolation::Trap(message))
}
