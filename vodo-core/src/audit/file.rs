//! [`FileAudit`]: an append-only JSON-lines audit file whose records are
//! chained under an HMAC.
//!
//! Each line is `{"seq":N,"event":{...},"mac":"<64 hex>"}`. The MAC of line N
//! is HMAC-SHA256 under a key derived from the host's [`SecretKey`] over the
//! MAC of line N-1 (32 zero bytes for line 1) followed by the line's bytes up
//! to `,"mac":`. Changing, deleting, inserting or reordering any line breaks
//! every MAC from there on, and without the key nobody can forge a new chain.
//!
//! What a chain cannot show by itself is that its **last** lines were cut
//! off: a truncated chain is still a valid chain. [`FileAudit::head`] returns
//! the latest `(seq, mac)`; a host that stores it elsewhere from time to time
//! (its database, a signed checkpoint) passes it to [`verify_file`] as an
//! anchor, and truncation past the anchor is then detected too.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use ring::hmac;

use super::{AuditEvent, AuditFilter, AuditLog, AuditRecord, AuditSink};
use crate::digest::{hex, unhex32};
use crate::{Error, Result, SecretKey};

const PURPOSE: &[u8] = b"vodo audit chain v1";
const MAC_MARK: &[u8] = b",\"mac\":\"";

/// The latest record of a chain: keep it elsewhere to detect truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last record (0 for an empty file).
    pub seq: u64,
    /// Its MAC.
    pub mac: [u8; 32],
}

/// What [`verify_file`] found in a file that verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of records.
    pub records: u64,
    /// The last record.
    pub head: ChainHead,
}

/// When a [`FileAudit`] writes its buffer out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileAuditOptions {
    /// Records buffered before they are written to the file (1: every record).
    /// A crash of the process loses at most this many records.
    pub batch: usize,
    /// Whether each write is followed by `fsync`, so that a power cut loses
    /// nothing already written.
    pub sync: bool,
}

impl Default for FileAuditOptions {
    /// Batches of 64 records, no `fsync`.
    fn default() -> Self {
        Self {
            batch: 64,
            sync: false,
        }
    }
}

/// An append-only, HMAC-chained JSON-lines audit file.
///
/// Writes are buffered per [`FileAuditOptions`]; [`flush`](AuditSink::flush)
/// writes the buffer out, and dropping the sink flushes it too. One
/// `FileAudit` (one process) writes a file at a time: two writers would fork
/// the chain, and `verify_file` would report it.
pub struct FileAudit {
    path: PathBuf,
    key: hmac::Key,
    options: FileAuditOptions,
    inner: Mutex<Inner>,
}

struct Inner {
    writer: BufWriter<File>,
    head: ChainHead,
    pending: usize,
    line: Vec<u8>,
}

impl std::fmt::Debug for FileAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAudit")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FileAudit {
    /// Opens (or creates) the audit file at `path`, continuing its chain.
    ///
    /// Only the last record is read to continue the chain; run
    /// [`verify_file`] to check the whole file. If the file ends in a record
    /// cut short by a crash, that incomplete record (which was never fully
    /// written) is removed and a warning is logged.
    pub fn open(
        path: impl AsRef<Path>,
        key: &SecretKey,
        options: FileAuditOptions,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = {
            let err = io_err(&path);
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(&err)?;
            let (head, torn_at) = read_tail(&mut file, &path)?;
            if let Some(len) = torn_at {
                tracing::warn!(path = %path.display(), "audit file ends in an incomplete record; removing it");
                file.set_len(len).map_err(&err)?;
            }
            (file, head)
        };
        let (file, head) = file;
        let key = key.hmac_key(PURPOSE);
        Ok(Self {
            key,
            options: FileAuditOptions {
                batch: options.batch.max(1),
                ..options
            },
            inner: Mutex::new(Inner {
                writer: BufWriter::with_capacity(64 * 1024, file),
                head,
                pending: 0,
                line: Vec::with_capacity(512),
            }),
            path,
        })
    }

    /// The last record written (or buffered).
    pub fn head(&self) -> ChainHead {
        self.inner.lock().head
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, inner: &mut Inner, event: &AuditEvent) -> Result<()> {
        let seq = inner.head.seq + 1;
        let line = &mut inner.line;
        line.clear();
        line.extend_from_slice(b"{\"seq\":");
        line.extend_from_slice(seq.to_string().as_bytes());
        line.extend_from_slice(b",\"event\":");
        serde_json::to_writer(&mut *line, event)
            .map_err(|e| Error::Invalid(format!("cannot serialize audit event: {e}")))?;
        let mac = chain_mac(&self.key, &inner.head.mac, line);
        line.extend_from_slice(MAC_MARK);
        line.extend_from_slice(hex(&mac).as_bytes());
        line.extend_from_slice(b"\"}\n");
        inner.writer.write_all(line).map_err(io_err(&self.path))?;
        inner.head = ChainHead { seq, mac };
        inner.pending += 1;
        Ok(())
    }

    fn write_out(&self, inner: &mut Inner) -> Result<()> {
        let err = io_err(&self.path);
        inner.writer.flush().map_err(&err)?;
        if self.options.sync {
            inner.writer.get_ref().sync_data().map_err(&err)?;
        }
        inner.pending = 0;
        Ok(())
    }
}

fn chain_mac(key: &hmac::Key, prev: &[u8; 32], line: &[u8]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(prev);
    ctx.update(line);
    let tag = ctx.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

impl AuditSink for FileAudit {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        let mut inner = self.inner.lock();
        self.append(&mut inner, event)?;
        if inner.pending >= self.options.batch {
            self.write_out(&mut inner)?;
        }
        Ok(())
    }

    fn record_all(&self, events: &[AuditEvent]) -> Result<()> {
        let mut inner = self.inner.lock();
        for e in events {
            self.append(&mut inner, e)?;
        }
        if inner.pending >= self.options.batch {
            self.write_out(&mut inner)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        self.write_out(&mut inner)
    }
}

impl AuditLog for FileAudit {
    fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        self.flush()?;
        let file = File::open(&self.path).map_err(io_err(&self.path))?;
        let mut out = Vec::new();
        let limit = filter.limit.unwrap_or(usize::MAX);
        for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
            if out.len() >= limit {
                break;
            }
            let line = line.map_err(io_err(&self.path))?;
            let record = parse_line(&line).map_err(|reason| Error::Tampered {
                path: self.path.clone(),
                line: n as u64 + 1,
                reason,
            })?;
            if filter.matches(&record) {
                out.push(record);
            }
        }
        Ok(out)
    }
}

impl Drop for FileAudit {
    fn drop(&mut self) {
        let mut inner = self.inner.lock();
        if let Err(e) = self.write_out(&mut inner) {
            tracing::error!(path = %self.path.display(), error = %e, "audit records could not be written on close");
        }
    }
}

/// Splits a line into the part the MAC covers and the MAC itself.
fn split_mac(line: &[u8]) -> std::result::Result<(&[u8], [u8; 32]), String> {
    let at = line
        .windows(MAC_MARK.len())
        .rposition(|w| w == MAC_MARK)
        .ok_or("no `mac` field")?;
    let (body, rest) = line.split_at(at);
    let hex_part = rest
        .strip_prefix(MAC_MARK)
        .and_then(|r| r.strip_suffix(b"\"}"))
        .ok_or("the line does not end with its `mac` field")?;
    let mac = unhex32(hex_part).ok_or("the `mac` is not 64 hex digits")?;
    Ok((body, mac))
}

fn parse_line(line: &[u8]) -> std::result::Result<AuditRecord, String> {
    serde_json::from_slice::<LineRecord>(line)
        .map(|l| AuditRecord {
            seq: l.seq,
            event: l.event,
        })
        .map_err(|e| format!("not an audit record: {e}"))
}

#[derive(serde::Deserialize)]
struct LineRecord {
    seq: u64,
    event: AuditEvent,
    #[allow(dead_code)]
    mac: String,
}

/// Reads the last complete line's head; returns where a torn tail starts, if any.
fn read_tail(file: &mut File, path: &Path) -> Result<(ChainHead, Option<u64>)> {
    let err = io_err(path);
    let len = file.seek(SeekFrom::End(0)).map_err(&err)?;
    let empty = ChainHead {
        seq: 0,
        mac: [0; 32],
    };
    if len == 0 {
        return Ok((empty, None));
    }
    let mut window = 4096u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start)).map_err(&err)?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        file.take(len - start).read_to_end(&mut buf).map_err(&err)?;
        // A complete file ends with '\n'; anything after the last '\n' is torn.
        let last_nl = buf.iter().rposition(|b| *b == b'\n');
        let (complete_end, torn) = match last_nl {
            Some(i) if i + 1 == buf.len() => (i, None),
            Some(i) => (i, Some(start + i as u64 + 1)),
            None if start == 0 => return Ok((empty, Some(0))),
            None => {
                window *= 2;
                continue;
            }
        };
        let line_start = buf[..complete_end].iter().rposition(|b| *b == b'\n');
        let line = match line_start {
            Some(s) => &buf[s + 1..complete_end],
            None if start == 0 => &buf[..complete_end],
            None => {
                window *= 2;
                continue;
            }
        };
        let tampered = |reason: String| Error::Tampered {
            path: path.to_path_buf(),
            line: 0,
            reason: format!("last record: {reason}"),
        };
        let (_, mac) = split_mac(line).map_err(&tampered)?;
        let record = parse_line(line).map_err(tampered)?;
        return Ok((
            ChainHead {
                seq: record.seq,
                mac,
            },
            torn,
        ));
    }
}

/// Checks every record of the audit file at `path` against its chain.
///
/// With an `anchor` (a [`ChainHead`] kept elsewhere), also checks that the
/// anchored record is still there unchanged, which detects truncation.
/// Returns the first broken line as [`Error::Tampered`].
pub fn verify_file(
    path: impl AsRef<Path>,
    key: &SecretKey,
    anchor: Option<ChainHead>,
) -> Result<VerifyReport> {
    let path = path.as_ref();
    let key = key.hmac_key(PURPOSE);
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::new(file);
    let mut head = ChainHead {
        seq: 0,
        mac: [0; 32],
    };
    let mut line = Vec::new();
    let mut n = 0u64;
    let tampered = |line: u64, reason: String| Error::Tampered {
        path: path.to_path_buf(),
        line,
        reason,
    };
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io_err(path))?;
        if read == 0 {
            break;
        }
        n += 1;
        if line.pop() != Some(b'\n') {
            return Err(tampered(
                n,
                "the last record is incomplete (no newline)".into(),
            ));
        }
        let (body, mac) = split_mac(&line).map_err(|r| tampered(n, r))?;
        // Timing does not matter here: the verifier holds the key and the file.
        if chain_mac(&key, &head.mac, body) != mac {
            return Err(tampered(
                n,
                "its MAC does not match: the record was changed, or a record before it was removed, inserted or reordered".into(),
            ));
        }
        let record = parse_line(&line).map_err(|r| tampered(n, r))?;
        if record.seq != head.seq + 1 {
            return Err(tampered(
                n,
                format!("sequence number {} follows {}", record.seq, head.seq),
            ));
        }
        head = ChainHead {
            seq: record.seq,
            mac,
        };
        if let Some(a) = anchor
            && a.seq == head.seq
            && a.mac != head.mac
        {
            return Err(tampered(n, "it differs from the anchored record".into()));
        }
    }
    if let Some(a) = anchor
        && a.seq > head.seq
    {
        return Err(tampered(
            n + 1,
            format!(
                "the file ends at record {} but the anchor is record {}: records were removed from the end",
                head.seq, a.seq
            ),
        ));
    }
    Ok(VerifyReport { records: n, head })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditAction;
    use crate::{PluginId, Timestamp};

    fn key() -> SecretKey {
        SecretKey::from_bytes([7; 32])
    }

    fn write(path: &Path, n: usize) -> ChainHead {
        let log = FileAudit::open(path, &key(), FileAuditOptions::default()).unwrap();
        for i in 0..n {
            log.record(
                &AuditEvent::now(AuditAction::KeyUsed {
                    key_id: format!("k{i}"),
                    uses: 1,
                })
                .plugin(&PluginId::new("p"))
                .at(Timestamp(i as i64)),
            )
            .unwrap();
        }
        log.flush().unwrap();
        log.head()
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, 3);
        let head = write(&path, 2);
        assert_eq!(head.seq, 5);
        let report = verify_file(&path, &key(), Some(head)).unwrap();
        assert_eq!(report.records, 5);
        assert_eq!(report.head, head);
    }

    #[test]
    fn a_torn_tail_is_reported_then_repaired_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, 2);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":3,\"ev").unwrap();
        drop(f);
        let e = verify_file(&path, &key(), None).unwrap_err().to_string();
        assert!(e.contains("incomplete"), "{e}");
        let head = write(&path, 1);
        assert_eq!(head.seq, 3);
        verify_file(&path, &key(), None).unwrap();
    }

    #[test]
    fn the_wrong_key_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, 2);
        let e = verify_file(&path, &SecretKey::from_bytes([8; 32]), None).unwrap_err();
        assert!(matches!(e, Error::Tampered { line: 1, .. }), "{e}");
    }
}
