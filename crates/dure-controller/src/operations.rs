//! Cluster operations (start, stop, kill): records kept under
//! `/operations/<id>`, and the driver that walks the plan wave by wave,
//! issuing intents and waiting for each member's observed state.

use crate::app::App;
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::watch::{Topic, ViewIndex};
use dure_api::OperationQuery;
use dure_core::operation::{
    plan_waves, MemberStep, Operation, OperationKind, OperationOptions, OperationStatus,
    StandingIntent, StepStatus,
};
use dure_core::{Intent, ObservedServer, ServerState};
use dure_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const PREFIX: &str = "/operations/";
/// How many operations a list answers by default, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// A running operation that a later kill can cancel.
struct Running {
    id: String,
    cancel: watch::Sender<bool>,
}

/// Which operation left an intent standing on a server, and which one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Standing {
    operation: String,
    generation: u64,
}

/// A standing intent that its agent carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedOut {
    pub operation: String,
    pub intent: Intent,
    pub state: ServerState,
}

pub struct Operations {
    store: Arc<dyn Store>,
    next_seq: Mutex<u64>,
    running: Mutex<HashMap<String, Running>>,
    /// Bumped on every save, which wakes blocked reads of operations.
    view: Arc<ViewIndex>,
    /// Intents that finished operations left standing, by server; rebuilt
    /// from the records at start.
    standing: Mutex<HashMap<String, Standing>>,
}

impl Operations {
    /// Loads the operation log; operations that were running when the
    /// controller stopped are marked failed, since nobody drives them now.
    pub fn open(store: Arc<dyn Store>, view: Arc<ViewIndex>) -> anyhow::Result<Operations> {
        let mut last = 0;
        let mut standing = HashMap::new();
        for kv in store.list(PREFIX)? {
            let Ok(mut op) = serde_json::from_slice::<Operation>(&kv.value) else {
                continue;
            };
            for intent in &op.left_standing {
                let newer = |s: &(u64, Standing)| s.0 < seq_of(&op.id);
                if standing.get(&intent.server).is_none_or(newer) {
                    standing.insert(
                        intent.server.clone(),
                        (
                            seq_of(&op.id),
                            Standing {
                                operation: op.id.clone(),
                                generation: intent.generation,
                            },
                        ),
                    );
                }
            }
            last = last.max(seq_of(&op.id));
            if op.status == OperationStatus::Running {
                op.status = OperationStatus::Failed;
                op.finished_ms = Some(now_ms());
                op.message = Some("the controller restarted during the operation".into());
                for step in op.steps.iter_mut().filter(|s| !s.status.is_finished()) {
                    step.status = StepStatus::Skipped;
                }
                store.put(&kv.key, &serde_json::to_vec(&op).unwrap_or_default())?;
            }
        }
        Ok(Operations {
            store,
            next_seq: Mutex::new(last + 1),
            running: Mutex::new(HashMap::new()),
            view,
            standing: Mutex::new(
                standing
                    .into_iter()
                    .map(|(server, (_, s))| (server, s))
                    .collect(),
            ),
        })
    }

    pub fn get(&self, id: &str) -> ApiResult<Operation> {
        let kv = self
            .store
            .get(&key(id))?
            .ok_or_else(|| ApiError::not_found(format!("operation `{id}` does not exist")))?;
        serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("operation `{id}` record is unreadable: {e}")))
    }

    /// All operations, newest first.
    /// Operations, newest first, optionally of one cluster only.
    pub fn list(&self, query: &OperationQuery) -> ApiResult<Vec<Operation>> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
        let mut ops: Vec<Operation> = self
            .store
            .list(PREFIX)?
            .into_iter()
            .filter_map(|kv| serde_json::from_slice::<Operation>(&kv.value).ok())
            .filter(|op| query.cluster.as_deref().is_none_or(|c| op.cluster == c))
            .collect();
        ops.sort_by_key(|op| std::cmp::Reverse(seq_of(&op.id)));
        ops.truncate(limit);
        Ok(ops)
    }

    fn save(&self, op: &Operation) -> ApiResult<()> {
        self.store
            .put(&key(&op.id), &serde_json::to_vec(op).unwrap_or_default())?;
        self.view.bump(&[Topic::Operations]);
        Ok(())
    }

    fn next_id(&self) -> String {
        let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let id = format!("op-{}", *next);
        *next += 1;
        id
    }

    fn standing(&self) -> std::sync::MutexGuard<'_, HashMap<String, Standing>> {
        self.standing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers what a finished operation left standing.
    fn leave_standing(&self, op: &Operation) {
        let mut standing = self.standing();
        for intent in &op.left_standing {
            standing.insert(
                intent.server.clone(),
                Standing {
                    operation: op.id.clone(),
                    generation: intent.generation,
                },
            );
        }
    }

    /// Drops `server` from the standing intents of operation `id`'s record.
    fn settle(&self, id: &str, server: &str) -> ApiResult<()> {
        let mut op = match self.get(id) {
            Ok(op) => op,
            // Trimmed by retention meanwhile: nothing left to update.
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => return Ok(()),
            Err(e) => return Err(e),
        };
        op.left_standing.retain(|s| s.server != server);
        self.save(&op)
    }

    fn finish_running(&self, cluster: &str, id: &str) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(cluster).is_some_and(|r| r.id == id) {
            running.remove(cluster);
        }
    }
}

/// Tells whether the report just heard for `server` on `node` carried out
/// an intent a finished operation left standing; if so, the operation's
/// record stops listing it. An intent issued since (a newer generation)
/// replaced the standing one: it is dropped without a word.
pub fn carried_out(app: &App, node: &str, server: &str) -> Option<CarriedOut> {
    let standing = app.operations.standing().get(server).cloned()?;
    let intent = app.intents.get(server);
    let observed = app.runtime.observed(node, server);
    let replaced = intent.generation != standing.generation;
    if !replaced && intent.intent.is_pending(standing.generation, &observed) {
        return None;
    }
    {
        let mut map = app.operations.standing();
        if map.get(server) == Some(&standing) {
            map.remove(server);
        }
    }
    if let Err(e) = app.operations.settle(&standing.operation, server) {
        tracing::warn!(op = %standing.operation, server, error = %e.message, "cannot update the standing intents of an operation");
    }
    (!replaced).then_some(CarriedOut {
        operation: standing.operation,
        intent: intent.intent,
        state: observed.state,
    })
}

fn seq_of(id: &str) -> u64 {
    id.trim_start_matches("op-").parse().unwrap_or(0)
}

/// Starts an operation on a cluster and returns its record at once; a
/// driver task carries it out. A kill cancels a running start or stop; any
/// other operation is refused while one runs.
pub fn begin(
    app: &Arc<App>,
    cluster: &str,
    kind: OperationKind,
    options: OperationOptions,
    actor: &str,
) -> ApiResult<Operation> {
    let members = app
        .config
        .read(|d| d.cluster(cluster).map(|c| c.members.clone()))?;
    let ops = &app.operations;
    let (id, cancel) = {
        let mut running = ops.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = running.get(cluster) {
            if kind != OperationKind::Kill {
                return Err(ApiError::conflict(format!(
                    "cluster `{cluster}` has operation `{}` running; wait for it to finish or kill the cluster",
                    current.id
                )));
            }
            current.cancel.send_replace(true);
        }
        let id = ops.next_id();
        let (cancel, cancelled) = watch::channel(false);
        running.insert(
            cluster.to_string(),
            Running {
                id: id.clone(),
                cancel,
            },
        );
        (id, cancelled)
    };
    let waves = plan_waves(kind, &members, options);
    let mut op = Operation {
        id,
        kind,
        cluster: cluster.to_string(),
        options,
        status: OperationStatus::Running,
        steps: waves
            .iter()
            .flatten()
            .map(|server| MemberStep {
                server: server.clone(),
                status: StepStatus::Pending,
                message: None,
                started_ms: None,
                finished_ms: None,
            })
            .collect(),
        actor: actor.to_string(),
        created_ms: now_ms(),
        finished_ms: None,
        message: None,
        left_standing: Vec::new(),
    };
    if let Some(note) = already_there(app, kind, &members) {
        for step in &mut op.steps {
            step.status = StepStatus::AlreadyDone;
        }
        op.status = OperationStatus::Succeeded;
        op.finished_ms = Some(now_ms());
        op.message = Some(format!("cluster `{cluster}` is {note}; nothing to do"));
        let saved = ops.save(&op);
        ops.finish_running(cluster, &op.id);
        saved?;
        app.events.record(
            actor,
            "operation",
            &format!("cluster/{cluster}"),
            op.message.clone().unwrap_or_default(),
        );
        return Ok(op);
    }
    if let Err(error) = ops.save(&op) {
        // Nothing will drive it: it must not block the cluster's next one.
        ops.finish_running(cluster, &op.id);
        return Err(error);
    }
    app.events.record(
        actor,
        "operation",
        &format!("cluster/{cluster}"),
        format!("{} `{}` of cluster `{cluster}` began", kind, op.id),
    );
    let driver = Driver {
        app: app.clone(),
        op: op.clone(),
        cancelled: cancel,
        issued: Vec::new(),
    };
    tokio::spawn(driver.run(waves));
    Ok(op)
}

/// Says why the cluster already is where `kind` would take it, if it is.
fn already_there(app: &App, kind: OperationKind, members: &[String]) -> Option<&'static str> {
    let all = members.iter().all(|m| member_there(app, kind, m).is_some());
    all.then_some(match kind {
        OperationKind::Start => "already running",
        OperationKind::Stop | OperationKind::Kill => "already stopped",
    })
}

/// The member's state when it already is where `kind` takes it and is
/// asked to stay there (a stopped server asked to run is not "stopped").
fn member_there(app: &App, kind: OperationKind, server: &str) -> Option<ServerState> {
    let node = app
        .config
        .read(|d| d.servers.get(server).map(|s| s.node.clone()))?;
    let state = app.runtime.observed(&node, server).state;
    let intent = app.intents.get(server).intent;
    let stays = match kind {
        OperationKind::Start => intent == Intent::Run,
        OperationKind::Stop | OperationKind::Kill => intent != Intent::Run,
    };
    (kind.member_outcome(state) == Some(true) && stays).then_some(state)
}

/// Carries out one operation.
struct Driver {
    app: Arc<App>,
    op: Operation,
    cancelled: watch::Receiver<bool>,
    /// Every intent this operation issued: which step, on which node, and
    /// its generation.
    issued: Vec<(usize, String, u64)>,
}

/// What issuing the intent to one member came to.
enum Issue {
    /// The intent went out; wait up to `limit` for the member.
    Sent {
        node: String,
        generation: u64,
        limit: Duration,
    },
    /// The member's step ended at once, with this status and message.
    Ended(StepStatus, String),
}

/// A member the driver is waiting on.
struct Waiting {
    step: usize,
    node: String,
    generation: u64,
    deadline: tokio::time::Instant,
    limit: Duration,
}

impl Driver {
    async fn run(mut self, waves: Vec<Vec<String>>) {
        let mut failed = false;
        for wave in waves {
            if *self.cancelled.borrow() {
                break;
            }
            if failed && !self.op.options.continue_on_error {
                break;
            }
            let waiting = self.issue(&wave).await;
            self.save();
            failed |= self.wait(waiting).await;
        }
        self.finish();
    }

    fn step_index(&self, server: &str) -> usize {
        self.op
            .steps
            .iter()
            .position(|s| s.server == server && s.status == StepStatus::Pending)
            .unwrap_or(0)
    }

    /// Issues the intent to every member of a wave that is not already there.
    async fn issue(&mut self, wave: &[String]) -> Vec<Waiting> {
        let mut waiting = Vec::new();
        for server in wave {
            let index = self.step_index(server);
            let started = now_ms();
            let issued = self.issue_to(server).await;
            let step = &mut self.op.steps[index];
            step.started_ms = Some(started);
            match issued {
                Issue::Sent {
                    node,
                    generation,
                    limit,
                } => {
                    step.status = StepStatus::InProgress;
                    self.issued.push((index, node.clone(), generation));
                    waiting.push(Waiting {
                        step: index,
                        node,
                        generation,
                        deadline: tokio::time::Instant::now() + limit,
                        limit,
                    });
                }
                Issue::Ended(status, message) => {
                    step.status = status;
                    step.message = Some(message);
                    step.finished_ms = Some(now_ms());
                }
            }
        }
        waiting
    }

    /// Issues the operation's intent to one member, unless it is already
    /// where the operation takes it.
    async fn issue_to(&self, server: &str) -> Issue {
        let kind = self.op.kind;
        let Some(spec) = self.app.config.read(|d| d.servers.get(server).cloned()) else {
            return Issue::Ended(
                StepStatus::Failed,
                format!("server `{server}` no longer exists"),
            );
        };
        if let Some(state) = member_there(&self.app, kind, server) {
            return Issue::Ended(StepStatus::AlreadyDone, format!("already {state}"));
        }
        match self
            .app
            .set_intent_for(server, kind.intent(), &self.op.actor, Some(&self.op.id))
            .await
        {
            Ok(issued) => Issue::Sent {
                limit: kind.member_wait(&spec),
                node: spec.node,
                generation: issued.generation,
            },
            Err(e) => Issue::Ended(StepStatus::Failed, e.message),
        }
    }

    /// Waits until every member of the wave has finished; returns whether
    /// any step of the wave failed.
    async fn wait(&mut self, mut waiting: Vec<Waiting>) -> bool {
        let mut changes = self.app.runtime.subscribe();
        while !waiting.is_empty() {
            let mut progressed = false;
            waiting.retain(|w| {
                let step = &mut self.op.steps[w.step];
                let observed = self.app.runtime.observed(&w.node, &step.server);
                let outcome = (observed.generation >= w.generation)
                    .then(|| self.op.kind.member_outcome(observed.state))
                    .flatten();
                let timed_out = tokio::time::Instant::now() >= w.deadline;
                let (status, message) = match outcome {
                    Some(true) => (StepStatus::Done, None),
                    Some(false) => (
                        StepStatus::Failed,
                        Some(
                            observed
                                .last_error
                                .unwrap_or_else(|| format!("ended {}", observed.state)),
                        ),
                    ),
                    None if timed_out => (
                        StepStatus::Failed,
                        Some(format!(
                            "no result within {}s (state {}{})",
                            w.limit.as_secs(),
                            observed.state,
                            observed
                                .last_error
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        )),
                    ),
                    None => return true,
                };
                step.status = status;
                step.message = message;
                step.finished_ms = Some(now_ms());
                progressed = true;
                false
            });
            if progressed {
                self.save();
            }
            if waiting.is_empty() || *self.cancelled.borrow() {
                break;
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = self.cancelled.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        self.op.steps.iter().any(|s| s.status == StepStatus::Failed)
    }

    fn finish(&mut self) {
        let cancelled = *self.cancelled.borrow();
        for step in self.op.steps.iter_mut().filter(|s| !s.status.is_finished()) {
            step.status = StepStatus::Skipped;
            step.message = Some(if cancelled {
                "cancelled by a kill of the cluster".into()
            } else {
                "an earlier member failed".into()
            });
        }
        self.op.status = if cancelled {
            OperationStatus::Failed
        } else {
            self.op.outcome()
        };
        self.op.finished_ms = Some(now_ms());
        let cluster = self.op.cluster.clone();
        self.op.left_standing = self.left_standing();
        let failure = if cancelled {
            Some("cancelled: the cluster was killed".into())
        } else {
            self.op
                .steps
                .iter()
                .find(|s| s.status == StepStatus::Failed)
                .map(|s| {
                    format!(
                        "member `{}` failed: {}",
                        s.server,
                        s.message.as_deref().unwrap_or("unknown reason")
                    )
                })
        };
        self.op.message = failure.map(|failure| match self.op.left_standing.as_slice() {
            [] => failure,
            standing => format!(
                "{failure}; left standing: {}",
                standing
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
        self.save();
        self.app.operations.leave_standing(&self.op);
        self.app.operations.finish_running(&cluster, &self.op.id);
        let outcome = match self.op.status {
            OperationStatus::Succeeded => "succeeded".to_string(),
            _ => format!("failed: {}", self.op.message.as_deref().unwrap_or("")),
        };
        self.app.events.record(
            "controller",
            "operation",
            &format!("cluster/{cluster}"),
            format!(
                "{} `{}` of cluster `{cluster}` {outcome}",
                self.op.kind, self.op.id
            ),
        );
    }

    /// The intents this operation issued that are still to be carried
    /// out: no intent replaced them and the member's state does not match.
    fn left_standing(&self) -> Vec<StandingIntent> {
        self.issued
            .iter()
            .filter_map(|(step, node, generation)| {
                let server = &self.op.steps[*step].server;
                let intent = self.app.intents.get(server);
                let observed = self.app.runtime.observed(node, server);
                (intent.generation == *generation
                    && intent.intent.is_pending(*generation, &observed))
                .then(|| StandingIntent {
                    server: server.clone(),
                    node: node.clone(),
                    intent: intent.intent,
                    generation: *generation,
                    reason: not_carried_out_because(node, *generation, &observed),
                })
            })
            .collect()
    }

    fn save(&self) {
        if let Err(e) = self.app.operations.save(&self.op) {
            tracing::error!(op = %self.op.id, error = %e.message, "cannot save operation progress");
        }
    }
}

/// Why an intent of `generation` is not carried out, as `observed` shows.
fn not_carried_out_because(node: &str, generation: u64, observed: &ObservedServer) -> String {
    if observed.state == ServerState::Unknown {
        format!("node `{node}` unreachable")
    } else if observed.generation < generation {
        format!("the agent of node `{node}` has not taken it yet")
    } else {
        format!("server is {}", observed.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{app_in, app_on, populate};
    use dure_store::SqliteStore;

    #[tokio::test]
    async fn a_standing_intent_outlives_a_restart_and_is_told_once_when_carried_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path());
        populate(&app).await;
        let issued = app
            .set_intent_for("web1", Intent::Stop, "admin", Some("op-5"))
            .await
            .expect("issued");
        assert_eq!(app.intents.get("web1").operation.as_deref(), Some("op-5"));
        let mut op = Operation {
            id: "op-5".into(),
            kind: OperationKind::Stop,
            cluster: "shop".into(),
            options: OperationOptions::default(),
            status: OperationStatus::Failed,
            steps: Vec::new(),
            actor: "admin".into(),
            created_ms: 1,
            finished_ms: Some(2),
            message: None,
            left_standing: vec![StandingIntent {
                server: "web1".into(),
                node: "n1".into(),
                intent: Intent::Stop,
                generation: issued.generation,
                reason: "node `n1` unreachable".into(),
            }],
        };
        app.operations.save(&op).expect("saved");
        drop(app);

        // A restarted controller still knows what op-5 left standing.
        let app = app_in(dir.path());
        let report = |state, generation| {
            let server = ObservedServer {
                state,
                generation,
                ..ObservedServer::stopped("web1", 3)
            };
            app.runtime
                .report("n1", Default::default(), vec![server], 3)
                .expect("accepted");
        };
        report(ServerState::Ready, issued.generation - 1);
        assert_eq!(carried_out(&app, "n1", "web1"), None, "not answered yet");
        report(ServerState::Stopping, issued.generation);
        assert_eq!(carried_out(&app, "n1", "web1"), None, "still stopping");
        report(ServerState::Stopped, issued.generation);
        assert_eq!(
            carried_out(&app, "n1", "web1"),
            Some(CarriedOut {
                operation: "op-5".into(),
                intent: Intent::Stop,
                state: ServerState::Stopped,
            })
        );
        assert_eq!(carried_out(&app, "n1", "web1"), None, "told once");
        op.left_standing.clear();
        assert_eq!(app.operations.get("op-5").expect("record"), op);
    }

    #[tokio::test]
    async fn an_operation_that_cannot_be_saved_does_not_block_the_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        populate(&app_in(dir.path())).await;
        // A store that refuses every write.
        let store = SqliteStore::open_read_only(&dir.path().join("store.db")).expect("open");
        let app = app_on(Arc::new(store));
        for attempt in ["first", "second"] {
            let err = begin(
                &app,
                "shop",
                OperationKind::Start,
                OperationOptions::default(),
                "admin",
            )
            .expect_err("nothing can be saved");
            assert_eq!(
                err.status,
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "{attempt}: {}",
                err.message
            );
        }
        assert!(app
            .operations
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty());
    }
}
