//! Cluster operations (start, stop, kill, restart): records kept as a
//! numbered log under `/operations/<seq>` (operation `op-<seq>`, see
//! [`crate::numbered`]), and the driver that walks the plan wave by wave,
//! issuing intents and waiting for each member's observed state. A
//! graceful stop drains each member first ([`crate::drain`]); a restart
//! goes batch by batch (drain, stop, start, ready, and with `rolling` back
//! in every balancer's rotation), and a member that does not come back
//! ready ends it with the rest left as they were.
//!
//! A page of operations reads only the newest blocks of the log it needs;
//! housekeeping trims the log to the newest `operation_retention` records
//! ([`Operations::trim`]), never a running operation. Records are written
//! whole or not at all, and one that cannot be read is reported (log and
//! event) when the controller starts.

use crate::app::App;
use crate::clock::now_ms;
use crate::drain;
use crate::error::{ApiError, ApiResult};
use crate::events::EventLog;
use crate::numbered::Numbered;
use crate::watch::{Topic, ViewIndex};
use dure_api::AppInstall;
use dure_api::OperationQuery;
use dure_core::application::AppVersion;
use dure_core::operation::{
    plan_waves, MemberStep, Operation, OperationKind, OperationOptions, OperationStatus,
    StandingIntent, StepStatus,
};
use dure_core::{Intent, ObservedServer, ServerState};
use dure_store::{Store, Txn, TxnOp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub const PREFIX: &str = "/operations/";
/// How long an agent may take to stage (fetch and check) or install an
/// application version before the member counts as failed.
const APP_WAIT: Duration = Duration::from_secs(300);
const LOG: Numbered = Numbered::new(PREFIX);
/// How many operations a list answers by default, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The id of operation number `seq`: `op-<seq>`.
fn id_of(seq: u64) -> String {
    format!("op-{seq}")
}

/// The number of an operation id, if it is one.
fn seq_of(id: &str) -> Option<u64> {
    id.strip_prefix("op-")?.parse().ok()
}

fn encode(op: &Operation) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(op).map_err(|e| {
        ApiError::internal(format!(
            "cannot encode the record of operation `{}`: {e}",
            op.id
        ))
    })
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
    /// Number of the next operation; those below it are in the log, or
    /// being written.
    next_seq: Mutex<u64>,
    /// Number of the oldest record that may still be kept: where reads
    /// start, so they skip the trimmed part of the log.
    oldest: AtomicU64,
    running: Mutex<HashMap<String, Running>>,
    /// Bumped on every save, which wakes blocked reads of operations.
    view: Arc<ViewIndex>,
    /// Intents that finished operations left standing, by server; rebuilt
    /// from the records at start.
    standing: Mutex<HashMap<String, Standing>>,
}

impl Operations {
    /// Loads the operation log; operations that were running when the
    /// controller stopped are marked failed, since nobody drives them now,
    /// and a record that cannot be read is reported (log and event).
    /// Records under the keys of earlier versions (`/operations/op-<n>`)
    /// move to their numbered keys first.
    pub async fn open(
        store: Arc<dyn Store>,
        view: Arc<ViewIndex>,
        events: &EventLog,
    ) -> anyhow::Result<Operations> {
        renumber_old_keys(store.as_ref()).await?;
        let (mut first, mut last) = (None::<u64>, 0);
        // Per server, the newest operation that left an intent standing.
        let mut standing = HashMap::<String, Standing>::new();
        for kv in store.list(PREFIX).await? {
            let Some(seq) = LOG.seq_of(&kv.key) else {
                continue;
            };
            first = Some(first.map_or(seq, |f| f.min(seq)));
            last = last.max(seq);
            let mut op = match serde_json::from_slice::<Operation>(&kv.value) {
                Ok(op) => op,
                Err(error) => {
                    report_unreadable(events, &id_of(seq), &error).await;
                    continue;
                }
            };
            // Records come oldest first: a newer one replaces an older.
            note_standing(&mut standing, &op);
            if op.status == OperationStatus::Running {
                op.status = OperationStatus::Failed;
                op.finished_ms = Some(now_ms());
                op.message = Some("the controller restarted during the operation".into());
                for step in op.steps.iter_mut().filter(|s| !s.status.is_finished()) {
                    step.status = StepStatus::Skipped;
                }
                let bytes = encode(&op).map_err(|e| anyhow::anyhow!(e.message))?;
                store.put(&kv.key, &bytes).await?;
            }
        }
        Ok(Operations {
            store,
            next_seq: Mutex::new(last + 1),
            oldest: AtomicU64::new(first.unwrap_or(last + 1)),
            running: Mutex::new(HashMap::new()),
            view,
            standing: Mutex::new(standing),
        })
    }

    pub async fn get(&self, id: &str) -> ApiResult<Operation> {
        let missing = || ApiError::not_found(format!("operation `{id}` does not exist"));
        let seq = seq_of(id).ok_or_else(missing)?;
        let kv = self.store.get(&LOG.key(seq)).await?.ok_or_else(missing)?;
        serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("operation `{id}` record is unreadable: {e}")))
    }

    /// The number of the newest operation given out.
    fn newest(&self) -> u64 {
        *self.next_seq.lock().unwrap_or_else(|p| p.into_inner()) - 1
    }

    /// Operations, newest first, optionally of one cluster only: read from
    /// the newest end of the log until the page is full, so a page never
    /// reads the whole log.
    pub async fn list(&self, query: &OperationQuery) -> ApiResult<Vec<Operation>> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
        let range = self.oldest.load(Ordering::SeqCst)..=self.newest();
        let ops = LOG
            .read(self.store.as_ref(), range, true)
            .take_matching(limit, |(seq, kv)| {
                match serde_json::from_slice::<Operation>(&kv.value) {
                    Ok(op) => query
                        .cluster
                        .as_deref()
                        .is_none_or(|c| op.cluster == c)
                        .then_some(op),
                    Err(error) => {
                        // Reported at start with an event; not again on
                        // every page.
                        tracing::error!(op = %id_of(seq), %error, "unreadable operation record skipped");
                        None
                    }
                }
            })
            .await?;
        Ok(ops)
    }

    async fn save(&self, op: &Operation) -> ApiResult<()> {
        let seq = seq_of(&op.id)
            .ok_or_else(|| ApiError::internal(format!("`{}` is not an operation id", op.id)))?;
        self.store.put(&LOG.key(seq), &encode(op)?).await?;
        self.view.bump(&[Topic::Operations]);
        Ok(())
    }

    fn next_id(&self) -> String {
        let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let id = id_of(*next);
        *next += 1;
        id
    }

    /// Deletes every operation record but the newest `keep` (`0` keeps
    /// all) and those still running; returns how many went. The newest
    /// record always stays, so a reopened log goes on counting from it.
    pub async fn trim(&self, keep: u64) -> dure_store::Result<u64> {
        if keep == 0 {
            return Ok(0);
        }
        let running: Vec<u64> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|r| seq_of(&r.id))
            .collect();
        let last_gone = self.newest().saturating_sub(keep);
        let from = self.oldest.load(Ordering::SeqCst);
        let deleted = LOG
            .trim(
                self.store.as_ref(),
                from,
                last_gone,
                |seq| running.contains(&seq),
                |_| {},
            )
            .await?;
        // Readers start at the oldest record kept: a running one, or the
        // first past the trimmed part.
        let kept = running.iter().copied().filter(|seq| *seq >= from);
        let oldest = kept.chain([last_gone + 1]).min().unwrap_or(last_gone + 1);
        self.oldest.fetch_max(oldest.max(from), Ordering::SeqCst);
        Ok(deleted)
    }

    fn standing(&self) -> std::sync::MutexGuard<'_, HashMap<String, Standing>> {
        self.standing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers what a finished operation left standing.
    fn leave_standing(&self, op: &Operation) {
        note_standing(&mut self.standing(), op);
    }

    /// Drops `server` from the standing intents of operation `id`'s record.
    async fn settle(&self, id: &str, server: &str) -> ApiResult<()> {
        let mut op = match self.get(id).await {
            Ok(op) => op,
            // Trimmed by retention meanwhile: nothing left to update.
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => return Ok(()),
            Err(e) => return Err(e),
        };
        op.left_standing.retain(|s| s.server != server);
        self.save(&op).await
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
pub async fn carried_out(app: &App, node: &str, server: &str) -> Option<CarriedOut> {
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
    if let Err(e) = app.operations.settle(&standing.operation, server).await {
        tracing::warn!(op = %standing.operation, server, error = %e.message, "cannot update the standing intents of an operation");
    }
    (!replaced).then_some(CarriedOut {
        operation: standing.operation,
        intent: intent.intent,
        state: observed.state,
    })
}

/// Notes in `standing` the intents `op` left standing, replacing what an
/// earlier operation left on the same servers.
fn note_standing(standing: &mut HashMap<String, Standing>, op: &Operation) {
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

/// Moves records from the keys of earlier versions (`/operations/op-<n>`)
/// to their numbered keys, in one revision; a key that names no number is
/// left where it is.
async fn renumber_old_keys(store: &dyn Store) -> dure_store::Result<()> {
    let mut ops = Vec::new();
    for kv in store.list(PREFIX).await? {
        let Some(seq) = kv.key.strip_prefix(PREFIX).and_then(seq_of) else {
            continue;
        };
        ops.push(TxnOp::Put {
            key: LOG.key(seq),
            value: kv.value,
            lease: None,
        });
        ops.push(TxnOp::Delete { key: kv.key });
    }
    if !ops.is_empty() {
        tracing::info!(
            records = ops.len() / 2,
            "operation records moved to numbered keys"
        );
        store
            .txn(Txn {
                success: ops,
                ..Txn::default()
            })
            .await?;
    }
    Ok(())
}

/// Reports an operation record that cannot be read, in the log and as an
/// event; the record stays in the store as it is.
async fn report_unreadable(events: &EventLog, id: &str, error: &serde_json::Error) {
    tracing::error!(op = %id, %error, "unreadable operation record");
    events.record(
        "controller",
        "record",
        &format!("operation/{id}"),
        format!("the record of operation `{id}` is unreadable ({error}); it is left as it is and not listed"),
    ).await;
}

/// Starts an operation on a cluster and returns its record at once; a
/// driver task carries it out. A kill cancels a running start or stop; any
/// other operation is refused while one runs.
pub async fn begin(
    app: &Arc<App>,
    cluster: &str,
    kind: OperationKind,
    options: OperationOptions,
    actor: &str,
) -> ApiResult<Operation> {
    if kind == OperationKind::Deploy {
        return Err(ApiError::invalid(
            "a deploy needs an application: use `dure app deploy`",
        ));
    }
    begin_with(app, cluster, kind, options, actor, None).await
}

/// Begins the deploy of application version `target` (see
/// [`crate::apps::deploy`], which checks it first).
pub async fn begin_deploy(
    app: &Arc<App>,
    cluster: &str,
    options: OperationOptions,
    actor: &str,
    target: AppVersion,
) -> ApiResult<Operation> {
    begin_with(
        app,
        cluster,
        OperationKind::Deploy,
        options,
        actor,
        Some(target),
    )
    .await
}

async fn begin_with(
    app: &Arc<App>,
    cluster: &str,
    kind: OperationKind,
    options: OperationOptions,
    actor: &str,
    deploy: Option<AppVersion>,
) -> ApiResult<Operation> {
    options.check(kind).map_err(ApiError::invalid)?;
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
        saved.await?;
        app.events
            .record(
                actor,
                "operation",
                &format!("cluster/{cluster}"),
                op.message.clone().unwrap_or_default(),
            )
            .await;
        return Ok(op);
    }
    if let Err(error) = ops.save(&op).await {
        // Nothing will drive it: it must not block the cluster's next one.
        ops.finish_running(cluster, &op.id);
        return Err(error);
    }
    app.events
        .record(
            actor,
            "operation",
            &format!("cluster/{cluster}"),
            format!("{} `{}` of cluster `{cluster}` began", kind, op.id),
        )
        .await;
    let driver = Driver {
        app: app.clone(),
        op: op.clone(),
        cancelled: cancel,
        issued: Vec::new(),
        deploy,
    };
    tokio::spawn(driver.run(waves));
    Ok(op)
}

/// Says why the cluster already is where `kind` would take it, if it is.
fn already_there(app: &App, kind: OperationKind, members: &[String]) -> Option<&'static str> {
    if kind.goes_by_batches() {
        return None;
    }
    let all = members.iter().all(|m| member_there(app, kind, m).is_some());
    all.then_some(match kind {
        OperationKind::Start | OperationKind::Restart | OperationKind::Deploy => "already running",
        OperationKind::Stop | OperationKind::Kill => "already stopped",
    })
}

/// The member's state when it already is where `kind` takes it and is
/// asked to stay there (a stopped server asked to run is not "stopped").
fn member_there(app: &App, kind: OperationKind, server: &str) -> Option<ServerState> {
    let node = app
        .config
        .read(|d| d.servers().get(server).map(|s| s.node.clone()))?;
    let state = app.runtime.observed(&node, server).state;
    let intent = app.intents.get(server).intent;
    let stays = match kind {
        OperationKind::Start | OperationKind::Restart | OperationKind::Deploy => {
            intent == Intent::Run
        }
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
    /// The application version a deploy installs.
    deploy: Option<AppVersion>,
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
        let kind = self.op.kind;
        if kind.goes_by_batches() {
            self.restart(waves).await;
            self.finish().await;
            return;
        }
        let mut failed = false;
        for wave in waves {
            if *self.cancelled.borrow() {
                break;
            }
            if failed && !self.op.options.continue_on_error {
                break;
            }
            if kind == OperationKind::Stop {
                self.drain(&wave).await;
                if *self.cancelled.borrow() {
                    break;
                }
            }
            let waiting = self.issue(kind, &wave).await;
            self.save().await;
            failed |= self.wait(kind, waiting, true).await;
        }
        self.finish().await;
    }

    /// Restarts batch by batch: each batch drained, stopped, started
    /// (without `rolling`, the one batch of every member is started in
    /// member order, each ready before the next) and, with `rolling`,
    /// back in every balancer's rotation before the next batch. A member
    /// that does not stop or come back ready ends the rollout; in a
    /// deploy, the batch is then put back on the version each member had
    /// and started again ([`Driver::put_back`]).
    async fn restart(&mut self, batches: Vec<Vec<String>>) {
        let deploy = self.deploy.clone();
        for batch in batches {
            if *self.cancelled.borrow() {
                return;
            }
            let Some(target) = &deploy else {
                if self.take_out_and_back(&batch, None).await {
                    return;
                }
                continue;
            };
            let before: Vec<(String, Option<AppInstall>)> = batch
                .iter()
                .map(|s| (s.clone(), self.app.apps.install_of(s, &target.context)))
                .collect();
            // A deploy stages the batch's copies before it takes anything
            // out: an artifact that fails its checksum stops the rollout
            // with the batch still serving the version it had.
            if self.install(target, &batch, false).await {
                self.put_back(target, &before, false).await;
                return;
            }
            if self.take_out_and_back(&batch, Some(target)).await {
                if !*self.cancelled.borrow() {
                    self.put_back(target, &before, true).await;
                }
                return;
            }
        }
    }

    /// Drains and stops `batch`, installs `target` when a deploy, and
    /// starts the batch again; returns whether a member failed (or the
    /// operation was cancelled).
    async fn take_out_and_back(&mut self, batch: &[String], target: Option<&AppVersion>) -> bool {
        let rolling = self.op.options.rolling;
        self.drain(batch).await;
        if *self.cancelled.borrow() {
            return true;
        }
        let waiting = self.issue(OperationKind::Stop, batch).await;
        self.save().await;
        if self.wait(OperationKind::Stop, waiting, false).await {
            return true;
        }
        if let Some(target) = target {
            if self.install(target, batch, true).await {
                return true;
            }
        }
        let starts = if rolling {
            vec![batch.to_vec()]
        } else {
            batch.iter().map(|m| vec![m.clone()]).collect()
        };
        for wave in starts {
            if *self.cancelled.borrow() {
                return true;
            }
            let waiting = self.issue(OperationKind::Start, &wave).await;
            self.save().await;
            if self.wait(OperationKind::Start, waiting, !rolling).await {
                return true;
            }
        }
        if rolling {
            self.back_in_rotation(batch).await;
        }
        false
    }

    /// After a member of a deploy's batch failed: gives every member of
    /// the batch back what it had before (`before`), and, when the batch
    /// was taken out, waits for their agents to reinstall it and starts
    /// them again, so no member is left stopped. Each step then says which
    /// version its member has and in which state it is.
    async fn put_back(
        &mut self,
        target: &AppVersion,
        before: &[(String, Option<AppInstall>)],
        taken_out: bool,
    ) {
        self.record_failure(target).await;
        let failed: Vec<(usize, Option<String>)> = before
            .iter()
            .map(|(server, _)| self.step_index(server))
            .filter(|i| self.op.steps[*i].status == StepStatus::Failed)
            .map(|i| (i, self.op.steps[i].message.clone()))
            .collect();
        let first_failed = failed
            .first()
            .map(|(i, _)| self.op.steps[*i].server.clone())
            .unwrap_or_default();
        let mut reinstalling = Vec::new();
        for (server, previous) in before {
            let Some(node) = self.node_of(server) else {
                continue;
            };
            let given = match previous {
                Some(previous) => {
                    self.app
                        .apps
                        .set_install(&self.app, &node, previous.clone())
                        .await
                }
                None => {
                    self.app
                        .apps
                        .remove_install(&self.app, &node, server, &target.context)
                        .await
                }
            };
            match (given, previous) {
                (Err(error), _) => {
                    tracing::error!(server = %server, error = %error.message, "cannot put back the application install record");
                }
                (Ok(()), Some(previous)) if taken_out => {
                    reinstalling.push((self.step_index(server), previous.version));
                }
                (Ok(()), _) => {}
            }
        }
        if !reinstalling.is_empty() {
            let deadline = tokio::time::Instant::now() + APP_WAIT;
            let changes = self.app.apps.subscribe();
            let context = target.context.clone();
            self.wait_until_settled(reinstalling, changes, |app, steps, (index, version)| {
                let back = app
                    .apps
                    .observed(&steps[*index].server, &context)
                    .is_some_and(|o| {
                        o.installed == Some(*version)
                            || o.error.is_some_and(|e| e.version == *version)
                    });
                if back || tokio::time::Instant::now() >= deadline {
                    Settled::Yes
                } else {
                    Settled::No
                }
            })
            .await;
        }
        let servers: Vec<String> = before.iter().map(|(s, _)| s.clone()).collect();
        if taken_out && !*self.cancelled.borrow() {
            let waiting = self.issue(OperationKind::Start, &servers).await;
            self.save().await;
            self.wait(OperationKind::Start, waiting, false).await;
            if self.op.options.rolling {
                self.back_in_rotation(&servers).await;
            }
        }
        for server in &servers {
            let index = self.step_index(server);
            let now = self.where_member_is(server, &target.context);
            let step = &mut self.op.steps[index];
            match failed.iter().find(|(i, _)| *i == index) {
                Some((_, message)) => {
                    step.status = StepStatus::Failed;
                    step.message = message.clone();
                    note_in(step, &now);
                }
                None if step.status == StepStatus::Failed => {
                    note_in(step, &format!("while put back; {now}"));
                }
                None => {
                    step.status = StepStatus::Skipped;
                    step.message = Some(format!(
                        "not deployed: member `{first_failed}` of its batch failed; {now}"
                    ));
                }
            }
            step.finished_ms = Some(now_ms());
        }
        self.save().await;
    }

    fn node_of(&self, server: &str) -> Option<String> {
        self.app
            .config
            .read(|d| d.servers().get(server).map(|s| s.node.clone()))
    }

    /// Which version of `context` a member has and its state, as its
    /// agent last said: `now on version 1, ready`.
    fn where_member_is(&self, server: &str, context: &str) -> String {
        let version = self
            .app
            .apps
            .observed(server, context)
            .and_then(|o| o.installed);
        let state = match self.node_of(server) {
            Some(node) => self.app.runtime.observed(&node, server).state.to_string(),
            None => "gone".to_string(),
        };
        match version {
            Some(version) => format!("now on version {version}, {state}"),
            None => format!("now without `{context}`, {state}"),
        }
    }

    /// Has every member of `batch` stage application version `target`
    /// (fetched and checked, nothing stopped) or, with `activate`,
    /// install it (the members are stopped), and waits for their agents
    /// to say so; returns whether a member failed, its step saying why.
    async fn install(&mut self, target: &AppVersion, batch: &[String], activate: bool) -> bool {
        let (doing, done) = if activate {
            ("installing", "installed")
        } else {
            ("staging", "staged")
        };
        let mut waiting = Vec::new();
        for server in batch {
            let index = self.step_index(server);
            let node = self
                .app
                .config
                .read(|d| d.servers().get(server).map(|s| s.node.clone()));
            let step = &mut self.op.steps[index];
            step.status = StepStatus::InProgress;
            step.started_ms.get_or_insert(now_ms());
            let Some(node) = node else {
                end_step(
                    step,
                    StepStatus::Failed,
                    Some(format!("server `{server}` no longer exists")),
                );
                continue;
            };
            let install = AppInstall {
                server: server.clone(),
                context: target.context.clone(),
                version: target.version,
                digest: target.digest.clone(),
                size: target.size,
                kind: target.kind,
                activate,
            };
            match self.app.apps.set_install(&self.app, &node, install).await {
                Ok(()) => {
                    note_in(step, &format!("{doing} version {}", target.version));
                    waiting.push((index, node));
                }
                Err(error) => end_step(step, StepStatus::Failed, Some(error.message)),
            }
        }
        self.save().await;
        let deadline = tokio::time::Instant::now() + APP_WAIT;
        let changes = self.app.apps.subscribe();
        self.wait_until_settled(waiting, changes, |app, steps, (index, node)| {
            let timed_out = tokio::time::Instant::now() >= deadline;
            let step = &mut steps[*index];
            let observed = app.apps.observed(&step.server, &target.context);
            let has = |v: Option<u64>| v == Some(target.version);
            let finished = observed
                .as_ref()
                .is_some_and(|o| has(o.installed) || (!activate && has(o.staged)));
            let failure = observed
                .and_then(|o| o.error)
                .filter(|e| e.version == target.version);
            if finished {
                let note = format!("{done} version {}", target.version);
                let message = step.message.take().unwrap_or_default();
                step.message =
                    Some(message.replace(&format!("{doing} version {}", target.version), &note));
                return Settled::Yes;
            }
            let why = match failure {
                Some(failure) => failure.message,
                None if timed_out => format!(
                    "version {} not {done} within {} (the agent of node `{node}` did not say)",
                    target.version,
                    dure_core::DurationSpec(APP_WAIT)
                ),
                None => return Settled::No,
            };
            end_step(step, StepStatus::Failed, Some(why));
            Settled::Yes
        })
        .await;
        self.op.steps.iter().any(|s| s.status == StepStatus::Failed)
    }

    /// Says in the event log which member a deploy stopped at and why.
    async fn record_failure(&self, target: &AppVersion) {
        for step in self
            .op
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed)
        {
            self.app
                .events
                .record(
                    "controller",
                    "app",
                    &format!("server/{}", step.server),
                    format!(
                        "application `{}` version {} stopped at server `{}`: {}",
                        target.context,
                        target.version,
                        step.server,
                        step.message.as_deref().unwrap_or("unknown reason")
                    ),
                )
                .await;
        }
    }

    /// Drains the members of `wave` that balancers serve, saying how in
    /// each one's step.
    async fn drain(&mut self, wave: &[String]) {
        let targets: Vec<drain::Target> = wave
            .iter()
            .filter_map(|server| drain::target(&self.app, server))
            .collect();
        if targets.is_empty() {
            return;
        }
        for target in &targets {
            let index = self.step_index(&target.server);
            let step = &mut self.op.steps[index];
            step.status = StepStatus::InProgress;
            step.started_ms.get_or_insert(now_ms());
            step.message = Some("draining".into());
        }
        self.save().await;
        let outcomes = drain::drain(&self.app, &targets, &mut self.cancelled).await;
        for (target, outcome) in targets.iter().zip(outcomes) {
            let index = self.step_index(&target.server);
            self.op.steps[index].message = Some(outcome.note());
        }
        self.save().await;
    }

    /// Waits until every member of `batch` that balancers report is back
    /// in their rotation, noting it in its step; one that is not within
    /// [`drain::ROTATION_WAIT`] is noted so, and the rollout goes on.
    async fn back_in_rotation(&mut self, batch: &[String]) {
        let since = std::time::Instant::now();
        let cluster = self.op.cluster.clone();
        for server in batch {
            let back =
                drain::back_in_rotation(&self.app, &cluster, server, since, &mut self.cancelled)
                    .await;
            let note = match back {
                None => continue,
                Some(true) => "back in rotation".to_string(),
                Some(false) => format!(
                    "not back in every balancer's rotation within {}",
                    dure_core::DurationSpec(drain::ROTATION_WAIT)
                ),
            };
            let index = self.step_index(server);
            note_in(&mut self.op.steps[index], &note);
        }
        self.finish_steps();
        self.save().await;
    }

    /// Ends the steps of a rolling restart's batch that are still in
    /// progress once it is back: done.
    fn finish_steps(&mut self) {
        for step in &mut self.op.steps {
            if step.status == StepStatus::InProgress && step.started_ms.is_some() {
                step.status = StepStatus::Done;
                step.finished_ms = Some(now_ms());
            }
        }
    }

    fn step_index(&self, server: &str) -> usize {
        // Members are unique, so a server has one step.
        self.op
            .steps
            .iter()
            .position(|s| s.server == server)
            .unwrap_or(0)
    }

    /// Issues the intent of `kind` to every member of a wave that is not
    /// already there.
    async fn issue(&mut self, kind: OperationKind, wave: &[String]) -> Vec<Waiting> {
        let mut waiting = Vec::new();
        for server in wave {
            let index = self.step_index(server);
            let started = now_ms();
            let issued = self.issue_to(kind, server).await;
            let step = &mut self.op.steps[index];
            // A drain may have begun the step already.
            step.started_ms.get_or_insert(started);
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
                Issue::Ended(status, message) => end_step(step, status, Some(message)),
            }
        }
        waiting
    }

    /// Issues the intent of `kind` to one member, unless it is already
    /// where `kind` takes it.
    async fn issue_to(&self, kind: OperationKind, server: &str) -> Issue {
        let Some(spec) = self.app.config.read(|d| d.servers().get(server).cloned()) else {
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

    /// Waits until every member of the wave has finished `kind`; returns
    /// whether any step failed. A member that has is done when `last`,
    /// else its step stays in progress for the operation's next part.
    async fn wait(&mut self, kind: OperationKind, waiting: Vec<Waiting>, last: bool) -> bool {
        let changes = self.app.runtime.subscribe();
        self.wait_until_settled(waiting, changes, |app, steps, w| {
            let step = &mut steps[w.step];
            let observed = app.runtime.observed(&w.node, &step.server);
            let outcome = (observed.generation >= w.generation)
                .then(|| kind.member_outcome(observed.state))
                .flatten();
            let timed_out = tokio::time::Instant::now() >= w.deadline;
            let (status, message) = match outcome {
                Some(true) if last => (StepStatus::Done, step.message.clone()),
                Some(true) => {
                    note_in(step, &format!("{}", observed.state));
                    step.started_ms.get_or_insert(now_ms());
                    return Settled::Yes;
                }
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
                None => return Settled::No,
            };
            end_step(step, status, message);
            Settled::Yes
        })
        .await;
        self.op.steps.iter().any(|s| s.status == StepStatus::Failed)
    }

    /// Looks at each of `waiting` with `settle` (given the controller's
    /// state and the operation's steps) until every one is settled or the
    /// operation is cancelled: again whenever `changes` moves, at a cancel,
    /// and every 250 ms for deadlines; the operation is saved after each
    /// look that settled something.
    async fn wait_until_settled<W>(
        &mut self,
        mut waiting: Vec<W>,
        mut changes: watch::Receiver<u64>,
        mut settle: impl FnMut(&App, &mut [MemberStep], &W) -> Settled,
    ) {
        while !waiting.is_empty() {
            let before = waiting.len();
            let (app, steps) = (&self.app, &mut self.op.steps);
            waiting.retain(|w| settle(app, steps, w) == Settled::No);
            if waiting.len() < before {
                self.save().await;
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
    }

    async fn finish(&mut self) {
        let cancelled = *self.cancelled.borrow();
        for step in self.op.steps.iter_mut().filter(|s| !s.status.is_finished()) {
            step.status = StepStatus::Skipped;
            step.message = Some(if cancelled {
                "cancelled by a kill of the cluster".into()
            } else if self.op.kind == OperationKind::Restart {
                "not restarted: an earlier member failed; left as it was".into()
            } else if self.op.kind == OperationKind::Deploy {
                "not deployed: an earlier member failed; left on the version it had".into()
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
        self.save().await;
        self.app.operations.leave_standing(&self.op);
        self.app.operations.finish_running(&cluster, &self.op.id);
        let outcome = match self.op.status {
            OperationStatus::Succeeded => "succeeded".to_string(),
            _ => format!("failed: {}", self.op.message.as_deref().unwrap_or("")),
        };
        self.app
            .events
            .record(
                "controller",
                "operation",
                &format!("cluster/{cluster}"),
                format!(
                    "{} `{}` of cluster `{cluster}` {outcome}",
                    self.op.kind, self.op.id
                ),
            )
            .await;
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

    async fn save(&self) {
        if let Err(e) = self.app.operations.save(&self.op).await {
            tracing::error!(op = %self.op.id, error = %e.message, "cannot save operation progress");
        }
    }
}

/// Whether a member an operation waits on is settled (its step says how).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Yes,
    No,
}

/// Ends a step with `status`, saying `message`.
fn end_step(step: &mut MemberStep, status: StepStatus, message: Option<String>) {
    step.status = status;
    step.message = message;
    step.finished_ms = Some(now_ms());
}

/// Adds `note` to what a step says: `drained in 0.3s; stopped`.
fn note_in(step: &mut MemberStep, note: &str) {
    step.message = Some(match step.message.take() {
        Some(said) if !said.is_empty() => format!("{said}; {note}"),
        _ => note.to_string(),
    });
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
        let app = app_in(dir.path()).await;
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
        app.operations.save(&op).await.expect("saved");
        drop(app);

        // A restarted controller still knows what op-5 left standing.
        let app = app_in(dir.path()).await;
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
        assert_eq!(
            carried_out(&app, "n1", "web1").await,
            None,
            "not answered yet"
        );
        report(ServerState::Stopping, issued.generation);
        assert_eq!(
            carried_out(&app, "n1", "web1").await,
            None,
            "still stopping"
        );
        report(ServerState::Stopped, issued.generation);
        assert_eq!(
            carried_out(&app, "n1", "web1").await,
            Some(CarriedOut {
                operation: "op-5".into(),
                intent: Intent::Stop,
                state: ServerState::Stopped,
            })
        );
        assert_eq!(carried_out(&app, "n1", "web1").await, None, "told once");
        op.left_standing.clear();
        assert_eq!(app.operations.get("op-5").await.expect("record"), op);
    }

    /// Node `n1` reports both servers stopped, and cluster `back` holds
    /// `web2`, so every stop of `back` is done at once.
    async fn stopped_cluster(app: &Arc<App>) {
        populate(app).await;
        app.config
            .edit(crate::config_repo::Author::new("admin", "back"), |d| {
                d.create_cluster(dure_core::ClusterSpec::new("back", vec!["web2".into()]))
            })
            .await
            .expect("cluster");
        let stopped = ["web1", "web2"].map(|s| ObservedServer::stopped(s, 1));
        app.runtime
            .report("n1", Default::default(), stopped.to_vec(), 1)
            .expect("accepted");
    }

    async fn stop_back(app: &Arc<App>) -> Operation {
        let op = begin(
            app,
            "back",
            OperationKind::Stop,
            OperationOptions::default(),
            "admin",
        )
        .await
        .expect("begun");
        assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
        op
    }

    fn ids(ops: &[Operation]) -> Vec<String> {
        ops.iter().map(|op| op.id.clone()).collect()
    }

    #[tokio::test]
    async fn retention_keeps_the_newest_operations_and_every_running_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        stopped_cluster(&app).await;
        // op-1 runs on: no agent acts on its intent.
        let running = begin(
            &app,
            "shop",
            OperationKind::Start,
            OperationOptions::default(),
            "admin",
        )
        .await
        .expect("begun");
        assert_eq!(running.status, OperationStatus::Running);
        for _ in 0..20 {
            stop_back(&app).await;
        }
        let all = app
            .operations
            .list(&OperationQuery::default())
            .await
            .expect("list");
        assert_eq!(all.len(), 21);
        assert_eq!(all[0].id, "op-21", "newest first");

        assert_eq!(app.operations.trim(5).await.expect("trimmed"), 15);
        let kept = app
            .operations
            .list(&OperationQuery::default())
            .await
            .expect("list");
        assert_eq!(
            ids(&kept),
            ["op-21", "op-20", "op-19", "op-18", "op-17", "op-1"]
        );
        assert_eq!(app.store.list(PREFIX).await.expect("keys").len(), 6);
        assert!(app.operations.get("op-2").await.is_err(), "trimmed");
        assert_eq!(app.operations.trim(5).await.expect("again"), 0);
        assert_eq!(app.operations.trim(0).await.expect("0 keeps all"), 0);
        // A page reads only as far back as it needs, cluster or not.
        let page = OperationQuery {
            cluster: Some("shop".into()),
            limit: Some(1),
        };
        assert_eq!(
            ids(&app.operations.list(&page).await.expect("page")),
            ["op-1"]
        );
        let page = OperationQuery {
            cluster: None,
            limit: Some(2),
        };
        assert_eq!(
            ids(&app.operations.list(&page).await.expect("page")),
            ["op-21", "op-20"]
        );

        // Numbers go on after a restart, from the newest kept.
        drop(app);
        let app = app_in(dir.path()).await;
        stopped_cluster_report(&app);
        assert_eq!(stop_back(&app).await.id, "op-22");
    }

    fn stopped_cluster_report(app: &Arc<App>) {
        let stopped = ["web1", "web2"].map(|s| ObservedServer::stopped(s, 1));
        app.runtime
            .report("n1", Default::default(), stopped.to_vec(), 1)
            .expect("accepted");
    }

    #[tokio::test]
    async fn unreadable_records_are_reported_and_old_keys_renumbered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        stopped_cluster(&app).await;
        let op = stop_back(&app);
        // A record under the key of an earlier version, and two that
        // cannot be read.
        let old = Operation {
            id: "op-7".into(),
            ..op.await.clone()
        };
        app.store
            .put("/operations/op-7", &serde_json::to_vec(&old).expect("json"))
            .await
            .expect("put");
        app.store.put(&LOG.key(3), b"{not json").await.expect("put");
        app.store.put("/intents/web2", b"").await.expect("put");
        drop(app);

        let app = app_in(dir.path()).await;
        assert_eq!(app.operations.get("op-7").await.expect("renumbered"), old);
        assert!(app
            .store
            .get("/operations/op-7")
            .await
            .expect("get")
            .is_none());
        let listed = app
            .operations
            .list(&OperationQuery::default())
            .await
            .expect("list");
        assert_eq!(ids(&listed), ["op-7", "op-1"]);
        let error = app.operations.get("op-3").await.expect_err("unreadable");
        assert!(
            error
                .message
                .contains("operation `op-3` record is unreadable"),
            "{}",
            error.message
        );
        let events = app
            .events
            .list(&dure_api::EventQuery::default())
            .await
            .expect("events");
        let reported = |subject: &str| {
            events
                .iter()
                .filter(|e| e.kind == "record" && e.subject == subject)
                .count()
        };
        assert_eq!(reported("operation/op-3"), 1, "{events:#?}");
        assert_eq!(reported("server/web2"), 1, "{events:#?}");
        assert_eq!(
            app.store
                .get(&LOG.key(3))
                .await
                .expect("get")
                .map(|kv| kv.value),
            Some(b"{not json".to_vec()),
            "left as it is"
        );
        stopped_cluster_report(&app);
        assert_eq!(stop_back(&app).await.id, "op-8");
    }

    #[tokio::test]
    async fn an_operation_that_cannot_be_saved_does_not_block_the_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        populate(&*app_in(dir.path()).await).await;
        // A store that refuses every write.
        let store = SqliteStore::open_read_only(&dir.path().join("store.db")).expect("open");
        let app = app_on(Arc::new(store), dir.path()).await;
        for attempt in ["first", "second"] {
            let err = begin(
                &app,
                "shop",
                OperationKind::Start,
                OperationOptions::default(),
                "admin",
            )
            .await
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
