//! The link to the controller: register, long-poll the node's desired
//! state into the supervisors, and report every server's observed state on
//! each change and at least once per heartbeat interval.
//!
//! The controller being away changes nothing for the servers: they keep
//! running as last told, and the agent keeps retrying with a capped
//! backoff, warning once per outage.

use crate::registry::Registry;
use dure_api::{AgentHello, AgentReport, Client, ClientError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one desired-state long poll blocks at the controller.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// Used when the welcome gives no heartbeat interval.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Whether the controller answers, with one log line per outage.
#[derive(Debug, Default)]
pub(crate) struct Link {
    reachable: AtomicBool,
    /// The kind of problem last logged; `None` while the link is fine.
    problem: Mutex<Option<Problem>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Unreachable,
    Unauthorized,
    UnknownNode,
    Refused,
}

impl Link {
    pub(crate) fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn up(&self) {
        self.reachable.store(true, Ordering::Relaxed);
        let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        if problem.take().is_some() {
            tracing::info!("controller reachable again");
        }
    }

    fn down(&self, node: &str, error: &ClientError) {
        self.reachable.store(false, Ordering::Relaxed);
        let kind = match error {
            ClientError::Unreachable { .. } => Problem::Unreachable,
            ClientError::Auth { .. } => Problem::Unauthorized,
            e if e.status() == Some(404) => Problem::UnknownNode,
            _ => Problem::Refused,
        };
        let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        if *problem == Some(kind) {
            return;
        }
        *problem = Some(kind);
        match kind {
            Problem::Unreachable => {
                tracing::warn!(%error, "controller unreachable; servers keep running, retrying")
            }
            Problem::Unauthorized => tracing::error!(
                node,
                %error,
                "controller refused the agent's token; check that the agent and controller tokens match, retrying"
            ),
            Problem::UnknownNode => tracing::error!(
                node,
                %error,
                "controller does not know this node; registering again"
            ),
            Problem::Refused => tracing::warn!(%error, "controller refused a request, retrying"),
        }
    }
}

/// Exponential retry delay, capped.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(FIRST_RETRY)
    }
    fn reset(&mut self) {
        self.0 = FIRST_RETRY;
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_RETRY);
    }
}

/// What the sync task needs.
pub(crate) struct ControllerSync {
    pub(crate) client: Client,
    pub(crate) hello: AgentHello,
    pub(crate) registry: Arc<Registry>,
    pub(crate) link: Arc<Link>,
}

/// Why a loop handed control back: the controller must be registered with again.
struct Reregister;

impl ControllerSync {
    /// Runs until aborted.
    pub(crate) async fn run(self) {
        let mut backoff = Backoff::new();
        loop {
            let heartbeat = self.register().await;
            let Reregister = tokio::select! {
                r = self.poll_desired() => r,
                r = self.report(heartbeat) => r,
            };
            // Do not spin if the controller keeps accepting the
            // registration and then not knowing the node.
            backoff.wait().await;
        }
    }

    fn node(&self) -> &str {
        &self.hello.node
    }

    /// Registers until it works; returns the heartbeat interval to use.
    async fn register(&self) -> Duration {
        let mut backoff = Backoff::new();
        loop {
            match self.client.register(&self.hello).await {
                Ok(welcome) => {
                    self.link.up();
                    let heartbeat = match welcome.heartbeat_interval_ms {
                        0 => DEFAULT_HEARTBEAT,
                        ms => Duration::from_millis(ms),
                    };
                    tracing::info!(
                        node = self.node(),
                        controller = self.client.base_url(),
                        heartbeat_ms = u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
                        "registered with controller"
                    );
                    return heartbeat;
                }
                Err(error) => {
                    self.link.down(self.node(), &error);
                    backoff.wait().await;
                }
            }
        }
    }

    /// Long-polls the node's desired state into the registry.
    async fn poll_desired(&self) -> Reregister {
        let mut backoff = Backoff::new();
        let mut index = None;
        loop {
            match self
                .client
                .desired(self.node(), index.unwrap_or(0), POLL_WAIT)
                .await
            {
                Ok(desired) => {
                    self.link.up();
                    backoff.reset();
                    if index != Some(desired.index) {
                        tracing::debug!(
                            index = desired.index,
                            servers = desired.servers.len(),
                            "desired state changed"
                        );
                        self.registry.apply(desired.servers);
                        index = Some(desired.index);
                    }
                }
                Err(error) if error.status() == Some(404) => {
                    self.link.down(self.node(), &error);
                    return Reregister;
                }
                Err(error) => {
                    self.link.down(self.node(), &error);
                    backoff.wait().await;
                }
            }
        }
    }

    /// Reports on every change and at least every `heartbeat`.
    async fn report(&self, heartbeat: Duration) -> Reregister {
        let mut changes = self.registry.subscribe();
        let mut backoff = Backoff::new();
        loop {
            changes.borrow_and_update();
            let report = AgentReport {
                servers: self.registry.observed(),
            };
            match self.client.report(self.node(), &report).await {
                Ok(()) => {
                    self.link.up();
                    backoff.reset();
                    tokio::select! {
                        changed = changes.changed() => {
                            // A change goes out at once (operations wait on it);
                            // changes made while a report is in flight ride in
                            // the next one.
                            if changed.is_err() {
                                tokio::time::sleep(heartbeat).await;
                            }
                        }
                        () = tokio::time::sleep(heartbeat) => {}
                    }
                }
                Err(error) if error.status() == Some(404) => {
                    self.link.down(self.node(), &error);
                    return Reregister;
                }
                Err(error) => {
                    self.link.down(self.node(), &error);
                    backoff.wait().await;
                }
            }
        }
    }
}
