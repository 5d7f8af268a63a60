//! The writer thread of the SQLite backend: every write runs on it, in the
//! order the calls queued them, and it expires leases between writes.
//!
//! Group commit: the thread takes the transactions ([`Txn`]) already queued
//! behind the one it picks up, up to [`MAX_GROUP_WRITES`] or
//! [`MAX_GROUP_BYTES`], and runs them as one SQLite transaction, so the
//! group costs one `COMMIT` and one fsync instead of one each. It never
//! waits for a group to fill: a group is whatever is queued when the thread
//! gets to it, so a lone write is not delayed, and under load the groups
//! grow by themselves while the previous fsync runs.
//!
//! Within a group every write runs in its own savepoint: a write whose
//! compares fail takes its failure branch, and one that errors (an unknown
//! lease) is rolled back alone and answered with its error, while the
//! others commit. Each write that changes a key takes the next revision,
//! in call order, as if committed alone. Callers are answered, and the
//! revision published, only after the `COMMIT` succeeded; if it fails (or
//! SQLite gives up the transaction), every write of the group is answered
//! with the error and none is acknowledged.
//!
//! Other writes (leases, compaction, import) run alone in their own SQLite
//! transaction; one queued behind a group's transactions ends the group and
//! runs right after it, keeping call order.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::TransactionBehavior;
use tokio::sync::oneshot;

use super::{apply_txn, read_meta, sqlite_error, Inner, RevisionWriter, EXPIRY_INTERVAL};
use crate::{Compare, Result, Revision, StoreError, Txn, TxnOp, TxnResult};

/// The most transactions one group commits together: enough to spread an
/// fsync over a burst of writers, small enough that a group's statements
/// never hold readers off for long.
pub(super) const MAX_GROUP_WRITES: usize = 256;

/// A group takes no more writes once their keys and values add up to this,
/// so a burst of large documents does not make one huge transaction.
const MAX_GROUP_BYTES: usize = 4 << 20;

/// A write other than a transaction, run alone; it answers its caller itself.
pub(super) type WriteJob = Box<dyn FnOnce(&Inner) + Send>;

/// A transaction waiting for the writer, and where its outcome goes.
pub(super) struct QueuedTxn {
    pub(super) txn: Txn,
    pub(super) answer: oneshot::Sender<Result<TxnResult>>,
}

/// One queued write.
pub(super) enum WriteRequest {
    /// Grouped with the transactions queued right behind it.
    Txn(QueuedTxn),
    /// Run alone, in its own SQLite transaction.
    Alone(WriteJob),
}

/// The thread that runs every write in the order queued.
pub(super) struct WriterThread {
    /// Dropping it ends the thread once the queued writes are done.
    queue: mpsc::Sender<WriteRequest>,
    handle: JoinHandle<()>,
}

impl WriterThread {
    /// Starts the thread; `max_group` bounds the transactions per group
    /// (1 commits each alone).
    pub(super) fn spawn(
        inner: Arc<Inner>,
        expires_leases: bool,
        max_group: usize,
    ) -> Result<WriterThread> {
        let (queue, requests) = mpsc::channel::<WriteRequest>();
        let max_group = max_group.max(1);
        let handle = std::thread::Builder::new()
            .name("dure-store-writer".to_string())
            .spawn(move || writer_loop(&inner, &requests, expires_leases, max_group))?;
        Ok(WriterThread { queue, handle })
    }

    /// Queues a write; returns false when the thread has stopped.
    pub(super) fn queue(&self, request: WriteRequest) -> bool {
        self.queue.send(request).is_ok()
    }

    /// Lets the thread finish the queued writes and waits for it.
    pub(super) fn stop(self) {
        drop(self.queue);
        // A panic in the thread has nothing left to clean up; ignore it.
        let _ = self.handle.join();
    }
}

/// Runs queued writes until every sender is gone, and every
/// [`EXPIRY_INTERVAL`] (busy or idle) revokes the overdue leases, between
/// writes.
fn writer_loop(
    inner: &Inner,
    requests: &mpsc::Receiver<WriteRequest>,
    expires_leases: bool,
    max_group: usize,
) {
    let mut next_expiry = Instant::now() + EXPIRY_INTERVAL;
    // A write taken off the queue while a group was filled that cannot join
    // it: it runs next, so call order holds.
    let mut held: Option<WriteRequest> = None;
    loop {
        let request = match held.take() {
            Some(request) => Some(request),
            None => {
                let wait = next_expiry.saturating_duration_since(Instant::now());
                match requests.recv_timeout(wait) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        match request {
            Some(WriteRequest::Alone(job)) => job(inner),
            Some(WriteRequest::Txn(first)) => {
                let (group, next) = take_group(first, requests, max_group);
                held = next;
                commit_group(inner, group);
            }
            None => {}
        }
        if expires_leases && Instant::now() >= next_expiry {
            // A failed pass leaves the overdue leases due; the next retries.
            let _ = inner.expire_leases();
            next_expiry = Instant::now() + EXPIRY_INTERVAL;
        } else if !expires_leases {
            next_expiry = Instant::now() + EXPIRY_INTERVAL;
        }
    }
}

/// The group that starts with `first`: it and the transactions already
/// queued behind it, within the bounds; never waits for more. Also returns
/// the write that ended the group by not being a transaction, if one did.
fn take_group(
    first: QueuedTxn,
    requests: &mpsc::Receiver<WriteRequest>,
    max_group: usize,
) -> (Vec<QueuedTxn>, Option<WriteRequest>) {
    let mut bytes = txn_bytes(&first.txn);
    let mut group = vec![first];
    while group.len() < max_group && bytes < MAX_GROUP_BYTES {
        match requests.try_recv() {
            Ok(WriteRequest::Txn(next)) => {
                bytes += txn_bytes(&next.txn);
                group.push(next);
            }
            Ok(alone) => return (group, Some(alone)),
            // Nothing more queued (or no sender left): the group is complete.
            Err(_) => break,
        }
    }
    (group, None)
}

/// Roughly what a transaction writes and compares, for [`MAX_GROUP_BYTES`].
fn txn_bytes(txn: &Txn) -> usize {
    let compared = txn.compares.iter().map(|compare| match compare {
        Compare::ModRevision { key, .. } | Compare::Exists { key } | Compare::Missing { key } => {
            key.len()
        }
        Compare::Value { key, value } => key.len() + value.len(),
    });
    let written = txn.success.iter().chain(&txn.failure).map(|op| match op {
        TxnOp::Put { key, value, .. } => key.len() + value.len(),
        TxnOp::Delete { key } => key.len(),
        TxnOp::DeletePrefix { prefix } => prefix.len(),
    });
    compared.chain(written).sum()
}

/// Commits `group` as one SQLite transaction and then, only then, publishes
/// the new revision and answers every caller with its own outcome; if the
/// group could not be committed, answers every caller with that error.
fn commit_group(inner: &Inner, group: Vec<QueuedTxn>) {
    let (txns, answers): (Vec<Txn>, Vec<_>) = group.into_iter().map(|q| (q.txn, q.answer)).unzip();
    // A caller may have stopped waiting; the write stands anyway.
    match apply_group(inner, &txns) {
        Ok((outcomes, revision)) => {
            inner.publish(revision);
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(outcome);
            }
        }
        Err(err) => {
            let reason = match err {
                StoreError::Backend(message) => message,
                other => other.to_string(),
            };
            for answer in answers {
                let _ = answer.send(Err(StoreError::Backend(format!(
                    "the write was not committed: {reason}"
                ))));
            }
        }
    }
}

/// Runs every transaction of a group in its own savepoint of one SQLite
/// transaction and commits it; returns each one's outcome, in order, and
/// the revision after the group. An `Err` means nothing was committed.
fn apply_group(inner: &Inner, txns: &[Txn]) -> Result<(Vec<Result<TxnResult>>, Revision)> {
    let mut conn = inner.conn();
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let start = read_meta(&tx).map_err(sqlite_error)?.revision;
    let mut revision = start;
    let mut outcomes = Vec::with_capacity(txns.len());
    for txn in txns {
        let savepoint = tx.savepoint().map_err(sqlite_error)?;
        let mut writer = RevisionWriter {
            conn: &savepoint,
            revision: revision + 1,
            seq: 0,
        };
        match apply_txn(&mut writer, txn) {
            Ok(succeeded) => {
                let changed = writer.changed();
                savepoint.commit().map_err(sqlite_error)?;
                if changed {
                    revision += 1;
                }
                outcomes.push(Ok(TxnResult {
                    succeeded,
                    revision,
                }));
            }
            Err(err) => {
                // Rolls back this write alone. Should SQLite have given up
                // the whole transaction (a full disk), there is no savepoint
                // left and the group fails as a whole.
                savepoint.finish().map_err(sqlite_error)?;
                outcomes.push(Err(err));
            }
        }
    }
    if revision != start {
        tx.execute("UPDATE meta SET revision = ?1 WHERE id = 1", [revision])
            .map_err(sqlite_error)?;
    }
    tx.commit().map_err(sqlite_error)?;
    Ok((outcomes, revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteStore, Store};

    fn put(key: &str) -> Txn {
        Txn {
            success: vec![TxnOp::Put {
                key: key.to_string(),
                value: b"v".to_vec(),
                lease: None,
            }],
            ..Txn::default()
        }
    }

    /// Queues `txn` the way a call does and returns where its answer comes.
    fn queued(txn: Txn) -> (QueuedTxn, oneshot::Receiver<Result<TxnResult>>) {
        let (answer, answered) = oneshot::channel();
        (QueuedTxn { txn, answer }, answered)
    }

    fn outcome(mut answered: oneshot::Receiver<Result<TxnResult>>) -> Result<TxnResult> {
        answered
            .try_recv()
            .expect("every write of a committed group is answered")
    }

    #[tokio::test]
    async fn a_group_answers_each_write_with_its_own_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        let start = store.put("/guard", b"1").await.expect("put");
        let mut revisions = store.subscribe();
        revisions.borrow_and_update();

        let failed_compare = Txn {
            compares: vec![Compare::Missing {
                key: "/guard".to_string(),
            }],
            success: vec![TxnOp::Delete {
                key: "/guard".to_string(),
            }],
            failure: vec![],
        };
        let unknown_lease = Txn {
            success: vec![
                TxnOp::Delete {
                    key: "/guard".to_string(),
                },
                TxnOp::Put {
                    key: "/leased".to_string(),
                    value: b"v".to_vec(),
                    lease: Some(424_242),
                },
            ],
            ..Txn::default()
        };
        let (group, answers): (Vec<_>, Vec<_>) = [
            put("/a"),
            failed_compare,
            unknown_lease,
            put("/b"),
            put("/a"),
        ]
        .into_iter()
        .map(queued)
        .unzip();
        commit_group(&store.inner, group);

        let outcomes: Vec<_> = answers.into_iter().map(outcome).collect();
        let ok = |succeeded, revision| {
            Some(TxnResult {
                succeeded,
                revision,
            })
        };
        assert_eq!(outcomes[0].as_ref().ok().copied(), ok(true, start + 1));
        assert_eq!(
            outcomes[1].as_ref().ok().copied(),
            ok(false, start + 1),
            "a failed compare takes no revision"
        );
        assert!(
            matches!(outcomes[2], Err(StoreError::LeaseNotFound(424_242))),
            "the erroring write fails alone: {:?}",
            outcomes[2]
        );
        assert_eq!(outcomes[3].as_ref().ok().copied(), ok(true, start + 2));
        assert_eq!(outcomes[4].as_ref().ok().copied(), ok(true, start + 3));

        assert!(revisions.has_changed().expect("store alive"));
        assert_eq!(
            *revisions.borrow_and_update(),
            start + 3,
            "published once committed"
        );
        let keys: Vec<String> = store
            .list("/")
            .await
            .expect("list")
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(
            keys,
            ["/a", "/b", "/guard"],
            "the erroring write left nothing"
        );
        let a = store.get("/a").await.expect("get").expect("/a is written");
        assert_eq!((a.mod_revision, a.version), (start + 3, 2));
        let events = store.changes_since("/", start).await.expect("changes");
        let revisions: Vec<Revision> = events.iter().map(|e| e.kv.mod_revision).collect();
        assert_eq!(revisions, [start + 1, start + 2, start + 3]);
    }

    #[test]
    fn a_group_takes_what_is_queued_up_to_its_bound_and_stops_at_a_lone_write() {
        let (queue, requests) = mpsc::channel();
        let mut answers = Vec::new();
        let mut send_txn = |key: &str| {
            let (txn, answered) = queued(put(key));
            answers.push(answered);
            queue.send(WriteRequest::Txn(txn)).expect("queue");
        };
        for key in ["/1", "/2", "/3", "/4"] {
            send_txn(key);
        }
        let keys = |group: &[QueuedTxn]| -> Vec<String> {
            group
                .iter()
                .map(|q| match &q.txn.success[0] {
                    TxnOp::Put { key, .. } => key.clone(),
                    other => panic!("unexpected op {other:?}"),
                })
                .collect()
        };
        let first = |requests: &mpsc::Receiver<WriteRequest>| match requests.try_recv() {
            Ok(WriteRequest::Txn(txn)) => txn,
            _ => panic!("a transaction is queued"),
        };

        let (group, held) = take_group(first(&requests), &requests, 3);
        assert_eq!(keys(&group), ["/1", "/2", "/3"], "bounded");
        assert!(held.is_none());
        let (group, held) = take_group(first(&requests), &requests, 3);
        assert_eq!(keys(&group), ["/4"], "never waits for more");
        assert!(held.is_none());

        send_txn("/5");
        queue
            .send(WriteRequest::Alone(Box::new(|_| {})))
            .expect("queue");
        send_txn("/6");
        let (group, held) = take_group(first(&requests), &requests, 3);
        assert_eq!(keys(&group), ["/5"], "a lone write ends the group");
        assert!(matches!(held, Some(WriteRequest::Alone(_))));
        let (group, _) = take_group(first(&requests), &requests, 3);
        assert_eq!(keys(&group), ["/6"], "and the next group follows it");
    }

    #[test]
    fn a_group_takes_no_more_once_its_byte_budget_is_spent() {
        let (queue, requests) = mpsc::channel();
        let big = vec![0u8; MAX_GROUP_BYTES / 2];
        let mut answers = Vec::new();
        for key in ["/1", "/2", "/3"] {
            let mut txn = put(key);
            txn.success[0] = TxnOp::Put {
                key: key.to_string(),
                value: big.clone(),
                lease: None,
            };
            let (txn, answered) = queued(txn);
            answers.push(answered);
            queue.send(WriteRequest::Txn(txn)).expect("queue");
        }
        let Ok(WriteRequest::Txn(first)) = requests.try_recv() else {
            panic!("a transaction is queued");
        };
        let (group, _) = take_group(first, &requests, MAX_GROUP_WRITES);
        assert_eq!(group.len(), 2, "the second write spends the budget");
    }
}
