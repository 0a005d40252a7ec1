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

use std::future::Future;
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
use crate::host_async::{AsyncPlugin, AsyncPluginPre};
use crate::installed::Installed;
use crate::linking::missing_import;
use crate::output::Captured;
use crate::usage::{Usage, spikes};
use crate::warm::{Reservation, Warm, WarmPool};
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

/// One of the plugin's exports, as the pipeline calls it on either path.
pub(crate) trait Entry: Sync {
    /// What the export answers.
    type Out: Send;
    /// The call, as an audited refusal names it.
    fn describe(&self) -> String;
    /// The entry point's own rule (step 2).
    fn gate(&self, plugin: &Installed, grant: &CurrentGrant) -> Result<(), DenyReason>;
    /// Calls the export through the synchronous bindings.
    fn call(
        &self,
        store: &mut Store<HostState>,
        plugin: &Plugin,
    ) -> wasmtime::Result<Result<Self::Out, String>>;
    /// Calls the export through the asynchronous bindings.
    fn call_async<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
        plugin: &'a AsyncPlugin,
    ) -> impl Future<Output = wasmtime::Result<Result<Self::Out, String>>> + Send + 'a;
    /// Bytes of the answer, held to the output limit.
    fn output_size(_out: &Self::Out) -> u64 {
        0
    }
}

/// A hook event for `on-event`.
struct Event<'a> {
    name: &'a str,
    payload: &'a str,
}

impl Entry for Event<'_> {
    type Out = ();

    fn describe(&self) -> String {
        format!("event {}", truncate(self.name))
    }

    fn gate(&self, _: &Installed, grant: &CurrentGrant) -> Result<(), DenyReason> {
        if grant.scopes.can_subscribe(self.name) {
            Ok(())
        } else {
            Err(DenyReason::MissingScope {
                scope: format!("hooks:subscribe:{}", truncate(self.name)),
            })
        }
    }

    fn call(
        &self,
        store: &mut Store<HostState>,
        p: &Plugin,
    ) -> wasmtime::Result<Result<(), String>> {
        p.call_on_event(store, self.name, self.payload)
    }

    fn call_async<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
        p: &'a AsyncPlugin,
    ) -> impl Future<Output = wasmtime::Result<Result<(), String>>> + Send + 'a {
        p.call_on_event(store, self.name, self.payload)
    }
}

/// A request for `on-request`.
struct Endpoint<'a>(&'a Request);

impl Entry for Endpoint<'_> {
    type Out = Response;

    fn describe(&self) -> String {
        format!(
            "request {} {}",
            truncate(&self.0.method),
            truncate(&self.0.path)
        )
    }

    fn gate(&self, plugin: &Installed, _: &CurrentGrant) -> Result<(), DenyReason> {
        match plugin.manifest.route(&self.0.method, &self.0.path) {
            Some(_) => Ok(()),
            None => Err(DenyReason::UndeclaredRoute {
                method: truncate(&self.0.method),
                path: truncate(&self.0.path),
            }),
        }
    }

    fn call(
        &self,
        store: &mut Store<HostState>,
        p: &Plugin,
    ) -> wasmtime::Result<Result<Response, String>> {
        p.call_on_request(store, self.0)
    }

    fn call_async<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
        p: &'a AsyncPlugin,
    ) -> impl Future<Output = wasmtime::Result<Result<Response, String>>> + Send + 'a {
        p.call_on_request(store, self.0)
    }

    fn output_size(r: &Response) -> u64 {
        let headers = r.headers.iter().map(|(n, v)| (n.len() + v.len()) as u64);
        headers.sum::<u64>() + r.body.len() as u64
    }
}

/// A health probe for `health`.
struct Probe;

impl Entry for Probe {
    type Out = ();

    fn describe(&self) -> String {
        "health".into()
    }

    fn gate(&self, _: &Installed, _: &CurrentGrant) -> Result<(), DenyReason> {
        Ok(())
    }

    fn call(
        &self,
        store: &mut Store<HostState>,
        p: &Plugin,
    ) -> wasmtime::Result<Result<(), String>> {
        p.call_health(store)
    }

    fn call_async<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
        p: &'a AsyncPlugin,
    ) -> impl Future<Output = wasmtime::Result<Result<(), String>>> + Send + 'a {
        p.call_health(store)
    }
}

/// A call that the grant, its entry point and the breaker admitted
/// (steps 1 to 3): what its outcome is judged by.
struct Ticket {
    mode: Mode,
    admission: Option<Admission>,
    start: Instant,
}

/// A call's store, armed for this call (step 5).
struct Armed<I> {
    store: Store<HostState>,
    /// The instance that ran (a warm one, or the fresh one once made).
    instance: Option<I>,
    /// Calls the instance served before this one, and when it was made.
    served: u32,
    born: Instant,
    reservation: Option<Reservation>,
    fuel: Option<u64>,
}

/// An asynchronous call's ticket until the call is judged: a call whose
/// future is dropped (cancelled by the host) is judged neutral, so that a
/// half-open circuit's probe is never left taken.
struct Unjudged<'a> {
    sandbox: &'a Sandbox,
    plugin: &'a Installed,
    ticket: Option<Ticket>,
}

impl Drop for Unjudged<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            let admission = t.admission.as_ref();
            self.sandbox
                .judge(self.plugin, &t.mode, admission, Outcome::Neutral);
        }
    }
}

impl Sandbox {
    /// Delivers a hook event to a plugin's `on-event` export. The plugin's
    /// grant must subscribe to the event.
    pub fn call_event(&self, plugin: &Installed, name: &str, payload: &str) -> Call<()> {
        self.invoke(plugin, Mode::Live, &Event { name, payload })
    }

    /// Sends a request to one of the plugin's endpoints: a method and path
    /// that none of the manifest's `routes` declares is refused
    /// ([`DenyReason::UndeclaredRoute`]).
    pub fn call_request(&self, plugin: &Installed, request: &Request) -> Call<Response> {
        self.invoke(plugin, Mode::Live, &Endpoint(request))
    }

    /// Calls the plugin's health probe. An open circuit does not refuse it:
    /// a probe that succeeds closes the circuit, one that fails keeps it open.
    pub fn call_health(&self, plugin: &Installed) -> Call<()> {
        self.health_call(plugin, Mode::Probe)
    }

    pub(crate) fn health_call(&self, plugin: &Installed, mode: Mode) -> Call<()> {
        self.invoke(plugin, mode, &Probe)
    }

    /// [`call_event`](Self::call_event) for tokio hosts: the same pipeline,
    /// checks, limits and outcome, without blocking the runtime's worker.
    ///
    /// The guest runs on a fiber and yields to the runtime at every epoch
    /// tick ([`SandboxConfig::epoch_tick`](crate::SandboxConfig::epoch_tick)),
    /// so a long call shares its worker with other tasks; host calls that
    /// may wait (outbound HTTP, the plugin's folder, host services whose
    /// [`waits`](crate::HostServices::waits) is `true`) run on tokio's
    /// blocking threads, at most
    /// [`SandboxConfig::max_blocking`](crate::SandboxConfig::max_blocking)
    /// at once. Must be awaited inside a tokio runtime (either flavor): a
    /// host call that waits outside one fails the call with
    /// [`CallError::Violation`] naming the cause. Dropping the future
    /// cancels the call: its instance is dropped, nothing is recorded for
    /// its usage, and its health outcome is neutral.
    ///
    /// ```no_run
    /// # async fn run(sandbox: &vodo_sandbox::Sandbox, plugin: &vodo_sandbox::Installed) {
    /// let call = sandbox.call_event_async(plugin, "order.created", r#"{"id":1}"#).await;
    /// assert!(call.result.is_ok());
    /// # }
    /// ```
    pub async fn call_event_async(
        &self,
        plugin: &Installed,
        name: &str,
        payload: &str,
    ) -> Call<()> {
        self.invoke_async(plugin, Mode::Live, &Event { name, payload })
            .await
    }

    /// [`call_request`](Self::call_request) for tokio hosts, as
    /// [`call_event_async`](Self::call_event_async) runs it.
    pub async fn call_request_async(
        &self,
        plugin: &Installed,
        request: &Request,
    ) -> Call<Response> {
        self.invoke_async(plugin, Mode::Live, &Endpoint(request))
            .await
    }

    /// [`call_health`](Self::call_health) for tokio hosts, as
    /// [`call_event_async`](Self::call_event_async) runs it.
    pub async fn call_health_async(&self, plugin: &Installed) -> Call<()> {
        self.invoke_async(plugin, Mode::Probe, &Probe).await
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

    /// Steps 1 to 3: the grant as it is now, the entry point's rule and the
    /// breaker; a refusal is for [`refuse`](Self::refuse).
    fn admit<E: Entry>(
        &self,
        plugin: &Installed,
        mode: Mode,
        entry: &E,
    ) -> Result<(Ticket, Arc<CurrentGrant>), DenyReason> {
        let (installation, id) = (&plugin.installation, &plugin.plugin);
        let start = Instant::now();
        let grant = match &mode {
            Mode::Candidate(g) => Arc::clone(g),
            Mode::Live | Mode::Probe => {
                match self.permissions.current_at(installation, id, start) {
                    Err(e) => {
                        return Err(DenyReason::StoreUnavailable {
                            error: e.to_string(),
                        });
                    }
                    Ok(None) => return Err(DenyReason::NotInstalled),
                    Ok(Some(g)) if !g.enabled => return Err(DenyReason::Disabled),
                    Ok(Some(g)) => g,
                }
            }
        };
        entry.gate(plugin, &grant)?;
        let admission = match mode {
            Mode::Live => match self.health.admit(installation, id) {
                Admission::Refused(reason) => return Err(reason),
                admitted => Some(admitted),
            },
            Mode::Probe | Mode::Candidate(_) => None,
        };
        let ticket = Ticket {
            mode,
            admission,
            start,
        };
        Ok((ticket, grant))
    }

    /// A call whose instance could not be prepared (step 4): neutral for
    /// its health, refused or failed.
    fn unprepared<T>(
        &self,
        plugin: &Installed,
        ticket: &Ticket,
        refusal: Refusal,
        call: String,
    ) -> Call<T> {
        self.judge(
            plugin,
            &ticket.mode,
            ticket.admission.as_ref(),
            Outcome::Neutral,
        );
        match refusal {
            Refusal::Denied(reason) => self.refuse(plugin, call, reason),
            Refusal::Host(e) => Call {
                result: Err(CallError::Host(e)),
                usage: Usage::default(),
            },
        }
    }

    /// Step 5: a fresh store, or the warm instance's with this call's
    /// deadline, fuel and budgets and its counts at zero.
    fn arm<I>(
        &self,
        plugin: &Installed,
        ticket: &Ticket,
        grant: Arc<CurrentGrant>,
        warm: Option<Warm<I>>,
        yields: bool,
    ) -> Armed<I> {
        let deadline = ticket.start + plugin.limits.timeout;
        let (mut store, instance, served, born, reservation) = match warm {
            Some(w) => {
                let mut store = w.store;
                store.data_mut().rearm(grant, deadline);
                store.set_epoch_deadline(1);
                (store, Some(w.instance), w.calls, w.born, w.reservation)
            }
            None => (
                self.store(plugin, grant, deadline, yields),
                None,
                0,
                ticket.start,
                None,
            ),
        };
        let fuel = if self.config.fuel {
            let budget = plugin.limits.fuel.unwrap_or(u64::MAX);
            // Fuel is enabled on this engine, so setting it cannot fail.
            let _ = store.set_fuel(budget);
            Some(budget)
        } else {
            None
        };
        Armed {
            store,
            instance,
            served,
            born,
            reservation,
            fuel,
        }
    }

    /// The synchronous pipeline.
    fn invoke<E: Entry>(&self, plugin: &Installed, mode: Mode, entry: &E) -> Call<E::Out> {
        let (ticket, grant) = match self.admit(plugin, mode, entry) {
            Ok(admitted) => admitted,
            Err(reason) => return self.refuse(plugin, entry.describe(), reason),
        };
        // 4. A warm instance linked as the grant links now, if the plugin
        // reuses instances and one is idle; else the instance template for
        // those interfaces.
        let (reuse, linked) = (plugin.limits.reuse, grant.interfaces);
        let warm = plugin.warm.take(reuse, linked, ticket.start);
        let pre = match warm {
            Some(_) => None,
            None => match self.pre_for(plugin, &grant) {
                Ok(pre) => Some(pre),
                Err(r) => return self.unprepared(plugin, &ticket, r, entry.describe()),
            },
        };
        // 5. and 6. The store, and the guest.
        let mut armed = self.arm(plugin, &ticket, grant, warm, false);
        let outcome = match (armed.instance.take(), pre) {
            (Some(warm), _) => {
                let outcome = entry.call(&mut armed.store, &warm);
                armed.instance = Some(warm);
                outcome
            }
            (None, Some(pre)) => pre.instantiate(&mut armed.store).and_then(|fresh| {
                let outcome = entry.call(&mut armed.store, &fresh);
                armed.instance = Some(fresh);
                outcome
            }),
            // `pre` is only missing when a warm instance was taken.
            (None, None) => Err(wasmtime::Error::msg("no instance to call")),
        };
        self.finish::<E, _>(plugin, &ticket, armed, &plugin.warm, outcome)
    }

    /// The asynchronous pipeline: the synchronous one's steps, with the
    /// guest on a fiber that yields at every epoch tick.
    async fn invoke_async<E: Entry>(
        &self,
        plugin: &Installed,
        mode: Mode,
        entry: &E,
    ) -> Call<E::Out> {
        let (ticket, grant) = match self.admit(plugin, mode, entry) {
            Ok(admitted) => admitted,
            Err(reason) => return self.refuse(plugin, entry.describe(), reason),
        };
        let mut pending = Unjudged {
            sandbox: self,
            plugin,
            ticket: Some(ticket),
        };
        let Some(ticket) = pending.ticket.as_ref() else {
            return Call::refused(DenyReason::NotInstalled);
        };
        let (reuse, linked) = (plugin.limits.reuse, grant.interfaces);
        let warm = plugin.warm_async.take(reuse, linked, ticket.start);
        let pre = match warm {
            Some(_) => None,
            None => match self.pre_for_async(plugin, &grant) {
                Ok(pre) => Some(pre),
                Err(r) => {
                    let call = self.unprepared(plugin, ticket, r, entry.describe());
                    pending.ticket = None;
                    return call;
                }
            },
        };
        let mut armed = self.arm(plugin, ticket, grant, warm, true);
        let outcome = match (armed.instance.take(), pre) {
            (Some(warm), _) => {
                let outcome = entry.call_async(&mut armed.store, &warm).await;
                armed.instance = Some(warm);
                outcome
            }
            (None, Some(pre)) => match pre.instantiate_async(&mut armed.store).await {
                Ok(fresh) => {
                    let outcome = entry.call_async(&mut armed.store, &fresh).await;
                    armed.instance = Some(fresh);
                    outcome
                }
                Err(e) => Err(e),
            },
            (None, None) => Err(wasmtime::Error::msg("no instance to call")),
        };
        let Some(ticket) = pending.ticket.take() else {
            return Call::refused(DenyReason::NotInstalled);
        };
        self.finish::<E, _>(plugin, &ticket, armed, &plugin.warm_async, outcome)
    }

    /// Step 7: bookkeeping, in one place.
    fn finish<E: Entry, I>(
        &self,
        plugin: &Installed,
        ticket: &Ticket,
        armed: Armed<I>,
        pool: &WarmPool<I>,
        outcome: wasmtime::Result<Result<E::Out, String>>,
    ) -> Call<E::Out> {
        let (installation, id) = (&plugin.installation, &plugin.plugin);
        let Armed {
            store,
            instance,
            served,
            born,
            reservation,
            fuel,
        } = armed;
        let state = store.data();
        let usage = Usage {
            wall: ticket.start.elapsed(),
            fuel: fuel.map(|b| b - store.get_fuel().unwrap_or(0)),
            peak_memory: state.limiter.peak,
            host_calls: state.call.host_calls,
            denied_host_calls: state.call.denied,
            failed_host_calls: state.call.failed,
            bytes_in: state.call.bytes_in,
            bytes_out: state.call.bytes_out,
        };
        let result = match outcome {
            Ok(Ok(value)) => {
                if E::output_size(&value) > plugin.limits.output {
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
            Err(e) => Err(classify(e, state, plugin, fuel)),
        };
        // A warm instance goes back to its pool only after a call that ended
        // well or with the plugin's own error: never after a trap, a
        // violation or a timeout.
        let reuse = plugin.limits.reuse;
        if let (Reuse::Warm { .. }, Some(instance), Ok(_) | Err(CallError::Plugin(_))) =
            (reuse, instance, &result)
        {
            let linked = store.data().call.grant.interfaces;
            let warm = Warm {
                store,
                instance,
                linked,
                calls: served + 1,
                born,
                reservation,
            };
            pool.give(warm, reuse, ticket.start + usage.wall);
        } else {
            drop(store);
            drop(reservation);
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
            plugin.totals.add(&usage, failed, ticket.start + usage.wall);
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
        self.judge(plugin, &ticket.mode, ticket.admission.as_ref(), health);
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
        self.check_linkable(plugin, grant)?;
        self.pre(plugin.component_hash, &plugin.component, grant.interfaces)
            .map_err(|e| Refusal::Host(e.to_string()))
    }

    /// The asynchronous instance template for the interfaces `grant` links.
    fn pre_for_async(
        &self,
        plugin: &Installed,
        grant: &CurrentGrant,
    ) -> Result<AsyncPluginPre<HostState>, Refusal> {
        if grant.interfaces != plugin.linked {
            self.check_linkable(plugin, grant)?;
        }
        self.pre_async(plugin.component_hash, &plugin.component, grant.interfaces)
            .map_err(|e| Refusal::Host(e.to_string()))
    }

    /// Refuses a grant that no longer covers one of the plugin's imports.
    fn check_linkable(&self, plugin: &Installed, grant: &CurrentGrant) -> Result<(), Refusal> {
        match missing_import(self, &plugin.plugin, &plugin.component, grant.interfaces) {
            Err(e) => Err(Refusal::Host(e.to_string())),
            Ok(Some((import, interface))) => Err(Refusal::Denied(DenyReason::MissingCapability {
                import,
                capability: interface.permission().to_owned(),
            })),
            Ok(None) => Ok(()),
        }
    }

    /// A fresh store for one call; `yields` makes the guest yield to the
    /// async runtime at every epoch tick (asynchronous calls only).
    fn store(
        &self,
        plugin: &Installed,
        grant: Arc<CurrentGrant>,
        deadline: Instant,
        yields: bool,
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
                rate_key: None,
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
        store.epoch_deadline_callback(move |ctx| {
            Ok(if Instant::now() >= ctx.data().call.deadline {
                UpdateDeadline::Interrupt
            } else if yields {
                UpdateDeadline::Yield(1)
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
