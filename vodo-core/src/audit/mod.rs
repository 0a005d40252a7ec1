//! The audit trail: what happened, to which plugin, when.
//!
//! [`AuditSink`] receives [`AuditEvent`]s; [`AuditLog`] also answers queries.
//! Sinks compose: [`Tee`] writes to two, [`TracingAudit`] forwards to
//! `tracing`. The trail is a record apart from logs: [`FileAudit`] chains
//! every line to the one before under an HMAC, so that any edit, deletion,
//! insertion or reordering is found by [`verify_file`].

mod file;

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::decision::DenyReason;
use crate::{Error, InstallationId, PluginId, Result, Timestamp};

pub use file::{ChainHead, FileAudit, FileAuditOptions, VerifyReport, verify_file};

/// One thing that happened, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    pub at: Timestamp,
    /// The plugin concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginId>,
    /// The installation concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationId>,
    /// What happened.
    pub action: AuditAction,
}

impl AuditEvent {
    /// An event that happened now.
    pub fn now(action: AuditAction) -> Self {
        Self {
            at: Timestamp::now(),
            plugin: None,
            installation: None,
            action,
        }
    }

    /// Sets the plugin.
    pub fn plugin(mut self, plugin: &PluginId) -> Self {
        self.plugin = Some(plugin.clone());
        self
    }

    /// Sets the installation.
    pub fn installation(mut self, installation: &InstallationId) -> Self {
        self.installation = Some(installation.clone());
        self
    }

    /// Sets the time.
    pub fn at(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }

    /// The kind of the action, for filtering.
    pub fn kind(&self) -> AuditKind {
        self.action.kind()
    }
}

/// What happened. Serialized with a `kind` tag in snake case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A permission check that was allowed (recorded only when the host asks for it).
    PermissionChecked {
        /// The scope checked.
        scope: String,
    },
    /// A permission check that was denied.
    PermissionDenied {
        /// The scope that was needed.
        scope: String,
        /// Why it was denied.
        reason: DenyReason,
    },
    /// The sandbox stopped a plugin for breaking a limit or a rule.
    SandboxViolation {
        /// Which limit or rule, such as `memory` or `network`.
        violation: String,
        /// Details for a person.
        detail: String,
    },
    /// A plugin used far more of a resource than usual.
    ResourceSpike {
        /// The resource, such as `fuel` or `memory_bytes`.
        resource: String,
        /// The amount used.
        value: u64,
        /// The threshold it crossed.
        threshold: u64,
    },
    /// An outbound HTTP request, allowed or not.
    NetworkRequest {
        /// HTTP method.
        method: String,
        /// Target host.
        host: String,
        /// Whether it was let through.
        allowed: bool,
        /// Response status, if one came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// An API key was used successfully, `uses` times since the last report.
    KeyUsed {
        /// The key's public id.
        key_id: String,
        /// Successful verifications counted.
        uses: u64,
    },
    /// An API key was presented and refused.
    KeyRejected {
        /// The key's public id, when the key was well formed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
        /// Why it was refused.
        reason: String,
    },
    /// An API key was issued.
    KeyIssued {
        /// The new key's public id.
        key_id: String,
    },
    /// An API key was rotated; the old one works until the grace period ends.
    KeyRotated {
        /// The old key's id.
        key_id: String,
        /// The new key's id.
        new_key_id: String,
        /// When the old key stops working.
        old_valid_until: Timestamp,
    },
    /// An API key was revoked.
    KeyRevoked {
        /// The key's id.
        key_id: String,
    },
    /// A plugin's lifecycle changed.
    Lifecycle {
        /// What changed.
        change: LifecycleChange,
        /// Details, such as the versions of an upgrade.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// The host did not run a plugin call: the plugin is not installed or
    /// is disabled, its circuit is open, the request is for an undeclared
    /// route, or it does not subscribe to the event.
    CallRefused {
        /// What was called: `event order.created`, `request GET /status`, `health`.
        call: String,
        /// Why it was refused.
        reason: DenyReason,
    },
    /// A partner app's access to an installation changed: the merchant
    /// consented, or revoked the consent (and with it every token issued
    /// under it).
    AppAccess {
        /// The app's client id.
        client_id: String,
        /// `granted` or `revoked`.
        change: String,
        /// Who did it.
        by: String,
    },
    /// A plugin's health status changed.
    HealthChanged {
        /// The status before.
        from: String,
        /// The status after.
        to: String,
        /// Why.
        reason: String,
    },
}

/// A lifecycle change of a plugin in an installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleChange {
    /// Installed, with consent to its scopes.
    Installed,
    /// Its grant changed (consent given or narrowed).
    Granted,
    /// Enabled.
    Enabled,
    /// Disabled.
    Disabled,
    /// Upgraded to a new version.
    Upgraded,
    /// An upgrade was refused (its new version failed its health probe);
    /// the running version stays.
    UpgradeRefused,
    /// Uninstalled; its grant and data removed.
    Uninstalled,
    /// An update was found but not applied: it asks for new consent, its
    /// health probe failed, or it would not load. The detail says which.
    UpdateHeld,
    /// Went back to an earlier version: a person's rollback, or the
    /// updater's after a new version failed in service.
    RolledBack,
}

/// The kind of an [`AuditAction`], for queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AuditKind {
    /// [`AuditAction::PermissionChecked`].
    PermissionChecked,
    /// [`AuditAction::PermissionDenied`].
    PermissionDenied,
    /// [`AuditAction::SandboxViolation`].
    SandboxViolation,
    /// [`AuditAction::ResourceSpike`].
    ResourceSpike,
    /// [`AuditAction::NetworkRequest`].
    NetworkRequest,
    /// [`AuditAction::KeyUsed`].
    KeyUsed,
    /// [`AuditAction::KeyRejected`].
    KeyRejected,
    /// [`AuditAction::KeyIssued`].
    KeyIssued,
    /// [`AuditAction::KeyRotated`].
    KeyRotated,
    /// [`AuditAction::KeyRevoked`].
    KeyRevoked,
    /// [`AuditAction::Lifecycle`].
    Lifecycle,
    /// [`AuditAction::HealthChanged`].
    HealthChanged,
    /// [`AuditAction::CallRefused`].
    CallRefused,
    /// [`AuditAction::AppAccess`].
    AppAccess,
}

const KINDS: [(AuditKind, &str); 14] = [
    (AuditKind::PermissionChecked, "permission_checked"),
    (AuditKind::PermissionDenied, "permission_denied"),
    (AuditKind::SandboxViolation, "sandbox_violation"),
    (AuditKind::ResourceSpike, "resource_spike"),
    (AuditKind::NetworkRequest, "network_request"),
    (AuditKind::KeyUsed, "key_used"),
    (AuditKind::KeyRejected, "key_rejected"),
    (AuditKind::KeyIssued, "key_issued"),
    (AuditKind::KeyRotated, "key_rotated"),
    (AuditKind::KeyRevoked, "key_revoked"),
    (AuditKind::Lifecycle, "lifecycle"),
    (AuditKind::HealthChanged, "health_changed"),
    (AuditKind::CallRefused, "call_refused"),
    (AuditKind::AppAccess, "app_access"),
];

impl AuditKind {
    /// Every kind, in the order of the enum.
    pub const ALL: [AuditKind; 14] = [
        AuditKind::PermissionChecked,
        AuditKind::PermissionDenied,
        AuditKind::SandboxViolation,
        AuditKind::ResourceSpike,
        AuditKind::NetworkRequest,
        AuditKind::KeyUsed,
        AuditKind::KeyRejected,
        AuditKind::KeyIssued,
        AuditKind::KeyRotated,
        AuditKind::KeyRevoked,
        AuditKind::Lifecycle,
        AuditKind::HealthChanged,
        AuditKind::CallRefused,
        AuditKind::AppAccess,
    ];

    /// The kind as written in the `kind` field of a serialized event.
    pub fn as_str(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("unknown", |(_, s)| s)
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        KINDS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(k, _)| *k)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown audit kind `{s}`: use one of {}",
                    KINDS
                        .iter()
                        .map(|(_, n)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

impl AuditAction {
    /// The kind of this action.
    pub fn kind(&self) -> AuditKind {
        match self {
            Self::PermissionChecked { .. } => AuditKind::PermissionChecked,
            Self::PermissionDenied { .. } => AuditKind::PermissionDenied,
            Self::SandboxViolation { .. } => AuditKind::SandboxViolation,
            Self::ResourceSpike { .. } => AuditKind::ResourceSpike,
            Self::NetworkRequest { .. } => AuditKind::NetworkRequest,
            Self::KeyUsed { .. } => AuditKind::KeyUsed,
            Self::KeyRejected { .. } => AuditKind::KeyRejected,
            Self::KeyIssued { .. } => AuditKind::KeyIssued,
            Self::KeyRotated { .. } => AuditKind::KeyRotated,
            Self::KeyRevoked { .. } => AuditKind::KeyRevoked,
            Self::Lifecycle { .. } => AuditKind::Lifecycle,
            Self::HealthChanged { .. } => AuditKind::HealthChanged,
            Self::CallRefused { .. } => AuditKind::CallRefused,
            Self::AppAccess { .. } => AuditKind::AppAccess,
        }
    }
}

/// An event as stored, with its sequence number in its log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The event.
    pub event: AuditEvent,
}

/// Which records a query returns. Every field narrows; the default matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this plugin.
    pub plugin: Option<PluginId>,
    /// Only this installation.
    pub installation: Option<InstallationId>,
    /// Only these kinds (empty: every kind).
    pub kinds: Vec<AuditKind>,
    /// Only events at or after this time.
    pub from: Option<Timestamp>,
    /// Only events before this time.
    pub until: Option<Timestamp>,
    /// Only records after this sequence number (for paging).
    pub after_seq: Option<u64>,
    /// At most this many records, oldest first.
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// Whether `record` passes the filter (ignoring `limit`).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let e = &record.event;
        self.plugin
            .as_ref()
            .is_none_or(|p| e.plugin.as_ref() == Some(p))
            && self
                .installation
                .as_ref()
                .is_none_or(|i| e.installation.as_ref() == Some(i))
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind()))
            && self.from.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
            && self.after_seq.is_none_or(|s| record.seq > s)
    }
}

/// Where audit events go. Shaped like rustls' `KeyLog`: a `Debug + Send +
/// Sync` trait used as `Arc<dyn AuditSink>`, with [`NoAudit`] beside it.
///
/// A host's own sink (here one that forwards to a channel, as a sink
/// feeding a SIEM would) needs only `record`:
///
/// ```
/// use std::sync::{Mutex, mpsc};
/// use vodo_core::audit::{AuditAction, AuditEvent, AuditSink, LifecycleChange};
///
/// #[derive(Debug)]
/// struct Forward(Mutex<mpsc::Sender<String>>);
///
/// impl AuditSink for Forward {
///     fn record(&self, event: &AuditEvent) -> vodo_core::Result<()> {
///         let line = serde_json::to_string(event).map_err(|e| vodo_core::Error::Storage(e.into()))?;
///         self.0.lock().unwrap().send(line).map_err(|e| vodo_core::Error::Storage(e.into()))
///     }
/// }
///
/// let (tx, rx) = mpsc::channel();
/// let sink: Box<dyn AuditSink> = Box::new(Forward(Mutex::new(tx)));
/// sink.record(&AuditEvent::now(AuditAction::Lifecycle {
///     change: LifecycleChange::Installed,
///     detail: String::new(),
/// }))?;
/// assert!(rx.recv().unwrap().contains("installed"));
/// # Ok::<(), vodo_core::Error>(())
/// ```
pub trait AuditSink: fmt::Debug + Send + Sync {
    /// Records one event. A sink that batches may hold it until [`flush`](Self::flush).
    fn record(&self, event: &AuditEvent) -> Result<()>;

    /// Records several events; sinks with transactions write them in one.
    fn record_all(&self, events: &[AuditEvent]) -> Result<()> {
        events.iter().try_for_each(|e| self.record(e))
    }

    /// Makes every recorded event durable.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// Helpers every [`AuditSink`] has.
///
/// See [`AuditLog`] for an example.
pub trait AuditSinkExt: AuditSink {
    /// Records `event`, and logs with `tracing` if the sink fails: what is
    /// being recorded has already happened, and a failing sink must not undo
    /// it or fail the caller (a denial stays a denial).
    fn record_or_log(&self, event: &AuditEvent) {
        if let Err(e) = self.record(event) {
            tracing::error!(error = %e, kind = event.kind().as_str(), "audit sink failed to record an event");
        }
    }
}

impl<T: AuditSink + ?Sized> AuditSinkExt for T {}

/// A sink that can also be searched.
///
/// ```
/// use vodo_core::audit::{
///     AuditAction, AuditEvent, AuditFilter, AuditKind, AuditLog, AuditSink, AuditSinkExt,
///     LifecycleChange, MemoryAudit,
/// };
/// use vodo_core::{InstallationId, PluginId};
///
/// let audit = MemoryAudit::new();
/// let (shop, plugin) = (InstallationId::new("shop-1"), PluginId::new("notifier"));
/// audit.record(
///     &AuditEvent::now(AuditAction::Lifecycle {
///         change: LifecycleChange::Installed,
///         detail: "version 1.0.0".into(),
///     })
///     .installation(&shop)
///     .plugin(&plugin),
/// )?;
/// // What has already happened is recorded without failing the caller.
/// audit.record_or_log(
///     &AuditEvent::now(AuditAction::Lifecycle {
///         change: LifecycleChange::Granted,
///         detail: String::new(),
///     })
///     .installation(&shop)
///     .plugin(&plugin),
/// );
/// let installs = audit.query(&AuditFilter {
///     plugin: Some(plugin.clone()),
///     kinds: vec![AuditKind::Lifecycle],
///     ..AuditFilter::default()
/// })?;
/// assert_eq!(installs.len(), 2);
/// assert!(installs[0].seq < installs[1].seq);
/// # Ok::<(), vodo_core::Error>(())
/// ```
pub trait AuditLog: AuditSink {
    /// The records that pass `filter`, oldest first.
    fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
}

macro_rules! forward_sink {
    ($($ty:ty),*) => {$(
        impl<T: AuditSink + ?Sized> AuditSink for $ty {
            fn record(&self, event: &AuditEvent) -> Result<()> {
                (**self).record(event)
            }
            fn record_all(&self, events: &[AuditEvent]) -> Result<()> {
                (**self).record_all(events)
            }
            fn flush(&self) -> Result<()> {
                (**self).flush()
            }
        }
        impl<T: AuditLog + ?Sized> AuditLog for $ty {
            fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
                (**self).query(filter)
            }
        }
    )*};
}
forward_sink!(&T, Box<T>, Arc<T>);

/// A sink that keeps nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _: &AuditEvent) -> Result<()> {
        Ok(())
    }
}

/// An in-memory log holding the most recent `capacity` records; older ones
/// are dropped (and counted). For tests and embedding.
#[derive(Debug)]
pub struct MemoryAudit {
    inner: Mutex<MemoryInner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct MemoryInner {
    records: VecDeque<AuditRecord>,
    next_seq: u64,
    dropped: u64,
}

impl Default for MemoryAudit {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl MemoryAudit {
    /// A log keeping the last 100,000 records.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log keeping the last `capacity` records.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(MemoryInner {
                next_seq: 1,
                ..MemoryInner::default()
            }),
            capacity: capacity.max(1),
        }
    }

    /// Every record held, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.inner.lock().records.iter().cloned().collect()
    }

    /// How many records were dropped to stay within capacity.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }

    /// The number of records held.
    pub fn len(&self) -> usize {
        self.inner.lock().records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.records.len() == self.capacity {
            inner.records.pop_front();
            inner.dropped += 1;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.records.push_back(AuditRecord {
            seq,
            event: event.clone(),
        });
        Ok(())
    }
}

impl AuditLog for MemoryAudit {
    fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let inner = self.inner.lock();
        Ok(inner
            .records
            .iter()
            .filter(|r| filter.matches(r))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}

/// Writes every event to two sinks; both are tried, and the first error is returned.
#[derive(Debug, Clone)]
pub struct Tee<A, B>(pub A, pub B);

impl<A: AuditSink, B: AuditSink> AuditSink for Tee<A, B> {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        let a = self.0.record(event);
        let b = self.1.record(event);
        a.and(b)
    }

    fn record_all(&self, events: &[AuditEvent]) -> Result<()> {
        let a = self.0.record_all(events);
        let b = self.1.record_all(events);
        a.and(b)
    }

    fn flush(&self) -> Result<()> {
        let a = self.0.flush();
        let b = self.1.flush();
        a.and(b)
    }
}

/// Forwards audit events to `tracing` under the target `vodo::audit`:
/// denials, violations and rejected keys at `WARN`, the rest at `INFO`.
///
/// This is the bridge to a host's log pipeline; it is not tamper-evident, so
/// pair it with a durable sink through [`Tee`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        let kind = event.kind().as_str();
        let plugin = event.plugin.as_ref().map_or("", PluginId::as_str);
        let installation = event
            .installation
            .as_ref()
            .map_or("", InstallationId::as_str);
        let detail = serde_json::to_string(&event.action).unwrap_or_default();
        match event.kind() {
            AuditKind::PermissionDenied
            | AuditKind::SandboxViolation
            | AuditKind::KeyRejected
            | AuditKind::ResourceSpike => tracing::warn!(
                target: "vodo::audit", kind, plugin, installation, at = event.at.as_millis(), %detail
            ),
            _ => tracing::info!(
                target: "vodo::audit", kind, plugin, installation, at = event.at.as_millis(), %detail
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(plugin: &str, at: i64, action: AuditAction) -> AuditEvent {
        AuditEvent::now(action)
            .plugin(&PluginId::new(plugin))
            .at(Timestamp(at))
    }

    #[test]
    fn events_serialize_with_a_kind_tag() {
        let e = ev(
            "p",
            5,
            AuditAction::PermissionDenied {
                scope: "entities:write:order".into(),
                reason: DenyReason::MissingScope {
                    scope: "entities:write:order".into(),
                },
            },
        );
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""kind":"permission_denied""#), "{json}");
        assert_eq!(serde_json::from_str::<AuditEvent>(&json).unwrap(), e);
        for (k, name) in KINDS {
            assert_eq!(name.parse::<AuditKind>().unwrap(), k);
        }
        assert!("nope".parse::<AuditKind>().is_err());
    }

    #[test]
    fn memory_log_drops_oldest_past_capacity() {
        let log = MemoryAudit::with_capacity(2);
        for i in 0..3 {
            log.record(&ev(
                "p",
                i,
                AuditAction::KeyUsed {
                    key_id: "k".into(),
                    uses: 1,
                },
            ))
            .unwrap();
        }
        let seqs: Vec<u64> = log.records().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(log.dropped(), 1);
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_tracing_bridge_emits_one_event_per_record() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            TracingAudit
                .record(&ev(
                    "notifier",
                    7,
                    AuditAction::SandboxViolation {
                        violation: "memory".into(),
                        detail: "grew past 64 MiB".into(),
                    },
                ))
                .unwrap();
            TracingAudit
                .record(&ev(
                    "notifier",
                    8,
                    AuditAction::KeyRevoked {
                        key_id: "k1".into(),
                    },
                ))
                .unwrap();
        });
        let out = String::from_utf8(buf.0.lock().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].contains("WARN") && lines[0].contains("vodo::audit"),
            "{out}"
        );
        assert!(
            lines[0].contains("kind=\"sandbox_violation\"")
                && lines[0].contains("plugin=\"notifier\""),
            "{out}"
        );
        assert!(
            lines[1].contains("INFO") && lines[1].contains("key_revoked"),
            "{out}"
        );
    }

    #[test]
    fn tee_writes_both_and_tracing_never_fails() {
        let a = MemoryAudit::new();
        let b = MemoryAudit::new();
        let tee = Tee(&a, Tee(&b, TracingAudit));
        tee.record(&ev("p", 1, AuditAction::KeyRevoked { key_id: "k".into() }))
            .unwrap();
        assert_eq!((a.len(), b.len()), (1, 1));
    }
}
