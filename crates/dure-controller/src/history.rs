//! The configuration's history: one record per saved revision (who, when,
//! why, which document paths) under `/config-history/<seq>`. A record is
//! written in the same transaction as the documents it describes, so its
//! mod revision is the revision it describes and a save is one revision.
//! A query reads back from the newest record only as far as it needs (see
//! [`crate::numbered`]).

use crate::config_repo::Author;
use crate::numbered::Numbered;
use dure_api::RevisionInfo;
use dure_store::{Revision, Store, TxnOp};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const LOG: Numbered = Numbered::new("/config-history/");
/// The most revisions one history query returns.
pub const MAX_HISTORY: usize = 1000;

/// A history record as stored; the revision is the record's mod revision.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    actor: String,
    time_ms: u64,
    message: String,
    paths: Vec<String>,
}

pub struct History {
    store: Arc<dyn Store>,
    /// Sequence number of the next record; only advanced in the
    /// configuration's commit turn (a [`crate::config_repo::Writer`]).
    next_seq: AtomicU64,
    last_revision: AtomicU64,
}

impl History {
    pub fn open(store: Arc<dyn Store>) -> anyhow::Result<History> {
        let (seq, revision) = LOG.last(store.as_ref())?.unwrap_or((0, 0));
        Ok(History {
            store,
            next_seq: AtomicU64::new(seq + 1),
            last_revision: AtomicU64::new(revision),
        })
    }

    /// The revision of the newest record, if there is one.
    pub fn last_revision(&self) -> Option<Revision> {
        Some(self.last_revision.load(Ordering::SeqCst)).filter(|r| *r > 0)
    }

    /// The write that records a revision; put it in the revision's
    /// transaction and call [`History::recorded`] once that committed.
    pub fn record(&self, author: &Author, paths: Vec<String>, time_ms: u64) -> TxnOp {
        let record = Record {
            actor: author.actor.clone(),
            time_ms,
            message: author.message.clone(),
            paths,
        };
        TxnOp::Put {
            key: LOG.key(self.next_seq.load(Ordering::SeqCst)),
            value: serde_json::to_vec(&record).unwrap_or_default(),
            lease: None,
        }
    }

    /// Moves past the record just committed at `revision`.
    pub fn recorded(&self, revision: Revision) {
        self.next_seq.fetch_add(1, Ordering::SeqCst);
        self.last_revision.store(revision, Ordering::SeqCst);
    }

    /// Up to `limit` revisions, newest first.
    pub fn list(&self, limit: usize) -> dure_store::Result<Vec<RevisionInfo>> {
        let newest = self.next_seq.load(Ordering::SeqCst).saturating_sub(1);
        LOG.read(self.store.as_ref(), 1..=newest, true)
            .filter_map(|read| {
                let (_, kv) = match read {
                    Ok(record) => record,
                    Err(error) => return Some(Err(error)),
                };
                let record: Record = serde_json::from_slice(&kv.value)
                    .inspect_err(|e| tracing::warn!(key = %kv.key, error = %e, "unreadable history record skipped"))
                    .ok()?;
                Some(Ok(RevisionInfo {
                    revision: kv.mod_revision,
                    actor: record.actor,
                    time_ms: record.time_ms,
                    message: record.message,
                    paths: record.paths,
                }))
            })
            .take(limit.min(MAX_HISTORY))
            .collect()
    }
}
