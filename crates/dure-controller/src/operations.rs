//! Cluster operations (start, stop, kill): records kept under
//! `/operations/<id>`, and the driver that walks the plan wave by wave,
//! issuing intents and waiting for each member's observed state.

use crate::app::App;
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult};
use dure_core::operation::{
    plan_waves, MemberStep, Operation, OperationKind, OperationOptions, OperationStatus, StepStatus,
};
use dure_core::{Intent, ServerState};
use dure_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const PREFIX: &str = "/operations/";
/// Extra time past a member's own timeout before the controller gives up on
/// it (covers the agent's poll and report round trip).
const WAIT_SLACK: Duration = Duration::from_secs(10);
/// How long an immediate stop may take to be confirmed.
const KILL_WAIT: Duration = Duration::from_secs(15);

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// A running operation that a later kill can cancel.
struct Running {
    id: String,
    cancel: watch::Sender<bool>,
}

pub struct Operations {
    store: Arc<dyn Store>,
    next_seq: Mutex<u64>,
    running: Mutex<HashMap<String, Running>>,
}

impl Operations {
    /// Loads the operation log; operations that were running when the
    /// controller stopped are marked failed, since nobody drives them now.
    pub fn open(store: Arc<dyn Store>) -> anyhow::Result<Operations> {
        let mut last = 0;
        for kv in store.list(PREFIX)? {
            let Ok(mut op) = serde_json::from_slice::<Operation>(&kv.value) else {
                continue;
            };
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
    pub fn list(&self) -> ApiResult<Vec<Operation>> {
        let mut ops: Vec<Operation> = self
            .store
            .list(PREFIX)?
            .into_iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        ops.sort_by_key(|op| std::cmp::Reverse(seq_of(&op.id)));
        Ok(ops)
    }

    fn save(&self, op: &Operation) -> ApiResult<()> {
        self.store
            .put(&key(&op.id), &serde_json::to_vec(op).unwrap_or_default())?;
        Ok(())
    }

    fn next_id(&self) -> String {
        let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let id = format!("op-{}", *next);
        *next += 1;
        id
    }

    fn finish_running(&self, cluster: &str, id: &str) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(cluster).is_some_and(|r| r.id == id) {
            running.remove(cluster);
        }
    }
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
    };
    if let Some(note) = already_there(app, kind, &members) {
        for step in &mut op.steps {
            step.status = StepStatus::AlreadyDone;
        }
        op.status = OperationStatus::Succeeded;
        op.finished_ms = Some(now_ms());
        op.message = Some(format!("cluster `{cluster}` is {note}; nothing to do"));
        ops.save(&op)?;
        ops.finish_running(cluster, &op.id);
        app.events.record(
            actor,
            "operation",
            &format!("cluster/{cluster}"),
            op.message.clone().unwrap_or_default(),
        );
        return Ok(op);
    }
    ops.save(&op)?;
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
    };
    tokio::spawn(driver.run(waves));
    Ok(op)
}

/// Says why the cluster already is where `kind` would take it, if it is.
fn already_there(app: &App, kind: OperationKind, members: &[String]) -> Option<&'static str> {
    let wanted = kind.intent();
    let all = members.iter().all(|m| {
        let state = member_state(app, m);
        let intent = app.intents.get(m).intent;
        match kind {
            OperationKind::Start => intent == Intent::Run && state == ServerState::Ready,
            OperationKind::Stop | OperationKind::Kill => {
                (intent == wanted || intent == Intent::Stop || intent == Intent::Kill)
                    && state.is_down()
            }
        }
    });
    all.then_some(match kind {
        OperationKind::Start => "already running",
        OperationKind::Stop | OperationKind::Kill => "already stopped",
    })
}

fn member_state(app: &App, server: &str) -> ServerState {
    match app
        .config
        .read(|d| d.servers.get(server).map(|s| s.node.clone()))
    {
        Some(node) => app.runtime.observed(&node, server).state,
        None => ServerState::Unknown,
    }
}

/// Carries out one operation.
struct Driver {
    app: Arc<App>,
    op: Operation,
    cancelled: watch::Receiver<bool>,
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
            let waiting = self.issue(&wave);
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
    fn issue(&mut self, wave: &[String]) -> Vec<Waiting> {
        let kind = self.op.kind;
        let mut waiting = Vec::new();
        for server in wave {
            let index = self.step_index(server);
            let spec = self.app.config.read(|d| d.servers.get(server).cloned());
            let now = now_ms();
            let step = &mut self.op.steps[index];
            step.started_ms = Some(now);
            let Some(spec) = spec else {
                step.status = StepStatus::Failed;
                step.message = Some(format!("server `{server}` no longer exists"));
                step.finished_ms = Some(now);
                continue;
            };
            let observed = self.app.runtime.observed(&spec.node, server);
            let intent = self.app.intents.get(server).intent;
            let there = kind.member_outcome(observed.state) == Some(true)
                && (intent == kind.intent()
                    || kind != OperationKind::Start && intent != Intent::Run);
            if there {
                step.status = StepStatus::AlreadyDone;
                step.message = Some(format!("already {}", observed.state));
                step.finished_ms = Some(now);
                continue;
            }
            match self.app.set_intent(server, kind.intent(), &self.op.actor) {
                Ok(issued) => {
                    let limit = match kind {
                        OperationKind::Start => spec.ready.start_timeout.0 + WAIT_SLACK,
                        OperationKind::Stop => spec.stop.timeout.0 + WAIT_SLACK,
                        OperationKind::Kill => KILL_WAIT,
                    };
                    step.status = StepStatus::InProgress;
                    waiting.push(Waiting {
                        step: index,
                        node: spec.node.clone(),
                        generation: issued.generation,
                        deadline: tokio::time::Instant::now() + limit,
                        limit,
                    });
                }
                Err(e) => {
                    step.status = StepStatus::Failed;
                    step.message = Some(e.message);
                    step.finished_ms = Some(now);
                }
            }
        }
        waiting
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
                "skipped: an earlier member failed".into()
            });
        }
        self.op.status = if cancelled {
            OperationStatus::Failed
        } else {
            self.op.outcome()
        };
        self.op.finished_ms = Some(now_ms());
        let cluster = self.op.cluster.clone();
        self.op.message = if cancelled {
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
        self.save();
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

    fn save(&self) {
        if let Err(e) = self.app.operations.save(&self.op) {
            tracing::error!(op = %self.op.id, error = %e.message, "cannot save operation progress");
        }
    }
}
