//! The embedded SQLite backend of [`Store`]: one database file holding the
//! current key space, the full change history, and the persisted leases.
//!
//! Owns: the on-disk schema and its consistency checks on open, revision
//! bookkeeping, compaction (of the whole store, and of one prefix's history),
//! lease deadlines (kept in memory), and the writer thread (`writer`) that
//! commits writes in groups and expires leases between them.
//!
//! Layout of the database:
//! - `meta`: a single row with the current revision, the compacted revision
//!   and the next lease id.
//! - `kv_history`: every put and delete ever applied (until compacted), keyed
//!   by `(revision, seq)`; `seq` orders the changes inside one revision. It
//!   answers `get_at`, `list_at` and `changes_since`.
//! - `kv_current`: the live keys only, so ordinary reads never scan history.
//! - `leases`: granted leases and their ttl. Deadlines are not persisted: on
//!   open every lease gets a fresh full ttl, like etcd after a leader change,
//!   because wall-clock time spent down says nothing about the lease holder.
//! - `forgotten`: per key prefix, the revision before which its history was
//!   forgotten ([`Store::forget_history`]); reads that would need that past
//!   are refused, like reads before the compacted revision.
//!
//! Compacting deletes rows and leaves the freed pages inside the file, where
//! SQLite reuses them for later writes: a store whose busy prefixes are
//! trimmed regularly stops growing, but its file never shrinks by itself.
//! There is no `VACUUM`: it rewrites the whole file and would hold up every
//! write meanwhile.
//!
//! Every write runs on one writer thread (`writer`), in call order, which
//! commits the transactions queued at once as one group: one SQLite
//! transaction and one fsync for the group, each write in its own savepoint
//! with its own revision and outcome, every caller answered only once the
//! group is durable. Reads run on the runtime's blocking pool.
//!
//! [`SqliteStore::open_read_only`] opens the same file for reading next to a
//! running writer (WAL lets readers and one writer work at once): that is how
//! a backup is taken from a controller's data directory without the API.

mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior,
};
use tokio::sync::{oneshot, watch};

use writer::{QueuedTxn, WriteJob, WriteRequest, WriterThread, MAX_GROUP_WRITES};

use crate::{
    Compare, EventKind, History, KeyValue, LeaseId, Result, Revision, Store, StoreError,
    StoreFuture, Txn, TxnOp, TxnResult, WatchEvent,
};

/// Bumped whenever the schema changes incompatibly; stored in `user_version`.
/// Version 2 added the `forgotten` table; a version 1 file is upgraded when
/// it is opened for writing.
const SCHEMA_VERSION: i64 = 2;

/// The first schema version with the `forgotten` table.
const FORGOTTEN_SINCE: i64 = 2;

/// How often the background thread looks for overdue leases. Expiry is
/// therefore late by at most this much, which lease ttls (seconds) absorb.
const EXPIRY_INTERVAL: Duration = Duration::from_millis(200);

/// Other handles on the same file (a store being dropped while a new one
/// opens) only ever hold the write lock briefly, so wait rather than fail.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL,
    next_lease INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted, next_lease) VALUES (1, 0, 0, 1);

CREATE TABLE IF NOT EXISTS kv_history (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1)),
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_history_key ON kv_history (key, revision, seq);

CREATE TABLE IF NOT EXISTS kv_current (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_current_lease ON kv_current (lease) WHERE lease IS NOT NULL;

CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY,
    ttl_ms INTEGER NOT NULL
);
";

/// What schema version 2 added to version 1.
const FORGOTTEN_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS forgotten (
    prefix TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Columns selected from `kv_history` by [`history_row`], in its order.
const HISTORY_COLUMNS: &str = "key, kind, value, create_revision, revision, version, lease";

/// Columns selected from `kv_current` by [`current_row`], in its order.
const CURRENT_COLUMNS: &str = "key, value, create_revision, mod_revision, version, lease";

/// A [`Store`] kept in one SQLite file. Every acknowledged write has been
/// fsynced (WAL with `synchronous=FULL`), so it survives a crash or power loss.
pub struct SqliteStore {
    inner: Arc<Inner>,
    writer: Option<WriterThread>,
}

/// What the writer thread and the readers on the blocking pool share.
struct Inner {
    path: PathBuf,
    /// One connection: SQLite serialises writers anyway, and reads under the
    /// same lock see a consistent revision without a read transaction.
    conn: Mutex<Connection>,
    leases: Mutex<HashMap<LeaseId, LeaseClock>>,
    revision_tx: watch::Sender<Revision>,
    /// Whether the file has the `forgotten` table: always, except a
    /// version 1 file opened read-only (whose writer never forgets).
    tracks_forgotten: bool,
}

/// In-memory countdown of one lease.
struct LeaseClock {
    ttl: Duration,
    /// `None` when `now + ttl` does not fit in an `Instant`: never expires.
    deadline: Option<Instant>,
}

impl LeaseClock {
    fn started_now(ttl: Duration) -> LeaseClock {
        LeaseClock {
            ttl,
            deadline: Instant::now().checked_add(ttl),
        }
    }

    fn is_overdue(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| deadline <= now)
    }
}

/// The bookkeeping row of the database.
struct Meta {
    revision: Revision,
    compacted: Revision,
}

impl SqliteStore {
    /// Opens (creating if missing, with its parent directory) the store at
    /// `path`, checks it is intact, and starts lease expiry. Blocks on disk
    /// I/O (it may create, check and upgrade the file).
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with_group_limit(path, MAX_GROUP_WRITES)
    }

    /// Opens like [`SqliteStore::open`], on the runtime's blocking pool: how
    /// async code opens a store, so no async worker waits on the disk.
    pub async fn open_async(path: &Path) -> Result<SqliteStore> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || SqliteStore::open(&path))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the store stopped: {e}")))?
    }

    /// Opens like [`SqliteStore::open`], committing at most `max_group`
    /// queued transactions together (see the module docs); 1 commits and
    /// fsyncs every write alone. For tests and benchmarks: the default is
    /// what a controller uses.
    pub fn open_with_group_limit(path: &Path, max_group: usize) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let conn = open_connection(path).map_err(|e| classify_open_error(path, e))?;
        check_integrity(&conn, path)?;
        ensure_schema(&conn, path)?;
        let meta = check_meta(&conn, path, true)?;
        let leases = load_leases(&conn)?;
        let (revision_tx, _) = watch::channel(meta.revision);
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            leases: Mutex::new(leases),
            revision_tx,
            tracks_forgotten: true,
        });
        let writer = WriterThread::spawn(Arc::clone(&inner), true, max_group)?;
        Ok(SqliteStore {
            inner,
            writer: Some(writer),
        })
    }

    /// Opens an existing store for reading only, alongside any process that
    /// writes to it. Checks it like [`SqliteStore::open`] but creates
    /// nothing, upgrades nothing (a file of the previous schema version,
    /// written by an older build, is read as it is) and runs no lease
    /// expiry; every write fails with a database error.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore> {
        let conn = open_read_only_connection(path).map_err(|e| classify_open_error(path, e))?;
        check_integrity(&conn, path)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| classify_open_error(path, e))?;
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::Corrupt(format!(
                "database file {} is not a dure store this build can read (schema version {version}, expected 1 to {SCHEMA_VERSION})",
                path.display()
            )));
        }
        let tracks_forgotten = version >= FORGOTTEN_SINCE;
        let meta = check_meta(&conn, path, tracks_forgotten)?;
        let leases = load_leases(&conn)?;
        let (revision_tx, _) = watch::channel(meta.revision);
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            leases: Mutex::new(leases),
            revision_tx,
            tracks_forgotten,
        });
        let writer = WriterThread::spawn(Arc::clone(&inner), false, MAX_GROUP_WRITES)?;
        Ok(SqliteStore {
            inner,
            writer: Some(writer),
        })
    }

    /// The database file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Drop for SqliteStore {
    /// Stops the writer thread once the queued writes are done and waits
    /// for it, so the connection is closed (and the WAL checkpointed) by the
    /// time `drop` returns, unless a read on the blocking pool still holds it.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.stop();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Opening and validating the database file.

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL keeps a commit to one sequential append; FULL fsyncs it at every
    // commit, which is what makes an acknowledged write survive power loss.
    // This is also the first statement that reads the file header, so a
    // file that is not SQLite at all fails here.
    conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
        row.get::<_, String>(0)
    })?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// A reader of a file another process may be writing. The journal mode is
/// the file's own (WAL once a writer has opened it); a reader cannot change it.
fn open_read_only_connection(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0))?;
    Ok(conn)
}

/// Turns SQLite's "this is not a database" family of errors into
/// [`StoreError::Corrupt`] naming the file, so an operator knows which file
/// to restore, and names the file when it cannot be opened at all; other
/// errors are backend errors ([`sqlite_error`]).
fn classify_open_error(path: &Path, err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(format!(
            "database file {} is damaged or not a sqlite database: {err}",
            path.display()
        )),
        // SQLite's own message does not say which file it could not open.
        Some(ErrorCode::CannotOpen) => StoreError::Io(std::io::Error::other(format!(
            "cannot open database file {}: {err}",
            path.display()
        ))),
        _ => sqlite_error(err),
    }
}

/// Turns an SQLite error into the backend-neutral [`StoreError::Backend`]:
/// the one place this backend's error type is translated, so none of it
/// reaches the trait's callers.
fn sqlite_error(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {err}"))
}

/// Runs `PRAGMA quick_check`: it reads every page, which is cheap for a
/// configuration store and catches truncated or overwritten files before
/// they hand out wrong data.
fn check_integrity(conn: &Connection, path: &Path) -> Result<()> {
    let problems = quick_check(conn).map_err(|e| classify_open_error(path, e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "database file {} failed its integrity check: {}",
        path.display(),
        problems.join("; ")
    )))
}

fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(10)")?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    rows.collect()
}

/// Creates the schema in a fresh file and upgrades a file of the previous
/// version; refuses a file from a newer build.
fn ensure_schema(conn: &Connection, path: &Path) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| classify_open_error(path, e))?;
    let create = |schema: &str| {
        let script =
            format!("BEGIN IMMEDIATE; {schema} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;");
        conn.execute_batch(&script)
            .map_err(|e| classify_open_error(path, e))
    };
    match version {
        0 => create(&format!("{SCHEMA} {FORGOTTEN_SCHEMA}")),
        1 => create(FORGOTTEN_SCHEMA),
        SCHEMA_VERSION => Ok(()),
        other => Err(StoreError::Corrupt(format!(
            "database file {} has schema version {other}, this build understands {SCHEMA_VERSION}",
            path.display()
        ))),
    }
}

/// Cross-checks the revision counters against the data: a revision counter
/// behind the history would reuse revisions and corrupt every watcher.
fn check_meta(conn: &Connection, path: &Path, tracks_forgotten: bool) -> Result<Meta> {
    let corrupt =
        |what: String| StoreError::Corrupt(format!("database file {}: {what}", path.display()));
    let meta = read_meta(conn)
        .optional()
        .map_err(sqlite_error)?
        .ok_or_else(|| corrupt("the meta row is missing".to_string()))?;
    let newest_history: Option<Revision> = conn
        .query_row("SELECT max(revision) FROM kv_history", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    let newest_current: Option<Revision> = conn
        .query_row("SELECT max(mod_revision) FROM kv_current", [], |row| {
            row.get(0)
        })
        .map_err(sqlite_error)?;
    let newest_forgotten: Option<Revision> = if tracks_forgotten {
        conn.query_row("SELECT max(revision) FROM forgotten", [], |row| row.get(0))
            .map_err(sqlite_error)?
    } else {
        None
    };
    let newest = newest_history
        .max(newest_current)
        .max(newest_forgotten)
        .unwrap_or(0);
    if newest > meta.revision {
        return Err(corrupt(format!(
            "meta revision {} is behind the stored data at revision {newest}",
            meta.revision
        )));
    }
    if meta.compacted > meta.revision {
        return Err(corrupt(format!(
            "compacted revision {} is ahead of the current revision {}",
            meta.compacted, meta.revision
        )));
    }
    Ok(meta)
}

/// Every persisted lease starts a fresh full ttl (see the module docs).
fn load_leases(conn: &Connection) -> Result<HashMap<LeaseId, LeaseClock>> {
    let mut stmt = conn
        .prepare("SELECT id, ttl_ms FROM leases")
        .map_err(sqlite_error)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, LeaseId>(0)?, row.get::<_, u64>(1)?))
        })
        .map_err(sqlite_error)?;
    let mut leases = HashMap::new();
    for row in rows {
        let (id, ttl_ms) = row.map_err(sqlite_error)?;
        leases.insert(id, LeaseClock::started_now(Duration::from_millis(ttl_ms)));
    }
    Ok(leases)
}

// ---------------------------------------------------------------------------
// Row helpers shared by reads and writes.

fn read_meta(conn: &Connection) -> rusqlite::Result<Meta> {
    conn.query_row(
        "SELECT revision, compacted FROM meta WHERE id = 1",
        [],
        |row| {
            Ok(Meta {
                revision: row.get(0)?,
                compacted: row.get(1)?,
            })
        },
    )
}

/// Maps a row selected with [`CURRENT_COLUMNS`].
fn current_row(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(0)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
        version: row.get(4)?,
        lease: row.get(5)?,
    })
}

/// Maps a row selected with [`HISTORY_COLUMNS`].
fn history_row(row: &Row<'_>) -> rusqlite::Result<(EventKind, KeyValue)> {
    let kind = match row.get::<_, i64>(1)? {
        KIND_PUT => EventKind::Put,
        KIND_DELETE => EventKind::Delete,
        other => return Err(rusqlite::Error::IntegralValueOutOfRange(1, other)),
    };
    let kv = KeyValue {
        key: row.get(0)?,
        value: row.get(2)?,
        create_revision: row.get(3)?,
        mod_revision: row.get(4)?,
        version: row.get(5)?,
        lease: row.get(6)?,
    };
    Ok((kind, kv))
}

fn current_kv(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    let sql = format!("SELECT {CURRENT_COLUMNS} FROM kv_current WHERE key = ?1");
    conn.query_row(&sql, [key], current_row).optional()
}

fn lease_exists(conn: &Connection, lease: LeaseId) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM leases WHERE id = ?1", [lease], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// The smallest string greater than every string that starts with `prefix`,
/// or `None` if there is none (empty prefix, or only `char::MAX`s).
///
/// Prefix scans use `key >= prefix AND key < end` instead of `LIKE`, so `%`
/// and `_` in keys are plain characters and the key index is used. SQLite
/// compares TEXT bytewise, and UTF-8 byte order is code point order, so
/// bumping the last code point gives the bound.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn next_char(c: char) -> Option<char> {
    match c {
        // Surrogates are not chars; the next scalar value after them.
        '\u{D7FF}' => Some('\u{E000}'),
        char::MAX => None,
        _ => char::from_u32(u32::from(c) + 1),
    }
}

/// Rejects reads at revisions the store cannot answer.
fn check_readable(meta: &Meta, revision: Revision) -> Result<()> {
    if revision > meta.revision {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current: meta.revision,
        });
    }
    if revision < meta.compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            oldest: meta.compacted,
        });
    }
    Ok(())
}

/// The keys a history read covers, to tell which forgotten histories it
/// would need.
enum Scope<'a> {
    Key(&'a str),
    Prefix(&'a str),
}

impl Scope<'_> {
    /// Whether the read covers keys under the forgotten `prefix`.
    fn touches(&self, forgotten: &str) -> bool {
        match self {
            Scope::Key(key) => key.starts_with(forgotten),
            // The keys of two prefixes either nest or do not meet at all.
            Scope::Prefix(prefix) => prefix.starts_with(forgotten) || forgotten.starts_with(prefix),
        }
    }
}

/// The latest point, after `after`, before which the history of keys that
/// `scope` covers was forgotten: the prefix and the revision.
fn forgotten_after(
    conn: &Connection,
    scope: &Scope<'_>,
    after: Revision,
) -> rusqlite::Result<Option<(String, Revision)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT prefix, revision FROM forgotten WHERE revision > ?1 ORDER BY revision DESC",
    )?;
    let rows = stmt.query_map([after], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Revision>(1)?))
    })?;
    for row in rows {
        let (prefix, revision) = row?;
        if scope.touches(&prefix) {
            return Ok(Some((prefix, revision)));
        }
    }
    Ok(None)
}

/// Deletes, for every key under `prefix` (all keys for `""`), each change at
/// or before `revision` except its latest one there, and that one too when
/// it is a delete: what is left answers every read from `revision` on.
fn delete_superseded(conn: &Connection, prefix: &str, revision: Revision) -> rusqlite::Result<u64> {
    let removed = conn.execute(
        &format!(
            "DELETE FROM kv_history
             WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND revision <= ?3
               AND (kind = {KIND_DELETE} OR EXISTS (
                   SELECT 1 FROM kv_history AS newer
                   WHERE newer.key = kv_history.key AND newer.revision <= ?3
                     AND (newer.revision, newer.seq) > (kv_history.revision, kv_history.seq)))"
        ),
        params![prefix, prefix_end(prefix), revision],
    )?;
    Ok(removed as u64)
}

// ---------------------------------------------------------------------------
// Writing one revision.

/// Applies changes that all belong to the revision after the current one.
/// Records each change in `kv_history` with an increasing `seq`; whether it
/// recorded anything decides if the revision is actually taken.
struct RevisionWriter<'a> {
    conn: &'a Connection,
    revision: Revision,
    seq: u64,
}

impl RevisionWriter<'_> {
    fn changed(&self) -> bool {
        self.seq > 0
    }

    fn apply(&mut self, op: &TxnOp) -> Result<()> {
        match op {
            TxnOp::Put { key, value, lease } => self.put(key, value, *lease),
            TxnOp::Delete { key } => self.delete(key).map(|_| ()),
            TxnOp::DeletePrefix { prefix } => self.delete_prefix(prefix),
        }
    }

    fn put(&mut self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<()> {
        if let Some(id) = lease {
            if !lease_exists(self.conn, id).map_err(sqlite_error)? {
                return Err(StoreError::LeaseNotFound(id));
            }
        }
        let (create_revision, version) = match current_kv(self.conn, key).map_err(sqlite_error)? {
            Some(prev) => (prev.create_revision, prev.version + 1),
            None => (self.revision, 1),
        };
        self.conn
            .execute(
                "INSERT OR REPLACE INTO kv_current
                 (key, value, create_revision, mod_revision, version, lease)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key, value, create_revision, self.revision, version, lease],
            )
            .map_err(sqlite_error)?;
        self.record(key, KIND_PUT, value, create_revision, version, lease)
    }

    /// Returns whether the key existed.
    fn delete(&mut self, key: &str) -> Result<bool> {
        let removed = self
            .conn
            .execute("DELETE FROM kv_current WHERE key = ?1", [key])
            .map_err(sqlite_error)?;
        if removed == 0 {
            return Ok(false);
        }
        self.record(key, KIND_DELETE, &[], 0, 0, None)?;
        Ok(true)
    }

    fn delete_prefix(&mut self, prefix: &str) -> Result<()> {
        let keys = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT key FROM kv_current
                 WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) ORDER BY key",
                )
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map(params![prefix, prefix_end(prefix)], |row| row.get(0))
                .map_err(sqlite_error)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(sqlite_error)?
        };
        for key in keys {
            self.delete(&key)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        key: &str,
        kind: i64,
        value: &[u8],
        create_revision: Revision,
        version: u64,
        lease: Option<LeaseId>,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO kv_history
                 (revision, seq, key, kind, value, create_revision, version, lease)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    self.revision,
                    self.seq,
                    key,
                    kind,
                    value,
                    create_revision,
                    version,
                    lease
                ],
            )
            .map_err(sqlite_error)?;
        self.seq += 1;
        Ok(())
    }
}

fn compare_holds(conn: &Connection, compare: &Compare) -> rusqlite::Result<bool> {
    Ok(match compare {
        Compare::ModRevision { key, revision } => {
            current_kv(conn, key)?.map_or(0, |kv| kv.mod_revision) == *revision
        }
        Compare::Exists { key } => current_kv(conn, key)?.is_some(),
        Compare::Missing { key } => current_kv(conn, key)?.is_none(),
        Compare::Value { key, value } => {
            current_kv(conn, key)?.is_some_and(|kv| kv.value == *value)
        }
    })
}

/// Runs `txn` against `writer`: its compares, then the branch they chose.
/// Returns whether the success branch ran.
fn apply_txn(writer: &mut RevisionWriter<'_>, txn: &Txn) -> Result<bool> {
    let mut succeeded = true;
    for compare in &txn.compares {
        if !compare_holds(writer.conn, compare).map_err(sqlite_error)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    for op in ops {
        writer.apply(op)?;
    }
    Ok(succeeded)
}

// ---------------------------------------------------------------------------
// The store itself.

impl Inner {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written:
        // an unfinished transaction is rolled back when it is dropped.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<LeaseId, LeaseClock>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rejects a read of `scope` at `revision` that the store cannot answer.
    fn check_history(
        &self,
        conn: &Connection,
        scope: &Scope<'_>,
        revision: Revision,
    ) -> Result<()> {
        check_readable(&read_meta(conn).map_err(sqlite_error)?, revision)?;
        self.check_remembered(conn, scope, revision)
    }

    /// Rejects a read of `scope` at `revision` (or of the changes after it)
    /// that needs history forgotten under some prefix.
    fn check_remembered(
        &self,
        conn: &Connection,
        scope: &Scope<'_>,
        revision: Revision,
    ) -> Result<()> {
        if !self.tracks_forgotten {
            return Ok(());
        }
        match forgotten_after(conn, scope, revision).map_err(sqlite_error)? {
            Some((prefix, oldest)) => Err(StoreError::Forgotten {
                prefix,
                requested: revision,
                oldest,
            }),
            None => Ok(()),
        }
    }

    /// Runs `body` in one immediate SQLite transaction against a writer for
    /// the next revision, commits, and publishes the revision if `body`
    /// changed any key. An error from `body` rolls everything back.
    fn write<R>(
        &self,
        body: impl FnOnce(&mut RevisionWriter<'_>) -> Result<R>,
    ) -> Result<(R, Revision)> {
        let (out, revision, changed) = {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let current = read_meta(&tx).map_err(sqlite_error)?.revision;
            let mut writer = RevisionWriter {
                conn: &tx,
                revision: current + 1,
                seq: 0,
            };
            let out = body(&mut writer)?;
            let changed = writer.changed();
            if changed {
                tx.execute("UPDATE meta SET revision = ?1 WHERE id = 1", [current + 1])
                    .map_err(sqlite_error)?;
            }
            // Committed even when unchanged: `body` may have changed leases.
            tx.commit().map_err(sqlite_error)?;
            (out, if changed { current + 1 } else { current }, changed)
        };
        if changed {
            self.publish(revision);
        }
        Ok((out, revision))
    }

    /// Announces a committed revision. Two writers may publish out of
    /// order after releasing the lock, so never move the value backwards.
    fn publish(&self, revision: Revision) {
        self.revision_tx.send_if_modified(|seen| {
            let newer = revision > *seen;
            if newer {
                *seen = revision;
            }
            newer
        });
    }

    fn get_at(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>> {
        let conn = self.conn();
        self.check_history(&conn, &Scope::Key(key), revision)?;
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM kv_history
             WHERE key = ?1 AND revision <= ?2
             ORDER BY revision DESC, seq DESC LIMIT 1"
        );
        let latest = conn
            .query_row(&sql, params![key, revision], history_row)
            .optional()
            .map_err(sqlite_error)?;
        Ok(latest.and_then(|(kind, kv)| (kind == EventKind::Put).then_some(kv)))
    }

    fn list_at(&self, prefix: &str, revision: Revision) -> Result<Vec<KeyValue>> {
        let conn = self.conn();
        self.check_history(&conn, &Scope::Prefix(prefix), revision)?;
        // For every key, its latest change at or before `revision`; keys
        // whose latest change is a delete did not exist then.
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM (
                 SELECT *, row_number() OVER (
                     PARTITION BY key ORDER BY revision DESC, seq DESC) AS newest
                 FROM kv_history
                 WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND revision <= ?3)
             WHERE newest = 1 AND kind = {KIND_PUT}
             ORDER BY key"
        );
        let mut stmt = conn.prepare(&sql).map_err(sqlite_error)?;
        let rows = stmt
            .query_map(params![prefix, prefix_end(prefix), revision], history_row)
            .map_err(sqlite_error)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(sqlite_error)?.1);
        }
        Ok(out)
    }

    fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {CURRENT_COLUMNS} FROM kv_current
             WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) ORDER BY key"
        );
        let mut stmt = conn.prepare(&sql).map_err(sqlite_error)?;
        let rows = stmt
            .query_map(params![prefix, prefix_end(prefix)], current_row)
            .map_err(sqlite_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sqlite_error)
    }

    fn changes_since(&self, prefix: &str, after: Revision) -> Result<Vec<WatchEvent>> {
        let conn = self.conn();
        let meta = read_meta(&conn).map_err(sqlite_error)?;
        if after < meta.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: meta.compacted,
            });
        }
        self.check_remembered(&conn, &Scope::Prefix(prefix), after)?;
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM kv_history
             WHERE revision > ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
             ORDER BY revision, seq"
        );
        let mut stmt = conn.prepare(&sql).map_err(sqlite_error)?;
        let rows = stmt
            .query_map(params![after, prefix, prefix_end(prefix)], history_row)
            .map_err(sqlite_error)?;
        let mut events = Vec::new();
        for row in rows {
            let (kind, kv) = row.map_err(sqlite_error)?;
            events.push(WatchEvent { kind, kv });
        }
        Ok(events)
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let ttl_ms = u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .min(i64::MAX as u64);
        let id = {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            // Ids come from a counter, never reused, so a stale holder of a
            // revoked lease cannot keep someone else's lease alive.
            let id: LeaseId = tx
                .query_row("SELECT next_lease FROM meta WHERE id = 1", [], |row| {
                    row.get(0)
                })
                .map_err(sqlite_error)?;
            tx.execute(
                "INSERT INTO leases (id, ttl_ms) VALUES (?1, ?2)",
                params![id, ttl_ms],
            )
            .map_err(sqlite_error)?;
            tx.execute("UPDATE meta SET next_lease = ?1 WHERE id = 1", [id + 1])
                .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            id
        };
        self.leases().insert(id, LeaseClock::started_now(ttl));
        Ok(id)
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let now = Instant::now();
        let mut leases = self.leases();
        match leases.get_mut(&lease) {
            Some(clock) if !clock.is_overdue(now) => {
                clock.deadline = now.checked_add(clock.ttl);
                Ok(())
            }
            // Overdue leases are as good as gone: the next expiry pass
            // revokes them, and reviving one would race with it.
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    /// Deletes the lease and its keys; returns the deleted keys.
    fn revoke_lease(&self, lease: LeaseId) -> Result<Vec<String>> {
        let (keys, _) = self.write(|writer| {
            if !lease_exists(writer.conn, lease).map_err(sqlite_error)? {
                return Err(StoreError::LeaseNotFound(lease));
            }
            let keys = keys_with_lease(writer.conn, lease).map_err(sqlite_error)?;
            for key in &keys {
                writer.delete(key)?;
            }
            writer
                .conn
                .execute("DELETE FROM leases WHERE id = ?1", [lease])
                .map_err(sqlite_error)?;
            Ok(keys)
        })?;
        self.leases().remove(&lease);
        Ok(keys)
    }

    fn expire_leases(&self) -> Result<Vec<String>> {
        let mut overdue = self.take_overdue_leases().into_iter();
        let mut deleted = Vec::new();
        while let Some((id, clock)) = overdue.next() {
            match self.revoke_lease(id) {
                Ok(keys) => deleted.extend(keys),
                // Revoked by someone else meanwhile: nothing left to do.
                Err(StoreError::LeaseNotFound(_)) => {}
                Err(err) => {
                    // Put the unrevoked leases back, still overdue, so the
                    // next pass retries them.
                    let mut leases = self.leases();
                    leases.insert(id, clock);
                    leases.extend(overdue);
                    return Err(err);
                }
            }
        }
        Ok(deleted)
    }

    /// Removes overdue leases from the clock table first, so a keep-alive
    /// racing with their revocation fails instead of silently losing.
    fn take_overdue_leases(&self) -> Vec<(LeaseId, LeaseClock)> {
        let now = Instant::now();
        let mut leases = self.leases();
        let ids: Vec<LeaseId> = leases
            .iter()
            .filter(|(_, clock)| clock.is_overdue(now))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| leases.remove(&id).map(|clock| (id, clock)))
            .collect()
    }

    fn export(&self, prefix: &str) -> Result<History> {
        let mut conn = self.conn();
        // One read transaction, so a writer in another process (a running
        // controller, when a backup reads its file) cannot slip a revision
        // in between the counters and the rows.
        let tx = conn.transaction().map_err(sqlite_error)?;
        let meta = read_meta(&tx).map_err(sqlite_error)?;
        // Importing the rows left after a forget must not answer reads the
        // source refuses, so the forget point counts as compacted.
        let forgotten = if self.tracks_forgotten {
            forgotten_after(&tx, &Scope::Prefix(prefix), meta.compacted).map_err(sqlite_error)?
        } else {
            None
        };
        let compacted = forgotten.map_or(meta.compacted, |(_, revision)| revision);
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM kv_history
             WHERE key >= ?1 AND (?2 IS NULL OR key < ?2)
             ORDER BY revision, seq"
        );
        let mut events = Vec::new();
        {
            let mut stmt = tx.prepare(&sql).map_err(sqlite_error)?;
            let rows = stmt
                .query_map(params![prefix, prefix_end(prefix)], history_row)
                .map_err(sqlite_error)?;
            for row in rows {
                let (kind, kv) = row.map_err(sqlite_error)?;
                events.push(WatchEvent { kind, kv });
            }
        }
        tx.finish().map_err(sqlite_error)?;
        Ok(History {
            revision: meta.revision,
            compacted,
            events,
        })
    }

    fn import(&self, history: &History) -> Result<()> {
        check_importable(history)?;
        {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let meta = read_meta(&tx).map_err(sqlite_error)?;
            let leases: u64 = tx
                .query_row("SELECT count(*) FROM leases", [], |row| row.get(0))
                .map_err(sqlite_error)?;
            if meta.revision != 0 || leases != 0 {
                return Err(StoreError::Import(format!(
                    "the target store is not empty (revision {}, {leases} leases); import only into a new store",
                    meta.revision
                )));
            }
            let mut latest: BTreeMap<&str, &WatchEvent> = BTreeMap::new();
            let mut position: Option<(Revision, u64)> = None;
            for event in &history.events {
                let kv = &event.kv;
                let seq = match position {
                    Some((revision, seq)) if revision == kv.mod_revision => seq + 1,
                    _ => 0,
                };
                position = Some((kv.mod_revision, seq));
                let (kind, value, create_revision, version) = match event.kind {
                    EventKind::Put => (
                        KIND_PUT,
                        kv.value.as_slice(),
                        kv.create_revision,
                        kv.version,
                    ),
                    EventKind::Delete => (KIND_DELETE, &[][..], 0, 0),
                };
                tx.execute(
                    "INSERT INTO kv_history
                         (revision, seq, key, kind, value, create_revision, version, lease)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
                    params![
                        kv.mod_revision,
                        seq,
                        kv.key,
                        kind,
                        value,
                        create_revision,
                        version
                    ],
                )
                .map_err(sqlite_error)?;
                latest.insert(kv.key.as_str(), event);
            }
            for event in latest.values().filter(|e| e.kind == EventKind::Put) {
                let kv = &event.kv;
                tx.execute(
                    "INSERT INTO kv_current
                         (key, value, create_revision, mod_revision, version, lease)
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
                    params![
                        kv.key,
                        kv.value,
                        kv.create_revision,
                        kv.mod_revision,
                        kv.version
                    ],
                )
                .map_err(sqlite_error)?;
            }
            tx.execute(
                "UPDATE meta SET revision = ?1, compacted = ?2 WHERE id = 1",
                params![history.revision, history.compacted],
            )
            .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
        }
        self.publish(history.revision);
        Ok(())
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        let meta = read_meta(&tx).map_err(sqlite_error)?;
        if revision > meta.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: meta.revision,
            });
        }
        if revision <= meta.compacted {
            return Ok(()); // Already forgotten.
        }
        delete_superseded(&tx, "", revision).map_err(sqlite_error)?;
        tx.execute("UPDATE meta SET compacted = ?1 WHERE id = 1", [revision])
            .map_err(sqlite_error)?;
        tx.commit().map_err(sqlite_error)?;
        Ok(())
    }

    fn forget_history(&self, prefix: &str, before: Revision) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        let meta = read_meta(&tx).map_err(sqlite_error)?;
        if before > meta.revision {
            return Err(StoreError::FutureRevision {
                requested: before,
                current: meta.revision,
            });
        }
        // Rows at or before an earlier point are gone already, so calling
        // again with the same point deletes nothing.
        let removed = delete_superseded(&tx, prefix, before).map_err(sqlite_error)?;
        tx.execute(
            "INSERT INTO forgotten (prefix, revision) VALUES (?1, ?2)
             ON CONFLICT (prefix) DO UPDATE SET revision = max(revision, excluded.revision)",
            params![prefix, before],
        )
        .map_err(sqlite_error)?;
        tx.commit().map_err(sqlite_error)?;
        Ok(removed)
    }
}

/// Refuses a history that could not have come from a store: it would break
/// the revision invariants every reader and watcher relies on.
fn check_importable(history: &History) -> Result<()> {
    let refuse = |message: String| Err(StoreError::Import(message));
    if history.compacted > history.revision {
        return refuse(format!(
            "its compaction point {} is after its revision {}",
            history.compacted, history.revision
        ));
    }
    let mut previous: Revision = 0;
    for event in &history.events {
        let kv = &event.kv;
        let key = &kv.key;
        let revision = kv.mod_revision;
        if revision == 0 || revision > history.revision {
            return refuse(format!(
                "the change of `{key}` at revision {revision} is outside revisions 1 to {}",
                history.revision
            ));
        }
        if revision < previous {
            return refuse(format!(
                "the change of `{key}` at revision {revision} comes after one at revision {previous}; changes must be in revision order"
            ));
        }
        previous = revision;
        if let Some(lease) = kv.lease {
            return refuse(format!(
                "`{key}` is bound to lease {lease}; leases are not carried over, so export keys without leases"
            ));
        }
        let put_is_sound =
            kv.version >= 1 && kv.create_revision >= 1 && kv.create_revision <= revision;
        if event.kind == EventKind::Put && !put_is_sound {
            return refuse(format!(
                "the put of `{key}` at revision {revision} has version {} and create revision {}; a put has version 1 or more and was created at or before its revision",
                kv.version, kv.create_revision
            ));
        }
    }
    Ok(())
}

fn keys_with_lease(conn: &Connection, lease: LeaseId) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT key FROM kv_current WHERE lease = ?1 ORDER BY key")?;
    let rows = stmt.query_map([lease], |row| row.get(0))?;
    rows.collect()
}

/// Runs a read on the runtime's blocking pool, never on an async worker.
fn read<T: Send + 'static>(
    inner: &Arc<Inner>,
    body: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
) -> StoreFuture<'static, T> {
    let inner = Arc::clone(inner);
    Box::pin(async move {
        tokio::task::spawn_blocking(move || body(&inner))
            .await
            .map_err(|e| StoreError::Backend(format!("a store read stopped: {e}")))?
    })
}

impl SqliteStore {
    /// Queues a write that runs alone for the writer thread now (so writes
    /// apply in call order) and returns a future of its outcome.
    fn write_later<T: Send + 'static>(
        &self,
        body: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let (answer, answered) = oneshot::channel();
        let job: WriteJob = Box::new(move |inner| {
            // The caller may have stopped waiting; the write stands anyway.
            let _ = answer.send(body(inner));
        });
        self.queue(WriteRequest::Alone(job), answered)
    }

    /// Queues `request` now and returns a future of the answer it sends.
    fn queue<T: Send + 'static>(
        &self,
        request: WriteRequest,
        answered: oneshot::Receiver<Result<T>>,
    ) -> StoreFuture<'static, T> {
        let queued = self
            .writer
            .as_ref()
            .is_some_and(|writer| writer.queue(request));
        Box::pin(async move {
            if !queued {
                return Err(StoreError::Backend(
                    "the store's writer thread has stopped".to_string(),
                ));
            }
            answered.await.map_err(|_| {
                StoreError::Backend("the store's writer thread stopped during a write".to_string())
            })?
        })
    }
}

impl Store for SqliteStore {
    fn current_revision(&self) -> StoreFuture<'_, Revision> {
        read(&self.inner, |inner| {
            Ok(read_meta(&inner.conn()).map_err(sqlite_error)?.revision)
        })
    }

    fn get(&self, key: &str) -> StoreFuture<'_, Option<KeyValue>> {
        let key = key.to_string();
        read(&self.inner, move |inner| {
            current_kv(&inner.conn(), &key).map_err(sqlite_error)
        })
    }

    fn list(&self, prefix: &str) -> StoreFuture<'_, Vec<KeyValue>> {
        let prefix = prefix.to_string();
        read(&self.inner, move |inner| inner.list(&prefix))
    }

    fn get_at(&self, key: &str, revision: Revision) -> StoreFuture<'_, Option<KeyValue>> {
        let key = key.to_string();
        read(&self.inner, move |inner| inner.get_at(&key, revision))
    }

    fn list_at(&self, prefix: &str, revision: Revision) -> StoreFuture<'_, Vec<KeyValue>> {
        let prefix = prefix.to_string();
        read(&self.inner, move |inner| inner.list_at(&prefix, revision))
    }

    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnResult> {
        // Grouped with the transactions queued behind it (see `writer`).
        let (answer, answered) = oneshot::channel();
        self.queue(WriteRequest::Txn(QueuedTxn { txn, answer }), answered)
    }

    fn changes_since(&self, prefix: &str, after: Revision) -> StoreFuture<'_, Vec<WatchEvent>> {
        let prefix = prefix.to_string();
        read(&self.inner, move |inner| {
            inner.changes_since(&prefix, after)
        })
    }

    fn subscribe(&self) -> watch::Receiver<Revision> {
        self.inner.revision_tx.subscribe()
    }

    fn grant_lease(&self, ttl: Duration) -> StoreFuture<'_, LeaseId> {
        self.write_later(move |inner| inner.grant_lease(ttl))
    }

    fn keep_alive(&self, lease: LeaseId) -> StoreFuture<'_, ()> {
        // Only the in-memory countdown changes: nothing to wait for.
        let kept = self.inner.keep_alive(lease);
        Box::pin(async move { kept })
    }

    fn revoke_lease(&self, lease: LeaseId) -> StoreFuture<'_, ()> {
        self.write_later(move |inner| inner.revoke_lease(lease).map(|_| ()))
    }

    fn expire_leases(&self) -> StoreFuture<'_, Vec<String>> {
        self.write_later(Inner::expire_leases)
    }

    fn compact(&self, revision: Revision) -> StoreFuture<'_, ()> {
        self.write_later(move |inner| inner.compact(revision))
    }

    fn forget_history(&self, prefix: &str, before: Revision) -> StoreFuture<'_, u64> {
        let prefix = prefix.to_string();
        self.write_later(move |inner| inner.forget_history(&prefix, before))
    }

    fn export(&self, prefix: &str) -> StoreFuture<'_, History> {
        let prefix = prefix.to_string();
        read(&self.inner, move |inner| inner.export(&prefix))
    }

    fn import(&self, history: History) -> StoreFuture<'_, ()> {
        self.write_later(move |inner| inner.import(&history))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_the_last_code_point() {
        assert_eq!(prefix_end("/a/").as_deref(), Some("/a0"));
        assert_eq!(prefix_end("/a%").as_deref(), Some("/a&"));
        assert_eq!(prefix_end("é").as_deref(), Some("ê"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end(""), None);
    }

    #[tokio::test]
    async fn prefix_bounds_hold_for_multibyte_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        for key in ["/é", "/é/1", "/ê", "/e", "/\u{10FFFF}", "/\u{10FFFF}x", "0"] {
            store.put(key, b"v").await.expect("put");
        }
        let keys = async |prefix: &str| -> Vec<String> {
            let listed = store.list(prefix).await.expect("list");
            listed.into_iter().map(|kv| kv.key).collect()
        };
        assert_eq!(keys("/é").await, ["/é", "/é/1"]);
        assert_eq!(keys("/\u{10FFFF}").await, ["/\u{10FFFF}", "/\u{10FFFF}x"]);
        assert_eq!(keys("/").await.len(), 6);
    }
}
