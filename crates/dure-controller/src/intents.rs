//! What the controller wants of each server (run, stop, kill) and its
//! generation, persisted under `/intents/<server>` so a restarted controller
//! keeps wanting the same thing.
//!
//! Intents are written only in the configuration's commit turn (a
//! [`Writer`]): so an intent is never set for a server that a commit is
//! deleting, and a deleted server's intent goes in the deleting revision.

use crate::config_repo::Writer;
use crate::error::{ApiError, ApiResult};
use crate::events::EventLog;
use dure_core::{Intent, ObservedServer, ServerState};
use dure_store::{Revision, Store, TxnOp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const PREFIX: &str = "/intents/";

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerIntent {
    pub intent: Intent,
    /// Bumped every time the intent is issued, even when unchanged, so the
    /// agent can tell a fresh request (retry a failed start) from an old one.
    pub generation: u64,
    /// The cluster operation that issued it; `None` when the server's own
    /// start, stop or kill did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

pub struct Intents {
    store: Arc<dyn Store>,
    /// Held only to read or update the map, never across a store write, so
    /// reads (every view, every long poll) do not wait on the disk.
    cache: Mutex<HashMap<String, ServerIntent>>,
}

fn key(server: &str) -> String {
    format!("{PREFIX}{server}")
}

impl Intents {
    /// Loads every intent. One that cannot be read is reported (log and
    /// event) and held: agents keep the server as it is (neither started
    /// nor stopped, as a default stop would) until its agent's next report
    /// rebuilds it ([`Intents::rebuild`]). Its generation is the record's
    /// last store revision, which no generation it ever held exceeded (each
    /// issue was a write of its own), so the next one issued is new to the
    /// agent.
    pub async fn open(store: Arc<dyn Store>, events: &EventLog) -> anyhow::Result<Intents> {
        let mut cache = HashMap::new();
        for kv in store.list(PREFIX).await? {
            let name = kv.key[PREFIX.len()..].to_string();
            match serde_json::from_slice::<ServerIntent>(&kv.value) {
                Ok(intent) => {
                    cache.insert(name, intent);
                }
                Err(error) => {
                    tracing::error!(server = %name, %error, "unreadable intent record");
                    events.record(
                        "controller",
                        "record",
                        &format!("server/{name}"),
                        format!(
                            "the intent record of server `{name}` is unreadable ({error}); the server is held as it is until its agent reports it, and its intent is then rebuilt from that report"
                        ),
                    ).await;
                    let held = ServerIntent {
                        intent: Intent::Hold,
                        generation: kv.mod_revision,
                        operation: None,
                    };
                    cache.insert(name, held);
                }
            }
        }
        Ok(Intents {
            store,
            cache: Mutex::new(cache),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServerIntent>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current intent (stop, generation 0, when never set).
    pub fn get(&self, server: &str) -> ServerIntent {
        self.cache().get(server).cloned().unwrap_or_default()
    }

    /// Issues `intent` with a new generation, on behalf of `operation` if
    /// one issues it; returns it and the store revision. The writer's turn
    /// keeps generations in order.
    pub async fn set(
        &self,
        _turn: &Writer<'_>,
        server: &str,
        intent: Intent,
        operation: Option<&str>,
    ) -> ApiResult<(ServerIntent, Revision)> {
        let next = ServerIntent {
            intent,
            generation: self.get(server).generation + 1,
            operation: operation.map(str::to_string),
        };
        let revision = self.write(server, &next).await?;
        Ok((next, revision))
    }

    /// Whether `server`'s intent is held (its record was unreadable).
    pub fn is_held(&self, server: &str) -> bool {
        self.cache()
            .get(server)
            .is_some_and(|i| i.intent == Intent::Hold)
    }

    /// Rebuilds a held intent from what its agent reports: run for a
    /// server with a live process, stop otherwise, at the generation the
    /// agent answered (or the held one, if higher), so the agent sees
    /// nothing new to do; a stopping server becomes stop. `None` when it is no longer held.
    pub async fn rebuild(
        &self,
        _turn: &Writer<'_>,
        server: &str,
        observed: &ObservedServer,
    ) -> ApiResult<Option<(ServerIntent, Revision)>> {
        let Some(held) = self
            .cache()
            .get(server)
            .filter(|i| i.intent == Intent::Hold)
            .cloned()
        else {
            return Ok(None);
        };
        let running = matches!(
            observed.state,
            ServerState::Starting | ServerState::Running | ServerState::Ready
        );
        let intent = if running { Intent::Run } else { Intent::Stop };
        let rebuilt = ServerIntent {
            intent,
            generation: held.generation.max(observed.generation),
            operation: None,
        };
        let revision = self.write(server, &rebuilt).await?;
        Ok(Some((rebuilt, revision)))
    }

    async fn write(&self, server: &str, intent: &ServerIntent) -> ApiResult<Revision> {
        let bytes = serde_json::to_vec(intent).map_err(|e| {
            ApiError::internal(format!(
                "cannot encode the intent of server `{server}`: {e}"
            ))
        })?;
        let revision = self.store.put(&key(server), &bytes).await?;
        self.cache().insert(server.to_string(), intent.clone());
        Ok(revision)
    }

    /// The write that drops a deleted server's intent, for the revision
    /// that deletes the server.
    pub fn drop_op(&self, server: &str) -> TxnOp {
        TxnOp::Delete { key: key(server) }
    }

    /// Forgets the intents of `servers` once the revision deleting them
    /// committed, still in that writer's turn.
    pub fn forget(&self, _turn: &Writer<'_>, servers: &[String]) {
        let mut cache = self.cache();
        for server in servers {
            cache.remove(server);
        }
    }
}
