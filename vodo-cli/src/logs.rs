//! `vodo logs <plugin>`: a plugin's log lines and audit events from a data
//! folder (the one `vodo serve` runs on), interleaved by time, and followed
//! with `--follow` while the server writes them.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use vodo_core::audit::{AuditEvent, AuditKind};
use vodo_core::{InstallationId, PluginId, Timestamp};
use vodo_server::{LogQuery, ServerStore};

/// What to show.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The plugin.
    pub plugin: PluginId,
    /// Only this installation.
    pub installation: Option<InstallationId>,
    /// Only log lines (`log`) or only audit events of this kind.
    pub kind: Option<String>,
    /// Only what happened at or after this time.
    pub since: Option<Timestamp>,
}

/// `--since`: an RFC 3339 time (`2026-12-04T10:00:00Z`) or an age
/// (`90s`, `10m`, `2h`, `7d`) before `now`.
pub fn since(text: &str, now: Timestamp) -> Result<Timestamp> {
    let t = text.trim();
    if let Ok(at) = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        let ms = at.unix_timestamp_nanos() / 1_000_000;
        return Ok(Timestamp(i64::try_from(ms).unwrap_or(i64::MIN)));
    }
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let seconds: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if seconds > 0 => Ok(Timestamp(
            now.0.saturating_sub(n.saturating_mul(seconds * 1000)),
        )),
        _ => bail!(
            "--since `{t}` is not a time like 2026-12-04T10:00:00Z or an age like 10m, 2h, 7d"
        ),
    }
}

/// A time as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(at: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{}ms", at.0))
}

/// One line of the output, as text and as JSON, with its time to
/// interleave by. The same for a data folder and a server (`--server`).
pub struct Entry {
    at: Timestamp,
    text: String,
    json: serde_json::Value,
}

impl Entry {
    /// A plugin's log line.
    pub fn log(at: Timestamp, installation: &str, level: &str, message: &str) -> Self {
        Self {
            at,
            text: format!("{} [{installation}] {level:5} {message}", rfc3339(at)),
            json: serde_json::json!({
                "type": "log",
                "at": at.as_millis(),
                "installation": installation,
                "level": level,
                "message": message,
            }),
        }
    }

    /// An audit record.
    pub fn audit(seq: u64, event: &AuditEvent) -> Self {
        let action = serde_json::to_value(&event.action).unwrap_or_default();
        let installation = event.installation.as_ref().map(InstallationId::as_str);
        Self {
            at: event.at,
            text: format!(
                "{} [{}] audit #{seq} {} {}",
                rfc3339(event.at),
                installation.unwrap_or("-"),
                event.kind().as_str(),
                action
            ),
            json: serde_json::json!({
                "type": "audit",
                "seq": seq,
                "at": event.at.as_millis(),
                "installation": installation,
                "event": action,
            }),
        }
    }
}

/// Prints each batch `next` gives, by time; with `follow`, asks for the
/// next batch every `every` until interrupted.
pub fn show(
    mut next: impl FnMut() -> Result<Vec<Entry>>,
    follow: bool,
    json: bool,
    every: Duration,
) -> Result<()> {
    loop {
        let mut entries = next()?;
        entries.sort_by_key(|e| e.at);
        for e in entries {
            if json {
                println!("{}", e.json);
            } else {
                println!("{}", e.text);
            }
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(every);
    }
}

/// Prints what `filter` selects from the data folder `data`; with
/// `follow`, keeps printing what comes until interrupted.
pub fn run(data: &Path, filter: &Filter, follow: bool, json: bool) -> Result<()> {
    let db = data.join("server.db");
    if !db.is_file() {
        bail!(
            "`{}` is not a data folder of `vodo serve` (it has no server.db): pass the one it runs on with --data",
            data.display()
        );
    }
    let kind = match filter.kind.as_deref() {
        None | Some("log") => None,
        Some(k) => Some(
            k.parse::<AuditKind>()
                .map_err(|e| anyhow::anyhow!("--kind: {e}; or `log` for log lines only"))?,
        ),
    };
    let store = ServerStore::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut log_seq, mut audit_offset) = (0, 0);
    let next = || {
        let mut entries = Vec::new();
        if kind.is_none() {
            for l in store
                .query_logs(&LogQuery {
                    installation: filter.installation.clone(),
                    plugin: Some(filter.plugin.clone()),
                    after: Some(log_seq),
                    since: filter.since,
                    ..LogQuery::default()
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                log_seq = l.seq;
                entries.push(Entry::log(
                    l.line.at,
                    l.line.installation.as_str(),
                    l.line.level,
                    &l.line.message,
                ));
            }
        }
        if filter.kind.as_deref() != Some("log") {
            for (seq, event) in audit_after(&data.join("audit.jsonl"), &mut audit_offset)? {
                let wanted = event.plugin.as_ref() == Some(&filter.plugin)
                    && filter
                        .installation
                        .as_ref()
                        .is_none_or(|i| event.installation.as_ref() == Some(i))
                    && kind.is_none_or(|k| event.kind() == k)
                    && filter.since.is_none_or(|s| event.at >= s);
                if wanted {
                    entries.push(Entry::audit(seq, &event));
                }
            }
        }
        Ok(entries)
    };
    show(next, follow, json, Duration::from_millis(500))
}

/// The audit records of `path` from byte `offset` on (complete lines
/// only), moving `offset` past them. The lines are read, not verified:
/// `vodo serve` and its console verify the chain.
fn audit_after(path: &Path, offset: &mut u64) -> Result<Vec<(u64, AuditEvent)>> {
    #[derive(serde::Deserialize)]
    struct Line {
        seq: u64,
        event: AuditEvent,
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(Vec::new());
    };
    file.seek(SeekFrom::Start(*offset))
        .with_context(|| format!("reading `{}`", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("reading `{}`", path.display()))?;
        // The end, or a line the server is still writing: read it next time.
        if n == 0 || !line.ends_with('\n') {
            return Ok(out);
        }
        *offset += n as u64;
        if let Ok(l) = serde_json::from_str::<Line>(&line) {
            out.push((l.seq, l.event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages() {
        let now = Timestamp(10_000_000);
        assert_eq!(
            since("10m", now).unwrap_or_else(|e| panic!("{e}")),
            Timestamp(9_400_000)
        );
        assert_eq!(
            since("2h", now).unwrap_or_else(|e| panic!("{e}")).0,
            10_000_000 - 7_200_000
        );
        assert_eq!(
            since("1970-01-01T00:00:01Z", now).unwrap_or_else(|e| panic!("{e}")),
            Timestamp(1000)
        );
        assert!(since("soon", now).is_err());
        assert!(since("10y", now).is_err());
        assert_eq!(rfc3339(Timestamp(1000)), "1970-01-01T00:00:01Z");
    }
}
