//! What the controller wants of each server (run, stop, kill) and its
//! generation, persisted under `/intents/<server>` so a restarted controller
//! keeps wanting the same thing.

use dure_core::Intent;
use dure_store::{Revision, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const PREFIX: &str = "/intents/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerIntent {
    pub intent: Intent,
    /// Bumped every time the intent is issued, even when unchanged, so the
    /// agent can tell a fresh request (retry a failed start) from an old one.
    pub generation: u64,
}

pub struct Intents {
    store: Arc<dyn Store>,
    cache: Mutex<HashMap<String, ServerIntent>>,
}

impl Intents {
    pub fn open(store: Arc<dyn Store>) -> anyhow::Result<Intents> {
        let mut cache = HashMap::new();
        for kv in store.list(PREFIX)? {
            let name = kv.key[PREFIX.len()..].to_string();
            match serde_json::from_slice::<ServerIntent>(&kv.value) {
                Ok(intent) => {
                    cache.insert(name, intent);
                }
                Err(e) => tracing::warn!(server = %name, error = %e, "unreadable intent ignored"),
            }
        }
        Ok(Intents {
            store,
            cache: Mutex::new(cache),
        })
    }

    /// The current intent (stop, generation 0, when never set).
    pub fn get(&self, server: &str) -> ServerIntent {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(server).copied().unwrap_or_default()
    }

    /// Issues `intent` with a new generation; returns it and the store revision.
    pub fn set(
        &self,
        server: &str,
        intent: Intent,
    ) -> dure_store::Result<(ServerIntent, Revision)> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let next = ServerIntent {
            intent,
            generation: cache.get(server).map_or(0, |i| i.generation) + 1,
        };
        let bytes = serde_json::to_vec(&next).unwrap_or_default();
        let revision = self.store.put(&format!("{PREFIX}{server}"), &bytes)?;
        cache.insert(server.to_string(), next);
        Ok((next, revision))
    }

    pub fn remove(&self, server: &str) -> dure_store::Result<()> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.store.delete(&format!("{PREFIX}{server}"))?;
        cache.remove(server);
        Ok(())
    }
}
