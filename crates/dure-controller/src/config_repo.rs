//! The saved domain configuration as documents in the store under
//! `/config`, with an in-memory copy for reads, and every way it is
//! committed. A commit turns the saved configuration into another one as
//! one store revision that also writes the history record of that revision
//! (who, when, what, which paths), with compares on every touched document
//! (its mod revision is still the one the copy was read or saved at), so
//! the store cannot have moved under the copy; or it changes nothing.
//!
//! Every commit that changes the configuration is a new *version* (1, 2,
//! 3, …, see [`crate::history`]); the store revision it was written at is
//! kept beside it for reading old configurations.
//!
//! Commits take turns through a [`Writer`], which others hold too when
//! their own write must not interleave with a commit.

use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::history::{History, VersionError};
use dure_core::changeset::{differences, texts, Difference, Documents};
use dure_core::{Domain, DomainError};
use dure_store::{Compare, Revision, Store, StoreError, Txn, TxnOp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

/// Store key prefix of configuration documents.
pub const CONFIG_PREFIX: &str = "/config";

/// Who commits a change and why; recorded in the history.
#[derive(Debug, Clone)]
pub struct Author {
    pub actor: String,
    pub message: String,
}

impl Author {
    pub fn new(actor: &str, message: impl Into<String>) -> Author {
        Author {
            actor: actor.to_string(),
            message: message.into(),
        }
    }
}

/// The configuration a commit should leave, and what else to write in the
/// same revision.
pub struct Plan<T> {
    pub after: Domain,
    pub value: T,
    /// Extra writes of the same transaction (such as dropping the change
    /// set being saved). They are applied even when the configuration
    /// itself does not change.
    pub also: Vec<TxnOp>,
}

impl<T> Plan<T> {
    pub fn new(after: Domain, value: T) -> Plan<T> {
        Plan {
            after,
            value,
            also: Vec::new(),
        }
    }
}

/// A saved configuration's version and the store revision that saved it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigVersion {
    /// 1 for the first save, one more for every later one; 0 before the
    /// first save (or for a configuration saved before versions existed).
    pub version: u64,
    pub revision: Revision,
}

/// What a commit changed.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The new configuration version, or the current one when nothing changed.
    pub version: u64,
    /// The store revision of that version.
    pub revision: Revision,
    /// Nodes whose desired state (servers placed on them) changed.
    pub nodes: BTreeSet<String>,
    /// Servers that no longer exist.
    pub deleted_servers: Vec<String>,
    pub differences: Vec<Difference>,
}

/// The saved configuration and the version that saved it.
struct Saved {
    domain: Domain,
    at: ConfigVersion,
    /// The mod revision of every document (by path) as last read or
    /// written: what a commit compares the store against.
    mod_revisions: BTreeMap<String, Revision>,
}

pub struct ConfigRepo {
    store: Arc<dyn Store>,
    saved: RwLock<Saved>,
    history: History,
    /// Taken by a [`Writer`]: commits take turns, so each is planned on the
    /// latest configuration.
    write: tokio::sync::Mutex<()>,
}

/// The turn to commit. While it is held no commit can happen but its own,
/// so the saved configuration read through [`ConfigRepo::read`] stays as it
/// is until the writer commits or is dropped.
pub struct Writer<'a> {
    repo: &'a ConfigRepo,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl ConfigRepo {
    /// Loads the saved configuration.
    pub async fn open(store: Arc<dyn Store>) -> anyhow::Result<ConfigRepo> {
        let kvs = store.list(&format!("{CONFIG_PREFIX}/")).await?;
        let docs: Vec<(String, Vec<u8>)> = kvs
            .iter()
            .map(|kv| (kv.key[CONFIG_PREFIX.len()..].to_string(), kv.value.clone()))
            .collect();
        let domain = Domain::from_documents(docs.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
            .map_err(|e| anyhow::anyhow!("saved configuration cannot be read: {e}"))?;
        let mod_revisions = kvs
            .iter()
            .map(|kv| (kv.key[CONFIG_PREFIX.len()..].to_string(), kv.mod_revision))
            .collect();
        for problem in domain.validate() {
            tracing::warn!(%problem, "saved configuration breaks a rule");
        }
        let history = History::open(store.clone()).await?;
        // Configurations written before history records existed still have
        // a revision: the last write to one of their documents.
        let last = history.last();
        let revision = last
            .map(|(_, revision)| revision)
            .max(kvs.iter().map(|kv| kv.mod_revision).max())
            .unwrap_or(0);
        let at = ConfigVersion {
            version: last.map_or(0, |(version, _)| version),
            revision,
        };
        Ok(ConfigRepo {
            store,
            saved: RwLock::new(Saved {
                domain,
                at,
                mod_revisions,
            }),
            history,
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs `f` on the saved configuration.
    pub fn read<T>(&self, f: impl FnOnce(&Domain) -> T) -> T {
        let guard = self.saved.read().unwrap_or_else(|p| p.into_inner());
        f(&guard.domain)
    }

    /// The store revision of the last saved change of the configuration.
    pub fn revision(&self) -> Revision {
        self.saved().revision
    }

    /// The version of the saved configuration and its store revision.
    pub fn saved(&self) -> ConfigVersion {
        self.saved.read().unwrap_or_else(|p| p.into_inner()).at
    }

    /// The saved configuration and its revision, read together.
    pub fn snapshot(&self) -> (Domain, Revision) {
        let guard = self.saved.read().unwrap_or_else(|p| p.into_inner());
        (guard.domain.clone(), guard.at.revision)
    }

    /// The version the configuration had at store `revision` (such as the
    /// one a change set began at).
    pub fn version_at(&self, revision: Revision) -> u64 {
        self.history.version_at(revision)
    }

    /// Waits for the turn to commit.
    pub async fn writer(&self) -> Writer<'_> {
        Writer {
            repo: self,
            _turn: self.write.lock().await,
        }
    }

    /// Applies `edit` to a copy of the saved configuration and commits the
    /// result, in its turn (see [`Writer::commit`]).
    pub async fn edit<T>(
        &self,
        author: Author,
        edit: impl FnOnce(&mut Domain) -> Result<T, DomainError>,
    ) -> ApiResult<(T, Committed)> {
        self.writer().await.edit(author, edit).await
    }

    /// Every document of the configuration of `version` (default: the
    /// saved one now), and which version that is.
    pub async fn documents_at(
        &self,
        version: Option<u64>,
    ) -> ApiResult<(Documents, ConfigVersion)> {
        let Some(version) = version else {
            let guard = self.saved.read().unwrap_or_else(|p| p.into_inner());
            return Ok((texts(guard.domain.documents()), guard.at));
        };
        let revision = self.history.revision_of(version).map_err(|e| match e {
            VersionError::Zero => ApiError::invalid(e.to_string()),
            VersionError::Future { .. } | VersionError::Missing(_) => {
                ApiError::not_found(e.to_string())
            }
        })?;
        let prefix = format!("{CONFIG_PREFIX}/");
        let kvs = self
            .store
            .list_at(&prefix, revision)
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::not_found(format!(
                    "version {version} can no longer be read: the store was compacted past it"
                )),
                other => ApiError::from(other),
            })?;
        let docs = kvs
            .into_iter()
            .map(|kv| (kv.key[CONFIG_PREFIX.len()..].to_string(), kv.value))
            .collect();
        Ok((texts(docs), ConfigVersion { version, revision }))
    }

    /// Saved versions, newest first.
    pub async fn history(&self, limit: usize) -> ApiResult<Vec<dure_api::RevisionInfo>> {
        Ok(self.history.list(limit).await?)
    }
}

impl Writer<'_> {
    /// Applies `edit` to a copy of the saved configuration and commits the
    /// result (see [`Writer::commit`]).
    pub async fn edit<T>(
        &self,
        author: Author,
        edit: impl FnOnce(&mut Domain) -> Result<T, DomainError>,
    ) -> ApiResult<(T, Committed)> {
        self.commit(author, |before| {
            let mut after = before.clone();
            let value = edit(&mut after)?;
            Ok(Plan::new(after, value))
        })
        .await
    }

    /// Plans a new configuration from the saved one and commits every
    /// changed document, the history record and the plan's extra writes as
    /// one revision; a refused plan changes nothing.
    pub async fn commit<T>(
        &self,
        author: Author,
        plan: impl FnOnce(&Domain) -> ApiResult<Plan<T>>,
    ) -> ApiResult<(T, Committed)> {
        let repo = self.repo;
        let before = repo.read(Domain::clone);
        let Plan { after, value, also } = plan(&before)?;
        let diffs = differences(&texts(before.documents()), &texts(after.documents()));
        let now = repo.saved();
        let mut committed = Committed {
            version: now.version,
            revision: now.revision,
            nodes: touched_nodes(&before, &after),
            deleted_servers: deleted_servers(&before, &after),
            differences: diffs,
        };
        if committed.differences.is_empty() {
            if !also.is_empty() {
                repo.store
                    .txn(Txn {
                        success: also,
                        ..Txn::default()
                    })
                    .await?;
            }
            return Ok((value, committed));
        }
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        {
            let saved = repo.saved.read().unwrap_or_else(|p| p.into_inner());
            for diff in &committed.differences {
                let key = format!("{CONFIG_PREFIX}{}", diff.path);
                compares.push(Compare::ModRevision {
                    key: key.clone(),
                    // 0: the document must not exist yet.
                    revision: saved.mod_revisions.get(&diff.path).copied().unwrap_or(0),
                });
                ops.push(match &diff.new {
                    Some(text) => TxnOp::Put {
                        key,
                        value: text.clone().into_bytes(),
                        lease: None,
                    },
                    None => TxnOp::Delete { key },
                });
            }
        }
        let paths = committed.differences.iter().map(|d| d.path.clone());
        let (version, record) = repo
            .history
            .record(&author, paths.collect(), now_ms())
            .map_err(|e| ApiError::internal(format!("cannot write the history record: {e}")))?;
        ops.push(record);
        ops.extend(also);
        let result = repo
            .store
            .txn(Txn {
                compares,
                success: ops,
                failure: Vec::new(),
            })
            .await?;
        if !result.succeeded {
            let paths: Vec<&str> = committed
                .differences
                .iter()
                .map(|d| d.path.as_str())
                .collect();
            return Err(ApiError::conflict(format!(
                "{} changed in the store behind the controller's back; nothing was saved: restart the controller to read the configuration again",
                paths.join(", ")
            )));
        }
        repo.history.recorded(version, result.revision);
        committed.version = version;
        committed.revision = result.revision;
        let mut saved = repo.saved.write().unwrap_or_else(|p| p.into_inner());
        for diff in &committed.differences {
            match diff.new {
                Some(_) => saved
                    .mod_revisions
                    .insert(diff.path.clone(), result.revision),
                None => saved.mod_revisions.remove(&diff.path),
            };
        }
        saved.domain = after;
        saved.at = ConfigVersion {
            version,
            revision: result.revision,
        };
        Ok((value, committed))
    }
}

/// Servers in `before` that `after` no longer has.
pub fn deleted_servers(before: &Domain, after: &Domain) -> Vec<String> {
    before
        .servers()
        .keys()
        .filter(|name| !after.servers().contains_key(*name))
        .cloned()
        .collect()
}

/// Parses a whole configuration from its documents.
pub fn domain_of(docs: &Documents) -> Result<Domain, DomainError> {
    Domain::from_documents(docs.iter().map(|(p, t)| (p.as_str(), t.as_bytes())))
}

/// The nodes whose servers differ between `before` and `after`, in their
/// documents or in the files generated for them (a cluster change rewrites
/// its members' files without touching their documents).
fn touched_nodes(before: &Domain, after: &Domain) -> BTreeSet<String> {
    let mut nodes = BTreeSet::new();
    for (one, other) in [(after, before), (before, after)] {
        for (name, server) in one.servers() {
            if other.servers().get(name) != Some(server)
                || (server.template.is_some()
                    && one.template_files(name) != other.template_files(name))
            {
                nodes.insert(server.node.clone());
            }
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::node;
    use dure_core::NodeSpec;
    use dure_store::SqliteStore;

    /// Tomcat `name` on `node` with an http and a replication port.
    fn tomcat(name: &str, node: &str, port: u16) -> dure_core::ServerSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "node": node, "template": {"kind": "tomcat"},
            "ports": {"http": port, "replication": port + 1}
        }))
        .expect("valid tomcat")
    }

    #[test]
    fn a_cluster_change_wakes_the_nodes_whose_generated_files_it_changes() {
        let mut before = Domain::default();
        for n in ["n1", "n2", "n3"] {
            before.put_node(node(n)).unwrap();
        }
        before.create_server(tomcat("t1", "n1", 8080)).unwrap();
        before.create_server(tomcat("t2", "n2", 8080)).unwrap();
        before.create_server(tomcat("t3", "n3", 8080)).unwrap();
        before
            .create_cluster(dure_core::ClusterSpec::new(
                "shop",
                vec!["t1".into(), "t2".into()],
            ))
            .unwrap();
        let mut after = before.clone();
        after
            .set_cluster_servers("shop", dure_core::template::SessionReplication::Delta, None)
            .unwrap();
        // No server document changed, but both members' server.xml did.
        assert_eq!(
            touched_nodes(&before, &after),
            BTreeSet::from(["n1".to_string(), "n2".to_string()])
        );
        let mut added = after.clone();
        added.add_member("shop", "t3", None).unwrap();
        assert_eq!(
            touched_nodes(&after, &added),
            BTreeSet::from(["n1".to_string(), "n2".to_string(), "n3".to_string()]),
            "the new member's list and both old members' lists"
        );
    }

    async fn repo() -> (tempfile::TempDir, Arc<dyn Store>, ConfigRepo) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store"));
        let repo = ConfigRepo::open(store.clone()).await.expect("repo");
        (dir, store, repo)
    }

    #[tokio::test]
    async fn a_commit_is_one_revision_with_its_history_record() {
        let (_dir, store, repo) = repo().await;
        let author = Author::new("admin", "add n1");
        let ((), committed) = repo
            .edit(author, |d| d.put_node(node("n1")))
            .await
            .expect("committed");
        assert_eq!(
            committed.revision,
            store.current_revision().await.expect("rev")
        );
        assert_eq!(committed.version, 1);
        assert_eq!(repo.revision(), committed.revision);
        let history = repo.history(10).await.expect("history");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].revision, committed.revision);
        assert_eq!(history[0].version, 1);
        assert_eq!(history[0].paths, ["/nodes/n1/node.json"]);
        assert_eq!(
            (history[0].actor.as_str(), history[0].message.as_str()),
            ("admin", "add n1")
        );

        // Nothing changed: no revision, no record.
        let ((), same) = repo
            .edit(Author::new("admin", "again"), |d| d.put_node(node("n1")))
            .await
            .expect("no-op");
        assert_eq!(same.revision, committed.revision);
        assert_eq!(same.version, 1);
        assert!(same.differences.is_empty());
        assert_eq!(repo.history(10).await.expect("history").len(), 1);

        // A reopened repository knows its revision and continues the history.
        let reopened = ConfigRepo::open(store.clone()).await.expect("reopen");
        assert_eq!(reopened.revision(), committed.revision);
        assert_eq!(reopened.saved().version, 1);
        let ((), second) = reopened
            .edit(Author::new("admin", "add n2"), |d| d.put_node(node("n2")))
            .await
            .expect("committed");
        assert_eq!(second.version, 2);
        let history = reopened.history(10).await.expect("history");
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].message, "add n2");
        assert_eq!(history[0].version, 2);
    }

    #[tokio::test]
    async fn versions_count_saves_while_revisions_jump() {
        let (_dir, store, repo) = repo().await;
        let mut versions = Vec::new();
        for n in 1..=3 {
            // Other writes move the store revision between saves.
            for _ in 0..n {
                store.put("/intents/other", b"x").await.expect("put");
            }
            let name = format!("n{n}");
            let ((), committed) = repo
                .edit(Author::new("admin", &name), |d| d.put_node(node(&name)))
                .await
                .expect("saved");
            versions.push((committed.version, committed.revision));
        }
        let numbers: Vec<u64> = versions.iter().map(|(v, _)| *v).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert_ne!(versions[2].1, 3, "the store revision is not the version");
        let listed: Vec<(u64, u64)> = repo
            .history(10)
            .await
            .expect("history")
            .into_iter()
            .map(|r| (r.version, r.revision))
            .rev()
            .collect();
        assert_eq!(listed, versions);
        assert_eq!(repo.version_at(versions[1].1 + 1), 2);
    }

    #[tokio::test]
    async fn records_without_a_version_are_numbered_by_their_key_on_every_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store"));
        // A store written before records carried their version: the
        // document and its record in one revision, records keyed 1 and 2.
        for (seq, address) in [(1, "10.0.0.1"), (2, "10.0.0.2")] {
            store.put("/noise", b"x").await.expect("put");
            let record = format!(
                r#"{{"actor":"admin","time_ms":1,"message":"save {seq}","paths":["/nodes/n1/node.json"]}}"#
            );
            store
                .txn(Txn {
                    success: vec![
                        TxnOp::Put {
                            key: "/config/nodes/n1/node.json".into(),
                            value: format!(r#"{{"name":"n1","address":"{address}"}}"#).into_bytes(),
                            lease: None,
                        },
                        TxnOp::Put {
                            key: format!("/config-history/{seq:020}"),
                            value: record.into_bytes(),
                            lease: None,
                        },
                    ],
                    ..Txn::default()
                })
                .await
                .expect("old-format save");
        }
        for _ in 0..2 {
            let repo = ConfigRepo::open(store.clone())
                .await
                .expect("open an old store");
            let history = repo.history(10).await.expect("history");
            let versions: Vec<u64> = history.iter().map(|r| r.version).collect();
            assert_eq!(versions, [2, 1]);
            assert_eq!(repo.saved().version, 2);
            let (docs, at) = repo.documents_at(Some(1)).await.expect("version 1");
            assert_eq!(at.revision, history[1].revision);
            assert!(docs["/nodes/n1/node.json"].contains("10.0.0.1"));
        }
        let repo = ConfigRepo::open(store.clone()).await.expect("open");
        let ((), third) = repo
            .edit(Author::new("admin", "n2"), |d| d.put_node(node("n2")))
            .await
            .expect("a save on an old store");
        assert_eq!(third.version, 3);
        let stored = store
            .get(&format!("/config-history/{:020}", 3))
            .await
            .expect("get")
            .expect("record 3");
        let record: serde_json::Value = serde_json::from_slice(&stored.value).expect("json");
        assert_eq!(record["version"], 3, "new records carry their version");
    }

    #[tokio::test]
    async fn old_versions_are_readable_and_bad_ones_are_named() {
        let (_dir, _store, repo) = repo().await;
        let ((), first) = repo
            .edit(Author::new("admin", "n1"), |d| d.put_node(node("n1")))
            .await
            .expect("n1");
        repo.edit(Author::new("admin", "no n1"), |d| {
            d.delete_node("n1").map(|_| ())
        })
        .await
        .expect("deleted");
        let (docs, at) = repo.documents_at(Some(1)).await.expect("old");
        assert_eq!(
            at,
            ConfigVersion {
                version: 1,
                revision: first.revision
            }
        );
        assert!(docs.contains_key("/nodes/n1/node.json"));
        let (now, at) = repo.documents_at(None).await.expect("now");
        assert!(now.is_empty());
        assert_eq!(at.version, 2);
        let future = repo.documents_at(Some(3)).await.unwrap_err();
        assert_eq!(future.status, axum::http::StatusCode::NOT_FOUND);
        assert_eq!(
            future.message,
            "version 3 does not exist yet: the configuration is at version 2"
        );
        let zero = repo.documents_at(Some(0)).await.unwrap_err();
        assert_eq!(zero.status, axum::http::StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_refused_plan_writes_nothing() {
        let (_dir, store, repo) = repo().await;
        let before = store.current_revision().await.expect("rev");
        let refused = repo
            .writer()
            .await
            .commit(Author::new("admin", "x"), |_| -> ApiResult<Plan<()>> {
                Err(ApiError::conflict("no"))
            })
            .await;
        assert!(refused.is_err());
        assert_eq!(store.current_revision().await.expect("rev"), before);
    }

    #[tokio::test]
    async fn a_store_moved_under_the_copy_refuses_the_commit() {
        let (_dir, store, repo) = repo().await;
        for address in ["10.0.0.1", "10.0.0.2"] {
            repo.edit(Author::new("admin", address), |d| {
                d.put_node(NodeSpec {
                    address: address.into(),
                    ..node("n1")
                })
            })
            .await
            .expect("consecutive saves of one document");
        }
        // Written by something else than this repository.
        store
            .put(
                "/config/nodes/n1/node.json",
                br#"{"name":"n1","address":"10.9.9.9"}"#,
            )
            .await
            .expect("put");
        let before = store.current_revision().await.expect("rev");
        let err = repo
            .edit(Author::new("admin", "n1 again"), |d| {
                d.put_node(NodeSpec {
                    address: "10.0.0.3".into(),
                    ..node("n1")
                })
            })
            .await
            .expect_err("the store moved");
        assert_eq!(err.status, axum::http::StatusCode::CONFLICT);
        assert!(
            err.message.contains("restart the controller"),
            "{}",
            err.message
        );
        assert_eq!(
            store.current_revision().await.expect("rev"),
            before,
            "nothing written"
        );
        // Documents the other write did not touch still commit.
        repo.edit(Author::new("admin", "n2"), |d| d.put_node(node("n2")))
            .await
            .expect("another document");
    }

    #[tokio::test]
    async fn a_stray_history_key_does_not_restart_the_history() {
        let (_dir, store, repo) = repo().await;
        repo.edit(Author::new("admin", "n1"), |d| d.put_node(node("n1")))
            .await
            .expect("n1");
        store
            .put("/config-history/zz", b"stray")
            .await
            .expect("put");
        let reopened = ConfigRepo::open(store.clone()).await.expect("reopen");
        reopened
            .edit(Author::new("admin", "n2"), |d| d.put_node(node("n2")))
            .await
            .expect("n2");
        let messages: Vec<String> = reopened
            .history(10)
            .await
            .expect("history")
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert_eq!(messages, ["n2", "n1"]);
    }
}
