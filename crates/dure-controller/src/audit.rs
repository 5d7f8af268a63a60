//! The audit log: one JSON line per mutating call and per denied call
//! (`dure_api::AuditEntry`: time, actor, role, source address, method,
//! path, target, status, request id), appended to `<data>/audit/audit.jsonl`
//! and rotated by size to `audit.jsonl.1` … `audit.jsonl.<keep>`, the
//! oldest dropped. Which calls are written is the route table's word
//! (`Route::audited`) plus every refusal of the authorization check.
//!
//! Lines are appended with one `write` each under a lock, in the order the
//! calls end, and never hold a token: the actor is named by its id and
//! description. A line that cannot be written is an error in the log, not a
//! failed call. Lines are not synced one by one: they survive a killed
//! controller (the kernel has them), not a lost host.

use dure_api::{AuditEntry, AuditQuery};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The directory of the audit log under the data directory.
pub const AUDIT_DIR: &str = "audit";
/// The file being written; rotated ones add `.1` (newest) to `.<keep>`.
pub const AUDIT_FILE: &str = "audit.jsonl";
/// Size at which the file is rotated.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// How many rotated files are kept beside the current one.
pub const KEEP_FILES: usize = 8;
/// The most lines one query answers.
pub const MAX_LINES: usize = 10_000;
/// How many lines a query answers unless it says.
pub const DEFAULT_LINES: usize = 100;

pub struct AuditLog {
    dir: PathBuf,
    max_bytes: u64,
    keep: usize,
    /// The open file and its size; `None` until the first line.
    file: Mutex<Option<(File, u64)>>,
    /// Request ids: a random prefix per run and a counter, so ids are
    /// unique across restarts without a system call per request.
    run: String,
    next_request: AtomicU64,
}

impl AuditLog {
    /// The audit log in `dir` (created with the first line).
    pub fn open(dir: PathBuf, max_bytes: u64, keep: usize) -> AuditLog {
        let mut run = [0u8; 4];
        // Without randomness ids still count up within a run.
        let _ = getrandom::getrandom(&mut run);
        AuditLog {
            dir,
            max_bytes,
            keep,
            file: Mutex::new(None),
            run: hex::encode(run),
            next_request: AtomicU64::new(1),
        }
    }

    /// The audit log of a data directory, with the production sizes.
    pub fn in_data_dir(data_dir: &Path) -> AuditLog {
        AuditLog::open(data_dir.join(AUDIT_DIR), MAX_FILE_BYTES, KEEP_FILES)
    }

    /// A new request id, also sent back as `X-Request-Id`.
    pub fn request_id(&self) -> String {
        format!(
            "{}-{}",
            self.run,
            self.next_request.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn current(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    fn rotated(&self, n: usize) -> PathBuf {
        self.dir.join(format!("{AUDIT_FILE}.{n}"))
    }

    /// Appends one line; a failure is logged, never returned.
    pub fn append(&self, entry: &AuditEntry) {
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, request_id = %entry.request_id, "cannot encode an audit line");
                return;
            }
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = self.write_line(&mut file, &line) {
            // Opened again for the next line.
            *file = None;
            tracing::error!(%error, dir = %self.dir.display(), request_id = %entry.request_id, "cannot write the audit log");
        }
    }

    fn write_line(&self, file: &mut Option<(File, u64)>, line: &[u8]) -> std::io::Result<()> {
        if file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.current())?;
            let size = opened.metadata()?.len();
            *file = Some((opened, size));
        }
        let full = file
            .as_ref()
            .is_some_and(|(_, size)| *size > 0 && size + line.len() as u64 > self.max_bytes);
        if full {
            *file = None;
            self.rotate()?;
            return self.write_line(file, line);
        }
        let (open, size) = file.as_mut().expect("opened above");
        open.write_all(line)?;
        *size += line.len() as u64;
        Ok(())
    }

    /// Shifts `audit.jsonl.N` to `.N+1` (dropping the oldest) and the
    /// current file to `.1`.
    fn rotate(&self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.keep == 0 {
            return std::fs::remove_file(self.current());
        }
        std::fs::rename(self.current(), self.rotated(1))
    }

    /// The newest lines matching `query` at `now_ms`, oldest first. Reads
    /// the files, so it is for the blocking pool. A line that cannot be
    /// read is reported and skipped.
    pub fn read(&self, query: &AuditQuery, now_ms: u64) -> std::io::Result<Vec<AuditEntry>> {
        let limit = query.limit.unwrap_or(DEFAULT_LINES).clamp(1, MAX_LINES);
        let since = query.since.map(|d| now_ms.saturating_sub(d.as_millis()));
        let matches = |entry: &AuditEntry| {
            since.is_none_or(|since| entry.time_ms >= since)
                && (!query.denied || entry.denied)
                && query.actor.as_deref().is_none_or(|actor| {
                    entry.actor_id.as_deref() == Some(actor)
                        || entry.actor.as_deref() == Some(actor)
                })
        };
        let mut newest_first: Vec<AuditEntry> = Vec::new();
        // Newest file first; within a file the lines are oldest first.
        let files = std::iter::once(self.current()).chain((1..=self.keep).map(|n| self.rotated(n)));
        for path in files {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut found = Vec::new();
            for (number, line) in BufReader::new(file).lines().enumerate() {
                let line = line?;
                match serde_json::from_str::<AuditEntry>(&line) {
                    Ok(entry) if matches(&entry) => found.push(entry),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(file = %path.display(), line = number + 1, %error, "cannot read an audit line")
                    }
                }
            }
            newest_first.extend(found.into_iter().rev());
            if newest_first.len() >= limit {
                break;
            }
        }
        newest_first.truncate(limit);
        newest_first.reverse();
        Ok(newest_first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64, actor: &str, denied: bool) -> AuditEntry {
        AuditEntry {
            time: dure_core::timefmt::rfc3339_millis(n),
            time_ms: n,
            request_id: format!("r-{n}"),
            actor: Some(actor.into()),
            actor_id: Some(actor.into()),
            role: None,
            source: None,
            method: "POST".into(),
            path: format!("/v1/servers/web{n}/start"),
            target: format!("servers/web{n}"),
            status: if denied { 403 } else { 202 },
            denied,
            error: None,
        }
    }

    #[test]
    fn lines_rotate_by_size_and_queries_read_across_files_newest_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(dir.path().join(AUDIT_DIR), 600, 2);
        for n in 1..=20 {
            log.append(&entry(n, if n % 2 == 0 { "a" } else { "b" }, n % 5 == 0));
        }
        let current = std::fs::metadata(log.current()).expect("current").len();
        assert!(current <= 600, "rotated at the size: {current}");
        assert!(log.rotated(1).exists() && log.rotated(2).exists());
        assert!(!log.rotated(3).exists(), "only `keep` rotated files");

        let all = log
            .read(
                &AuditQuery {
                    limit: Some(1000),
                    ..AuditQuery::default()
                },
                100,
            )
            .expect("read");
        let numbers: Vec<u64> = all.iter().map(|e| e.time_ms).collect();
        assert!(
            numbers.windows(2).all(|w| w[0] + 1 == w[1]),
            "in order: {numbers:?}"
        );
        assert_eq!(numbers.last(), Some(&20), "the newest line is kept");
        assert!(numbers[0] > 1, "the oldest file was dropped");

        let last_three = log
            .read(
                &AuditQuery {
                    limit: Some(3),
                    ..AuditQuery::default()
                },
                100,
            )
            .expect("read");
        assert_eq!(
            last_three.iter().map(|e| e.time_ms).collect::<Vec<_>>(),
            [18, 19, 20]
        );
        let denied = log
            .read(
                &AuditQuery {
                    denied: true,
                    ..AuditQuery::default()
                },
                100,
            )
            .expect("read");
        assert!(denied.iter().all(|e| e.denied) && denied.iter().any(|e| e.time_ms == 20));
        let by_a = log
            .read(
                &AuditQuery {
                    actor: Some("a".into()),
                    ..AuditQuery::default()
                },
                100,
            )
            .expect("read");
        assert!(!by_a.is_empty() && by_a.iter().all(|e| e.time_ms % 2 == 0));
        let recent = log
            .read(
                &AuditQuery {
                    since: Some(dure_core::DurationSpec::from_millis(2)),
                    ..AuditQuery::default()
                },
                20,
            )
            .expect("read");
        assert_eq!(
            recent.iter().map(|e| e.time_ms).collect::<Vec<_>>(),
            [18, 19, 20]
        );
    }

    #[test]
    fn a_line_that_cannot_be_written_fails_no_call_and_the_next_one_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit_dir = dir.path().join(AUDIT_DIR);
        // A file where the directory should be: the line is lost, loudly.
        std::fs::write(&audit_dir, "").expect("write");
        let log = AuditLog::open(audit_dir.clone(), 600, 2);
        log.append(&entry(1, "a", false));
        std::fs::remove_file(&audit_dir).expect("remove");
        log.append(&entry(2, "a", false));
        let read = log.read(&AuditQuery::default(), 10).expect("read");
        assert_eq!(read.iter().map(|e| e.time_ms).collect::<Vec<_>>(), [2]);
        assert_ne!(log.request_id(), log.request_id());
    }
}
