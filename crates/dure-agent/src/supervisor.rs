//! One supervisor task per server: it owns the server's process, applies
//! the latest desired state (spec, intent, generation) with
//! [`dure_core::reconcile::reconcile_server`], probes readiness, restarts
//! after crashes per [`dure_core::restart::decide_restart`], stops and kills
//! the process group, and publishes an [`ObservedServer`] on every change.
//!
//! Invariant: the process is only ever signalled because the desired state
//! asked for it (stop, kill) or because the server broke its own contract
//! (not ready by its start timeout, or leftovers of a group whose leader
//! exited). Dropping a [`Supervisor`] — the agent stopping or restarting —
//! leaves the process running; the next agent adopts it from its pid file
//! and hands it its entry of the local copy (see [`crate::local_copy`]), so
//! an adopted server is probed and restarted even before the controller
//! answers.

use crate::layout::Layout;
use crate::logs::{self, Rotation};
use crate::ports;
use crate::probe;
use crate::process::{self, Liveness, PidFile, ProcessId, Spawned};
use dure_api::DesiredServer;
use dure_core::reconcile::{reconcile_server, ReconcileAction};
use dure_core::restart::{decide_restart, RestartDecision};
use dure_core::{
    DurationSpec, Intent, ObservedServer, RestartMode, RestartPolicy, ServerSpec, ServerState,
};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often an adopted process (not our child, so no exit notification)
/// is checked in `/proc`.
const ADOPTED_POLL: Duration = Duration::from_millis(250);

/// A process that ran at least this long before crashing starts a new
/// series of restarts: `max_restarts` limits crash loops, not a server's
/// lifetime total.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// The shortest wait before a restart by policy, whatever the policy says:
/// a `0ms` backoff must not turn a crashing server into a fork loop.
const MIN_RESTART_WAIT: Duration = Duration::from_millis(100);

/// Counter bumped whenever any supervisor publishes a change; the report
/// loop waits on it.
pub(crate) type Changes = Arc<watch::Sender<u64>>;

/// Handle to one server's supervisor task. Dropping it ends the task and
/// leaves the process alone.
#[derive(Debug)]
pub struct Supervisor {
    desired: watch::Sender<Option<DesiredServer>>,
    observed: watch::Receiver<ObservedServer>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts supervising server `name` (must be called inside a tokio
    /// runtime). If `<data>/servers/<name>/server.pid` names a live process
    /// with the recorded start time, it is adopted at once (state
    /// `running`); it is probed, restarted and stopped by the desired state
    /// [`Supervisor::set_desired`] hands it, and until then only watched. A
    /// stale pid file is removed. Nothing is spawned until a desired state
    /// asks for it.
    pub fn start(layout: &Layout, name: &str) -> Supervisor {
        Supervisor::start_with(layout, name, None)
    }

    pub(crate) fn start_with(layout: &Layout, name: &str, changes: Option<Changes>) -> Supervisor {
        let now = Instant::now();
        let mut observed = ObservedServer::stopped(name, now_ms());
        let mut proc = None;
        let mut acted = None;
        if let Some(file) = adoptable(layout, name) {
            tracing::info!(
                server = name,
                pid = file.pid,
                generation = file.generation,
                "adopted running server"
            );
            observed.state = ServerState::Running;
            observed.pid = Some(file.pid);
            observed.generation = file.generation;
            acted = Some(file.generation);
            proc = Some(Proc {
                id: file.id(),
                child: None,
                started: now,
            });
        }
        let (desired_tx, desired_rx) = watch::channel(None);
        let (observed_tx, observed_rx) = watch::channel(observed.clone());
        let task = Task {
            name: name.to_string(),
            layout: layout.clone(),
            desired_rx,
            desired: None,
            acted,
            obs: observed,
            publish: observed_tx,
            changes,
            probe_at: proc.as_ref().map(|_| now),
            proc,
            streak: 0,
            start_deadline: None,
            last_probe_error: None,
            restart_at: None,
            ending: None,
        };
        Supervisor {
            desired: desired_tx,
            observed: observed_rx,
            task: tokio::spawn(task.run()),
        }
    }

    /// Hands the supervisor the latest desired state of its server.
    pub fn set_desired(&self, desired: DesiredServer) {
        self.desired.send_if_modified(|current| {
            if current.as_ref() == Some(&desired) {
                false
            } else {
                *current = Some(desired);
                true
            }
        });
    }

    /// The latest observation.
    pub fn observed(&self) -> ObservedServer {
        self.observed.borrow().clone()
    }

    /// A receiver that sees every published observation.
    pub fn subscribe(&self) -> watch::Receiver<ObservedServer> {
        self.observed.clone()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The child handle is dropped with the task; `kill_on_drop(false)`
        // keeps the process running.
        self.task.abort();
    }
}

/// Reads the pid file and returns it when its process is still alive and
/// can be a server; removes it when stale, unreadable or naming anything
/// else.
fn adoptable(layout: &Layout, name: &str) -> Option<PidFile> {
    let path = layout.pid_path(name);
    let file = match PidFile::read(&path) {
        Ok(Some(file)) => file,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(server = name, path = %path.display(), %error, "removing unreadable pid file");
            remove_pid_file(layout, name);
            return None;
        }
    };
    match file.id().liveness() {
        Liveness::Alive => match file.id().check_server() {
            Ok(()) => Some(file),
            Err(error) => {
                tracing::warn!(server = name, pid = file.pid, %error, "removing a pid file that names a process the agent cannot have started");
                remove_pid_file(layout, name);
                None
            }
        },
        liveness => {
            tracing::info!(
                server = name,
                pid = file.pid,
                ?liveness,
                "removing stale pid file"
            );
            remove_pid_file(layout, name);
            None
        }
    }
}

fn remove_pid_file(layout: &Layout, name: &str) {
    if let Err(error) = PidFile::remove(&layout.pid_path(name)) {
        tracing::warn!(server = name, %error, "cannot remove pid file");
    }
}

/// Milliseconds since the Unix epoch, for `since_ms`.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The process being supervised.
struct Proc {
    id: ProcessId,
    /// `None` when adopted: not our child, so liveness comes from `/proc`.
    child: Option<Child>,
    started: Instant,
}

/// A process the supervisor is ending on purpose, and what the server
/// becomes once it has exited.
struct Ending {
    /// When to escalate to SIGKILL; `None` once SIGKILL was sent.
    kill_at: Option<Instant>,
    stop_timeout: Duration,
    escalated: bool,
    outcome: Outcome,
}

enum Outcome {
    Stopped,
    Failed(String),
}

enum Event {
    DesiredChanged,
    /// The handle was dropped: the agent no longer supervises this server.
    Detached,
    /// `None` for an adopted process, whose exit status is unknown.
    Exited(Option<ExitStatus>),
    Probed(Result<(), String>),
    StartTimeout,
    RestartDue,
    StopTimeout,
}

struct Task {
    name: String,
    layout: Layout,
    desired_rx: watch::Receiver<Option<DesiredServer>>,
    desired: Option<DesiredServer>,
    /// The generation last acted on; a different one is "new" for
    /// `reconcile_server`.
    acted: Option<u64>,
    obs: ObservedServer,
    publish: watch::Sender<ObservedServer>,
    changes: Option<Changes>,
    proc: Option<Proc>,
    /// Restarts in a row (the policy's budget); `obs.restarts` counts
    /// every policy restart since the controller last asked for a start.
    streak: u32,
    probe_at: Option<Instant>,
    start_deadline: Option<Instant>,
    last_probe_error: Option<String>,
    restart_at: Option<Instant>,
    ending: Option<Ending>,
}

impl Task {
    async fn run(mut self) {
        self.take_desired();
        self.reconcile().await;
        loop {
            match self.next_event().await {
                Event::Detached => break,
                Event::DesiredChanged => self.take_desired(),
                Event::Exited(status) => self.on_exit(status),
                Event::Probed(result) => match self.exited_meanwhile() {
                    // The probe may have reached whatever took the port
                    // after the process died: the exit wins.
                    Some(status) => self.on_exit(status),
                    None => self.on_probe(result),
                },
                Event::StartTimeout => self.on_start_timeout(),
                Event::RestartDue => {
                    self.restart_at = None;
                    // A stop that arrived at the same moment wins.
                    self.take_desired();
                    if self
                        .desired
                        .as_ref()
                        .is_some_and(|d| d.intent == Intent::Run)
                    {
                        self.spawn().await;
                    }
                }
                Event::StopTimeout => self.on_stop_timeout(),
            }
            self.reconcile().await;
        }
        if self.obs.state.is_alive() {
            tracing::info!(server = %self.name, pid = ?self.obs.pid, "no longer supervising server; it keeps running");
        }
    }

    async fn next_event(&mut self) -> Event {
        let probe_spec = self.probing().then(|| self.spec().cloned()).flatten();
        let kill_at = self.ending.as_ref().and_then(|e| e.kill_at);
        tokio::select! {
            // An exit is seen before a probe result that raced with it.
            biased;
            status = wait_exit(&mut self.proc, &self.name) => Event::Exited(status),
            changed = self.desired_rx.changed() => match changed {
                Ok(()) => Event::DesiredChanged,
                Err(_) => Event::Detached,
            },
            result = probe_at(self.probe_at, probe_spec) => Event::Probed(result),
            () = sleep_until(self.start_deadline) => Event::StartTimeout,
            () = sleep_until(self.restart_at) => Event::RestartDue,
            () = sleep_until(kill_at) => Event::StopTimeout,
        }
    }

    fn take_desired(&mut self) {
        if let Some(desired) = self.desired_rx.borrow_and_update().clone() {
            self.desired = Some(desired);
        }
    }

    fn spec(&self) -> Option<&ServerSpec> {
        self.desired.as_ref().map(|d| &d.spec)
    }

    /// Probes run while a live process is starting, running or ready and
    /// is not being ended.
    fn probing(&self) -> bool {
        self.proc.is_some()
            && self.ending.is_none()
            && matches!(
                self.obs.state,
                ServerState::Starting | ServerState::Running | ServerState::Ready
            )
    }

    /// Applies the desired state to what the server is doing now.
    async fn reconcile(&mut self) {
        let Some(desired) = &self.desired else {
            return;
        };
        let (intent, generation) = (desired.intent, desired.generation);
        let new_generation = self.acted != Some(generation);
        let action = reconcile_server(intent, self.obs.state, new_generation);
        // A start asked for while stopping is acted on once stopped, so it
        // stays "new" until then.
        let deferred =
            action == ReconcileAction::Nothing && self.obs.state == ServerState::Stopping;
        if new_generation && !deferred {
            // Published together with the action's first state change, so
            // no observation pairs the new generation with the old state
            // (a failed server "answering" a start with `failed`).
            self.acted = Some(generation);
            self.obs.generation = generation;
        }
        match action {
            ReconcileAction::Spawn => {
                self.obs.restarts = 0;
                self.streak = 0;
                self.obs.exit_code = None;
                self.obs.last_error = None;
                self.spawn().await;
            }
            ReconcileAction::StopGracefully => self.stop_gracefully(),
            ReconcileAction::KillGroup => self.kill(),
            ReconcileAction::Nothing => {}
        }
        self.publish();
    }

    async fn spawn(&mut self) {
        let Some(spec) = self.spec().cloned() else {
            return;
        };
        let log = self.layout.log_path(&self.name);
        // The log says why a start spawned nothing, too.
        if let Err(error) = std::fs::create_dir_all(self.layout.server_dir(&self.name)) {
            tracing::warn!(server = %self.name, %error, "cannot create the server's directory");
        }
        let rotate_log = log.clone();
        let rotated = tokio::task::spawn_blocking(move || {
            logs::rotate_if_needed(&rotate_log, Rotation::default())
        })
        .await;
        if let Ok(Err(error)) = rotated {
            tracing::warn!(server = %self.name, %error, "cannot rotate server log");
        }
        let program = spec.argv.first().map(String::as_str).unwrap_or_default();
        // A process started on a taken port fails to bind, and its probe
        // would reach the holder and call it ready.
        let declared = spec.ports.clone();
        let ports_free = tokio::task::spawn_blocking(move || ports::check_free(&declared))
            .await
            .unwrap_or(Ok(()));
        if let Err(taken) = ports_free {
            let message = taken.to_string();
            tracing::error!(server = %self.name, error = %message, "not starting the server: a port is taken");
            logs::append_marker(&log, &format!("not started: {message}"));
            self.fail_to_start(message);
            return;
        }
        match process::spawn(&self.layout, &spec) {
            Ok(Spawned { child, id }) => {
                let now = Instant::now();
                let file = PidFile {
                    pid: id.pid,
                    start_time: id.start_time,
                    generation: self.obs.generation,
                };
                if let Err(error) = file.write(&self.layout.pid_path(&self.name)) {
                    // The server runs; only adoption by a restarted agent is lost.
                    tracing::warn!(server = %self.name, %error, "cannot write pid file");
                }
                logs::append_marker(
                    &log,
                    &format!(
                        "started `{program}` as pid {} (generation {})",
                        id.pid, self.obs.generation
                    ),
                );
                tracing::info!(server = %self.name, pid = id.pid, generation = self.obs.generation, "spawned server");
                self.proc = Some(Proc {
                    id,
                    child: Some(child),
                    started: now,
                });
                self.obs.pid = Some(id.pid);
                // The exit code of an earlier run is not this run's.
                self.obs.exit_code = None;
                self.start_deadline = Some(now + spec.ready.start_timeout.0);
                self.last_probe_error = None;
                self.probe_at = Some(now);
                self.set_state(ServerState::Starting);
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(server = %self.name, error = %message, "cannot spawn server");
                logs::append_marker(&log, &message);
                self.fail_to_start(message);
            }
        }
    }

    /// Ends a start that spawned nothing: the server is failed, with no
    /// process and no exit code.
    fn fail_to_start(&mut self, message: String) {
        self.obs.pid = None;
        self.obs.exit_code = None;
        self.obs.last_error = Some(message);
        self.set_state(ServerState::Failed);
    }

    /// Whether the supervised process exited while a probe ran: `Some`
    /// with its exit status (`None` inside when adopted, so unknown).
    fn exited_meanwhile(&mut self) -> Option<Option<ExitStatus>> {
        let proc = self.proc.as_mut()?;
        match &mut proc.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(Some(status)),
                // A wait error is left to `wait_exit`, which reports it.
                Ok(None) | Err(_) => None,
            },
            None => (proc.id.liveness() != Liveness::Alive).then_some(None),
        }
    }

    fn on_probe(&mut self, result: Result<(), String>) {
        let interval = self.spec().map(probe::interval).unwrap_or(ADOPTED_POLL);
        self.probe_at = Some(Instant::now() + interval);
        match (result, self.obs.state) {
            (Ok(()), ServerState::Starting | ServerState::Running) => {
                self.start_deadline = None;
                self.last_probe_error = None;
                self.obs.last_error = None;
                self.set_state(ServerState::Ready);
            }
            (Err(reason), ServerState::Starting) => self.last_probe_error = Some(reason),
            (Err(reason), ServerState::Ready | ServerState::Running) => {
                tracing::warn!(server = %self.name, %reason, "readiness check failed");
                self.obs.last_error = Some(format!("readiness check failed: {reason}"));
                self.set_state(ServerState::Running);
            }
            _ => {}
        }
    }

    fn on_start_timeout(&mut self) {
        self.start_deadline = None;
        let Some((start_timeout, stop_timeout)) = self
            .spec()
            .map(|s| (s.ready.start_timeout, s.stop.timeout.0))
        else {
            return;
        };
        let reason = self
            .last_probe_error
            .take()
            .unwrap_or_else(|| "no readiness check finished".to_string());
        let message = format!("not ready after {start_timeout}: {reason}");
        tracing::warn!(server = %self.name, %message, "start timed out; killing the process group");
        self.signal(libc::SIGKILL);
        self.probe_at = None;
        self.ending = Some(Ending {
            kill_at: None,
            stop_timeout,
            escalated: false,
            outcome: Outcome::Failed(message),
        });
    }

    /// Readies the end of the process: with none running (a restart was
    /// pending) the server is simply stopped. Returns whether there is a
    /// process to end.
    fn prepare_to_end(&mut self) -> bool {
        if self.proc.is_none() {
            self.restart_at = None;
            self.set_state(ServerState::Stopped);
            return false;
        }
        self.probe_at = None;
        self.start_deadline = None;
        true
    }

    fn stop_gracefully(&mut self) {
        if !self.prepare_to_end() {
            return;
        }
        if let Some(ending) = &mut self.ending {
            // Already being killed (start timeout): it ends as asked.
            ending.outcome = Outcome::Stopped;
            self.set_state(ServerState::Stopping);
            return;
        }
        let Some(spec) = self.spec().cloned() else {
            return;
        };
        let timeout = spec.stop.timeout.0;
        self.ending = Some(Ending {
            kill_at: Some(Instant::now() + timeout),
            stop_timeout: timeout,
            escalated: false,
            outcome: Outcome::Stopped,
        });
        self.set_state(ServerState::Stopping);
        let log = self.layout.log_path(&self.name);
        if let Some(command) = &spec.stop.command {
            match process::spawn_stop_command(&self.layout, &spec, command) {
                Ok(child) => {
                    logs::append_marker(
                        &log,
                        &format!("running stop command `{}`", command.join(" ")),
                    );
                    tracing::info!(server = %self.name, command = ?command, "running stop command");
                    tokio::spawn(reap_stop_command(child, timeout, self.name.clone()));
                    return;
                }
                Err(error) => {
                    tracing::warn!(server = %self.name, %error, "stop command failed; sending the stop signal instead");
                    logs::append_marker(&log, &format!("stop command failed: {error}"));
                }
            }
        }
        let signal = format!("{:?}", spec.stop.signal).to_uppercase();
        logs::append_marker(&log, &format!("sending SIG{signal} to the process group"));
        self.signal(spec.stop.signal.number());
    }

    fn kill(&mut self) {
        if !self.prepare_to_end() {
            return;
        }
        logs::append_marker(
            &self.layout.log_path(&self.name),
            "killing the process group",
        );
        self.signal(libc::SIGKILL);
        let stop_timeout = self.spec().map(|s| s.stop.timeout.0).unwrap_or_default();
        let escalated = self.ending.as_ref().is_some_and(|e| e.escalated);
        self.ending = Some(Ending {
            kill_at: None,
            stop_timeout,
            escalated,
            outcome: Outcome::Stopped,
        });
        self.set_state(ServerState::Stopping);
    }

    fn on_stop_timeout(&mut self) {
        let Some(ending) = &mut self.ending else {
            return;
        };
        ending.kill_at = None;
        ending.escalated = true;
        let timeout = DurationSpec(ending.stop_timeout);
        tracing::warn!(server = %self.name, %timeout, "server did not stop in time; killing the process group");
        logs::append_marker(
            &self.layout.log_path(&self.name),
            &format!("not stopped after {timeout}; killing the process group"),
        );
        self.signal(libc::SIGKILL);
    }

    fn on_exit(&mut self, status: Option<ExitStatus>) {
        let Some(proc) = self.proc.take() else {
            return;
        };
        let (exit_code, what) = match status {
            Some(status) => process::describe_exit(status),
            None => (
                None,
                "exited (exit status unknown: the process was adopted)".to_string(),
            ),
        };
        // Whatever the leader left behind in its group would hold ports and
        // files the next start needs.
        match proc.id.signal_group(libc::SIGKILL) {
            Ok(true) => {
                tracing::info!(server = %self.name, pgid = proc.id.pid, "killed leftover processes of the group")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(server = %self.name, %error, "cannot kill leftover processes of the group")
            }
        }
        remove_pid_file(&self.layout, &self.name);
        logs::append_marker(
            &self.layout.log_path(&self.name),
            &format!("pid {} {what}", proc.id.pid),
        );
        self.probe_at = None;
        self.start_deadline = None;
        self.obs.pid = None;
        self.obs.exit_code = exit_code;

        if let Some(ending) = self.ending.take() {
            match ending.outcome {
                Outcome::Stopped => {
                    self.obs.last_error = ending.escalated.then(|| {
                        format!(
                            "killed after stop timeout {}",
                            DurationSpec(ending.stop_timeout)
                        )
                    });
                    tracing::info!(server = %self.name, %what, "server stopped");
                    self.set_state(ServerState::Stopped);
                }
                Outcome::Failed(message) => {
                    self.obs.last_error = Some(message);
                    self.set_state(ServerState::Failed);
                }
            }
            return;
        }

        let Some(policy) = self.spec().map(|s| s.restart.clone()) else {
            // Adopted with no desired state (no local copy): without a spec
            // it cannot be restarted. The controller's first answer counts as new, so
            // a `run` there starts it again.
            self.acted = None;
            self.obs.last_error = Some(format!("{what}; waiting for the controller to restart it"));
            self.set_state(ServerState::Failed);
            return;
        };
        if proc.started.elapsed() >= STABLE_RUN {
            self.streak = 0;
        }
        match decide_restart(&policy, self.streak, exit_code) {
            RestartDecision::RestartAfter(wait) => {
                let wait = wait.max(MIN_RESTART_WAIT);
                self.streak += 1;
                self.obs.restarts += 1;
                let message = format!("{what}; restarting in {}", DurationSpec(wait));
                tracing::warn!(server = %self.name, %message, restarts = self.obs.restarts, "server exited");
                self.obs.last_error = Some(message);
                self.restart_at = Some(Instant::now() + wait);
                self.set_state(ServerState::Starting);
            }
            RestartDecision::GiveUp => {
                let message = give_up_message(&policy, self.streak, exit_code, what);
                tracing::warn!(server = %self.name, %message, "server exited; not restarting");
                self.obs.last_error = Some(message);
                self.set_state(ServerState::Failed);
            }
        }
    }

    /// Signals the process group, logging (not failing) when it cannot.
    fn signal(&self, signal: i32) {
        let Some(proc) = &self.proc else {
            return;
        };
        match proc.id.signal_group(signal) {
            Ok(true) => {
                tracing::debug!(server = %self.name, pgid = proc.id.pid, signal, "signalled process group")
            }
            Ok(false) => {
                tracing::info!(server = %self.name, pgid = proc.id.pid, signal, "process group already gone")
            }
            Err(error) => {
                tracing::error!(server = %self.name, pgid = proc.id.pid, signal, %error, "cannot signal process group")
            }
        }
    }

    fn set_state(&mut self, state: ServerState) {
        if self.obs.state != state {
            debug_assert!(
                self.obs.state.can_become(state),
                "{} -> {state} is not a valid transition",
                self.obs.state
            );
            tracing::info!(
                server = %self.name,
                from = %self.obs.state,
                to = %state,
                pid = ?self.obs.pid,
                last_error = ?self.obs.last_error,
                "server state changed"
            );
            self.obs.state = state;
            self.obs.since_ms = now_ms();
        }
        self.publish();
    }

    fn publish(&self) {
        let modified = self.publish.send_if_modified(|current| {
            if *current == self.obs {
                false
            } else {
                *current = self.obs.clone();
                true
            }
        });
        if let (true, Some(changes)) = (modified, &self.changes) {
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

fn give_up_message(
    policy: &RestartPolicy,
    streak: u32,
    exit_code: Option<i32>,
    what: String,
) -> String {
    let failed = exit_code != Some(0);
    if policy.mode == RestartMode::OnFailure && failed && streak >= policy.max_restarts {
        format!("{what}; gave up after {streak} restarts")
    } else {
        what
    }
}

/// Waits for the supervised process to exit; never returns when there is none.
async fn wait_exit(proc: &mut Option<Proc>, name: &str) -> Option<ExitStatus> {
    let Some(proc) = proc else {
        return std::future::pending().await;
    };
    if let Some(child) = &mut proc.child {
        let result = child.wait().await;
        match result {
            Ok(status) => return Some(status),
            Err(error) => {
                // Someone else reaped it; fall back to watching /proc.
                tracing::warn!(server = name, %error, "cannot wait for the server process");
                proc.child = None;
            }
        }
    }
    loop {
        if proc.id.liveness() != Liveness::Alive {
            return None;
        }
        tokio::time::sleep(ADOPTED_POLL).await;
    }
}

async fn probe_at(at: Option<Instant>, spec: Option<ServerSpec>) -> Result<(), String> {
    let (Some(at), Some(spec)) = (at, spec) else {
        return std::future::pending().await;
    };
    tokio::time::sleep_until(at).await;
    probe::probe(&spec).await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for a stop command so it does not linger as a zombie; kills its
/// group if it outlives the stop timeout.
async fn reap_stop_command(mut child: Child, limit: Duration, server: String) {
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::debug!(server, "stop command finished");
        }
        Ok(Ok(status)) => {
            let (_, what) = process::describe_exit(status);
            tracing::warn!(server, %what, "stop command failed");
        }
        Ok(Err(error)) => tracing::warn!(server, %error, "cannot wait for stop command"),
        Err(_) => {
            tracing::warn!(
                server,
                "stop command still running after the stop timeout; killing it"
            );
            // Not yet reaped, so its pid cannot have been reused.
            if let Some(Ok(Some(id))) = child.id().map(ProcessId::of) {
                let _ = id.signal_group(libc::SIGKILL);
            }
            let _ = child.wait().await;
        }
    }
}
