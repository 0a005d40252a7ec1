//! Plugin health: a circuit breaker per plugin, alerts on every change, and a
//! fallback so that a failing plugin degrades one feature, not the request.
//!
//! ```text
//!            failures >= threshold within window
//!   Closed ─────────────────────────────────────▶ Open
//!     ▲                                             │ open_for elapsed
//!     │ probe_successes successes                   ▼
//!     └──────────────────────────────────────── HalfOpen ──▶ Open (any failure)
//! ```
//!
//! While open, calls are refused without running the plugin and the caller
//! gets its fallback. After the cool-down a limited number of probe calls go
//! through; enough successes close the circuit, one failure opens it again.
//! A host may also [`probe`](HealthMonitor::probe) actively with a
//! [`HealthProbe`] (the sandbox calls the plugin's health export).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::audit::{AuditAction, AuditEvent, AuditSink, NoAudit};
use crate::decision::{Decision, DenyReason};
use crate::{Clock, PluginId, SystemClock, Timestamp};

/// A plugin's health as shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// No recent failure.
    Healthy,
    /// Recent failures, or probing after an outage; calls go through.
    Degraded,
    /// The circuit is open; calls are refused until the cool-down ends.
    Unhealthy,
    /// Turned off by the host; calls are refused until it is enabled.
    Disabled,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Disabled => "disabled",
        })
    }
}

/// When a circuit opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `window` that open the circuit.
    pub failure_threshold: u32,
    /// The sliding window failures are counted in.
    pub window: Duration,
    /// How long the circuit stays open before probing.
    pub open_for: Duration,
    /// Calls let through at once while half-open.
    pub probe_calls: u32,
    /// Successes in half-open state that close the circuit.
    pub probe_successes: u32,
}

impl Default for BreakerConfig {
    /// Five failures in a minute open the circuit for 30 seconds; one probe
    /// at a time, one success closes it.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
            probe_calls: 1,
            probe_successes: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Closed { failures: VecDeque<Timestamp> },
    Open { until: Timestamp },
    HalfOpen { in_flight: u32, successes: u32 },
    Disabled,
}

/// One plugin's circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

/// A change of health, reported to [`HealthAlert`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// Status before.
    pub from: HealthStatus,
    /// Status after.
    pub to: HealthStatus,
    /// Why, for a person.
    pub reason: String,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                probe_calls: config.probe_calls.max(1),
                probe_successes: config.probe_successes.max(1),
                ..config
            },
            state: Mutex::new(State::Closed {
                failures: VecDeque::new(),
            }),
        }
    }

    fn status_of(state: &State) -> HealthStatus {
        match state {
            State::Closed { failures } if failures.is_empty() => HealthStatus::Healthy,
            State::Closed { .. } | State::HalfOpen { .. } => HealthStatus::Degraded,
            State::Open { .. } => HealthStatus::Unhealthy,
            State::Disabled => HealthStatus::Disabled,
        }
    }

    /// The current status.
    pub fn status(&self, now: Timestamp) -> HealthStatus {
        let mut state = self.state.lock();
        Self::expire(&mut state, now, self.config.window);
        Self::status_of(&state)
    }

    fn expire(state: &mut State, now: Timestamp, window: Duration) {
        if let State::Closed { failures } = state {
            let horizon = now.minus(window);
            while failures.front().is_some_and(|t| *t <= horizon) {
                failures.pop_front();
            }
        }
    }

    fn transition(state: &mut State, next: State, reason: String) -> Option<HealthChange> {
        let from = Self::status_of(state);
        *state = next;
        let to = Self::status_of(state);
        (from != to).then_some(HealthChange { from, to, reason })
    }

    /// Asks to make a call now. `Allow` must be followed by
    /// [`on_success`](Self::on_success) or [`on_failure`](Self::on_failure).
    pub fn try_acquire(&self, now: Timestamp) -> (Decision, Option<HealthChange>) {
        let mut state = self.state.lock();
        let mut change = None;
        if let State::Open { until } = *state
            && now >= until
        {
            change = Self::transition(
                &mut state,
                State::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
                "cool-down over: probing".into(),
            );
        }
        let decision = match &mut *state {
            State::Closed { .. } => Decision::Allow,
            State::HalfOpen { in_flight, .. } if *in_flight < self.config.probe_calls => {
                *in_flight += 1;
                Decision::Allow
            }
            State::HalfOpen { .. } | State::Open { .. } => Decision::Deny {
                reason: DenyReason::CircuitOpen,
            },
            State::Disabled => Decision::Deny {
                reason: DenyReason::Disabled,
            },
        };
        (decision, change)
    }

    /// Records a successful call.
    pub fn on_success(&self, now: Timestamp) -> Option<HealthChange> {
        let mut state = self.state.lock();
        Self::expire(&mut state, now, self.config.window);
        match &mut *state {
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                *in_flight = in_flight.saturating_sub(1);
                *successes += 1;
                if *successes >= self.config.probe_successes {
                    return Self::transition(
                        &mut state,
                        State::Closed {
                            failures: VecDeque::new(),
                        },
                        "probe succeeded".into(),
                    );
                }
                None
            }
            _ => None,
        }
    }

    /// Records a failed call.
    pub fn on_failure(&self, now: Timestamp, error: &str) -> Option<HealthChange> {
        let mut state = self.state.lock();
        Self::expire(&mut state, now, self.config.window);
        let open = State::Open {
            until: now.plus(self.config.open_for),
        };
        match &mut *state {
            State::Closed { failures } => {
                failures.push_back(now);
                let count = failures.len();
                if count >= self.config.failure_threshold as usize {
                    return Self::transition(
                        &mut state,
                        open,
                        format!(
                            "{count} failures within {:?}; last: {error}",
                            self.config.window
                        ),
                    );
                }
                let reason = format!("failure: {error}");
                (count == 1).then_some(HealthChange {
                    from: HealthStatus::Healthy,
                    to: HealthStatus::Degraded,
                    reason,
                })
            }
            State::HalfOpen { .. } => {
                Self::transition(&mut state, open, format!("probe failed: {error}"))
            }
            State::Open { .. } | State::Disabled => None,
        }
    }

    /// Turns the plugin off (`false`) or back on, closed (`true`).
    pub fn set_enabled(&self, enabled: bool) -> Option<HealthChange> {
        let mut state = self.state.lock();
        match (enabled, &*state) {
            (false, State::Disabled) => None,
            (false, _) => {
                Self::transition(&mut state, State::Disabled, "disabled by the host".into())
            }
            (true, State::Disabled) => Self::transition(
                &mut state,
                State::Closed {
                    failures: VecDeque::new(),
                },
                "enabled by the host".into(),
            ),
            (true, _) => None,
        }
    }
}

/// Told of every health change; shaped like ripgrep's `Sink`, with
/// [`AlertFn`] to adapt a closure.
pub trait HealthAlert: fmt::Debug + Send + Sync {
    /// `plugin`'s health changed.
    fn on_change(&self, plugin: &PluginId, change: &HealthChange);
}

/// A [`HealthAlert`] from a closure.
pub struct AlertFn<F>(pub F);

impl<F> fmt::Debug for AlertFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlertFn")
    }
}

impl<F: Fn(&PluginId, &HealthChange) + Send + Sync> HealthAlert for AlertFn<F> {
    fn on_change(&self, plugin: &PluginId, change: &HealthChange) {
        (self.0)(plugin, change)
    }
}

/// An active health check of a plugin; the sandbox implements it by calling
/// the plugin's health export.
pub trait HealthProbe: fmt::Debug + Send + Sync {
    /// `Ok` if the plugin answers as healthy.
    fn probe(&self, plugin: &PluginId) -> Result<(), String>;
}

/// Why a [`HealthMonitor::call`] used its fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The circuit is open (or probing is at capacity); the plugin was not called.
    CircuitOpen,
    /// The plugin is disabled; it was not called.
    Disabled,
    /// The plugin was called and failed with this error.
    Failed(String),
}

/// The circuit breakers of every plugin, with alerts and audit.
#[derive(Debug)]
pub struct HealthMonitor {
    config: BreakerConfig,
    breakers: DashMap<PluginId, Arc<CircuitBreaker>>,
    alert: Option<Arc<dyn HealthAlert>>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
}

impl Default for HealthMonitor {
    fn default() -> Self {
        Self::new(BreakerConfig::default())
    }
}

impl HealthMonitor {
    /// A monitor with `config` for every plugin, no alert, no audit, on the system clock.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            breakers: DashMap::new(),
            alert: None,
            audit: Arc::new(NoAudit),
            clock: Arc::new(SystemClock),
        }
    }

    /// Tells `alert` of every change.
    pub fn with_alert(mut self, alert: Arc<dyn HealthAlert>) -> Self {
        self.alert = Some(alert);
        self
    }

    /// Records every change as `health_changed`.
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = audit;
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn breaker(&self, plugin: &PluginId) -> Arc<CircuitBreaker> {
        if let Some(b) = self.breakers.get(plugin) {
            return Arc::clone(&b);
        }
        Arc::clone(
            self.breakers
                .entry(plugin.clone())
                .or_insert_with(|| Arc::new(CircuitBreaker::new(self.config)))
                .value(),
        )
    }

    fn report(&self, plugin: &PluginId, change: Option<HealthChange>) {
        let Some(change) = change else { return };
        tracing::info!(plugin = %plugin, from = %change.from, to = %change.to, reason = %change.reason, "plugin health changed");
        if let Some(alert) = &self.alert {
            alert.on_change(plugin, &change);
        }
        let event = AuditEvent::now(AuditAction::HealthChanged {
            from: change.from.to_string(),
            to: change.to.to_string(),
            reason: change.reason,
        })
        .at(self.clock.now())
        .plugin(plugin);
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(error = %e, "audit sink failed to record a health change");
        }
    }

    /// The plugin's current status.
    pub fn status(&self, plugin: &PluginId) -> HealthStatus {
        self.breaker(plugin).status(self.clock.now())
    }

    /// Whether a call may be made now; an `Allow` must be followed by
    /// [`record_success`](Self::record_success) or [`record_failure`](Self::record_failure).
    pub fn allow(&self, plugin: &PluginId) -> Decision {
        let (decision, change) = self.breaker(plugin).try_acquire(self.clock.now());
        self.report(plugin, change);
        decision
    }

    /// Records a successful call.
    pub fn record_success(&self, plugin: &PluginId) {
        let change = self.breaker(plugin).on_success(self.clock.now());
        self.report(plugin, change);
    }

    /// Records a failed call.
    pub fn record_failure(&self, plugin: &PluginId, error: &str) {
        let change = self.breaker(plugin).on_failure(self.clock.now(), error);
        self.report(plugin, change);
    }

    /// Disables or re-enables a plugin.
    pub fn set_enabled(&self, plugin: &PluginId, enabled: bool) {
        let change = self.breaker(plugin).set_enabled(enabled);
        self.report(plugin, change);
    }

    /// Runs `f` through the plugin's breaker: if the circuit refuses the call
    /// or `f` fails, returns `fallback(why)` instead, so the host serves the
    /// rest of the request.
    pub fn call<T, E: fmt::Display>(
        &self,
        plugin: &PluginId,
        f: impl FnOnce() -> Result<T, E>,
        fallback: impl FnOnce(Fallback) -> T,
    ) -> T {
        match self.allow(plugin) {
            Decision::Allow => match f() {
                Ok(v) => {
                    self.record_success(plugin);
                    v
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.record_failure(plugin, &msg);
                    fallback(Fallback::Failed(msg))
                }
            },
            Decision::Deny {
                reason: DenyReason::Disabled,
            } => fallback(Fallback::Disabled),
            Decision::Deny { .. } => fallback(Fallback::CircuitOpen),
        }
    }

    /// Probes the plugin actively if its circuit lets a call through now, and
    /// records the outcome. Returns the status afterwards.
    pub fn probe(&self, plugin: &PluginId, probe: &dyn HealthProbe) -> HealthStatus {
        if self.allow(plugin).is_allowed() {
            match probe.probe(plugin) {
                Ok(()) => self.record_success(plugin),
                Err(e) => self.record_failure(plugin, &e),
            }
        }
        self.status(plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAudit;
    use crate::time::ManualClock;

    type Seen = Arc<Mutex<Vec<(HealthStatus, HealthStatus)>>>;

    fn monitor() -> (HealthMonitor, ManualClock, Seen) {
        let clock = ManualClock::new(Timestamp(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let m = HealthMonitor::new(BreakerConfig {
            failure_threshold: 3,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            probe_calls: 1,
            probe_successes: 1,
        })
        .with_clock(Arc::new(clock.clone()))
        .with_alert(Arc::new(AlertFn(move |_: &PluginId, c: &HealthChange| {
            s.lock().push((c.from, c.to))
        })));
        (m, clock, seen)
    }

    fn fail(m: &HealthMonitor, p: &PluginId) -> String {
        m.call(
            p,
            || Err::<String, _>("boom"),
            |why| format!("fallback: {why:?}"),
        )
    }

    #[test]
    fn opens_after_repeated_failures_and_probes_back() {
        let (m, clock, seen) = monitor();
        let p = PluginId::new("flaky");
        for _ in 0..3 {
            assert!(fail(&m, &p).starts_with("fallback: Failed"));
        }
        assert_eq!(m.status(&p), HealthStatus::Unhealthy);
        // Open: the plugin is not even called.
        let mut called = false;
        let out = m.call(
            &p,
            || {
                called = true;
                Ok::<_, String>("real")
            },
            |_| "fallback",
        );
        assert_eq!((out, called), ("fallback", false));
        clock.advance(Duration::from_secs(30));
        // Half-open: one probe goes through, and its failure reopens the circuit.
        assert!(fail(&m, &p).contains("Failed"));
        assert_eq!(m.status(&p), HealthStatus::Unhealthy);
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            m.call(&p, || Ok::<_, String>("real"), |_| "fallback"),
            "real"
        );
        assert_eq!(m.status(&p), HealthStatus::Healthy);
        use HealthStatus::*;
        assert_eq!(
            *seen.lock(),
            [
                (Healthy, Degraded),
                (Degraded, Unhealthy),
                (Unhealthy, Degraded),
                (Degraded, Unhealthy),
                (Unhealthy, Degraded),
                (Degraded, Healthy)
            ]
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let (m, clock, _) = monitor();
        let p = PluginId::new("slow-burn");
        for _ in 0..10 {
            fail(&m, &p);
            clock.advance(Duration::from_secs(6));
        }
        assert_ne!(m.status(&p), HealthStatus::Unhealthy);
        clock.advance(Duration::from_secs(10));
        assert_eq!(m.status(&p), HealthStatus::Healthy);
    }

    #[test]
    fn disabled_plugins_use_the_fallback_and_one_plugin_does_not_affect_another() {
        let audit = Arc::new(MemoryAudit::new());
        let m = HealthMonitor::default().with_audit(audit.clone());
        let (a, b) = (PluginId::new("a"), PluginId::new("b"));
        m.set_enabled(&a, false);
        assert_eq!(
            m.call(
                &a,
                || Ok::<_, String>(1),
                |f| if f == Fallback::Disabled { 0 } else { -1 }
            ),
            0
        );
        assert_eq!(m.call(&b, || Ok::<_, String>(1), |_| 0), 1);
        m.set_enabled(&a, true);
        assert_eq!(m.status(&a), HealthStatus::Healthy);
        assert_eq!(audit.len(), 2);
    }

    #[derive(Debug)]
    struct Probe(bool);
    impl HealthProbe for Probe {
        fn probe(&self, _: &PluginId) -> Result<(), String> {
            if self.0 {
                Ok(())
            } else {
                Err("no answer".into())
            }
        }
    }

    #[test]
    fn active_probes_feed_the_breaker() {
        let (m, clock, _) = monitor();
        let p = PluginId::new("probed");
        for _ in 0..3 {
            m.probe(&p, &Probe(false));
        }
        assert_eq!(m.status(&p), HealthStatus::Unhealthy);
        assert_eq!(m.probe(&p, &Probe(true)), HealthStatus::Unhealthy);
        clock.advance(Duration::from_secs(31));
        assert_eq!(m.probe(&p, &Probe(true)), HealthStatus::Healthy);
    }
}
