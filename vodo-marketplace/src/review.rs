//! The automated review pipeline: every submission gets a [`Report`] of
//! findings (error or warning, with where and why). Errors block approval.
//!
//! | check | error when | warning when |
//! |---|---|---|
//! | `package` | malformed, too large, a checksum differs, the manifest is invalid or has no `description`, the component does not validate | |
//! | `permissions` | the component imports a capability the manifest does not declare | the manifest asks for a capability the code never imports |
//! | `license` | no `license`, not an SPDX expression, or not allowed by policy | |
//! | `performance` | a sample event fails or breaks the fuel, memory or time budget | there are no sample events |
//! | `compatibility` | the declared host API range excludes the running host | no range is declared |
//! | `security` | a denied pattern of the policy, such as an outbound host `*.onion` | broad scopes: every entity, every hook |

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vodo_core::manifest::Manifest;
use vodo_core::runtime::{Interface, Sandbox, TrialBudget};
use vodo_scopes::PluginScope;

use crate::package::Package;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Blocks approval.
    Error,
    /// For the reviewer's and the developer's attention.
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Which check, such as `license`.
    pub check: String,
    /// Error or warning.
    pub severity: Severity,
    /// Where: a JSON path, an import, an event.
    pub location: String,
    /// What and why.
    pub message: String,
}

/// The findings of one review.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Report {
    /// Every finding, in check order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// Findings of one check.
    pub fn of(&self, check: &str) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.check == check)
    }

    fn add(
        &mut self,
        check: &str,
        severity: Severity,
        location: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.findings.push(Finding {
            check: check.into(),
            severity,
            location: location.into(),
            message: message.into(),
        });
    }
}

/// The marketplace's review policy. Every default is listed.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest package accepted. Default 20 MiB.
    pub max_package_bytes: u64,
    /// SPDX license ids accepted. Default: a list of common permissive and
    /// copyleft licenses (`MIT`, `Apache-2.0`, `BSD-2-Clause`, `BSD-3-Clause`,
    /// `ISC`, `MPL-2.0`, `Zlib`, `Unlicense`, `0BSD`).
    pub licenses: Vec<String>,
    /// The budget of each sample event. Default 64 MiB, 1 s, 500 million fuel.
    pub budget: TrialBudget,
    /// The version of the running host API.
    pub host_api: semver::Version,
    /// Outbound hosts never allowed: exact names or `*.suffix`. Default `*.onion`, `*.local`, `*.internal`.
    pub denied_hosts: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_package_bytes: 20 << 20,
            licenses: [
                "MIT",
                "Apache-2.0",
                "BSD-2-Clause",
                "BSD-3-Clause",
                "ISC",
                "MPL-2.0",
                "Zlib",
                "Unlicense",
                "0BSD",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            budget: TrialBudget {
                fuel: Some(500_000_000),
                memory: 64 << 20,
                timeout: Duration::from_secs(1),
            },
            host_api: semver::Version::new(0, 1, 0),
            denied_hosts: vec!["*.onion".into(), "*.local".into(), "*.internal".into()],
        }
    }
}

fn host_denied(host: &str, pattern: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

/// Reviews a package file under `policy`, using `sandbox` to validate the
/// component and run its sample events. Returns the report and, when the
/// package parsed, the package.
pub fn review(bytes: &[u8], policy: &Policy, sandbox: &dyn Sandbox) -> (Report, Option<Package>) {
    let mut r = Report::default();
    let package = match Package::parse(bytes, policy.max_package_bytes) {
        Ok(p) => p,
        Err(e) => {
            r.add("package", Severity::Error, "package", e.to_string());
            return (r, None);
        }
    };
    let manifest = match Manifest::parse(&package.manifest) {
        Ok(m) => m,
        Err(e) => {
            for p in e.problems {
                r.add(
                    "package",
                    Severity::Error,
                    format!("plugin.json {}", p.path),
                    p.message,
                );
            }
            return (r, Some(package));
        }
    };
    let info = match sandbox.inspect(&package.component) {
        Ok(i) => Some(i),
        Err(e) => {
            r.add(
                "package",
                Severity::Error,
                "component",
                format!("the component does not validate: {e}"),
            );
            None
        }
    };

    if manifest.description.is_none() {
        r.add(
            "package",
            Severity::Error,
            "plugin.json $.description",
            "the manifest has no `description`: add one (`\"description\": \"What the plugin does\"`); the marketplace shows it to installers",
        );
    }

    // Permissions: what the code imports against what the manifest declares.
    if let Some(info) = &info {
        let mut used = Vec::new();
        for import in &info.imports {
            let Ok(Some(interface)) = Interface::of_import(import) else {
                continue;
            };
            let Some(cap) = interface.capability() else {
                continue;
            };
            used.push(interface);
            if !manifest.scopes().has_capability(cap) {
                r.add(
                    "permissions",
                    Severity::Error,
                    import.clone(),
                    format!(
                        "the component uses `{}` but plugin.json declares no such permission: add `{}`",
                        interface.permission(),
                        cap.example_scope()
                    ),
                );
            }
        }
        for interface in Interface::ALL {
            if let Some(cap) = interface.capability()
                && manifest.scopes().has_capability(cap)
                && !used.contains(&interface)
            {
                r.add(
                    "permissions",
                    Severity::Warning,
                    format!("plugin.json {}", interface.manifest_path()),
                    format!(
                        "the plugin asks for `{}` but its code never uses it: remove it so installers are not asked for more than needed",
                        interface.permission()
                    ),
                );
            }
        }
    }

    // License.
    let Some(license) = &manifest.license else {
        r.add(
            "license",
            Severity::Error,
            "plugin.json $.license",
            "the manifest has no `license`: add an SPDX expression such as `\"license\": \"MIT\"`; the marketplace publishes only licensed plugins",
        );
        return finish(r, policy, sandbox, manifest, package, info.is_some());
    };
    match spdx::Expression::parse(license) {
        Err(e) => r.add(
            "license",
            Severity::Error,
            "plugin.json $.license",
            format!("not a valid SPDX expression: {e}"),
        ),
        Ok(expr) => {
            let allowed = expr.evaluate(|req| {
                req.addition.is_none()
                    && req
                        .license
                        .id()
                        .is_some_and(|id| policy.licenses.iter().any(|l| l == id.name))
            });
            if !allowed {
                r.add(
                    "license",
                    Severity::Error,
                    "plugin.json $.license",
                    format!(
                        "`{license}` is not accepted by the marketplace: use one of {}",
                        policy.licenses.join(", ")
                    ),
                );
            }
        }
    }

    finish(r, policy, sandbox, manifest, package, info.is_some())
}

/// The checks after the license: performance, compatibility, security.
fn finish(
    mut r: Report,
    policy: &Policy,
    sandbox: &dyn Sandbox,
    manifest: Manifest,
    package: Package,
    valid_component: bool,
) -> (Report, Option<Package>) {
    // Performance: the sample events under the policy's budget.
    if package.samples.is_empty() {
        r.add(
            "performance",
            Severity::Warning,
            "package samples",
            "the package has no sample events, so its performance was not measured",
        );
    } else if valid_component {
        match sandbox.trial(
            &manifest,
            &package.component,
            &policy.budget,
            &package.samples,
        ) {
            Err(e) => r.add(
                "performance",
                Severity::Error,
                "trial",
                format!("the plugin could not be run: {e}"),
            ),
            Ok(runs) => {
                for run in runs {
                    if let Err(e) = &run.result {
                        r.add(
                            "performance",
                            Severity::Error,
                            format!("sample `{}`", run.event),
                            e.to_string(),
                        );
                    }
                }
            }
        }
    }

    // Compatibility.
    match &manifest.host_api {
        None => r.add(
            "compatibility",
            Severity::Warning,
            "plugin.json $.host_api",
            "no host API range is declared: add one such as `^0.1`",
        ),
        Some(req) if !req.matches(&policy.host_api) => r.add(
            "compatibility",
            Severity::Error,
            "plugin.json $.host_api",
            format!("`{req}` excludes the running host API {}", policy.host_api),
        ),
        Some(_) => {}
    }

    // Security: denied patterns and broad scopes.
    for (i, rule) in manifest.permissions.network.outbound.iter().enumerate() {
        if let Some(p) = policy
            .denied_hosts
            .iter()
            .find(|p| host_denied(rule.host(), p))
        {
            r.add(
                "security",
                Severity::Error,
                format!("plugin.json $.permissions.network.outbound[{i}]"),
                format!("`{rule}` matches the denied pattern `{p}`"),
            );
        }
    }
    for (scope, what) in [
        (
            PluginScope::EntitiesWrite(None),
            "write every kind of record",
        ),
        (
            PluginScope::HooksSubscribe(None),
            "receive every hook event",
        ),
        (PluginScope::HooksTrigger(None), "trigger every hook"),
    ] {
        if manifest.scopes().iter().any(|s| *s == scope) {
            r.add(
                "security",
                Severity::Warning,
                format!("scope `{scope}`"),
                format!("the plugin asks to {what}: list the kinds it needs"),
            );
        }
    }
    (r, Some(package))
}
