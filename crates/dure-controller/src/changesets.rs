//! Where change sets are kept: one record per caller under
//! `/changesets/<actor>` (the actor's name percent-encoded), so staged edits survive a controller restart, and
//! the lock that serializes staging, saving and discarding them.

use crate::error::{ApiError, ApiResult};
use dure_core::changeset::ChangeSet;
use dure_store::{Store, TxnOp};
use std::sync::Arc;

const PREFIX: &str = "/changesets/";

pub struct ChangeSets {
    store: Arc<dyn Store>,
    lock: tokio::sync::Mutex<()>,
}

/// The key of an actor's change set: the actor's name as one key segment,
/// so a token description with `/` in it cannot reach another key
/// (`admin` stays `admin`).
fn key(actor: &str) -> String {
    format!("{PREFIX}{}", dure_api::routes::segment(actor))
}

impl ChangeSets {
    pub fn new(store: Arc<dyn Store>) -> ChangeSets {
        ChangeSets {
            store,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Held while a change set is read, changed and written back, so two
    /// requests of one caller cannot lose each other's edits.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// The caller's change set, if it has one.
    pub async fn load(&self, actor: &str) -> ApiResult<Option<ChangeSet>> {
        let Some(kv) = self.store.get(&key(actor)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&kv.value).map(Some).map_err(|e| {
            ApiError::internal(format!(
                "the change set of `{actor}` cannot be read ({e}); drop it with `dure changes discard`"
            ))
        })
    }

    /// Writes the caller's change set, or drops it when it is empty.
    pub async fn store(&self, actor: &str, changes: &ChangeSet) -> ApiResult<()> {
        if changes.is_empty() {
            self.store.delete(&key(actor)).await?;
        } else {
            let bytes = serde_json::to_vec(changes)
                .map_err(|e| ApiError::internal(format!("cannot encode the change set: {e}")))?;
            self.store.put(&key(actor), &bytes).await?;
        }
        Ok(())
    }

    /// The write that drops the caller's change set, for a save's transaction.
    pub fn drop_op(&self, actor: &str) -> TxnOp {
        TxnOp::Delete { key: key(actor) }
    }

    /// Drops the caller's change set.
    pub async fn discard(&self, actor: &str) -> ApiResult<()> {
        self.store.delete(&key(actor)).await?;
        Ok(())
    }
}
