//! `vodo plugin:test`: the plugin crate's own tests, then every sample of
//! its `samples.json` in the sandbox under the manifest's grant and the
//! platform's limits, each printed with what the plugin did: log lines,
//! host calls, records and settings written, hooks triggered, files
//! written, network attempts, usage and audit events. A limit broken or a
//! permission missing is printed with what to change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use parking_lot::Mutex;
use serde::Serialize;
use vodo_core::audit::{AuditAction, AuditFilter, AuditLog, MemoryAudit};
use vodo_core::keys::MemoryKeyStore;
use vodo_core::permissions::MemoryRegistry;
use vodo_core::{Consent, Host, InstallationId, Manifest, PluginId, SecretKey};
use vodo_sandbox::{
    CallError, HostServices, Limits, LogLevel, MemoryServices, Sandbox, SandboxConfig,
    SandboxViolation, ServiceResult,
};

/// One sample of `samples.json`: an event, its payload, and what the host
/// holds before it runs (settings of the plugin, records by `kind/id`).
#[derive(Debug, Clone)]
pub struct Sample {
    /// The event's name.
    pub event: String,
    /// Its payload (JSON text, or the string given).
    pub payload: String,
    /// Settings set before the sample runs.
    pub settings: BTreeMap<String, String>,
    /// Records put before the sample runs, by `kind/id`.
    pub entities: BTreeMap<String, String>,
}

/// The samples of `path`: a JSON array of `{"event", "payload"}`, each with
/// optional `"settings": {"key": "value"}` and `"entities": {"kind/id": {...}}`.
pub fn samples(path: &Path, max: u64) -> Result<Vec<Sample>> {
    let text = String::from_utf8(crate::files::read_at_most(path, max, "the samples")?)
        .with_context(|| format!("`{}` is not UTF-8", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
    let items = value.as_array().with_context(|| {
        format!(
            "`{}` must be an array of {{\"event\": \"order.created\", \"payload\": ...}}",
            path.display()
        )
    })?;
    let text_of = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |field: &str| format!("`{}` $[{i}].{field}", path.display());
            let event = item
                .get("event")
                .and_then(|e| e.as_str())
                .filter(|e| !e.is_empty())
                .with_context(|| {
                    format!(
                        "`{}` $[{i}]: give the event name as a string in \"event\"",
                        path.display()
                    )
                })?;
            let map = |field: &str| -> Result<BTreeMap<String, String>> {
                match item.get(field) {
                    None => Ok(BTreeMap::new()),
                    Some(serde_json::Value::Object(m)) => {
                        Ok(m.iter().map(|(k, v)| (k.clone(), text_of(v))).collect())
                    }
                    Some(_) => bail!("{}: must be an object", at(field)),
                }
            };
            let entities = map("entities")?;
            if let Some(bad) = entities.keys().find(|k| !k.contains('/')) {
                bail!(
                    "{}: `{bad}` must be `kind/id`, such as `order/1001`",
                    at("entities")
                );
            }
            Ok(Sample {
                event: event.to_owned(),
                payload: item.get("payload").map(text_of).unwrap_or_default(),
                settings: map("settings")?,
                entities,
            })
        })
        .collect()
}

/// What one sample did.
#[derive(Debug, Serialize)]
pub struct SampleRun {
    /// The event.
    pub event: String,
    /// `ok`, or why the call failed.
    pub outcome: Outcome,
    /// Log lines, `level: message`.
    pub logs: Vec<String>,
    /// What it changed through the host: records, settings, users, hooks.
    pub writes: Vec<String>,
    /// Files of its storage folder written or removed.
    pub files: Vec<String>,
    /// Outbound requests, allowed or not.
    pub network: Vec<String>,
    /// Audit events of the call (permission denials, violations, requests).
    pub audit: Vec<serde_json::Value>,
    /// What it used.
    pub usage: Usage,
    /// What to change, for each limit broken or permission missing.
    pub fixes: Vec<String>,
}

/// How a sample ended.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The plugin returned `Ok`.
    Ok,
    /// The plugin returned an error.
    PluginError {
        /// Its message.
        message: String,
    },
    /// The sandbox stopped it.
    Violation {
        /// Which limit or rule.
        kind: String,
        /// The sandbox's message.
        message: String,
    },
    /// It did not run.
    NotRun {
        /// Why.
        message: String,
    },
}

/// The usage figures printed.
#[derive(Debug, Serialize)]
pub struct Usage {
    /// Wall time in microseconds.
    pub wall_us: u128,
    /// Peak linear memory in bytes.
    pub peak_memory: u64,
    /// Host calls.
    pub host_calls: u64,
    /// Host calls refused.
    pub denied_host_calls: u64,
    /// Fuel, when metered.
    pub fuel: Option<u64>,
}

/// The limits a test runs under: the platform's defaults unless changed.
#[derive(Debug, Clone, Copy)]
pub struct TestLimits {
    /// Linear memory per call.
    pub memory: u64,
    /// Wall time per call.
    pub timeout: std::time::Duration,
}

impl Default for TestLimits {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            memory: l.memory,
            timeout: l.timeout,
        }
    }
}

/// Runs `samples` of the plugin `manifest` with component `wasm`. An
/// error is a sample that cannot be run at all (an event the plugin does
/// not subscribe to, a component the grant refuses).
pub fn run_samples(
    manifest: &Manifest,
    wasm: &[u8],
    samples: &[Sample],
    limits: TestLimits,
) -> Result<Vec<SampleRun>> {
    for (i, s) in samples.iter().enumerate() {
        if !manifest.scopes().can_subscribe(&s.event) {
            bail!(
                "samples.json $[{i}] is for `{}`, which {} does not subscribe to: add `subscribe:{}` to permissions.hooks in plugin.json, or remove the sample",
                s.event,
                manifest.slug,
                s.event
            );
        }
    }
    let storage = tempfile::tempdir().context("cannot make a folder for the plugin's storage")?;
    let audit = Arc::new(MemoryAudit::new());
    let secret = SecretKey::generate().context("cannot make a key for the test host")?;
    let host = Arc::new(Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        audit.clone(),
        &secret,
    ));
    let services = Arc::new(Recorder::default());
    let sandbox = Sandbox::new(
        SandboxConfig {
            storage_root: Some(storage.path().to_path_buf()),
            ..SandboxConfig::default()
        },
        &host,
        services.clone(),
    )
    .map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e}"))?;
    let installation = InstallationId::new("dev");
    let plugin = sandbox
        .install(
            &installation,
            manifest,
            wasm,
            &Consent::all(manifest, "vodo plugin:test"),
            Limits {
                memory: limits.memory,
                timeout: limits.timeout,
                ..Limits::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("the sandbox refused the component: {e}"))?;
    let mut runs = Vec::new();
    for s in samples {
        for (key, value) in &s.settings {
            services
                .inner
                .set_setting(&installation, &manifest.slug, key, value)
                .map_err(|e| anyhow::anyhow!("cannot set `{key}`: {e}"))?;
        }
        for (key, json) in &s.entities {
            let (kind, id) = key.split_once('/').unwrap_or((key, ""));
            services
                .inner
                .put_entity(&installation, kind, id, json)
                .map_err(|e| anyhow::anyhow!("cannot put `{key}`: {e}"))?;
        }
        services.take();
        // Sequence numbers go on counting past the records the memory log
        // drops, so this is the last one written, whatever it holds.
        let audited = audit.len() as u64 + audit.dropped();
        let folder = storage
            .path()
            .join(installation.as_str())
            .join(manifest.slug.as_str());
        let before = files_of(&folder);
        let call = sandbox.call_event(&plugin, &s.event, &s.payload);
        let after = files_of(&folder);
        let (logs, writes) = services.take();
        let events: Vec<_> = audit
            .query(&AuditFilter {
                after_seq: Some(audited),
                ..AuditFilter::default()
            })
            .map_err(|e| anyhow::anyhow!("reading the test's audit trail: {e}"))?
            .into_iter()
            .map(|r| r.event)
            .filter(|e| !matches!(e.action, AuditAction::Lifecycle { .. }))
            .collect();
        let mut fixes = Vec::new();
        let mut network = Vec::new();
        for e in &events {
            match &e.action {
                AuditAction::NetworkRequest {
                    method,
                    host,
                    allowed,
                    status,
                } => {
                    network.push(match (allowed, status) {
                        (true, Some(s)) => format!("{method} {host}: {s}"),
                        (true, None) => format!("{method} {host}: no answer"),
                        (false, _) => format!("{method} {host}: refused"),
                    });
                    if !allowed
                        && !manifest
                            .permissions
                            .network
                            .outbound
                            .iter()
                            .any(|h| h.to_string() == *host)
                    {
                        fixes.push(format!(
                            "the plugin may not reach `{host}`: add it to permissions.network.outbound in plugin.json"
                        ));
                    }
                }
                // A refused request's fix is the host's, above.
                AuditAction::PermissionDenied { scope, .. }
                    if scope.starts_with("network:outbound:") => {}
                AuditAction::PermissionDenied { scope, reason } => {
                    fixes.push(format!("`{scope}` was refused: {reason}"));
                }
                _ => {}
            }
        }
        let outcome = match call.result {
            Ok(()) => Outcome::Ok,
            Err(CallError::Plugin(message)) => Outcome::PluginError { message },
            Err(CallError::Violation(v)) => {
                fixes.push(fix(&v, manifest, limits));
                Outcome::Violation {
                    kind: v.kind().into(),
                    message: v.to_string(),
                }
            }
            Err(other) => Outcome::NotRun {
                message: other.to_string(),
            },
        };
        fixes.dedup();
        runs.push(SampleRun {
            event: s.event.clone(),
            outcome,
            logs,
            writes,
            files: changed(&before, &after),
            network,
            audit: events
                .iter()
                .filter_map(|e| serde_json::to_value(&e.action).ok())
                .collect(),
            usage: Usage {
                wall_us: call.usage.wall.as_micros(),
                peak_memory: call.usage.peak_memory,
                host_calls: call.usage.host_calls,
                denied_host_calls: call.usage.denied_host_calls,
                fuel: call.usage.fuel,
            },
            fixes,
        });
    }
    Ok(runs)
}

/// What to change for a violation.
fn fix(v: &SandboxViolation, manifest: &Manifest, limits: TestLimits) -> String {
    match v {
        SandboxViolation::Memory { limit, .. } => format!(
            "a call may use {} of memory ({}): use less",
            crate::files::human(*limit),
            if limits.memory == TestLimits::default().memory {
                "the platform's limit".to_owned()
            } else {
                format!(
                    "set by --memory-mib; the platform gives {}",
                    crate::files::human(TestLimits::default().memory)
                )
            }
        ),
        SandboxViolation::Timeout { .. } => format!(
            "a call may run {:?}: do less per event, or move slow work out of the call (try another limit with `--timeout-ms N`)",
            limits.timeout
        ),
        SandboxViolation::Fuel { .. } => {
            "the call used all its CPU budget: do less per event".into()
        }
        SandboxViolation::Network { host, .. } => format!(
            "add `{host}` to permissions.network.outbound in plugin.json, if the plugin must reach it"
        ),
        SandboxViolation::StorageQuota { requested, .. } => format!(
            "raise permissions.storage.max_size in plugin.json (now {}) above {}, or store less",
            manifest
                .limits()
                .storage_quota
                .map_or_else(|| "none".into(), crate::files::human),
            crate::files::human(*requested)
        ),
        SandboxViolation::Filesystem { path, .. } => format!(
            "add the type of `{path}` to permissions.storage.allowed_types in plugin.json, or write inside the plugin's folder"
        ),
        SandboxViolation::RateLimit { .. } => {
            "raise permissions.api.rate_limit in plugin.json, or call the host less often".into()
        }
        other => format!("{other}"),
    }
}

/// Every file of the plugin's folder under the storage `root` (the
/// sandbox keeps it at `{root}/{installation}/{slug}`), by its path in the
/// folder, with its size.
fn files_of(root: &Path) -> BTreeMap<PathBuf, u64> {
    crate::files::walk(root, |_| true)
        .into_iter()
        .map(|(path, m)| {
            let name = path
                .strip_prefix(root)
                .map_or_else(|_| path.clone(), Path::to_path_buf);
            (name, m.len())
        })
        .collect()
}

fn changed(before: &BTreeMap<PathBuf, u64>, after: &BTreeMap<PathBuf, u64>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, size) in after {
        // Sizes are compared: a file rewritten at the same size is not listed.
        if before.get(path) != Some(size) {
            out.push(format!("wrote {} ({size} bytes)", path.display()));
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        out.push(format!("removed {}", path.display()));
    }
    out
}

/// The host services of a test: records and settings in memory, and every
/// change and log line kept for the report.
#[derive(Debug, Default)]
struct Recorder {
    inner: MemoryServices,
    seen: Mutex<(Vec<String>, Vec<String>)>,
}

impl Recorder {
    /// The log lines and writes since the last call.
    fn take(&self) -> (Vec<String>, Vec<String>) {
        std::mem::take(&mut *self.seen.lock())
    }

    fn wrote(&self, line: String) {
        self.seen.lock().1.push(line);
    }
}

impl HostServices for Recorder {
    fn get_entity(
        &self,
        i: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<Option<String>> {
        self.inner.get_entity(i, kind, id)
    }
    fn put_entity(
        &self,
        i: &InstallationId,
        kind: &str,
        id: &str,
        json: &str,
    ) -> ServiceResult<()> {
        self.inner.put_entity(i, kind, id, json)?;
        self.wrote(format!("entities.put {kind}/{id}: {}", shorten(json)));
        Ok(())
    }
    fn delete_entity(&self, i: &InstallationId, kind: &str, id: &str) -> ServiceResult<bool> {
        let had = self.inner.delete_entity(i, kind, id)?;
        self.wrote(format!("entities.delete {kind}/{id}"));
        Ok(had)
    }
    fn trigger_hook(
        &self,
        i: &InstallationId,
        p: &PluginId,
        name: &str,
        payload: &str,
    ) -> ServiceResult<()> {
        self.inner.trigger_hook(i, p, name, payload)?;
        self.wrote(format!("hooks.trigger {name}: {}", shorten(payload)));
        Ok(())
    }
    fn get_user(&self, i: &InstallationId, id: &str) -> ServiceResult<Option<String>> {
        self.inner.get_user(i, id)
    }
    fn put_user(&self, i: &InstallationId, id: &str, json: &str) -> ServiceResult<()> {
        self.inner.put_user(i, id, json)?;
        self.wrote(format!("users.put {id}: {}", shorten(json)));
        Ok(())
    }
    fn get_setting(
        &self,
        i: &InstallationId,
        p: &PluginId,
        key: &str,
    ) -> ServiceResult<Option<String>> {
        self.inner.get_setting(i, p, key)
    }
    fn set_setting(
        &self,
        i: &InstallationId,
        p: &PluginId,
        key: &str,
        value: &str,
    ) -> ServiceResult<()> {
        self.inner.set_setting(i, p, key, value)?;
        self.wrote(format!("settings.set {key} = {}", shorten(value)));
        Ok(())
    }
    fn waits(&self) -> bool {
        false
    }
    fn log(&self, _: &InstallationId, _: &PluginId, level: LogLevel, message: &str) {
        let level = level.as_str();
        self.seen.lock().0.push(format!("{level}: {message}"));
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 120 {
        s.to_owned()
    } else {
        s.chars().take(117).collect::<String>() + "..."
    }
}

/// Prints the runs for a person; returns how many failed.
pub fn print(runs: &[SampleRun]) -> usize {
    let mut failed = 0;
    for (i, r) in runs.iter().enumerate() {
        let (mark, what) = match &r.outcome {
            Outcome::Ok => ("ok", String::new()),
            Outcome::PluginError { message } => (
                "FAILED",
                format!(": the plugin returned an error: {message}"),
            ),
            Outcome::Violation { kind, message } => ("STOPPED", format!(" ({kind}): {message}")),
            Outcome::NotRun { message } => ("NOT RUN", format!(": {message}")),
        };
        if !matches!(r.outcome, Outcome::Ok) {
            failed += 1;
        }
        println!(
            "sample {} {}: {mark}{what} [{:.2} ms, {} host call(s){}, peak memory {}]",
            i + 1,
            r.event,
            r.usage.wall_us as f64 / 1000.0,
            r.usage.host_calls,
            if r.usage.denied_host_calls > 0 {
                format!(", {} refused", r.usage.denied_host_calls)
            } else {
                String::new()
            },
            crate::files::human(r.usage.peak_memory)
        );
        for (label, lines) in [
            ("log", &r.logs),
            ("wrote", &r.writes),
            ("file", &r.files),
            ("network", &r.network),
        ] {
            for l in lines {
                println!("    {label:8} {l}");
            }
        }
        for a in &r.audit {
            println!("    {:8} {a}", "audit");
        }
        for f in &r.fixes {
            println!("    {:8} {f}", "fix");
        }
    }
    failed
}
