//! `vodo keys`, `vodo audit` and `vodo logs` against a running server
//! (`--server URL`) instead of a data folder, and the signed-in session
//! they share with `vodo tinker`: a console account's, through the same
//! JSON API the console uses, so a merchant sees only their installations.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

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
    anyhow!(
        "{status}: {}",
        v["detail"]
            .as_str()
            .or(v["error"].as_str())
            .unwrap_or("no details")
    )
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
                v["detail"].as_str().unwrap_or("no details")
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

/// A key's line in `vodo keys list`, from its JSON.
pub fn key_line(k: &Value) -> String {
    let state = if !k["revoked_at"].is_null() {
        "revoked".to_owned()
    } else if let Some(next) = k["replaced_by"].as_str() {
        format!("rotated to {next}")
    } else {
        "active".to_owned()
    };
    let scopes: Vec<&str> = k["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{}  {:20} {:8} {} uses  {}",
        k["id"].as_str().unwrap_or("?"),
        k["name"].as_str().unwrap_or(""),
        state,
        k["usage_count"],
        scopes.join(" ")
    )
}

/// `vodo keys list --server`.
pub fn keys_list(s: &Session, installation: &str, plugin: &str, json: bool) -> Result<()> {
    let v = s.ok("GET", &keys_path(installation, plugin), None)?;
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    if json {
        println!("{}", Value::from(keys));
    } else if keys.is_empty() {
        println!("{plugin} has no keys in {installation}");
    } else {
        for k in &keys {
            println!("{}", key_line(k));
        }
    }
    Ok(())
}

fn shown(v: &Value, json: bool) {
    if json {
        println!("{v}");
    } else {
        println!("{}", v["key"].as_str().unwrap_or(""));
        eprintln!(
            "key {}: shown only now, store it as a secret",
            v["id"].as_str().unwrap_or("?")
        );
    }
}

/// `vodo keys issue --server`.
pub fn keys_issue(
    s: &Session,
    installation: &str,
    plugin: &str,
    name: &str,
    scopes: &[String],
    ttl_days: Option<u64>,
    json: bool,
) -> Result<()> {
    let v = s.ok(
        "POST",
        &keys_path(installation, plugin),
        Some(json!({ "name": name, "scopes": scopes, "ttl_days": ttl_days })),
    )?;
    shown(&v, json);
    Ok(())
}

/// `vodo keys rotate --server`.
pub fn keys_rotate(
    s: &Session,
    installation: &str,
    plugin: &str,
    id: &str,
    grace_hours: u64,
    json: bool,
) -> Result<()> {
    let v = s.ok(
        "POST",
        &format!("{}/{}/rotate", keys_path(installation, plugin), segment(id)),
        Some(json!({ "grace_seconds": grace_hours.saturating_mul(3600) })),
    )?;
    shown(&v, json);
    Ok(())
}

/// `vodo keys revoke --server`.
pub fn keys_revoke(s: &Session, installation: &str, plugin: &str, id: &str) -> Result<()> {
    s.ok(
        "DELETE",
        &format!("{}/{}", keys_path(installation, plugin), segment(id)),
        None,
    )?;
    println!("revoked {id}");
    Ok(())
}

/// `vodo audit verify --server`: exit 1 when the chain is broken.
pub fn audit_verify(s: &Session, json: bool) -> Result<()> {
    let v = s.ok("POST", "/v1/audit/verify", Some(json!({})))?;
    if json {
        println!("{v}");
    }
    if v["ok"] != true {
        bail!(
            "the audit trail does not verify: {}",
            v["error"].as_str().unwrap_or("no details")
        );
    }
    if !json {
        println!(
            "the audit trail verifies: {} records, the last #{}",
            v["records"], v["head_seq"]
        );
    }
    Ok(())
}

/// Filters of `vodo audit query` and `vodo logs` against a server.
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

fn audit_page(s: &Session, f: &AuditFilter<'_>, after: u64, limit: usize) -> Result<Vec<Value>> {
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
    Ok(s.ok("GET", &q, None)?["records"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn audit_text(r: &Value) -> String {
    format!(
        "#{} {} {} [{}] {}",
        r["seq"],
        crate::logs::rfc3339(vodo_core::Timestamp(r["at"].as_i64().unwrap_or(0))),
        r["plugin"].as_str().unwrap_or("-"),
        r["installation"].as_str().unwrap_or("-"),
        r["action"]
    )
}

/// `vodo audit query --server`.
pub fn audit_query(s: &Session, f: &AuditFilter<'_>, limit: usize, json: bool) -> Result<()> {
    for r in audit_page(s, f, 0, limit)? {
        if json {
            println!("{r}");
        } else {
            println!("{}", audit_text(&r));
        }
    }
    Ok(())
}

/// `vodo logs --server`: the plugin's log lines in one installation and
/// its audit records there, by time; `follow` polls every second.
pub fn logs(s: &Session, f: &AuditFilter<'_>, follow: bool, json: bool) -> Result<()> {
    let (Some(plugin), Some(installation)) = (f.plugin, f.installation) else {
        bail!("against a server, `vodo logs` needs the plugin and --installation");
    };
    let (mut log_after, mut audit_after) = (0u64, 0u64);
    loop {
        let mut entries: Vec<(i64, String)> = Vec::new();
        if f.kind.is_none_or(|k| k == "log") {
            let mut q = format!(
                "/v1/installations/{}/plugins/{}/logs?after={log_after}&limit=500",
                segment(installation),
                segment(plugin)
            );
            if let Some(t) = f.since {
                q.push_str(&format!("&since={}", t.as_millis()));
            }
            let v = s.ok("GET", &q, None)?;
            for l in v["lines"].as_array().into_iter().flatten() {
                let at = l["at"].as_i64().unwrap_or(0);
                let text = if json {
                    let mut l = l.clone();
                    l["type"] = "log".into();
                    l.to_string()
                } else {
                    format!(
                        "{} [{installation}] {:5} {}",
                        crate::logs::rfc3339(vodo_core::Timestamp(at)),
                        l["level"].as_str().unwrap_or("?"),
                        l["message"].as_str().unwrap_or("")
                    )
                };
                entries.push((at, text));
            }
            log_after = v["next_after"].as_u64().unwrap_or(log_after);
        }
        if f.kind != Some("log") {
            for r in audit_page(s, f, audit_after, 500)? {
                audit_after = audit_after.max(r["seq"].as_u64().unwrap_or(0));
                let text = if json {
                    let mut r = r.clone();
                    r["type"] = "audit".into();
                    r.to_string()
                } else {
                    audit_text(&r)
                };
                entries.push((r["at"].as_i64().unwrap_or(0), text));
            }
        }
        entries.sort_by_key(|e| e.0);
        for (_, text) in entries {
            println!("{text}");
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
