//! The desired state the agent runs and where it comes from: the
//! controller's, saved as the local copy each time it is applied, or — in
//! INDEPENDENT mode, while the controller cannot be reached — the local
//! copy. Also what the controller last heard of the servers, so that the
//! drift can be reported when it answers again.

use crate::apps::Deployer;
use crate::drift::{self, Away};
use crate::local_copy::{self, LocalCopy};
use crate::mode::Mode;
use crate::registry::Registry;
use crate::supervisor::now_ms;
use dure_api::{AgentReport, DesiredNode};
use dure_core::{Intent, ObservedServer};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) struct NodeState {
    node: String,
    /// The controller's base URL, recorded in the local copy.
    controller: String,
    copy_path: PathBuf,
    registry: Arc<Registry>,
    mode: Arc<Mode>,
    /// The desired state last applied, or the local copy found at start.
    last: Mutex<Option<DesiredNode>>,
    /// The servers as the controller last heard of them.
    heard: Mutex<Vec<ObservedServer>>,
    /// Carries out the desired state's applications.
    deployer: Arc<Deployer>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data replaced whole: a panic elsewhere cannot leave it torn.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeState {
    /// `local` is the local copy loaded at start; the servers found running
    /// then count as what the controller last heard.
    pub(crate) fn new(
        node: String,
        controller: String,
        copy_path: PathBuf,
        registry: Arc<Registry>,
        mode: Arc<Mode>,
        local: Option<DesiredNode>,
        deployer: Arc<Deployer>,
    ) -> NodeState {
        let heard = registry.observed();
        NodeState {
            node,
            controller,
            copy_path,
            registry,
            mode,
            last: Mutex::new(local),
            heard: Mutex::new(heard),
            deployer,
        }
    }

    /// Wakes on every change of any server's observed state.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.registry.subscribe()
    }

    /// Wakes on every change of what a server has of its applications.
    pub(crate) fn subscribe_apps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.deployer.subscribe()
    }

    pub(crate) fn is_independent(&self) -> bool {
        self.mode.is_independent()
    }

    /// Whether there is a desired state to run from: one applied, or the
    /// local copy found at start.
    pub(crate) fn has_desired(&self) -> bool {
        lock(&self.last).is_some()
    }

    /// Applies a desired state from the controller, saving it as the local
    /// copy first so that a crash in between still finds it. Deliberately
    /// not async: the save (a small file and two fsyncs, only when the
    /// desired state changes) and the apply cannot be cut apart by a
    /// cancelled future.
    pub(crate) fn apply(&self, desired: DesiredNode) {
        self.save(&desired);
        self.registry.apply(desired.servers.clone());
        self.deployer.want(&desired);
        *lock(&self.last) = Some(desired);
    }

    fn save(&self, desired: &DesiredNode) {
        let copy = LocalCopy {
            node: self.node.clone(),
            controller: self.controller.clone(),
            saved_ms: now_ms(),
            desired: desired.clone(),
        };
        let error = match local_copy::save(&self.copy_path, &copy) {
            Ok(()) => {
                self.mode.local_copy_saved(desired.index);
                return;
            }
            Err(error) => error,
        };
        let message = format!(
            "cannot save the local copy `{}`: {error}; if the controller becomes unreachable the agent runs an older copy",
            self.copy_path.display()
        );
        tracing::warn!(index = desired.index, "{message}");
        self.mode.local_copy_failed(message);
    }

    /// Switches to INDEPENDENT mode (once per outage) and runs the servers
    /// from the last desired state: those meant to run are started or
    /// kept, those meant to be stopped stay stopped.
    pub(crate) fn enter_independent(&self, why: &str) {
        if !self.mode.enter_independent(now_ms()) {
            return;
        }
        let Some(desired) = lock(&self.last).clone() else {
            tracing::warn!(
                local_copy_error = self.mode.view().local_copy_error.as_deref(),
                "entering INDEPENDENT mode ({why}) with no usable local copy; servers already \
                 running are kept, nothing is started; retrying the controller"
            );
            return;
        };
        let to_run = desired
            .servers
            .iter()
            .filter(|s| s.intent == Intent::Run)
            .count();
        tracing::warn!(
            index = desired.index,
            servers = desired.servers.len(),
            to_run,
            path = %self.copy_path.display(),
            "entering INDEPENDENT mode ({why}): running the servers from the local copy and \
             retrying the controller"
        );
        self.registry.apply(desired.servers);
    }

    /// What drifted while independent, against the controller's `current`
    /// desired state.
    pub(crate) fn drift(&self, current: &DesiredNode) -> Vec<String> {
        let before = lock(&self.heard).clone();
        let now = self.registry.observed();
        let local = lock(&self.last).clone();
        let local_copy_error = self.mode.view().local_copy_error;
        drift::drift(&Away {
            before: &before,
            now: &now,
            local: local.as_ref(),
            local_copy_error: local_copy_error.as_deref(),
            current,
        })
    }

    /// Back to MANAGED, once the controller's desired state is applied.
    pub(crate) fn leave_independent(&self, index: u64, drift_lines: usize) {
        let since = self.mode.leave_independent();
        let away_ms = since.map(|since| now_ms().saturating_sub(since));
        tracing::warn!(
            away_ms,
            index,
            drift_lines,
            "leaving INDEPENDENT mode: the controller answers again; reported the drift and \
             applied its desired state"
        );
    }

    /// A report of every server, the mode and `drift`.
    pub(crate) fn report(&self, drift: Vec<String>) -> AgentReport {
        let view = self.mode.view();
        AgentReport {
            servers: self.registry.observed(),
            mode: Some(view.mode),
            independent_since_ms: view.independent_since_ms,
            drift,
            // Filled in by the controller link, which knows the endpoint.
            address: None,
            agent_port: None,
            version: None,
            instance_id: None,
            membership_port: None,
            peers: None,
            apps: self.deployer.observed(),
        }
    }

    /// Records what the controller accepted.
    pub(crate) fn heard(&self, servers: Vec<ObservedServer>) {
        *lock(&self.heard) = servers;
    }
}
