//! `vodo tinker`: a prompt against a running server (local or remote) to
//! drive one plugin of one installation by hand: send it events and
//! requests and see what it answered, used, logged and left in the audit
//! trail; read and write the installation's records and the plugin's
//! settings. Line editing and history come from `rustyline`; the history
//! is kept in the config folder.
//!
//! It signs in as a person of the server (the console's accounts), with
//! the password from `$VODO_PASSWORD` or asked without echo.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::remote::{Session, problem, segment};

/// One line typed at the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `event <name> [payload]`
    Event { name: String, payload: String },
    /// `request <METHOD> <path> [body]`
    Request {
        method: String,
        path: String,
        body: String,
    },
    /// `get <kind> <id>`
    Get { kind: String, id: String },
    /// `put <kind> <id> <json>`
    Put {
        kind: String,
        id: String,
        json: String,
    },
    /// `settings`
    Settings,
    /// `set <key> <value>`
    Set { key: String, value: String },
    /// `logs`: the newest lines
    Logs,
    /// `use <plugin> [installation]`
    Use {
        plugin: String,
        installation: Option<String>,
    },
    /// `help`
    Help,
    /// `quit` or `exit`
    Quit,
    /// An empty line.
    Nothing,
}

/// What `help` prints.
pub const HELP: &str = "\
event <name> [payload]         send an event, such as: event order.created {\"id\":\"1001\"}
request <METHOD> <path> [body] send a request to one of the plugin's routes: request GET /status
get <kind> <id>                read a record of the installation: get order 1001
put <kind> <id> <json>         write one: put order 1001 {\"total\":\"49.90\"}
settings                       the plugin's settings
set <key> <value>              change one: set threshold 5
logs                           the plugin's newest log lines
use <plugin> [installation]    drive another plugin (or installation)
help, quit";

/// Splits off the first word of `s`.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Parses one line; the error says how to write it.
pub fn parse(line: &str) -> Result<Line, String> {
    let (command, rest) = word(line.trim());
    let need = |ok: bool, usage: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("usage: {usage}"))
        }
    };
    Ok(match command {
        "" => Line::Nothing,
        "event" => {
            let (name, payload) = word(rest);
            need(!name.is_empty(), "event <name> [payload]")?;
            Line::Event {
                name: name.into(),
                payload: payload.into(),
            }
        }
        "request" => {
            let (method, rest) = word(rest);
            let (path, body) = word(rest);
            need(
                !method.is_empty() && path.starts_with('/'),
                "request <METHOD> </path> [body]",
            )?;
            Line::Request {
                method: method.to_ascii_uppercase(),
                path: path.into(),
                body: body.into(),
            }
        }
        "get" => {
            let (kind, rest) = word(rest);
            let (id, extra) = word(rest);
            need(!id.is_empty() && extra.is_empty(), "get <kind> <id>")?;
            Line::Get {
                kind: kind.into(),
                id: id.into(),
            }
        }
        "put" => {
            let (kind, rest) = word(rest);
            let (id, json) = word(rest);
            need(!json.is_empty(), "put <kind> <id> <json>")?;
            serde_json::from_str::<Value>(json).map_err(|e| {
                format!("the record is not JSON ({e}): put order 1001 {{\"total\":\"1\"}}")
            })?;
            Line::Put {
                kind: kind.into(),
                id: id.into(),
                json: json.into(),
            }
        }
        "settings" => Line::Settings,
        "set" => {
            let (key, value) = word(rest);
            need(!key.is_empty(), "set <key> <value>")?;
            Line::Set {
                key: key.into(),
                value: value.into(),
            }
        }
        "logs" => Line::Logs,
        "use" => {
            let (plugin, rest) = word(rest);
            let (installation, _) = word(rest);
            need(!plugin.is_empty(), "use <plugin> [installation]")?;
            Line::Use {
                plugin: plugin.into(),
                installation: (!installation.is_empty()).then(|| installation.into()),
            }
        }
        "help" | "?" => Line::Help,
        "quit" | "exit" => Line::Quit,
        other => return Err(format!("no command `{other}`: type `help`")),
    })
}

/// The prompt's state: who, where, and how far the logs and audit were shown.
struct Tinker {
    session: Session,
    installation: String,
    plugin: String,
    log_after: u64,
    audit_after: u64,
}

impl Tinker {
    fn plugin_path(&self, tail: &str) -> String {
        format!(
            "/v1/installations/{}/plugins/{}{tail}",
            segment(&self.installation),
            segment(&self.plugin)
        )
    }

    /// Skips what is in the logs and the audit trail already, so that only
    /// what the next commands cause is shown.
    fn catch_up(&mut self) -> Result<()> {
        self.new_logs(false)?;
        self.new_audit(false)?;
        Ok(())
    }

    fn new_logs(&mut self, print: bool) -> Result<()> {
        let (status, v) = self.session.call(
            "GET",
            &self.plugin_path(&format!("/logs?after={}&limit=500", self.log_after)),
            None,
        )?;
        if status != 200 {
            return Err(problem(status, &v));
        }
        for l in v["lines"].as_array().into_iter().flatten() {
            if print {
                println!(
                    "  log {:5} {}",
                    l["level"].as_str().unwrap_or("?"),
                    l["message"].as_str().unwrap_or("")
                );
            }
        }
        if let Some(n) = v["next_after"].as_u64() {
            self.log_after = n;
        }
        Ok(())
    }

    fn new_audit(&mut self, print: bool) -> Result<()> {
        let (status, v) = self.session.call(
            "GET",
            &format!(
                "/v1/audit?plugin={}&installation={}&after={}&limit=500",
                segment(&self.plugin),
                segment(&self.installation),
                self.audit_after
            ),
            None,
        )?;
        if status != 200 {
            return Err(problem(status, &v));
        }
        for r in v["records"].as_array().into_iter().flatten() {
            if let Some(seq) = r["seq"].as_u64() {
                self.audit_after = self.audit_after.max(seq);
            }
            if print {
                // What happened, without the kind printed before it.
                let mut detail = r["action"].clone();
                if let Some(o) = detail.as_object_mut() {
                    o.remove("kind");
                }
                println!(
                    "  audit #{} {} {}",
                    r["seq"],
                    r["kind"].as_str().unwrap_or("?"),
                    detail
                );
            }
        }
        Ok(())
    }

    /// What a call did: usage, then the log lines and audit records it caused.
    fn after_call(&mut self, v: &Value) -> Result<()> {
        let u = &v["usage"];
        println!(
            "  usage {:.1} ms, {} host calls ({} denied), {} KiB peak memory",
            u["wall_ms"].as_f64().unwrap_or(0.0),
            u["host_calls"],
            u["denied_host_calls"],
            u["peak_memory"].as_u64().unwrap_or(0) / 1024
        );
        // The server stores lines and audit records twice a second.
        std::thread::sleep(Duration::from_millis(700));
        self.new_logs(true)?;
        self.new_audit(true)
    }

    /// Runs one line; `false` to stop.
    fn run(&mut self, line: Line) -> Result<bool> {
        match line {
            Line::Nothing => {}
            Line::Quit => return Ok(false),
            Line::Help => println!("{HELP}"),
            Line::Use {
                plugin,
                installation,
            } => {
                self.plugin = plugin;
                if let Some(i) = installation {
                    self.installation = i;
                }
                let (status, v) = self.session.call("GET", &self.plugin_path(""), None)?;
                if status != 200 {
                    return Err(problem(status, &v));
                }
                self.log_after = 0;
                self.audit_after = 0;
                self.catch_up()?;
                println!(
                    "driving {} {} in {}",
                    self.plugin,
                    v["version"].as_str().unwrap_or(""),
                    self.installation
                );
            }
            Line::Event { name, payload } => {
                let (status, v) = self.session.call(
                    "POST",
                    &self.plugin_path("/events"),
                    Some(json!({ "event": name, "payload": payload })),
                )?;
                if status != 200 {
                    return Err(problem(status, &v));
                }
                match v["error"].as_str() {
                    None => println!("ok"),
                    Some(e) => println!("failed: {e}"),
                }
                self.after_call(&v)?;
            }
            Line::Request { method, path, body } => {
                let (status, v) = self.session.call(
                    "POST",
                    &self.plugin_path("/requests"),
                    Some(json!({ "method": method, "path": path, "body": body })),
                )?;
                if status != 200 {
                    return Err(problem(status, &v));
                }
                match (&v["response"], v["error"].as_str()) {
                    (r, None) if r.is_object() => {
                        println!("{}", r["status"]);
                        for h in r["headers"].as_array().into_iter().flatten() {
                            println!(
                                "{}: {}",
                                h[0].as_str().unwrap_or(""),
                                h[1].as_str().unwrap_or("")
                            );
                        }
                        println!();
                        println!("{}", r["body"].as_str().unwrap_or(""));
                    }
                    (_, e) => println!("failed: {}", e.unwrap_or("no answer")),
                }
                self.after_call(&v)?;
            }
            Line::Get { kind, id } => {
                let (status, v) = self.session.call(
                    "GET",
                    &format!(
                        "/v1/installations/{}/records/{}/{}",
                        segment(&self.installation),
                        segment(&kind),
                        segment(&id)
                    ),
                    None,
                )?;
                if status != 200 {
                    return Err(problem(status, &v));
                }
                println!("{v}");
            }
            Line::Put { kind, id, json } => {
                let body: Value = serde_json::from_str(&json)?;
                let (status, v) = self.session.call(
                    "PUT",
                    &format!(
                        "/v1/installations/{}/records/{}/{}",
                        segment(&self.installation),
                        segment(&kind),
                        segment(&id)
                    ),
                    Some(body),
                )?;
                if status != 200 {
                    return Err(problem(status, &v));
                }
                let how = if v["created"] == true {
                    "created"
                } else {
                    "replaced"
                };
                println!("{how} {kind} {id}");
            }
            Line::Settings => {
                let (status, v) = self
                    .session
                    .call("GET", &self.plugin_path("/settings"), None)?;
                if status != 200 {
                    return Err(problem(status, &v));
                }
                let all = v["settings"].as_object().cloned().unwrap_or_default();
                if all.is_empty() {
                    println!("no settings");
                }
                for (k, value) in all {
                    println!("{k} = {}", value.as_str().unwrap_or(""));
                }
            }
            Line::Set { key, value } => {
                let (status, v) = self.session.call(
                    "PUT",
                    &self.plugin_path(&format!("/settings/{}", segment(&key))),
                    Some(json!({ "value": value })),
                )?;
                if status != 200 {
                    return Err(problem(status, &v));
                }
                println!("{key} = {value}");
            }
            Line::Logs => {
                let saved = self.log_after;
                self.log_after = 0;
                let shown = self.new_logs(true);
                if shown.is_err() {
                    self.log_after = saved;
                }
                shown?;
            }
        }
        Ok(true)
    }
}

/// Where to sign in and what to drive.
pub struct Options {
    /// The server's URL.
    pub server: String,
    /// The account's email.
    pub email: String,
    /// The installation.
    pub installation: String,
    /// The plugin's slug.
    pub plugin: String,
}

/// The prompt: reads lines until `quit` or end of input. Errors of one
/// line are printed and the prompt goes on; only signing in, or a plugin
/// that is not there, stops it.
pub fn run(o: &Options) -> Result<()> {
    let session = Session::connect(&o.server, &o.email)?;
    let mut t = Tinker {
        session,
        installation: o.installation.clone(),
        plugin: o.plugin.clone(),
        log_after: 0,
        audit_after: 0,
    };
    t.run(Line::Use {
        plugin: o.plugin.clone(),
        installation: None,
    })
    .with_context(|| format!("`{}` in `{}`", o.plugin, o.installation))?;
    println!("type `help` for the commands, `quit` to leave");
    let mut editor = rustyline::DefaultEditor::new().context("starting the prompt")?;
    let history = crate::account::config_dir()
        .ok()
        .map(|d| d.join("tinker_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    loop {
        let prompt = format!("{}@{}> ", t.plugin, t.installation);
        let line = match editor.readline(&prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading a line"),
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        let keep_going = match parse(&line) {
            Ok(l) => t.run(l).unwrap_or_else(|e| {
                println!("error: {e:#}");
                true
            }),
            Err(usage) => {
                println!("{usage}");
                true
            }
        };
        if !keep_going {
            break;
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_their_rest_kept_whole() {
        assert_eq!(
            parse(r#"event order.created {"id": "1001", "total": "4 9"}"#),
            Ok(Line::Event {
                name: "order.created".into(),
                payload: r#"{"id": "1001", "total": "4 9"}"#.into()
            })
        );
        assert_eq!(
            parse("request get /status"),
            Ok(Line::Request {
                method: "GET".into(),
                path: "/status".into(),
                body: String::new()
            })
        );
        assert_eq!(
            parse("set greeting hello world"),
            Ok(Line::Set {
                key: "greeting".into(),
                value: "hello world".into()
            })
        );
        assert_eq!(parse("   "), Ok(Line::Nothing));
        assert_eq!(parse("exit"), Ok(Line::Quit));
    }

    #[test]
    fn bad_lines_say_how_to_write_them() {
        assert_eq!(parse("event"), Err("usage: event <name> [payload]".into()));
        assert!(parse("request GET status").unwrap_err().contains("</path>"));
        assert!(parse("put order 1 {nope").unwrap_err().contains("not JSON"));
        assert!(parse("get order").unwrap_err().contains("get <kind> <id>"));
        assert!(parse("get order 1 2").is_err());
        assert!(parse("launch").unwrap_err().contains("type `help`"));
    }
}
