//! Plugin health: a circuit breaker per plugin **per installation**, health
//! probes that close it, automatic disabling after repeated trips, alerts on
//! every change, and a fallback so that a failing plugin degrades one
//! feature, not the request.
//!
//! ```text
//!            failures >= threshold within window
//!   Closed ─────────────────────────────────────▶ Open ◀──── probe fails
//!     ▲                                             │ open_for elapsed
//!     │ probe_successes successes                   ▼
//!     └──────────────────────────────────────── HalfOpen ──▶ Open (any failure)
//! ```
//!
//! While open, calls are refused without running the plugin and the caller
//! gets its fallback. After the cool-down a limited number of calls go
//! through; enough successes close the circuit, one failure opens it again.
//! A **health probe** is never refused by an open circuit: it is how an open
//! circuit closes early. Each move to open is a *trip*; after
//! [`AutoDisable::trips`] trips within [`AutoDisable::within`] the change
//! reported is to [`HealthStatus::Disabled`], and the runtime disables the
//! plugin's grant (the one enabled flag) until a person re-enables it.
//!
//! Breakers are keyed by (installation, plugin): one tenant's traffic can
//! never open the circuit of the same plugin in another tenant. Only faults
//! of the plugin's own code are failures ([`Outcome::Failure`]); what the
//! platform decided (a denied host call, the host at capacity, a host
//! service down) is [`Outcome::Neutral`] and counts for nothing.
//!
//! [`HealthTracker`] is the trait the runtime uses, with [`NoHealth`] (no
//! breakers) and [`HealthMonitor`] (in memory, the reference) beside it;
//! shared backends implement it and pass `conformance::health_tracker`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hashbrown::HashMap;
use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::audit::{AuditAction, AuditEvent, AuditSink, AuditSinkExt, NoAudit};
use crate::decision::DenyReason;
use crate::ids::{PairKey, PairRef};
use crate::{Clock, Error, InstallationId, PluginId, Result, SystemClock, Timestamp};

/// A plugin's health as shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// No recent failure.
    Healthy,
    /// Recent failures, or probing after an outage; calls go through.
    Degraded,
    /// The circuit is open; calls are refused until the cool-down ends or a
    /// health probe succeeds.
    Unhealthy,
    /// Turned off: by a person, or automatically after repeated trips. Calls
    /// are refused until it is enabled again.
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

/// When a circuit trips too often, the plugin is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoDisable {
    /// Trips (moves to open) that disable the plugin.
    pub trips: u32,
    /// The sliding window they are counted in.
    pub within: Duration,
}

/// When a circuit opens, how it recovers, and when the plugin is disabled.
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
    /// Successes in half-open state (calls or probes) that close the circuit.
    pub probe_successes: u32,
    /// Disable the plugin after repeated trips; `None` never does.
    pub auto_disable: Option<AutoDisable>,
}

impl Default for BreakerConfig {
    /// Five failures in a minute open the circuit for 30 seconds; one call
    /// at a time while half-open, one success closes it; five trips within
    /// an hour disable the plugin.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
            probe_calls: 1,
            probe_successes: 1,
            auto_disable: Some(AutoDisable {
                trips: 5,
                within: Duration::from_secs(3600),
            }),
        }
    }
}

impl BreakerConfig {
    /// Refuses settings that cannot work, naming them; nothing is corrected silently.
    pub fn validate(&self) -> Result<()> {
        let zero = |name: &str, why: &str| {
            Err(Error::Invalid(format!(
                "`BreakerConfig::{name}` is zero: {why}"
            )))
        };
        if self.failure_threshold == 0 {
            return zero(
                "failure_threshold",
                "set at least 1 failure to open the circuit",
            );
        }
        if self.window.is_zero() {
            return zero(
                "window",
                "failures must be counted over some time, such as 60 s",
            );
        }
        if self.open_for.is_zero() {
            return zero(
                "open_for",
                "an open circuit must stay open for some time, such as 30 s",
            );
        }
        if self.probe_calls == 0 {
            return zero(
                "probe_calls",
                "a half-open circuit must let at least 1 call through",
            );
        }
        if self.probe_successes == 0 {
            return zero("probe_successes", "closing must take at least 1 success");
        }
        if let Some(a) = self.auto_disable {
            if a.trips == 0 {
                return zero(
                    "auto_disable.trips",
                    "set at least 1 trip, or `auto_disable: None`",
                );
            }
            if a.within.is_zero() {
                return zero(
                    "auto_disable.within",
                    "trips must be counted over some time, such as 1 h",
                );
            }
        }
        Ok(())
    }
}

/// What a call of a plugin did, for its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// It succeeded.
    Success,
    /// The plugin's own code failed: a trap, a timeout, a broken limit, an
    /// error returned by its handler. The message says what.
    Failure(&'a str),
    /// The call says nothing about the plugin: the platform refused a host
    /// call, the host was at capacity, a host service was down.
    Neutral,
}

/// A change of health, reported to [`HealthAlert`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// Status before.
    pub from: HealthStatus,
    /// Status after. [`HealthStatus::Disabled`] asks the runtime to disable
    /// the plugin (it tripped too often).
    pub to: HealthStatus,
    /// Why, for a person.
    pub reason: String,
}

/// What [`HealthTracker::admit`] decided about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed and the call may run. Only a failure needs
    /// recording: a success or a neutral outcome changes nothing on a
    /// closed circuit.
    Closed,
    /// The circuit is half-open and this call is one of its probes: its
    /// outcome, whatever it is, must be recorded.
    Probing,
    /// The call must not run.
    Refused(DenyReason),
}

impl Admission {
    /// Whether the call may run.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Admission::Refused(_))
    }

    /// Whether `outcome` of a call admitted so must be recorded.
    pub fn must_record(&self, outcome: Outcome<'_>) -> bool {
        match self {
            Admission::Closed => matches!(outcome, Outcome::Failure(_)),
            Admission::Probing => true,
            Admission::Refused(_) => false,
        }
    }
}

/// One failure, as the health report keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentFailure {
    /// When.
    pub at: Timestamp,
    /// What went wrong.
    pub error: String,
}

/// What a health endpoint shows for one plugin in one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The breaker's status (the grant's enabled flag is not the tracker's:
    /// the runtime shows [`HealthStatus::Disabled`] for a disabled grant).
    pub status: HealthStatus,
    /// When an open circuit starts probing again.
    pub open_until: Option<Timestamp>,
    /// The last failures, newest last (at most [`RECENT_FAILURES`]).
    pub recent_failures: Vec<RecentFailure>,
    /// Trips within the auto-disable window.
    pub trips: u32,
}

/// How many failures a [`HealthReport`] keeps.
pub const RECENT_FAILURES: usize = 5;

/// Keeps the health of every (installation, plugin). Shaped like the other
/// host-facing traits: `Debug + Send + Sync`, `&self`, object safe.
///
/// ```
/// use vodo_core::health::{BreakerConfig, HealthMonitor, HealthStatus, HealthTracker, Outcome};
/// use vodo_core::{InstallationId, PluginId};
///
/// let config = BreakerConfig { failure_threshold: 2, ..BreakerConfig::default() };
/// let health: Box<dyn HealthTracker> = Box::new(HealthMonitor::new(config)?);
/// let (shop, plugin) = (InstallationId::new("shop-1"), PluginId::new("notifier"));
/// assert!(health.admit(&shop, &plugin).is_allowed());
/// health.record(&shop, &plugin, Outcome::Failure("timed out"));
/// health.record(&shop, &plugin, Outcome::Failure("timed out"));
/// // Two failures in the window open the circuit: calls are refused.
/// assert!(!health.admit(&shop, &plugin).is_allowed());
/// let report = health.report(&shop, &plugin);
/// assert_eq!(report.status, HealthStatus::Unhealthy);
/// assert_eq!(report.recent_failures.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait HealthTracker: fmt::Debug + Send + Sync {
    /// Whether a call may run now. What the call then did must be
    /// [`record`](Self::record)ed when [`Admission::must_record`] says so
    /// (with [`Outcome::Neutral`] if the call did not run after all).
    fn admit(&self, installation: &InstallationId, plugin: &PluginId) -> Admission;

    /// Records what an admitted call did.
    fn record(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        outcome: Outcome<'_>,
    ) -> Option<HealthChange>;

    /// Records a health probe, which is never refused by an open circuit: a
    /// success counts toward closing it, a failure keeps it open.
    fn record_probe(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        outcome: Outcome<'_>,
    ) -> Option<HealthChange>;

    /// The health of a plugin in an installation.
    fn report(&self, installation: &InstallationId, plugin: &PluginId) -> HealthReport;

    /// Forgets everything about a plugin in an installation (re-enabled by a
    /// person, or uninstalled): it starts closed, with no trips.
    fn reset(&self, installation: &InstallationId, plugin: &PluginId);
}

macro_rules! forward_tracker {
    ($($ty:ty),*) => {$(
        impl<T: HealthTracker + ?Sized> HealthTracker for $ty {
            fn admit(&self, i: &InstallationId, p: &PluginId) -> Admission { (**self).admit(i, p) }
            fn record(&self, i: &InstallationId, p: &PluginId, o: Outcome<'_>) -> Option<HealthChange> { (**self).record(i, p, o) }
            fn record_probe(&self, i: &InstallationId, p: &PluginId, o: Outcome<'_>) -> Option<HealthChange> { (**self).record_probe(i, p, o) }
            fn report(&self, i: &InstallationId, p: &PluginId) -> HealthReport { (**self).report(i, p) }
            fn reset(&self, i: &InstallationId, p: &PluginId) { (**self).reset(i, p) }
        }
    )*};
}
forward_tracker!(&T, Box<T>, Arc<T>);

/// A tracker without breakers: every call is admitted, nothing is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHealth;

impl HealthTracker for NoHealth {
    fn admit(&self, _: &InstallationId, _: &PluginId) -> Admission {
        Admission::Closed
    }
    fn record(&self, _: &InstallationId, _: &PluginId, _: Outcome<'_>) -> Option<HealthChange> {
        None
    }
    fn record_probe(
        &self,
        _: &InstallationId,
        _: &PluginId,
        _: Outcome<'_>,
    ) -> Option<HealthChange> {
        None
    }
    fn report(&self, _: &InstallationId, _: &PluginId) -> HealthReport {
        HealthReport {
            status: HealthStatus::Healthy,
            open_until: None,
            recent_failures: Vec::new(),
            trips: 0,
        }
    }
    fn reset(&self, _: &InstallationId, _: &PluginId) {}
}

/// Why a [`HealthTrackerExt::call`] used its fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The circuit is open (or probing is at capacity); the plugin was not called.
    CircuitOpen,
    /// The plugin was called and failed with this error.
    Failed(String),
}

/// Helpers every [`HealthTracker`] has.
///
/// ```
/// use vodo_core::health::{BreakerConfig, HealthMonitor, HealthTrackerExt};
/// use vodo_core::{InstallationId, PluginId};
///
/// let health = HealthMonitor::new(BreakerConfig::default())?;
/// let (shop, plugin) = (InstallationId::new("shop-1"), PluginId::new("notifier"));
/// // The host serves the rest of the page when the plugin fails.
/// let widget = health.call(&shop, &plugin, || Err::<String, _>("trap"), |_why| String::new());
/// assert_eq!(widget, "");
/// let widget = health.call(&shop, &plugin, || Ok::<_, String>("<p>3 orders</p>".to_owned()), |_| String::new());
/// assert_eq!(widget, "<p>3 orders</p>");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait HealthTrackerExt: HealthTracker {
    /// Runs `f` through the breaker of `plugin` in `installation`: if the
    /// circuit refuses the call or `f` fails, returns `fallback(why)`
    /// instead, so the host serves the rest of the request.
    fn call<T, E: fmt::Display>(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        f: impl FnOnce() -> Result<T, E>,
        fallback: impl FnOnce(Fallback) -> T,
    ) -> T {
        let admission = self.admit(installation, plugin);
        if !admission.is_allowed() {
            return fallback(Fallback::CircuitOpen);
        }
        match f() {
            Ok(v) => {
                if admission.must_record(Outcome::Success) {
                    self.record(installation, plugin, Outcome::Success);
                }
                v
            }
            Err(e) => {
                let msg = e.to_string();
                self.record(installation, plugin, Outcome::Failure(&msg));
                fallback(Fallback::Failed(msg))
            }
        }
    }
}

impl<T: HealthTracker + ?Sized> HealthTrackerExt for T {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Closed { failures: VecDeque<Timestamp> },
    Open { until: Timestamp },
    HalfOpen { in_flight: u32, successes: u32 },
}

/// One plugin's circuit breaker in one installation.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Breaker>,
    /// Whether `inner`'s state is `Closed`, as of its last unlock: the
    /// common case (a closed circuit admits) reads it without the lock.
    closed: AtomicBool,
}

/// The breaker's state, locked; `closed` is brought up to date on unlock.
struct Locked<'a> {
    guard: MutexGuard<'a, Breaker>,
    closed: &'a AtomicBool,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Breaker;
    fn deref(&self) -> &Breaker {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Breaker {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let closed = matches!(self.guard.state, State::Closed { .. });
        self.closed.store(closed, Ordering::Release);
    }
}

#[derive(Debug)]
struct Breaker {
    state: State,
    trips: VecDeque<Timestamp>,
    recent: VecDeque<RecentFailure>,
}

impl CircuitBreaker {
    /// A closed breaker; `config` must pass [`BreakerConfig::validate`].
    pub fn new(config: BreakerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::closed(config))
    }

    fn closed(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Breaker {
                state: State::Closed {
                    failures: VecDeque::new(),
                },
                trips: VecDeque::new(),
                recent: VecDeque::new(),
            }),
            closed: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> Locked<'_> {
        Locked {
            guard: self.inner.lock(),
            closed: &self.closed,
        }
    }

    fn status_of(state: &State) -> HealthStatus {
        match state {
            State::Closed { failures } if failures.is_empty() => HealthStatus::Healthy,
            State::Closed { .. } | State::HalfOpen { .. } => HealthStatus::Degraded,
            State::Open { .. } => HealthStatus::Unhealthy,
        }
    }

    fn expire(b: &mut Breaker, now: Timestamp, config: &BreakerConfig) {
        if let State::Closed { failures } = &mut b.state {
            while failures
                .front()
                .is_some_and(|t| now.since(*t) >= config.window)
            {
                failures.pop_front();
            }
        }
        if let Some(a) = config.auto_disable {
            while b.trips.front().is_some_and(|t| now.since(*t) >= a.within) {
                b.trips.pop_front();
            }
        }
    }

    /// The breaker's status now.
    pub fn status(&self, now: Timestamp) -> HealthStatus {
        let mut b = self.lock();
        Self::expire(&mut b, now, &self.config);
        Self::status_of(&b.state)
    }

    fn transition(b: &mut Breaker, next: State, reason: String) -> Option<HealthChange> {
        let from = Self::status_of(&b.state);
        b.state = next;
        let to = Self::status_of(&b.state);
        (from != to).then_some(HealthChange { from, to, reason })
    }

    /// Opens the circuit, counting a trip; the change is to `Disabled` when
    /// this trip is one too many.
    fn trip(&self, b: &mut Breaker, now: Timestamp, reason: String) -> Option<HealthChange> {
        let from = Self::status_of(&b.state);
        b.state = State::Open {
            until: now.plus(self.config.open_for),
        };
        b.trips.push_back(now);
        if let Some(a) = self.config.auto_disable
            && b.trips.len() >= a.trips as usize
        {
            return Some(HealthChange {
                from,
                to: HealthStatus::Disabled,
                reason: format!(
                    "{} trips within {:?}, the last after {reason}: disabled until a person enables it again",
                    b.trips.len(),
                    a.within
                ),
            });
        }
        (from != HealthStatus::Unhealthy).then_some(HealthChange {
            from,
            to: HealthStatus::Unhealthy,
            reason,
        })
    }

    fn remember(b: &mut Breaker, now: Timestamp, error: &str) {
        if b.recent.len() == RECENT_FAILURES {
            b.recent.pop_front();
        }
        b.recent.push_back(RecentFailure {
            at: now,
            error: error.chars().take(500).collect(),
        });
    }

    /// The common case without reading the clock: a closed circuit admits.
    fn admit_if_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Asks to make a call now; see [`Admission`] for what to record after.
    pub fn try_acquire(&self, now: Timestamp) -> (Admission, Option<HealthChange>) {
        let mut b = self.lock();
        let mut change = None;
        if let State::Open { until } = b.state
            && now >= until
        {
            change = Self::transition(
                &mut b,
                State::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
                "cool-down over: probing".into(),
            );
        }
        let admission = match &mut b.state {
            State::Closed { .. } => Admission::Closed,
            State::HalfOpen { in_flight, .. } if *in_flight < self.config.probe_calls => {
                *in_flight += 1;
                Admission::Probing
            }
            State::HalfOpen { .. } | State::Open { .. } => {
                Admission::Refused(DenyReason::CircuitOpen)
            }
        };
        (admission, change)
    }

    /// Records what an admitted call did.
    pub fn on(&self, now: Timestamp, outcome: Outcome<'_>) -> Option<HealthChange> {
        let mut b = self.lock();
        Self::expire(&mut b, now, &self.config);
        if let State::HalfOpen { in_flight, .. } = &mut b.state {
            *in_flight = in_flight.saturating_sub(1);
        }
        match outcome {
            Outcome::Neutral => None,
            // Only a probing call's success counts toward closing: one
            // admitted while closed, finishing after the circuit opened, does not.
            Outcome::Success if matches!(b.state, State::HalfOpen { .. }) => {
                self.succeeded(&mut b, "call succeeded")
            }
            Outcome::Success => None,
            Outcome::Failure(error) => {
                Self::remember(&mut b, now, error);
                match &mut b.state {
                    State::Closed { failures } => {
                        failures.push_back(now);
                        let count = failures.len();
                        if count >= self.config.failure_threshold as usize {
                            let reason = format!(
                                "{count} failures within {:?}; last: {error}",
                                self.config.window
                            );
                            return self.trip(&mut b, now, reason);
                        }
                        (count == 1).then(|| HealthChange {
                            from: HealthStatus::Healthy,
                            to: HealthStatus::Degraded,
                            reason: format!("failure: {error}"),
                        })
                    }
                    State::HalfOpen { .. } => {
                        self.trip(&mut b, now, format!("a call while probing failed: {error}"))
                    }
                    // A call admitted before the circuit opened, finishing late.
                    State::Open { .. } => None,
                }
            }
        }
    }

    /// A success while open or half-open counts toward closing the circuit.
    fn succeeded(&self, b: &mut Breaker, what: &str) -> Option<HealthChange> {
        let from = Self::status_of(&b.state);
        let (in_flight, successes) = match b.state {
            State::Closed { .. } => return None,
            State::Open { .. } => (0, 1),
            State::HalfOpen {
                in_flight,
                successes,
            } => (in_flight, successes + 1),
        };
        let closed = successes >= self.config.probe_successes;
        b.state = if closed {
            State::Closed {
                failures: VecDeque::new(),
            }
        } else {
            State::HalfOpen {
                in_flight,
                successes,
            }
        };
        let to = Self::status_of(&b.state);
        let reason = if closed {
            format!("{what}: circuit closed")
        } else {
            format!("{what}: probing")
        };
        (from != to).then_some(HealthChange { from, to, reason })
    }

    /// Records a health probe (never refused by an open circuit).
    pub fn on_probe(&self, now: Timestamp, outcome: Outcome<'_>) -> Option<HealthChange> {
        let mut b = self.lock();
        Self::expire(&mut b, now, &self.config);
        match (outcome, &b.state) {
            (Outcome::Neutral, _) => None,
            (Outcome::Success, _) => self.succeeded(&mut b, "health probe succeeded"),
            (Outcome::Failure(error), State::Open { .. }) => {
                // Already open: the probe keeps it so, for another cool-down, without a new trip.
                Self::remember(&mut b, now, error);
                b.state = State::Open {
                    until: now.plus(self.config.open_for),
                };
                None
            }
            (Outcome::Failure(_), _) => {
                drop(b);
                self.on(now, outcome)
            }
        }
    }

    /// What a health endpoint shows.
    pub fn report(&self, now: Timestamp) -> HealthReport {
        let mut b = self.lock();
        Self::expire(&mut b, now, &self.config);
        HealthReport {
            status: Self::status_of(&b.state),
            open_until: match b.state {
                State::Open { until } => Some(until),
                _ => None,
            },
            recent_failures: b.recent.iter().cloned().collect(),
            trips: u32::try_from(b.trips.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Told of every health change; shaped like ripgrep's `Sink`, with
/// [`AlertFn`] to adapt a closure.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use vodo_core::health::{AlertFn, BreakerConfig, HealthMonitor, HealthTracker, Outcome};
/// use vodo_core::{InstallationId, PluginId};
///
/// let changes = Arc::new(Mutex::new(Vec::new()));
/// let seen = Arc::clone(&changes);
/// let config = BreakerConfig { failure_threshold: 1, ..BreakerConfig::default() };
/// let health = HealthMonitor::new(config)?.with_alert(Arc::new(AlertFn(
///     move |_: &InstallationId, plugin: &PluginId, change: &_| {
///         seen.lock().unwrap().push(format!("{plugin}: {change:?}"));
///     },
/// )));
/// let (shop, plugin) = (InstallationId::new("shop-1"), PluginId::new("notifier"));
/// health.record(&shop, &plugin, Outcome::Failure("trap"));
/// assert_eq!(changes.lock().unwrap().len(), 1, "the circuit opened: told once");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait HealthAlert: fmt::Debug + Send + Sync {
    /// The health of `plugin` in `installation` changed.
    fn on_change(&self, installation: &InstallationId, plugin: &PluginId, change: &HealthChange);
}

/// A [`HealthAlert`] from a closure.
pub struct AlertFn<F>(pub F);

impl<F> fmt::Debug for AlertFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlertFn")
    }
}

impl<F: Fn(&InstallationId, &PluginId, &HealthChange) + Send + Sync> HealthAlert for AlertFn<F> {
    fn on_change(&self, installation: &InstallationId, plugin: &PluginId, change: &HealthChange) {
        (self.0)(installation, plugin, change)
    }
}

/// The in-memory reference [`HealthTracker`]: a [`CircuitBreaker`] per
/// (installation, plugin), with alerts and audit on every change.
#[derive(Debug)]
pub struct HealthMonitor {
    config: BreakerConfig,
    breakers: RwLock<HashMap<PairKey, Arc<CircuitBreaker>>>,
    alert: Option<Arc<dyn HealthAlert>>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
}

impl Default for HealthMonitor {
    /// [`BreakerConfig::default`], no alert, no audit, the system clock.
    fn default() -> Self {
        Self {
            config: BreakerConfig::default(),
            breakers: RwLock::new(HashMap::new()),
            alert: None,
            audit: Arc::new(NoAudit),
            clock: Arc::new(SystemClock),
        }
    }
}

impl HealthMonitor {
    /// A monitor with `config` for every plugin, no alert, no audit, on the
    /// system clock; `config` must pass [`BreakerConfig::validate`].
    pub fn new(config: BreakerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            ..Self::default()
        })
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

    /// The breakers' configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn breaker(&self, installation: &InstallationId, plugin: &PluginId) -> Arc<CircuitBreaker> {
        if let Some(b) = self.breakers.read().get(&PairRef::of(installation, plugin)) {
            return Arc::clone(b);
        }
        let mut breakers = self.breakers.write();
        let b = breakers
            .entry((installation.clone(), plugin.clone()))
            .or_insert_with(|| Arc::new(CircuitBreaker::closed(self.config)));
        Arc::clone(b)
    }

    fn report_change(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        change: Option<HealthChange>,
    ) -> Option<HealthChange> {
        let change = change?;
        tracing::info!(installation = %installation, plugin = %plugin, from = %change.from, to = %change.to, reason = %change.reason, "plugin health changed");
        if let Some(alert) = &self.alert {
            alert.on_change(installation, plugin, &change);
        }
        self.audit.record_or_log(
            &AuditEvent::now(AuditAction::HealthChanged {
                from: change.from.to_string(),
                to: change.to.to_string(),
                reason: change.reason.clone(),
            })
            .at(self.clock.now())
            .plugin(plugin)
            .installation(installation),
        );
        Some(change)
    }

    /// The number of (installation, plugin) pairs with a breaker.
    pub fn len(&self) -> usize {
        self.breakers.read().len()
    }

    /// Whether no breaker is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl HealthTracker for HealthMonitor {
    fn admit(&self, installation: &InstallationId, plugin: &PluginId) -> Admission {
        // A closed circuit, the common case: one map read and one load.
        if let Some(b) = self.breakers.read().get(&PairRef::of(installation, plugin))
            && b.admit_if_closed()
        {
            return Admission::Closed;
        }
        let breaker = self.breaker(installation, plugin);
        if breaker.admit_if_closed() {
            return Admission::Closed;
        }
        let (admission, change) = breaker.try_acquire(self.clock.now());
        self.report_change(installation, plugin, change);
        admission
    }

    fn record(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        outcome: Outcome<'_>,
    ) -> Option<HealthChange> {
        let change = self
            .breaker(installation, plugin)
            .on(self.clock.now(), outcome);
        self.report_change(installation, plugin, change)
    }

    fn record_probe(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        outcome: Outcome<'_>,
    ) -> Option<HealthChange> {
        let change = self
            .breaker(installation, plugin)
            .on_probe(self.clock.now(), outcome);
        self.report_change(installation, plugin, change)
    }

    fn report(&self, installation: &InstallationId, plugin: &PluginId) -> HealthReport {
        match self.breakers.read().get(&PairRef::of(installation, plugin)) {
            Some(b) => b.report(self.clock.now()),
            None => NoHealth.report(installation, plugin),
        }
    }

    fn reset(&self, installation: &InstallationId, plugin: &PluginId) {
        self.breakers
            .write()
            .remove(&PairRef::of(installation, plugin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAudit;
    use crate::time::ManualClock;

    type Seen = Arc<Mutex<Vec<(String, HealthStatus, HealthStatus)>>>;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            probe_calls: 1,
            probe_successes: 1,
            auto_disable: Some(AutoDisable {
                trips: 3,
                within: Duration::from_secs(600),
            }),
        }
    }

    fn monitor() -> (HealthMonitor, ManualClock, Seen) {
        let clock = ManualClock::new(Timestamp(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let m = HealthMonitor::new(config())
            .unwrap()
            .with_clock(Arc::new(clock.clone()))
            .with_alert(Arc::new(AlertFn(
                move |i: &InstallationId, _: &PluginId, c: &HealthChange| {
                    s.lock().push((i.to_string(), c.from, c.to))
                },
            )));
        (m, clock, seen)
    }

    fn ids(i: &str, p: &str) -> (InstallationId, PluginId) {
        (InstallationId::new(i), PluginId::new(p))
    }

    fn fail(m: &HealthMonitor, (i, p): &(InstallationId, PluginId)) -> String {
        m.call(
            i,
            p,
            || Err::<String, _>("boom"),
            |why| format!("fallback: {why:?}"),
        )
    }

    #[test]
    fn the_reference_tracker_passes_the_conformance_suite() {
        crate::conformance::health_tracker(&HealthMonitor::new(config()).unwrap(), &config());
        crate::conformance::health_tracker(&HealthMonitor::default(), &BreakerConfig::default());
    }

    #[test]
    fn opens_after_repeated_failures_and_probes_back() {
        let (m, clock, seen) = monitor();
        let k = ids("shop", "flaky");
        for _ in 0..3 {
            assert!(fail(&m, &k).starts_with("fallback: Failed"));
        }
        assert_eq!(m.report(&k.0, &k.1).status, HealthStatus::Unhealthy);
        // Open: the plugin is not even called.
        let mut called = false;
        let out = m.call(
            &k.0,
            &k.1,
            || {
                called = true;
                Ok::<_, String>("real")
            },
            |_| "fallback",
        );
        assert_eq!((out, called), ("fallback", false));
        clock.advance(Duration::from_secs(30));
        // Half-open: one call goes through, and its failure reopens the circuit.
        assert!(fail(&m, &k).contains("Failed"));
        assert_eq!(m.report(&k.0, &k.1).status, HealthStatus::Unhealthy);
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            m.call(&k.0, &k.1, || Ok::<_, String>("real"), |_| "fallback"),
            "real"
        );
        assert_eq!(m.report(&k.0, &k.1).status, HealthStatus::Healthy);
        use HealthStatus::*;
        let seen: Vec<_> = seen.lock().iter().map(|(_, f, t)| (*f, *t)).collect();
        assert_eq!(
            seen,
            [
                (Healthy, Degraded),
                (Degraded, Unhealthy),
                (Unhealthy, Degraded),
                (Degraded, Unhealthy),
                (Unhealthy, Degraded),
                (Degraded, Healthy)
            ]
        );
        let report = m.report(&k.0, &k.1);
        assert_eq!((report.trips, report.recent_failures.len()), (2, 4));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let (m, clock, _) = monitor();
        let k = ids("shop", "slow-burn");
        for _ in 0..10 {
            fail(&m, &k);
            clock.advance(Duration::from_secs(6));
        }
        assert_ne!(m.report(&k.0, &k.1).status, HealthStatus::Unhealthy);
        clock.advance(Duration::from_secs(10));
        assert_eq!(m.report(&k.0, &k.1).status, HealthStatus::Healthy);
    }

    #[test]
    fn one_installation_cannot_open_the_circuit_of_another() {
        let (m, _, seen) = monitor();
        let (a, b) = (ids("shop-a", "widget"), ids("shop-b", "widget"));
        for _ in 0..3 {
            fail(&m, &a);
        }
        assert!(!m.admit(&a.0, &a.1).is_allowed());
        assert!(m.admit(&b.0, &b.1).is_allowed());
        m.record(&b.0, &b.1, Outcome::Success);
        assert_eq!(m.report(&b.0, &b.1).status, HealthStatus::Healthy);
        assert!(seen.lock().iter().all(|(i, _, _)| i == "shop-a"));
    }

    #[test]
    fn neutral_outcomes_count_for_nothing() {
        let (m, clock, _) = monitor();
        let k = ids("shop", "busy");
        for _ in 0..100 {
            assert_eq!(m.admit(&k.0, &k.1), Admission::Closed);
            assert_eq!(m.record(&k.0, &k.1, Outcome::Neutral), None);
        }
        assert_eq!(m.report(&k.0, &k.1).status, HealthStatus::Healthy);
        // A neutral call while half-open frees its slot without closing or reopening.
        for _ in 0..3 {
            fail(&m, &k);
        }
        clock.advance(Duration::from_secs(30));
        assert!(m.admit(&k.0, &k.1).is_allowed());
        assert!(
            !m.admit(&k.0, &k.1).is_allowed(),
            "one probe call at a time"
        );
        m.record(&k.0, &k.1, Outcome::Neutral);
        assert_eq!(m.report(&k.0, &k.1).status, HealthStatus::Degraded);
        assert!(m.admit(&k.0, &k.1).is_allowed(), "the slot was freed");
    }

    #[test]
    fn a_success_that_finishes_after_the_circuit_opened_does_not_close_it() {
        let (m, _, _) = monitor();
        let k = ids("shop", "late");
        assert_eq!(m.admit(&k.0, &k.1), Admission::Closed);
        for _ in 0..3 {
            fail(&m, &k);
        }
        // The call admitted before the trips finishes well; the circuit stays open.
        assert_eq!(m.record(&k.0, &k.1, Outcome::Success), None);
        assert_eq!(m.report(&k.0, &k.1).status, HealthStatus::Unhealthy);
    }

    #[test]
    fn an_open_circuit_never_blocks_a_probe_and_a_good_probe_closes_it() {
        let (m, clock, _) = monitor();
        let k = ids("shop", "recovering");
        for _ in 0..3 {
            fail(&m, &k);
        }
        assert!(!m.admit(&k.0, &k.1).is_allowed());
        // A failing probe keeps it open for another cool-down, without a new trip.
        m.record_probe(&k.0, &k.1, Outcome::Failure("still down"));
        clock.advance(Duration::from_secs(20));
        assert!(!m.admit(&k.0, &k.1).is_allowed());
        assert_eq!(m.report(&k.0, &k.1).trips, 1);
        let change = m.record_probe(&k.0, &k.1, Outcome::Success).unwrap();
        assert_eq!(change.to, HealthStatus::Healthy);
        assert!(m.admit(&k.0, &k.1).is_allowed());
    }

    #[test]
    fn repeated_trips_ask_for_the_plugin_to_be_disabled_and_reset_forgets_them() {
        let audit = Arc::new(MemoryAudit::new());
        let (m, clock, seen) = monitor();
        let m = m.with_audit(audit.clone());
        let k = ids("shop", "hopeless");
        let mut last = None;
        for _ in 0..3 {
            for _ in 0..3 {
                fail(&m, &k);
            }
            last = seen.lock().last().map(|(_, _, to)| *to);
            clock.advance(Duration::from_secs(31));
            // The half-open call succeeds, closing the circuit until the next round.
            assert_eq!(m.call(&k.0, &k.1, || Ok::<_, String>(()), |_| ()), ());
        }
        assert_eq!(last, Some(HealthStatus::Disabled));
        assert!(audit.records().iter().any(|r| matches!(
            &r.event.action,
            AuditAction::HealthChanged { to, reason, .. } if to == "disabled" && reason.contains("3 trips")
        )));
        m.reset(&k.0, &k.1);
        assert_eq!(m.report(&k.0, &k.1).trips, 0);
        for _ in 0..3 {
            fail(&m, &k);
        }
        assert_eq!(
            seen.lock().last().map(|(_, _, to)| *to),
            Some(HealthStatus::Unhealthy)
        );
    }

    #[test]
    fn impossible_settings_are_refused_by_name() {
        for (change, name) in [
            (
                (|c: &mut BreakerConfig| c.failure_threshold = 0) as fn(&mut BreakerConfig),
                "failure_threshold",
            ),
            (|c| c.window = Duration::ZERO, "window"),
            (|c| c.open_for = Duration::ZERO, "open_for"),
            (|c| c.probe_calls = 0, "probe_calls"),
            (|c| c.probe_successes = 0, "probe_successes"),
            (
                |c| {
                    c.auto_disable = Some(AutoDisable {
                        trips: 0,
                        within: Duration::from_secs(1),
                    })
                },
                "auto_disable.trips",
            ),
        ] {
            let mut c = BreakerConfig::default();
            change(&mut c);
            let e = HealthMonitor::new(c).unwrap_err().to_string();
            assert!(e.contains(&format!("`BreakerConfig::{name}`")), "{e}");
        }
    }
}
