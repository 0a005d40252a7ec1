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
//!
//! # Several writers
//!
//! Several processes (a server and a CLI command, two hosts) may append to
//! one file: each write takes an exclusive lock on the file (`flock`), reads
//! the chain's head again if another writer moved it, and chains its records
//! after it. The file stays one chain, in the order the writes got the lock.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
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
/// writes the buffer out, and dropping the sink flushes it too. Records are
/// chained when they are written, under a lock on the file, so any number of
/// `FileAudit`s (in one process or several) can share a file without forking
/// its chain.
pub struct FileAudit {
    path: PathBuf,
    key: hmac::Key,
    options: FileAuditOptions,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    /// The head as of the last write, and the file's length then: if the
    /// length moved, another writer appended and the head is read again.
    head: ChainHead,
    known_len: u64,
    /// Serialized events waiting to be chained and written.
    pending: Vec<Vec<u8>>,
    out: Vec<u8>,
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
        if options.batch == 0 {
            return Err(Error::Invalid(
                "`FileAuditOptions::batch` is zero: write out after at least 1 record".into(),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let (head, known_len) = {
            let err = io_err(&path);
            let _lock = FileLock::take(&file, &path)?;
            let (head, torn_at) = read_tail(&file, &path)?;
            if let Some(len) = torn_at {
                tracing::warn!(path = %path.display(), "audit file ends in an incomplete record; removing it");
                file.set_len(len).map_err(&err)?;
            }
            (head, file.metadata().map_err(&err)?.len())
        };
        let key = key.hmac_key(PURPOSE);
        Ok(Self {
            key,
            options,
            inner: Mutex::new(Inner {
                file,
                head,
                known_len,
                pending: Vec::new(),
                out: Vec::with_capacity(64 * 1024),
            }),
            path,
        })
    }

    /// The last record written. Buffered records are written out first, so
    /// the head covers every record recorded before the call.
    pub fn head(&self) -> ChainHead {
        let mut inner = self.inner.lock();
        if let Err(e) = self.write_out(&mut inner) {
            tracing::error!(path = %self.path.display(), error = %e, "audit records could not be written");
        }
        inner.head
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, inner: &mut Inner, event: &AuditEvent) -> Result<()> {
        let json = serde_json::to_vec(event)
            .map_err(|e| Error::Invalid(format!("cannot serialize audit event: {e}")))?;
        inner.pending.push(json);
        Ok(())
    }

    /// Chains the pending records after the file's current head and writes
    /// them, under the file's lock.
    fn write_out(&self, inner: &mut Inner) -> Result<()> {
        if inner.pending.is_empty() {
            return Ok(());
        }
        let err = io_err(&self.path);
        let _lock = FileLock::take(&inner.file, &self.path)?;
        let mut len = inner.file.metadata().map_err(&err)?.len();
        if len != inner.known_len {
            // Another writer appended since our last write: continue its
            // chain (after removing a record it left half written, if it crashed).
            let (head, torn_at) = read_tail(&inner.file, &self.path)?;
            if let Some(at) = torn_at {
                tracing::warn!(path = %self.path.display(), "audit file ends in an incomplete record; removing it");
                inner.file.set_len(at).map_err(&err)?;
                len = at;
            }
            inner.head = head;
        }
        inner.out.clear();
        let mut next = inner.head;
        for json in &inner.pending {
            let out = &mut inner.out;
            let start = out.len();
            let seq = next.seq + 1;
            out.extend_from_slice(b"{\"seq\":");
            out.extend_from_slice(seq.to_string().as_bytes());
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(json);
            let mac = chain_mac(&self.key, &next.mac, &out[start..]);
            out.extend_from_slice(MAC_MARK);
            out.extend_from_slice(hex(&mac).as_bytes());
            out.extend_from_slice(b"\"}\n");
            next = ChainHead { seq, mac };
        }
        (&inner.file).write_all(&inner.out).map_err(&err)?;
        if self.options.sync {
            inner.file.sync_data().map_err(&err)?;
        }
        inner.head = next;
        inner.known_len = len + inner.out.len() as u64;
        inner.pending.clear();
        Ok(())
    }
}

/// An exclusive lock on an open file, released on drop.
struct FileLock<'f>(&'f File);

impl<'f> FileLock<'f> {
    fn take(file: &'f File, path: &Path) -> Result<Self> {
        file.lock().map_err(io_err(path))?;
        Ok(Self(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
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
        if inner.pending.len() >= self.options.batch {
            self.write_out(&mut inner)?;
        }
        Ok(())
    }

    fn record_all(&self, events: &[AuditEvent]) -> Result<()> {
        let mut inner = self.inner.lock();
        for e in events {
            self.append(&mut inner, e)?;
        }
        if inner.pending.len() >= self.options.batch {
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
fn read_tail(mut file: &File, path: &Path) -> Result<(ChainHead, Option<u64>)> {
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
    fn two_writers_on_one_file_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let options = FileAuditOptions {
            batch: 3,
            sync: false,
        };
        let a = FileAudit::open(&path, &key(), options).unwrap();
        let b = FileAudit::open(&path, &key(), options).unwrap();
        std::thread::scope(|s| {
            for (log, name) in [(&a, "a"), (&b, "b")] {
                s.spawn(move || {
                    for i in 0..200 {
                        log.record(
                            &AuditEvent::now(AuditAction::KeyUsed {
                                key_id: format!("{name}{i}"),
                                uses: 1,
                            })
                            .plugin(&PluginId::new("p")),
                        )
                        .unwrap();
                    }
                    log.flush().unwrap();
                });
            }
        });
        let (ha, hb) = (a.head(), b.head());
        drop((a, b));
        let report = verify_file(&path, &key(), Some(ha.max_by_seq(hb))).unwrap();
        assert_eq!(report.records, 400);
        assert_eq!(report.head.seq, 400);
    }

    impl ChainHead {
        fn max_by_seq(self, other: Self) -> Self {
            if self.seq >= other.seq { self } else { other }
        }
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
