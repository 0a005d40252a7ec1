//! Hook dispatch: an event goes to every plugin of an installation whose
//! grant subscribes to it, through each plugin's circuit breaker, in
//! parallel, so that one plugin's failure or hang never blocks the others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use vodo_core::health::HealthMonitor;
use vodo_core::{Decision, DenyReason, InstallationId, PluginId};

use crate::{CallError, Installed, Sandbox, Usage};

/// What happened to one plugin's copy of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The plugin.
    pub plugin: PluginId,
    /// What it used, or why it did not handle the event.
    pub outcome: Result<Usage, CallError>,
}

/// The number of cores, asked once: `available_parallelism` reads cgroup
/// files on Linux, which cost more than a plugin call.
fn parallelism() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    })
}

impl Sandbox {
    /// The plugins of `installation` whose grant subscribes to `event`.
    pub fn subscribers(&self, installation: &InstallationId, event: &str) -> Vec<Arc<Installed>> {
        self.installed_in(installation)
            .into_iter()
            .filter(|p| p.scopes.can_subscribe(event))
            .collect()
    }

    /// Delivers `event` to every subscribed plugin of `installation`.
    ///
    /// Each plugin runs under its own limits on a pool of threads (one per
    /// core); a plugin whose circuit is open is skipped, and every failure
    /// or violation is recorded in `health`. Deliveries come back in plugin
    /// order.
    pub fn dispatch(
        &self,
        installation: &InstallationId,
        event: &str,
        payload: &str,
        health: &HealthMonitor,
    ) -> Vec<Delivery> {
        let targets = self.subscribers(installation, event);
        let workers = parallelism().min(targets.len());
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(usize, Delivery)>> = Mutex::new(Vec::with_capacity(targets.len()));
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(plugin) = targets.get(i) else { break };
                let delivery = self.deliver(plugin, event, payload, health);
                results.lock().push((i, delivery));
            }
        };
        if workers <= 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 0..workers {
                    if std::thread::Builder::new().spawn_scoped(s, work).is_err() {
                        // No thread to be had: this one does the work.
                        work();
                        break;
                    }
                }
            });
        }
        let mut results = results.into_inner();
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, d)| d).collect()
    }

    fn deliver(
        &self,
        plugin: &Installed,
        event: &str,
        payload: &str,
        health: &HealthMonitor,
    ) -> Delivery {
        let outcome = match health.allow(&plugin.plugin) {
            Decision::Deny { reason } => Err(CallError::NotRun(match reason {
                DenyReason::Disabled => "the plugin is disabled".into(),
                other => other.to_string(),
            })),
            Decision::Allow => {
                let call = self.call_event(plugin, event, payload);
                match call.result {
                    Ok(()) => {
                        health.record_success(&plugin.plugin);
                        Ok(call.usage)
                    }
                    Err(e) => {
                        health.record_failure(&plugin.plugin, &e.to_string());
                        Err(e)
                    }
                }
            }
        };
        Delivery {
            plugin: plugin.plugin.clone(),
            outcome,
        }
    }
}
