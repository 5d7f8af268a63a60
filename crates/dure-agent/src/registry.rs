//! The set of servers this agent supervises, keyed by name: created from
//! the desired state (the controller's, or the local copy's while the
//! controller is away) and from pid files and restart states found at
//! start, read by the
//! report loop and the HTTP endpoint.

use crate::layout::Layout;
use crate::supervisor::{remove_restart_state, Changes, Supervisor};
use dure_api::{DesiredNode, DesiredServer};
use dure_core::{validate_name, NameKind, ObservedServer, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

pub(crate) struct Registry {
    layout: Layout,
    supervisors: Mutex<BTreeMap<String, Supervisor>>,
    changes: Changes,
}

impl Registry {
    pub(crate) fn new(layout: Layout) -> Registry {
        Registry {
            layout,
            supervisors: Mutex::new(BTreeMap::new()),
            changes: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Supervisor>> {
        // A panic while holding the lock leaves the map itself consistent.
        self.supervisors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes on every change of any server's observed state and on servers
    /// added or removed.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Starts supervisors for servers whose pid file names a live process
    /// or whose restart state a previous agent left (a restart pending, a
    /// failure), so they are watched (and reported) before the controller answers,
    /// and hands each its entry of the local copy, so it is probed,
    /// restarted and stopped by its own spec meanwhile. Only adopted
    /// servers get their entry here: starting the others from the local copy
    /// waits until the controller is known to be away. Stale pid files are
    /// removed by the supervisor on the way.
    pub(crate) fn adopt_existing(&self, saved: Option<&DesiredNode>) {
        let Ok(entries) = std::fs::read_dir(self.layout.servers_dir()) else {
            return;
        };
        let mut supervisors = self.lock();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let saved_state = self.layout.pid_path(&name).exists()
                || self.layout.restart_state_path(&name).exists();
            if validate_name(NameKind::Server, &name).is_err()
                || !saved_state
                || supervisors.contains_key(&name)
            {
                continue;
            }
            let supervisor =
                Supervisor::start_with(&self.layout, &name, Some(self.changes.clone()));
            // Neither adopted nor resumed: nothing was left to carry on.
            if supervisor.observed().state == ServerState::Stopped {
                continue;
            }
            if let Some(desired) = saved
                .into_iter()
                .flat_map(|node| &node.servers)
                .find(|server| server.spec.name == name)
            {
                supervisor.set_desired(desired.clone());
            }
            supervisors.insert(name, supervisor);
        }
        drop(supervisors);
        self.changed();
    }

    /// Makes the supervised set match a desired state:
    /// hands each server its desired state, starts supervisors for new
    /// servers and stops supervising servers no longer listed.
    pub(crate) fn apply(&self, desired: Vec<DesiredServer>) {
        let mut supervisors = self.lock();
        let mut listed = BTreeSet::new();
        for server in desired {
            let name = server.spec.name.clone();
            if let Err(error) = validate_name(NameKind::Server, &name) {
                tracing::error!(%error, "ignoring desired server with an invalid name");
                continue;
            }
            let supervisor = supervisors.entry(name.clone()).or_insert_with(|| {
                tracing::info!(server = %name, "supervising server");
                Supervisor::start_with(&self.layout, &name, Some(self.changes.clone()))
            });
            supervisor.set_desired(server);
            listed.insert(name);
        }
        supervisors.retain(|name, supervisor| {
            if listed.contains(name) {
                return true;
            }
            let observed = supervisor.observed();
            if observed.state.is_alive() {
                // The controller refuses deleting running servers, so this
                // is a server it never knew of (or a race); never kill it
                // implicitly.
                tracing::warn!(server = %name, pid = ?observed.pid, "server is no longer assigned to this node but still runs; leaving it running");
            } else {
                tracing::info!(server = %name, "server removed; no longer supervising it");
                // A server created later under this name starts afresh.
                remove_restart_state(&self.layout, name);
            }
            false
        });
        drop(supervisors);
        self.changed();
    }

    /// Every supervised server's latest observation, by name.
    pub(crate) fn observed(&self) -> Vec<ObservedServer> {
        self.lock().values().map(Supervisor::observed).collect()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Stops supervising everything; the processes keep running.
    pub(crate) fn clear(&self) {
        let drained = std::mem::take(&mut *self.lock());
        drop(drained);
    }
}
