//! `vodo login`, `vodo logout`, `vodo whoami` and `vodo plugin:publish`: a
//! developer's sign-in to a marketplace server through its OAuth provider
//! with the device authorization grant (RFC 8628), and the upload of a
//! package with the token it gives.
//!
//! Tokens live in `credentials.json` in the user's config folder
//! (`$VODO_CONFIG_DIR`, else `$XDG_CONFIG_HOME/vodo`, else
//! `~/.config/vodo`), readable by the owner only, one entry per server.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The server `vodo login` talks to when none is given: `$VODO_SERVER`, else
/// a local `vodo serve`.
pub fn default_server() -> String {
    std::env::var("VODO_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into())
}

/// The platform's client id of this CLI (`vodo_server::CLI_CLIENT`).
const CLIENT_ID: &str = vodo_server::CLI_CLIENT;
/// The device grant's `grant_type` (RFC 8628 section 3.4).
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// What `vodo login` asks for.
const SCOPE: &str = "marketplace:publish offline_access";

/// One server's tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    email: String,
    role: String,
    access_token: String,
    refresh_token: Option<String>,
    /// Unix seconds.
    expires_at: i64,
    token_endpoint: String,
    revocation_endpoint: Option<String>,
}

/// Everything in `credentials.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Credentials {
    /// The server `vodo login` signed in to last, used when none is given.
    current: Option<String>,
    servers: BTreeMap<String, Entry>,
}

/// The user's config folder for vodo.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("VODO_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("vodo"));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        anyhow!("no home folder: set VODO_CONFIG_DIR to where vodo may keep its sign-in")
    })?;
    Ok(PathBuf::from(home).join(".config").join("vodo"))
}

fn credentials_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("credentials.json"))
}

fn load() -> Result<Credentials> {
    let path = credentials_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not vodo's credentials file: remove it and run `vodo login`",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the file whole, readable and writable by the owner only: a new
/// file with those permissions is renamed over the old one, so no reader
/// sees half a file and no moment exists where others may read it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no folder", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn save(c: &Credentials) -> Result<()> {
    write_private(&credentials_path()?, &serde_json::to_vec_pretty(c)?)
}

/// The HTTP client of the commands that talk to a server: answers of any
/// status are read (their problem says what went wrong), two minutes at most.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn now_secs() -> i64 {
    vodo_core::Timestamp::now().as_millis() / 1000
}

fn read_json(r: &mut ureq::http::Response<ureq::Body>) -> Value {
    r.body_mut()
        .with_config()
        .limit(1 << 20)
        .read_json()
        .unwrap_or(Value::Null)
}

/// The message of an error answer: a problem's `detail` or an OAuth error's
/// description.
pub fn message(v: &Value) -> String {
    ["detail", "error_description", "error"]
        .iter()
        .find_map(|k| v[k].as_str())
        .unwrap_or("no details")
        .to_owned()
}

fn normalize(server: &str) -> String {
    server.trim_end_matches('/').to_owned()
}

/// The provider's endpoints, from its metadata (RFC 8414).
struct Endpoints {
    device: String,
    token: String,
    revocation: Option<String>,
}

fn discover(agent: &ureq::Agent, server: &str) -> Result<Endpoints> {
    let url = format!("{server}/.well-known/oauth-authorization-server");
    let mut r = agent
        .get(&url)
        .call()
        .with_context(|| format!("cannot reach {server}: is the server running? (`vodo serve`)"))?;
    if r.status() != 200 {
        bail!(
            "{server} has no OAuth provider ({} from {url}): is it a Vodo server?",
            r.status()
        );
    }
    let m = read_json(&mut r);
    let field = |k: &str| m[k].as_str().map(str::to_owned);
    Ok(Endpoints {
        device: field("device_authorization_endpoint").ok_or_else(|| {
            anyhow!("{server} does not offer device sign-in: update the server to this release")
        })?,
        token: field("token_endpoint")
            .ok_or_else(|| anyhow!("{server}'s metadata has no token endpoint"))?,
        revocation: field("revocation_endpoint"),
    })
}

/// What the account endpoint says of a token.
fn account(agent: &ureq::Agent, server: &str, token: &str) -> Result<(String, String)> {
    let mut r = agent
        .get(&format!("{server}/v1/session"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .with_context(|| format!("cannot reach {server}"))?;
    let v = read_json(&mut r);
    match r.status().as_u16() {
        200 => Ok((
            v["email"].as_str().unwrap_or_default().to_owned(),
            v["role"].as_str().unwrap_or_default().to_owned(),
        )),
        401 => bail!(
            "the sign-in to {server} expired or was revoked ({}): run `vodo login --server {server}`",
            message(&v)
        ),
        s => bail!("{server} answered {s}: {}", message(&v)),
    }
}

/// `vodo login`: asks for a code, shows it with the page to approve it on,
/// polls until the user decides, and keeps the tokens.
pub fn login(server: &str, json: bool) -> Result<()> {
    let server = normalize(server);
    let agent = agent();
    let ends = discover(&agent, &server)?;
    let mut r = agent
        .post(&ends.device)
        .send_form([("client_id", CLIENT_ID), ("scope", SCOPE)])
        .with_context(|| format!("cannot reach {}", ends.device))?;
    let start = read_json(&mut r);
    if r.status() != 200 {
        bail!("{server} refused the sign-in: {}", message(&start));
    }
    let text = |k: &str| start[k].as_str().unwrap_or_default().to_owned();
    let (device_code, user_code) = (text("device_code"), text("user_code"));
    let (uri, complete) = (text("verification_uri"), text("verification_uri_complete"));
    let expires_in = start["expires_in"].as_u64().unwrap_or(600);
    let mut interval = start["interval"].as_u64().unwrap_or(5).clamp(1, 60);
    if device_code.is_empty() || user_code.is_empty() {
        bail!("{server} answered the sign-in without a code: is it a Vodo server?");
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "user_code": user_code, "verification_uri": uri,
                "verification_uri_complete": complete, "expires_in": expires_in,
            })
        );
    } else {
        println!("To sign in, open {uri} and enter the code {user_code}");
        println!("(or open {complete})");
        println!(
            "Waiting for approval, for up to {} minutes...",
            expires_in.div_ceil(60)
        );
    }
    std::io::stdout().flush().ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(expires_in + 5);
    let tokens = loop {
        if std::time::Instant::now() > deadline {
            bail!("the code expired before it was approved: run `vodo login` again");
        }
        std::thread::sleep(Duration::from_secs(interval));
        let mut r = agent
            .post(&ends.token)
            .send_form([
                ("grant_type", DEVICE_GRANT),
                ("client_id", CLIENT_ID),
                ("device_code", device_code.as_str()),
            ])
            .with_context(|| format!("cannot reach {}", ends.token))?;
        let v = read_json(&mut r);
        if r.status() == 200 {
            break v;
        }
        match v["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += 5,
            Some("access_denied") => bail!("the sign-in was denied on the page"),
            Some("expired_token") => {
                bail!("the code expired before it was approved: run `vodo login` again")
            }
            _ => bail!("{server} refused the sign-in: {}", message(&v)),
        }
    };
    let entry = entry_from(&tokens, &ends.token, ends.revocation.clone(), None)?;
    let (email, role) = account(&agent, &server, &entry.access_token)?;
    let entry = Entry {
        email,
        role,
        ..entry
    };
    let mut c = load()?;
    c.current = Some(server.clone());
    c.servers.insert(server.clone(), entry.clone());
    save(&c)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "server": server, "email": entry.email, "role": entry.role })
        );
    } else {
        println!("Signed in to {server} as {} ({})", entry.email, entry.role);
    }
    Ok(())
}

fn entry_from(
    tokens: &Value,
    token_endpoint: &str,
    revocation: Option<String>,
    previous: Option<&Entry>,
) -> Result<Entry> {
    let access = tokens["access_token"]
        .as_str()
        .ok_or_else(|| anyhow!("the token answer has no access token"))?;
    Ok(Entry {
        email: previous.map(|p| p.email.clone()).unwrap_or_default(),
        role: previous.map(|p| p.role.clone()).unwrap_or_default(),
        access_token: access.to_owned(),
        refresh_token: tokens["refresh_token"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
        expires_at: now_secs().saturating_add(
            i64::try_from(tokens["expires_in"].as_u64().unwrap_or(3600)).unwrap_or(3600),
        ),
        token_endpoint: token_endpoint.to_owned(),
        revocation_endpoint: revocation,
    })
}

/// The server asked for, or the one signed in to last.
fn pick(c: &Credentials, server: Option<&str>) -> Result<String> {
    match server {
        Some(s) => Ok(normalize(s)),
        None => c
            .current
            .clone()
            .ok_or_else(|| anyhow!("not signed in: run `vodo login --server <url>` first")),
    }
}

/// A live access token for `server`: the stored one, or a refreshed one
/// when it is within a minute of expiring (the new tokens are kept).
fn access_token(agent: &ureq::Agent, server: Option<&str>) -> Result<(String, String)> {
    let mut c = load()?;
    let server = pick(&c, server)?;
    let entry =
        c.servers.get(&server).cloned().ok_or_else(|| {
            anyhow!("not signed in to {server}: run `vodo login --server {server}`")
        })?;
    if entry.expires_at.saturating_sub(60) > now_secs() {
        return Ok((server, entry.access_token));
    }
    let Some(refresh) = entry.refresh_token.clone() else {
        bail!("the sign-in to {server} expired: run `vodo login --server {server}`");
    };
    let mut r = agent
        .post(&entry.token_endpoint)
        .send_form([
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", refresh.as_str()),
        ])
        .with_context(|| format!("cannot reach {}", entry.token_endpoint))?;
    let v = read_json(&mut r);
    if r.status() != 200 {
        bail!(
            "the sign-in to {server} could not be renewed ({}): run `vodo login --server {server}`",
            message(&v)
        );
    }
    let renewed = entry_from(
        &v,
        &entry.token_endpoint,
        entry.revocation_endpoint.clone(),
        Some(&entry),
    )?;
    let token = renewed.access_token.clone();
    c.servers.insert(server.clone(), renewed);
    save(&c)?;
    Ok((server, token))
}

/// `vodo whoami`.
pub fn whoami(server: Option<&str>, json: bool) -> Result<()> {
    let agent = agent();
    let (server, token) = access_token(&agent, server)?;
    let (email, role) = account(&agent, &server, &token)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "server": server, "email": email, "role": role })
        );
    } else {
        println!("{email} ({role}) on {server}");
    }
    Ok(())
}

/// `vodo logout`: revokes the tokens at the server, then forgets them. They
/// are forgotten even when the server cannot be reached (and it says so).
pub fn logout(server: Option<&str>) -> Result<()> {
    let mut c = load()?;
    let server = pick(&c, server)?;
    let Some(entry) = c.servers.remove(&server) else {
        println!("Not signed in to {server}");
        return Ok(());
    };
    if c.current.as_deref() == Some(server.as_str()) {
        c.current = c.servers.keys().next().cloned();
    }
    save(&c)?;
    let agent = agent();
    let mut unrevoked = Vec::new();
    if let Some(endpoint) = &entry.revocation_endpoint {
        let tokens = entry.refresh_token.iter().chain([&entry.access_token]);
        for t in tokens {
            let done = agent
                .post(endpoint)
                .send_form([("client_id", CLIENT_ID), ("token", t.as_str())])
                .is_ok_and(|r| r.status() == 200);
            if !done {
                unrevoked.push(t);
            }
        }
    }
    if unrevoked.is_empty() {
        println!("Signed out of {server}: its tokens are revoked and forgotten");
    } else {
        println!(
            "Signed out of {server}: the tokens are forgotten here, but the server could not be reached to revoke them; they expire on their own"
        );
    }
    Ok(())
}

/// `vodo plugin:publish`: uploads `package` (streamed from the file), then
/// prints the automated review and the submission's state.
pub fn publish(package: &Path, server: Option<&str>, json: bool) -> Result<()> {
    let agent = agent();
    let (server, token) = access_token(&agent, server)?;
    let bytes = std::fs::metadata(package)
        .with_context(|| format!("reading {}", package.display()))?
        .len();
    // The marketplace's own limit, checked before a byte is sent.
    let max = vodo_marketplace::review::Policy::default().max_package_bytes;
    if bytes > max {
        bail!(
            "{} is {bytes} bytes; a package is at most {max} bytes: make the component smaller (release profile, `opt-level = \"s\"`, strip)",
            package.display(),
        );
    }
    let file =
        std::fs::File::open(package).with_context(|| format!("opening {}", package.display()))?;
    // Drawn on stderr when it is a terminal, hidden otherwise (and with --json).
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(bytes)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(server.clone());
    let mut file = bar.wrap_read(file);
    let mut r = agent
        .post(&format!("{server}/v1/submissions"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/octet-stream")
        .send(ureq::SendBody::from_reader(&mut file))
        .with_context(|| format!("uploading to {server}"))?;
    bar.finish_and_clear();
    if !json {
        eprintln!("uploaded {} ({bytes} bytes) to {server}", package.display());
    }
    let v = read_json(&mut r);
    match r.status().as_u16() {
        201 => {}
        401 => bail!("{}: run `vodo login --server {server}`", message(&v)),
        403 => bail!("{server} refused the upload: {}", message(&v)),
        s => bail!("{server} refused the package ({s}): {}", message(&v)),
    }
    if json {
        println!("{v}");
        return Ok(());
    }
    println!(
        "submitted {} {} as {} ({})",
        v["plugin"].as_str().unwrap_or("?"),
        v["version"].as_str().unwrap_or("?"),
        v["id"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?")
    );
    let findings = v["report"].as_array().cloned().unwrap_or_default();
    if findings.is_empty() {
        println!("automated review: no findings");
    }
    for f in &findings {
        println!(
            "  {} {}: {}{}",
            f["severity"].as_str().unwrap_or("?"),
            f["check"].as_str().unwrap_or("?"),
            f["message"].as_str().unwrap_or(""),
            f["location"]
                .as_str()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        );
    }
    match v["state"].as_str() {
        Some("rejected") => {
            bail!("the automated review rejected it: fix the errors above and publish again")
        }
        Some(state) => println!(
            "state: {state}; a reviewer decides next. Check with `vodo plugin:status {}`",
            v["id"].as_str().unwrap_or("")
        ),
        None => {}
    }
    Ok(())
}

/// `vodo plugin:status <id>`: a submission's state, feedback and history.
pub fn status(id: &str, server: Option<&str>, json: bool) -> Result<()> {
    let agent = agent();
    let (server, token) = access_token(&agent, server)?;
    let id_path: String = url_segment(id);
    let mut r = agent
        .get(&format!("{server}/v1/submissions/{id_path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .with_context(|| format!("cannot reach {server}"))?;
    let v = read_json(&mut r);
    match r.status().as_u16() {
        200 => {}
        404 => bail!("no submission `{id}` of yours on {server}"),
        401 => bail!("{}: run `vodo login --server {server}`", message(&v)),
        s => bail!("{server} answered {s}: {}", message(&v)),
    }
    if json {
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} {} ({}): {}",
        v["plugin"].as_str().unwrap_or("?"),
        v["version"].as_str().unwrap_or("?"),
        id,
        v["state"].as_str().unwrap_or("?")
    );
    if let Some(f) = v["feedback"].as_str().filter(|f| !f.is_empty()) {
        println!("feedback: {f}");
    }
    for t in v["history"].as_array().into_iter().flatten() {
        println!(
            "  {} -> {} by {}{}",
            t["from"].as_str().unwrap_or("?"),
            t["to"].as_str().unwrap_or("?"),
            t["by"].as_str().unwrap_or("?"),
            t["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `s` as one path segment: everything but unreserved characters escaped.
fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
