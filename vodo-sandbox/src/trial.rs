//! The review trial: the core [`Sandbox`](vodo_core::runtime::Sandbox)
//! trait, through which the marketplace inspects and tries a plugin without
//! depending on this crate. A trial is a real install in a throwaway
//! installation, its calls go through the same pipeline as any other, and
//! it is uninstalled afterwards.

use std::sync::atomic::{AtomicU64, Ordering};

use vodo_core::manifest::Manifest;
use vodo_core::runtime::{ComponentInfo, RuntimeError, TrialBudget, TrialFailure, TrialRun};
use vodo_core::{Consent, InstallationId};
use wasmtime::component::Component;

use crate::{CallError, Limits, LoadError, Sandbox, Wasm, storage};

impl From<LoadError> for RuntimeError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Invalid { .. } => RuntimeError::Invalid(e.to_string()),
            LoadError::Io { .. } | LoadError::Core(_) => RuntimeError::Failed(e.to_string()),
            _ => RuntimeError::Refused(e.to_string()),
        }
    }
}

impl From<CallError> for TrialFailure {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Violation(v) => TrialFailure::Violation {
                kind: v.kind().into(),
                message: v.to_string(),
            },
            CallError::Plugin(m) => TrialFailure::Plugin(m),
            other => TrialFailure::NotRun(other.to_string()),
        }
    }
}

impl vodo_core::runtime::Sandbox for Sandbox {
    fn inspect(&self, wasm: &[u8]) -> Result<ComponentInfo, RuntimeError> {
        let component = Component::new(self.engine(), wasm)
            .map_err(|e| RuntimeError::Invalid(format!("{e:#}")))?;
        let ty = component.component_type();
        Ok(ComponentInfo {
            imports: ty
                .imports(self.engine())
                .map(|(n, _)| n.to_owned())
                .collect(),
            exports: ty
                .exports(self.engine())
                .map(|(n, _)| n.to_owned())
                .collect(),
            initial_memory: component
                .resources_required()
                .and_then(|r| r.max_initial_memory_size)
                .unwrap_or(0),
        })
    }

    fn trial(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
        budget: &TrialBudget,
        events: &[(String, String)],
    ) -> Result<Vec<TrialRun>, RuntimeError> {
        // Every trial gets its own installation, so its own empty storage
        // folder: two reviews of the same package running at once must not
        // share (and remove) each other's files.
        static TRIALS: AtomicU64 = AtomicU64::new(0);
        let hash = crate::cache::sha256(wasm);
        let digest = crate::cache::hex(&hash);
        let installation = InstallationId::new(format!(
            "__trial__{}-{}",
            digest.get(..16).unwrap_or(&digest),
            TRIALS.fetch_add(1, Ordering::Relaxed)
        ));
        let limits = Limits {
            memory: budget.memory,
            timeout: budget.timeout,
            fuel: budget.fuel.filter(|_| self.config.fuel),
            ..Limits::default()
        };
        let plugin = self.install(
            &installation,
            manifest,
            Wasm::hashed(wasm, hash),
            &Consent::all(manifest, "vodo:review"),
            limits,
        )?;
        let runs = events
            .iter()
            .map(|(event, payload)| {
                let call = self.call_event(&plugin, event, payload);
                TrialRun {
                    event: event.clone(),
                    result: call.result.map_err(TrialFailure::from),
                    wall: call.usage.wall,
                    fuel: call.usage.fuel,
                    peak_memory: call.usage.peak_memory,
                }
            })
            .collect();
        self.uninstall(&installation, &plugin.plugin)?;
        if let Some(root) = &self.config.storage_root {
            // The trial's installation folder is now empty and never used again.
            let _ = std::fs::remove_dir(storage::installation_folder(root, installation.as_str()));
        }
        Ok(runs)
    }
}
