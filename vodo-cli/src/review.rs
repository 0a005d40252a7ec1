//! `vodo plugin:review`: the marketplace's automated review, run locally on
//! a package before it is submitted.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use vodo_core::{Host, SecretKey};
use vodo_marketplace::review::{Policy, Report, Severity, review};
use vodo_sandbox::{MemoryServices, Sandbox, SandboxConfig};

/// Reviews the package at `path` as the marketplace does with its default
/// policy (for the running host API `host_api`, when given).
pub fn run(path: &Path, host_api: Option<&str>) -> Result<Report> {
    let mut policy = Policy::default();
    if let Some(v) = host_api {
        policy.host_api = semver::Version::parse(v)
            .with_context(|| format!("--host-api `{v}` is not a version like 0.1.0"))?;
    }
    let bytes = crate::files::read_at_most(path, policy.max_package_bytes, "the package")?;
    // The sample events run with the storage the manifest asks for, in a
    // folder that goes away afterwards.
    let storage = tempfile::tempdir().context("cannot make a temporary folder for the trial")?;
    // A throwaway host: the trial's grant, breaker and audit go nowhere else.
    let host = Host::in_memory(&SecretKey::generate().context("cannot make a key for the trial")?);
    let sandbox = Sandbox::new(
        SandboxConfig {
            storage_root: Some(storage.path().to_path_buf()),
            ..SandboxConfig::default()
        },
        &host,
        Arc::new(MemoryServices::new()),
    )
    .map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e}"))?;
    Ok(review(&bytes, &policy, &sandbox).0)
}

/// Prints a report for a person: errors first, then warnings.
pub fn print(report: &Report) {
    let errors = report.errors().count();
    let warnings = report.findings.len() - errors;
    for severity in [Severity::Error, Severity::Warning] {
        for f in report.findings.iter().filter(|f| f.severity == severity) {
            let label = match severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            println!("{label:7} {:13} {}: {}", f.check, f.location, f.message);
        }
    }
    if errors == 0 {
        println!("passes the automated review ({warnings} warning(s))");
    } else {
        println!("{errors} error(s) block approval; {warnings} warning(s)");
    }
}
