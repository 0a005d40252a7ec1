//! `vodo keys` and `vodo audit` on a `vodo serve` data folder: the same
//! key store and audit file the server uses (SQLite and a locked, chained
//! file, both made to be shared by processes). A key revoked here stops
//! working in a running server within its key cache's staleness bound.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use vodo_core::audit::{AuditFilter, AuditKind, AuditLog, FileAudit, FileAuditOptions};
use vodo_core::keys::{ApiKeyRecord, IssueKey};
use vodo_core::vodo_scopes::{PluginScope, ScopeSet};
use vodo_core::{Host, InstallationId, PluginId, SecretKey, Timestamp};

/// The data folder's secret, which keys and the audit chain are keyed with.
fn secret(data: &Path) -> Result<SecretKey> {
    let path = data.join("secret.key");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "`{}` is not a data folder of `vodo serve` (no readable secret.key): pass the one it runs on with --data",
            data.display()
        )
    })?;
    SecretKey::from_hex(text.trim()).map_err(|e| anyhow!("`{}`: {e}", path.display()))
}

fn host(data: &Path) -> Result<Host> {
    Host::open(data, &secret(data)?).map_err(|e| anyhow!("cannot open `{}`: {e}", data.display()))
}

/// A key's record as JSON, as the server's API answers it, with the
/// installation and plugin it belongs to (never its secret or hash).
pub fn key_json(k: &ApiKeyRecord) -> serde_json::Value {
    let mut v = vodo_server::key_json(k);
    v["installation"] = k.installation.as_str().into();
    v["plugin"] = k.plugin.as_str().into();
    v
}

/// Issues a key for `plugin` in `installation`, for `scopes` (default: all
/// its grant has); returns the key (shown once) and its record.
pub fn issue(
    data: &Path,
    installation: &str,
    plugin: &str,
    name: &str,
    scopes: &[String],
    ttl: Option<Duration>,
) -> Result<(String, ApiKeyRecord)> {
    let host = host(data)?;
    let (installation, plugin) = (InstallationId::new(installation), PluginId::new(plugin));
    let grant = host
        .permissions
        .current(&installation, &plugin)
        .map_err(|e| anyhow!("{e}"))?
        .with_context(|| format!("`{plugin}` is not installed in `{installation}`: install it first (the console, or `vodo serve --plugins`)"))?;
    if name.trim().is_empty() || name.len() > 100 {
        bail!("a key needs a --name of 1 to 100 characters, so that people know what uses it");
    }
    let scopes: ScopeSet = if scopes.is_empty() {
        grant.scopes.clone()
    } else {
        let mut set = ScopeSet::default();
        for s in scopes {
            let scope: PluginScope = s.parse().map_err(|e| anyhow!("--scope `{s}`: {e}"))?;
            if !grant.scopes.allows(&scope) {
                bail!(
                    "--scope `{s}` is more than `{plugin}` was granted in `{installation}`: a key can only narrow the plugin's grant"
                );
            }
            set.insert(scope);
        }
        set
    };
    let (key, record) = host
        .keys
        .issue(IssueKey {
            installation,
            plugin,
            name: name.trim().to_owned(),
            scopes,
            ttl,
        })
        .map_err(|e| anyhow!("{e}"))?;
    Ok((key.expose_secret().to_owned(), record))
}

/// The keys of `plugin` in `installation`.
pub fn list(data: &Path, installation: &str, plugin: &str) -> Result<Vec<ApiKeyRecord>> {
    host(data)?
        .keys
        .list(&InstallationId::new(installation), &PluginId::new(plugin))
        .map_err(|e| anyhow!("{e}"))
}

/// Rotates key `id`: a successor, and the old key working for `grace`.
pub fn rotate(data: &Path, id: &str, grace: Duration) -> Result<(String, ApiKeyRecord)> {
    let (key, record) = host(data)?
        .keys
        .rotate(id, grace)
        .map_err(|e| anyhow!("{e}"))?;
    Ok((key.expose_secret().to_owned(), record))
}

/// Revokes key `id` at once.
pub fn revoke(data: &Path, id: &str) -> Result<()> {
    host(data)?.keys.revoke(id).map_err(|e| anyhow!("{e}"))
}

/// Verifies the audit file's chain; the number of records and the last one.
pub fn verify(data: &Path) -> Result<(u64, u64)> {
    let path = data.join("audit.jsonl");
    if !path.is_file() {
        bail!(
            "`{}` has no audit.jsonl: pass the data folder of `vodo serve` with --data",
            data.display()
        );
    }
    let report = vodo_core::audit::verify_file(&path, &secret(data)?, None)
        .map_err(|e| anyhow!("the audit trail does not verify: {e}"))?;
    Ok((report.records, report.head.seq))
}

/// Audit records matching the filters, oldest first.
pub fn query(
    data: &Path,
    plugin: Option<&str>,
    installation: Option<&str>,
    kind: Option<&str>,
    since: Option<Timestamp>,
    limit: usize,
) -> Result<Vec<vodo_core::audit::AuditRecord>> {
    let kinds = match kind {
        None => Vec::new(),
        Some(k) => vec![k.parse::<AuditKind>().map_err(|e| anyhow!("--kind: {e}"))?],
    };
    let audit = FileAudit::open(
        data.join("audit.jsonl"),
        &secret(data)?,
        FileAuditOptions::default(),
    )
    .map_err(|e| anyhow!("cannot open the audit trail: {e}"))?;
    audit
        .query(&AuditFilter {
            plugin: plugin.map(PluginId::new),
            installation: installation.map(InstallationId::new),
            kinds,
            from: since,
            until: None,
            after_seq: None,
            limit: Some(limit),
        })
        .map_err(|e| anyhow!("{e}"))
}

/// Adds the account `email` with `role` (`admin`, `reviewer`, `partner`,
/// or `merchant` of `installation`) to a data folder, with a one-time
/// password it returns (only its Argon2 hash is kept). An existing account
/// is replaced only with `replace`, which also gives it a new password.
pub fn add_account(
    data: &Path,
    email: &str,
    role: &str,
    installation: Option<&str>,
    replace: bool,
) -> Result<String> {
    use vodo_server::Role;
    let role = match (role, installation) {
        ("admin", None) => Role::Admin,
        ("reviewer", None) => Role::Reviewer,
        ("partner", None) => Role::Partner,
        ("merchant", Some(i)) => Role::Merchant(InstallationId::new(i)),
        ("merchant", None) => {
            bail!("a merchant account needs --installation, the store it manages")
        }
        ("admin" | "reviewer" | "partner", Some(_)) => {
            bail!("only a merchant account belongs to an installation: drop --installation")
        }
        (other, _) => bail!("no role `{other}`: use admin, reviewer, partner or merchant"),
    };
    secret(data)?;
    let db = data.join("server.db");
    let store = std::sync::Arc::new(
        vodo_server::ServerStore::open(&db)
            .map_err(|e| anyhow!("cannot open `{}`: {e}", db.display()))?,
    );
    let accounts =
        vodo_server::Accounts::new(store, Duration::from_secs(3600)).map_err(|e| anyhow!("{e}"))?;
    if !replace && let Some(existing) = accounts.role_of(email).map_err(|e| anyhow!("{e}"))? {
        bail!(
            "`{email}` is already an account ({existing}): pass --replace to give it this role and a new password"
        );
    }
    let password = accounts.generate_password().map_err(|e| anyhow!("{e}"))?;
    accounts
        .put(email, &role, &password)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(password)
}
