//! The configuration's history: one record per saved configuration (who,
//! when, why, which document paths) under `/config-history/<seq>`. A record
//! is written in the same transaction as the documents it describes, so its
//! mod revision is the store revision it describes and a save is one
//! revision.
//!
//! **Versions.** Operators number saved configurations 1, 2, 3, …: a
//! record's *version* is its number in the log (the `<seq>` of its key),
//! which is 1 for the first save and one more for every later one, never
//! reused. The record also carries it in its `version` field, so a record
//! read on its own (such as a line of a pack's history file) says which
//! version it is; records written before that field existed have the same
//! number in their key, so an old store opens with the same versions on
//! every start. The store revision stays recorded (the record's mod
//! revision) as the internal detail that reads of old configurations use.
//!
//! A query reads back from the newest record only as far as it needs (see
//! [`crate::numbered`]); the mapping between versions and revisions is kept
//! in memory, read once at open.

use crate::config_repo::Author;
use crate::numbered::Numbered;
use dure_api::RevisionInfo;
use dure_store::{Revision, Store, TxnOp};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

const LOG: Numbered = Numbered::new(HISTORY_PREFIX);
/// The most revisions one history query returns.
pub const MAX_HISTORY: usize = 1000;

/// Store key prefix of the history records.
pub const HISTORY_PREFIX: &str = "/config-history/";

/// The version a history record key stands for, or `None` for any other
/// key (a pack reads versions from its history this way).
pub fn version_of_key(key: &str) -> Option<u64> {
    LOG.seq_of(key)
}

/// A history record as stored; the revision is the record's mod revision.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The record's number; absent (0) in records written before versions.
    #[serde(default)]
    version: u64,
    actor: String,
    time_ms: u64,
    message: String,
    paths: Vec<String>,
}

/// Every version with the store revision that saved it, ascending in both.
#[derive(Debug, Default)]
struct Index {
    saved: Vec<(u64, Revision)>,
}

impl Index {
    fn last(&self) -> Option<(u64, Revision)> {
        self.saved.last().copied()
    }

    fn revision_of(&self, version: u64) -> Option<Revision> {
        let at = self
            .saved
            .binary_search_by_key(&version, |(v, _)| *v)
            .ok()?;
        Some(self.saved[at].1)
    }

    /// The version of the configuration as it was at store `revision`: the
    /// newest save at or before it (0: before the first save).
    fn version_at(&self, revision: Revision) -> u64 {
        let after = self.saved.partition_point(|(_, r)| *r <= revision);
        after.checked_sub(1).map_or(0, |i| self.saved[i].0)
    }
}

/// Why a version cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version 0 does not exist: versions start at 1 (see `dure config history`)")]
    Zero,
    #[error("version {asked} does not exist yet: the configuration is at version {current}")]
    Future { asked: u64, current: u64 },
    #[error("version {0} is not in the configuration history (see `dure config history`)")]
    Missing(u64),
}

pub struct History {
    store: Arc<dyn Store>,
    /// Only extended in the configuration's commit turn (a
    /// [`crate::config_repo::Writer`]).
    index: RwLock<Index>,
}

impl History {
    pub async fn open(store: Arc<dyn Store>) -> anyhow::Result<History> {
        let saved = LOG.index(store.as_ref()).await?;
        Ok(History {
            store,
            index: RwLock::new(Index { saved }),
        })
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The version and revision of the newest record, if there is one.
    pub fn last(&self) -> Option<(u64, Revision)> {
        self.index().last()
    }

    /// The store revision that saved `version`.
    pub fn revision_of(&self, version: u64) -> Result<Revision, VersionError> {
        let index = self.index();
        let current = index.last().map_or(0, |(v, _)| v);
        match version {
            0 => Err(VersionError::Zero),
            v if v > current => Err(VersionError::Future { asked: v, current }),
            v => index.revision_of(v).ok_or(VersionError::Missing(v)),
        }
    }

    /// The version the configuration had at store `revision`.
    pub fn version_at(&self, revision: Revision) -> u64 {
        self.index().version_at(revision)
    }

    /// The version the next record gets.
    fn next_version(&self) -> u64 {
        self.index().last().map_or(1, |(v, _)| v + 1)
    }

    /// The write that records the next version; put it in the revision's
    /// transaction and call [`History::recorded`] once that committed.
    pub fn record(
        &self,
        author: &Author,
        paths: Vec<String>,
        time_ms: u64,
    ) -> serde_json::Result<(u64, TxnOp)> {
        let version = self.next_version();
        let record = Record {
            version,
            actor: author.actor.clone(),
            time_ms,
            message: author.message.clone(),
            paths,
        };
        let op = TxnOp::Put {
            key: LOG.key(version),
            value: serde_json::to_vec(&record)?,
            lease: None,
        };
        Ok((version, op))
    }

    /// Moves past the record of `version`, just committed at `revision`.
    pub fn recorded(&self, version: u64, revision: Revision) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        index.saved.push((version, revision));
    }

    /// Up to `limit` saved versions, newest first.
    pub async fn list(&self, limit: usize) -> dure_store::Result<Vec<RevisionInfo>> {
        let newest = self.last().map_or(0, |(v, _)| v);
        LOG.read(self.store.as_ref(), 1..=newest, true)
            .take_matching(limit.min(MAX_HISTORY), |(version, kv)| {
                let record: Record = serde_json::from_slice(&kv.value)
                    .inspect_err(|e| tracing::warn!(key = %kv.key, error = %e, "unreadable history record skipped"))
                    .ok()?;
                if record.version != 0 && record.version != version {
                    tracing::warn!(key = %kv.key, recorded = record.version, "history record names another version than its key; the key's number counts");
                }
                Some(RevisionInfo {
                    version,
                    revision: kv.mod_revision,
                    actor: record.actor,
                    time_ms: record.time_ms,
                    message: record.message,
                    paths: record.paths,
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_revisions_and_back() {
        let index = Index {
            saved: vec![(1, 4), (2, 6), (3, 10), (4, 82)],
        };
        assert_eq!(index.revision_of(3), Some(10));
        assert_eq!(index.revision_of(5), None);
        assert_eq!(index.version_at(3), 0, "before the first save");
        assert_eq!(index.version_at(4), 1);
        assert_eq!(
            index.version_at(9),
            2,
            "a revision that saved no configuration"
        );
        assert_eq!(index.version_at(82), 4);
        assert_eq!(index.version_at(1000), 4);
        assert_eq!(Index::default().version_at(7), 0);
    }
}
