//! `vodo keys`, `vodo audit` and `vodo logs` against a running server
//! (`--server URL`) instead of a data folder, and the signed-in session
//! they share with `vodo tinker`: a console account's, through the same
//! JSON API the console uses, so a merchant sees only their installations.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use vodo_core::audit::AuditRecord;

/// A signed-in session with a server.
pub struct Session {
    agent: ureq::Agent,
    base: String,
    cookie: String,
    csrf: String,
}

/// `s` as one URL path segment or query value.
pub fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// An error answer as a message: its status and the problem's detail.
pub fn problem(status: u16, v: &Value) -> anyhow::Error {
    anyhow!("{status}: {}", crate::account::message(v))
}

impl Session {
    /// A session with `server` as `email`: the one kept from the last
    /// command if the server still takes it, else a new sign-in with the
    /// password from `$VODO_PASSWORD` (or asked without echo), kept in the
    /// config folder for the next command (owner-only, like the tokens of
    /// `vodo login`), so that a script of commands signs in once.
    pub fn connect(server: &str, email: &str) -> Result<Self> {
        let base = server.trim_end_matches('/');
        let cache = crate::account::config_dir()
            .ok()
            .map(|d| d.join("sessions.json"));
        let mut kept: serde_json::Map<String, Value> = cache
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let key = format!("{email} {base}");
        if let Some(cookie) = kept.get(&key).and_then(|v| v.as_str()) {
            let mut s = Self {
                agent: crate::account::agent(),
                base: base.to_owned(),
                cookie: cookie.to_owned(),
                csrf: String::new(),
            };
            if let Ok((200, v)) = s.call("GET", "/v1/session", None)
                && v["email"].as_str() == Some(email.trim().to_ascii_lowercase().as_str())
            {
                s.csrf = v["csrf"].as_str().unwrap_or_default().to_owned();
                return Ok(s);
            }
        }
        let password = match std::env::var("VODO_PASSWORD") {
            Ok(p) => p,
            Err(_) => rpassword::prompt_password(format!("password for {email}: "))
                .context("reading the password (or set VODO_PASSWORD)")?,
        };
        let s = Self::sign_in(base, email, &password)?;
        if let Some(path) = &cache {
            kept.insert(key, Value::from(s.cookie.clone()));
            // A session that cannot be kept only means signing in next time.
            let _ = serde_json::to_vec(&kept)
                .map_err(anyhow::Error::from)
                .and_then(|b| crate::account::write_private(path, &b));
        }
        Ok(s)
    }

    fn sign_in(base: &str, email: &str, password: &str) -> Result<Self> {
        let agent = crate::account::agent();
        let mut r = agent
            .post(&format!("{base}/v1/session"))
            .send_json(json!({ "email": email, "password": password }))
            .with_context(|| {
                format!("cannot reach {base}: is the server running? (`vodo serve`)")
            })?;
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        match (r.status().as_u16(), cookie) {
            (200, Some(cookie)) => Ok(Self {
                agent,
                base: base.to_owned(),
                cookie,
                csrf: v["csrf"].as_str().unwrap_or_default().to_owned(),
            }),
            (s, _) => bail!(
                "signing in as {email} failed ({s}): {}",
                crate::account::message(&v)
            ),
        }
    }

    /// One API call: the status and the JSON answer.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut r = match method {
            "GET" => self.agent.get(&url).header("cookie", &self.cookie).call(),
            "DELETE" => self
                .agent
                .delete(&url)
                .header("cookie", &self.cookie)
                .header("x-csrf-token", &self.csrf)
                .call(),
            m => {
                let req = if m == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                req.header("cookie", &self.cookie)
                    .header("x-csrf-token", &self.csrf)
                    .send_json(body.unwrap_or(Value::Null))
            }
        }
        .with_context(|| format!("cannot reach {}", self.base))?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_json().unwrap_or(Value::Null)))
    }

    /// [`call`](Self::call), with any answer but 2xx as an error.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(problem(status, &v))
        }
    }
}

fn keys_path(installation: &str, plugin: &str) -> String {
    format!(
        "/v1/installations/{}/plugins/{}/keys",
        segment(installation),
        segment(plugin)
    )
}

/// A key's JSON as the server answers it, with the installation and plugin
/// it belongs to: what `vodo keys` prints for a data folder too.
fn with_owner(mut key: Value, installation: &str, plugin: &str) -> Value {
    key["installation"] = installation.into();
    key["plugin"] = plugin.into();
    key
}

/// The keys of `plugin` in `installation`.
pub fn keys_list(s: &Session, installation: &str, plugin: &str) -> Result<Vec<Value>> {
    let v = s.ok("GET", &keys_path(installation, plugin), None)?;
    Ok(v["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| with_owner(k.clone(), installation, plugin))
        .collect())
}

/// Issues a key: its JSON with the key itself (`key`), shown once.
pub fn keys_issue(
    s: &Session,
    installation: &str,
    plugin: &str,
    name: &str,
    scopes: &[String],
    ttl_days: Option<u64>,
) -> Result<Value> {
    let v = s.ok(
        "POST",
        &keys_path(installation, plugin),
        Some(json!({ "name": name, "scopes": scopes, "ttl_days": ttl_days })),
    )?;
    Ok(with_owner(v, installation, plugin))
}

/// Rotates a key: the new key's JSON with the key itself.
pub fn keys_rotate(
    s: &Session,
    installation: &str,
    plugin: &str,
    id: &str,
    grace: Duration,
) -> Result<Value> {
    let v = s.ok(
        "POST",
        &format!("{}/{}/rotate", keys_path(installation, plugin), segment(id)),
        Some(json!({ "grace_seconds": grace.as_secs() })),
    )?;
    Ok(with_owner(v, installation, plugin))
}

/// Revokes a key.
pub fn keys_revoke(s: &Session, installation: &str, plugin: &str, id: &str) -> Result<()> {
    s.ok(
        "DELETE",
        &format!("{}/{}", keys_path(installation, plugin), segment(id)),
        None,
    )?;
    Ok(())
}

/// Verifies the server's audit chain: the number of records and the last
/// one's sequence number, or the break.
pub fn audit_verify(s: &Session) -> Result<(u64, u64)> {
    let v = s.ok("POST", "/v1/audit/verify", Some(json!({})))?;
    if v["ok"] != true {
        bail!(
            "the audit trail does not verify: {}",
            v["error"].as_str().unwrap_or("no details")
        );
    }
    Ok((
        v["records"].as_u64().unwrap_or(0),
        v["head_seq"].as_u64().unwrap_or(0),
    ))
}

/// Which audit records to ask a server for.
pub struct AuditFilter<'a> {
    /// Only this plugin.
    pub plugin: Option<&'a str>,
    /// Only this installation.
    pub installation: Option<&'a str>,
    /// Only this kind.
    pub kind: Option<&'a str>,
    /// Only at or after this time.
    pub since: Option<vodo_core::Timestamp>,
}

/// Audit records after `after`, at most `limit`, as the data folder's are
/// read (the server answers each as its event with `seq` and `kind`).
pub fn audit_records(
    s: &Session,
    f: &AuditFilter<'_>,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditRecord>> {
    let mut q = format!("/v1/audit?after={after}&limit={}", limit.clamp(1, 500));
    for (k, v) in [
        ("plugin", f.plugin),
        ("installation", f.installation),
        ("kind", f.kind),
    ] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", segment(v)));
        }
    }
    if let Some(t) = f.since {
        q.push_str(&format!("&from={}", t.as_millis()));
    }
    s.ok("GET", &q, None)?["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            Ok(AuditRecord {
                seq: r["seq"].as_u64().unwrap_or(0),
                event: serde_json::from_value(r.clone())
                    .context("the server answered an audit record this CLI cannot read")?,
            })
        })
        .collect()
}

/// `vodo logs --server`: the plugin's log lines in one installation and
/// its audit records there, printed as for a data folder; `follow` asks
/// again every second.
pub fn logs(s: &Session, f: &crate::logs::Filter, follow: bool, json: bool) -> Result<()> {
    let installation = f
        .installation
        .as_ref()
        .map_or("demo", vodo_core::InstallationId::as_str);
    let audit = AuditFilter {
        plugin: Some(f.plugin.as_str()),
        installation: Some(installation),
        kind: f.kind.as_deref().filter(|k| *k != "log"),
        since: f.since,
    };
    let (mut log_after, mut audit_after) = (0u64, 0u64);
    let next = || {
        let mut entries = Vec::new();
        if f.kind.as_deref().is_none_or(|k| k == "log") {
            let mut q = format!(
                "/v1/installations/{}/plugins/{}/logs?after={log_after}&limit=500",
                segment(installation),
                segment(f.plugin.as_str())
            );
            if let Some(t) = f.since {
                q.push_str(&format!("&since={}", t.as_millis()));
            }
            let v = s.ok("GET", &q, None)?;
            for l in v["lines"].as_array().into_iter().flatten() {
                entries.push(crate::logs::Entry::log(
                    vodo_core::Timestamp(l["at"].as_i64().unwrap_or(0)),
                    installation,
                    l["level"].as_str().unwrap_or("?"),
                    l["message"].as_str().unwrap_or(""),
                ));
            }
            log_after = v["next_after"].as_u64().unwrap_or(log_after);
        }
        if f.kind.as_deref() != Some("log") {
            for r in audit_records(s, &audit, audit_after, 500)? {
                audit_after = audit_after.max(r.seq);
                entries.push(crate::logs::Entry::audit(r.seq, &r.event));
            }
        }
        Ok(entries)
    };
    crate::logs::show(next, follow, json, Duration::from_secs(1))
}
