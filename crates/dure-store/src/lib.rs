//! The revisioned key-value store that holds Dure's configuration and
//! runtime records, shaped like etcd's model: every write bumps one global
//! revision, transactions compare-and-swap, history can be read at a past
//! revision, changes can be watched from a revision, and keys can be bound
//! to a lease that expires unless kept alive.
//!
//! History is kept for every key until it is compacted: for the whole store
//! ([`Store::compact`]) or for the keys under one prefix
//! ([`Store::forget_history`], for records whose past nobody reads, so that
//! they stop growing the store while the history of every other prefix
//! stays whole).
//!
//! API boundary: callers see only the [`Store`] trait; the SQLite backend is
//! one implementation, and `conformance` (behind the `conformance` feature,
//! so production builds leave it out) is the suite every backend passes.
//!
//! The trait is async so that no caller blocks an async runtime's worker on
//! disk I/O. Its methods return boxed futures ([`StoreFuture`]) written out
//! by hand rather than `async fn` (not usable through `dyn Store`) or the
//! `async-trait` crate, because a hand-written method can do work when it
//! is *called*: every write is queued at the call, so writes are applied in
//! call order. The event log relies on that to number events under a lock
//! without holding the lock while the write is synced to disk. A write
//! whose future is dropped unawaited may still be applied.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use sqlite::SqliteStore;

/// A store-wide, strictly increasing write counter. Revision 0 means "nothing
/// written yet"; the first write makes revision 1.
pub type Revision = u64;

/// Identifies a lease; keys attached to it are deleted when it expires.
pub type LeaseId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was created (last created, after a delete).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation, starting at 1.
    pub version: u64,
    pub lease: Option<LeaseId>,
}

/// A condition checked at the start of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals `revision` (0 = the key does not exist).
    ModRevision { key: String, revision: Revision },
    /// The key exists.
    Exists { key: String },
    /// The key does not exist.
    Missing { key: String },
    /// The key exists with exactly this value.
    Value { key: String, value: Vec<u8> },
}

/// One write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
    DeletePrefix {
        prefix: String,
    },
}

/// Compare-and-swap: if every compare holds, apply `success`, else `failure`.
/// All ops of the chosen branch commit as one revision (no new revision when
/// the branch changes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For a delete: the key with an empty value and `mod_revision` set to the
    /// revision of the delete.
    pub kv: KeyValue,
}

/// The retained history of part of a store, as [`Store::export`] reads it
/// and [`Store::import`] loads it: enough to rebuild the same keys at the
/// same revisions in another store, of any backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The store's revision when the history was read; an import leaves the
    /// new store at this revision, so the next write continues the count.
    pub revision: Revision,
    /// Reads before this revision are not answered (0: nothing compacted).
    /// When the history of a prefix within the exported one was forgotten
    /// ([`Store::forget_history`]), this is raised to that point, so a store
    /// the history is imported into refuses the reads the source refused.
    pub compacted: Revision,
    /// Every retained change, in revision order (within one revision, in
    /// the order applied). After compaction this includes, for each key,
    /// the change that compaction kept.
    pub events: Vec<WatchEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (its database, its disk, its writer thread); the
    /// message is the backend's own, so no backend type leaks out.
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("store i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("lease {0} does not exist or has expired")]
    LeaseNotFound(LeaseId),
    #[error("revision {requested} has been compacted; the oldest readable revision is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("the history of keys under `{prefix}` is kept from revision {oldest} on; revision {requested} cannot be read there")]
    Forgotten {
        prefix: String,
        requested: Revision,
        oldest: Revision,
    },
    #[error("revision {requested} is in the future; the store is at revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot import history: {0}")]
    Import(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What every [`Store`] method returns: a boxed future, so the trait stays
/// usable as `Arc<dyn Store>` (see the module docs for why not `async fn`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A revisioned key-value store. Keys are UTF-8 paths such as
/// `/nodes/n1/node.json`; values are bytes. All methods are safe to call from
/// many tasks and threads, and none blocks the caller: each returns a future
/// that the backend completes off the async runtime's worker threads.
///
/// Writes are durable when their future resolves. A write is queued when
/// its method is *called*, not when the future is first polled, and writes
/// are applied in the order of the calls: a caller may take a number under
/// a lock, call [`Store::txn`], release the lock and only then await.
pub trait Store: Send + Sync + 'static {
    /// The revision of the last write.
    fn current_revision(&self) -> StoreFuture<'_, Revision>;

    /// The current value of `key`.
    fn get(&self, key: &str) -> StoreFuture<'_, Option<KeyValue>>;

    /// All current keys starting with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> StoreFuture<'_, Vec<KeyValue>>;

    /// The value of `key` as it was just after `revision`. Fails with
    /// [`StoreError::Compacted`] before the compaction point, and with
    /// [`StoreError::Forgotten`] before the point the history of a prefix
    /// of `key` was forgotten.
    fn get_at(&self, key: &str, revision: Revision) -> StoreFuture<'_, Option<KeyValue>>;

    /// All keys under `prefix` as they were just after `revision`, sorted.
    /// Fails like [`Store::get_at`] when any key under `prefix` could have
    /// lost its history at `revision`: that is, when `prefix` is within a
    /// forgotten prefix or holds one.
    fn list_at(&self, prefix: &str, revision: Revision) -> StoreFuture<'_, Vec<KeyValue>>;

    /// Runs a compare-and-swap transaction atomically and durably. Queued
    /// at the call, in call order (see the trait docs).
    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnResult>;

    /// Changes to keys under `prefix` with revision greater than `after`, in
    /// revision order (within one revision, in the order they were applied).
    /// Fails like [`Store::list_at`] when changes after `after` may be gone.
    fn changes_since(&self, prefix: &str, after: Revision) -> StoreFuture<'_, Vec<WatchEvent>>;

    /// A receiver that sees the current revision after every commit; await
    /// `changed()` on it to block until the next write.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<Revision>;

    /// Creates a lease that expires `ttl` after its last keep-alive.
    fn grant_lease(&self, ttl: Duration) -> StoreFuture<'_, LeaseId>;

    /// Restarts the lease's countdown.
    fn keep_alive(&self, lease: LeaseId) -> StoreFuture<'_, ()>;

    /// Ends the lease now and deletes its keys (one revision).
    fn revoke_lease(&self, lease: LeaseId) -> StoreFuture<'_, ()>;

    /// Revokes every lease whose countdown has run out; returns the deleted keys.
    /// Backends call this themselves periodically; it may also be called directly.
    fn expire_leases(&self) -> StoreFuture<'_, Vec<String>>;

    /// Forgets history older than `revision`; later reads before it fail with
    /// [`StoreError::Compacted`].
    fn compact(&self, revision: Revision) -> StoreFuture<'_, ()>;

    /// Forgets the history of the keys under `prefix` older than `before`,
    /// leaving the rest of the store as it is, and returns how many history
    /// rows went (superseded values and deletes).
    ///
    /// Afterwards the store answers every read of those keys at `before` or
    /// later exactly as it did (each live key keeps its current value,
    /// create revision and version; no revision is written), and refuses
    /// every read that needs their older past with
    /// [`StoreError::Forgotten`]: `get_at` of a key under `prefix`, and
    /// `list_at` or `changes_since` of a prefix within `prefix` or holding
    /// it, at a revision before `before`. The point only moves forward and
    /// is kept across restarts; calling again with the same or an older
    /// `before` forgets nothing more. Fails with
    /// [`StoreError::FutureRevision`] when `before` is past the current
    /// revision.
    fn forget_history(&self, prefix: &str, before: Revision) -> StoreFuture<'_, u64>;

    /// Every retained change to keys under `prefix`, read at one consistent
    /// revision: what a backup needs to restore the keys with their
    /// revisions, versions and past values.
    fn export(&self, prefix: &str) -> StoreFuture<'_, History>;

    /// Loads `history` into this store, which must be empty (revision 0, no
    /// leases), keeping every revision number, version and past value, and
    /// leaves the store at `history.revision`. Refuses a history that is out
    /// of order, beyond its own revision, or binds keys to leases (leases
    /// belong to live processes and are not carried over); a refused import
    /// writes nothing.
    fn import(&self, history: History) -> StoreFuture<'_, ()>;

    /// Writes one key; returns the new revision. Queued at the call, like
    /// [`Store::txn`].
    fn put(&self, key: &str, value: &[u8]) -> StoreFuture<'_, Revision> {
        let op = TxnOp::Put {
            key: key.to_string(),
            value: value.to_vec(),
            lease: None,
        };
        let written = self.txn(Txn {
            success: vec![op],
            ..Txn::default()
        });
        Box::pin(async move { Ok(written.await?.revision) })
    }

    /// Deletes one key; returns the new revision, or `None` if it did not
    /// exist. Queued at the call, like [`Store::txn`].
    fn delete(&self, key: &str) -> StoreFuture<'_, Option<Revision>> {
        let written = self.txn(Txn {
            compares: vec![Compare::Exists {
                key: key.to_string(),
            }],
            success: vec![TxnOp::Delete {
                key: key.to_string(),
            }],
            failure: vec![],
        });
        Box::pin(async move {
            let result = written.await?;
            Ok(result.succeeded.then_some(result.revision))
        })
    }
}
