//! Hook dispatch: an event goes to every plugin of an installation whose
//! current grant subscribes to it, each through the call pipeline (its
//! circuit breaker included), in parallel, so that one plugin's failure or
//! hang never blocks the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use vodo_core::{InstallationId, PluginId};

use crate::{CallError, Installed, Sandbox, Usage};

/// What happened to one plugin's copy of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The plugin.
    pub plugin: PluginId,
    /// What it used, or why it did not handle the event.
    pub outcome: Result<Usage, CallError>,
}

impl Sandbox {
    /// The plugins loaded in `installation` whose current grant is enabled
    /// and subscribes to `event`.
    pub fn subscribers(&self, installation: &InstallationId, event: &str) -> Vec<Arc<Installed>> {
        self.installed_in(installation)
            .into_iter()
            .filter(|p| {
                self.permissions
                    .current(installation, &p.plugin)
                    .ok()
                    .flatten()
                    .is_some_and(|g| g.enabled && g.scopes.can_subscribe(event))
            })
            .collect()
    }

    /// Delivers `event` to every subscribed plugin of `installation`.
    ///
    /// Each plugin runs under its own limits through the call pipeline, on
    /// up to [`dispatch_threads`](crate::SandboxConfig::dispatch_threads)
    /// threads; a plugin whose circuit is open is refused without running,
    /// and each outcome is recorded in the host's health tracker.
    /// Deliveries come back in plugin order.
    pub fn dispatch(
        &self,
        installation: &InstallationId,
        event: &str,
        payload: &str,
    ) -> Vec<Delivery> {
        let targets = self.subscribers(installation, event);
        let workers = self.config.dispatch_threads.min(targets.len());
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(usize, Delivery)>> = Mutex::new(Vec::with_capacity(targets.len()));
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(plugin) = targets.get(i) else { break };
                let call = self.call_event(plugin, event, payload);
                let delivery = Delivery {
                    plugin: plugin.plugin.clone(),
                    outcome: call.result.map(|()| call.usage),
                };
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
}
