//! The domain configuration as documents in the store under `/config`, with
//! an in-memory copy for reads. Every edit is checked by the domain rules on
//! a copy and committed as one store revision, or changes nothing.

use crate::error::{ApiError, ApiResult};
use dure_core::{Domain, DomainError};
use dure_store::{Revision, Store, Txn, TxnOp};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// Store key prefix of configuration documents.
pub const CONFIG_PREFIX: &str = "/config";

/// What a committed edit changed.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub revision: Revision,
    /// Nodes whose desired state (servers placed on them) changed.
    pub nodes: BTreeSet<String>,
}

pub struct ConfigRepo {
    store: Arc<dyn Store>,
    domain: RwLock<Domain>,
    /// Serializes edits so each is checked against the latest configuration.
    write: tokio::sync::Mutex<()>,
}

impl ConfigRepo {
    /// Loads the saved configuration.
    pub fn open(store: Arc<dyn Store>) -> anyhow::Result<ConfigRepo> {
        let kvs = store.list(&format!("{CONFIG_PREFIX}/"))?;
        let docs: Vec<(String, Vec<u8>)> = kvs
            .into_iter()
            .map(|kv| (kv.key[CONFIG_PREFIX.len()..].to_string(), kv.value))
            .collect();
        let domain = Domain::from_documents(docs.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
            .map_err(|e| anyhow::anyhow!("saved configuration cannot be read: {e}"))?;
        for problem in domain.validate() {
            tracing::warn!(%problem, "saved configuration breaks a rule");
        }
        Ok(ConfigRepo {
            store,
            domain: RwLock::new(domain),
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs `f` on the current configuration.
    pub fn read<T>(&self, f: impl FnOnce(&Domain) -> T) -> T {
        let guard = self.domain.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Applies `edit` to a copy; if the rules hold, commits every changed
    /// document as one revision and publishes the copy.
    pub async fn edit<T>(
        &self,
        edit: impl FnOnce(&mut Domain) -> Result<T, DomainError>,
    ) -> ApiResult<(T, Committed)> {
        let _writer = self.write.lock().await;
        let before = self.read(Domain::clone);
        let mut after = before.clone();
        let value = edit(&mut after)?;
        let (ops, nodes) = changes(&before, &after);
        let mut committed = Committed {
            revision: self.store.current_revision()?,
            nodes,
        };
        if !ops.is_empty() {
            let result = self.store.txn(Txn {
                success: ops,
                ..Txn::default()
            })?;
            if !result.succeeded {
                return Err(ApiError::internal("configuration commit was not applied"));
            }
            committed.revision = result.revision;
            *self.domain.write().unwrap_or_else(|p| p.into_inner()) = after;
        }
        Ok((value, committed))
    }
}

/// The store writes that turn `before` into `after`, and the nodes touched.
fn changes(before: &Domain, after: &Domain) -> (Vec<TxnOp>, BTreeSet<String>) {
    let old_docs = before.documents();
    let new_docs = after.documents();
    let mut ops = Vec::new();
    for (path, bytes) in &new_docs {
        if old_docs.get(path) != Some(bytes) {
            ops.push(TxnOp::Put {
                key: format!("{CONFIG_PREFIX}{path}"),
                value: bytes.clone(),
                lease: None,
            });
        }
    }
    for path in old_docs.keys().filter(|p| !new_docs.contains_key(*p)) {
        ops.push(TxnOp::Delete {
            key: format!("{CONFIG_PREFIX}{path}"),
        });
    }
    let mut nodes = BTreeSet::new();
    for (name, server) in &after.servers {
        if before.servers.get(name) != Some(server) {
            nodes.insert(server.node.clone());
        }
    }
    for (name, server) in &before.servers {
        if after.servers.get(name) != Some(server) {
            nodes.insert(server.node.clone());
        }
    }
    (ops, nodes)
}
