//! One supervisor task per server: it owns the server's process and does
//! the I/O of its lifecycle. Every decision — when to spawn, probe, stop,
//! kill or restart, and which state to report — is made by the pure state
//! machine [`dure_core::lifecycle::Lifecycle`]; this task feeds it what
//! happened (a desired state, a spawn result, an exit, a probe result, a
//! timer) and performs the actions it returns: checking the ports and
//! spawning, signalling the process group, running probes, arming timers
//! and publishing an [`ObservedServer`].
//!
//! Invariant: the process is only ever signalled because the desired state
//! asked for it (stop, kill) or because the server broke its own contract
//! (not ready by its start timeout, or leftovers of a group whose leader
//! exited). Dropping a [`Supervisor`] — the agent stopping or restarting —
//! leaves the process running; the next agent adopts it from its pid file
//! and hands it its entry of the local copy (see [`crate::local_copy`]), so
//! an adopted server is probed and restarted even before the controller
//! answers. A server with no process (a restart pending, or failed) leaves
//! its restart state instead (see `crate::restart_state`), and the next
//! agent resumes it with the same counts and budget.

use crate::app_server;
use crate::layout::Layout;
use crate::logs::{self, Rotation};
use crate::ports;
use crate::probe;
use crate::process::{self, Liveness, PidFile, ProcessId, Spawned};
use crate::restart_state;
use dure_api::DesiredServer;
use dure_core::lifecycle::{Action, Adoption, Desired, Input, Lifecycle, Resumption, Timer};
use dure_core::{DurationSpec, ObservedServer, ServerSpec, ServerState};
use std::collections::{BTreeMap, VecDeque};
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
    /// with the recorded start time, it is adopted at once (state `ready`
    /// if the previous agent last saw it ready, `running` if not); it is
    /// probed, restarted and stopped by the desired state
    /// [`Supervisor::set_desired`] hands it, and until then only watched. A
    /// stale pid file is removed. Nothing is spawned until a desired state
    /// asks for it.
    pub fn start(layout: &Layout, name: &str) -> Supervisor {
        Supervisor::start_with(layout, name, None)
    }

    pub(crate) fn start_with(layout: &Layout, name: &str, changes: Option<Changes>) -> Supervisor {
        let now = now_ms();
        let adopted_file = adoptable(layout, name);
        let (lifecycle, proc) = match adopted_file {
            Some(file) => {
                tracing::info!(
                    server = name,
                    pid = file.pid,
                    generation = file.generation,
                    "adopted running server"
                );
                let adoption = Adoption {
                    pid: file.pid,
                    generation: file.generation,
                    restarts: file.restarts,
                    streak: file.streak,
                    ready: file.ready,
                    ready_since_ms: file.since_ms,
                };
                let proc = Proc {
                    id: file.id(),
                    child: None,
                };
                (Lifecycle::adopted(name, adoption, now), Some(proc))
            }
            None => match resumable(layout, name) {
                Some(resumption) => {
                    tracing::info!(
                        server = name,
                        restarts = resumption.restarts,
                        restart_due_ms = ?resumption.restart_due_ms,
                        "resuming server without a process"
                    );
                    (Lifecycle::resumed(name, resumption, now), None)
                }
                None => (Lifecycle::new(name, now), None),
            },
        };
        let resumed = lifecycle.resumption();
        let (desired_tx, desired_rx) = watch::channel(None);
        let (observed_tx, observed_rx) = watch::channel(lifecycle.observed().clone());
        let task = Task {
            name: name.to_string(),
            layout: layout.clone(),
            desired_rx,
            lifecycle,
            publish: observed_tx,
            changes,
            saved: proc.as_ref().and(adopted_file),
            resumed,
            proc,
            probe: None,
            timers: BTreeMap::new(),
            files: BTreeMap::new(),
            restart_needed: false,
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

/// Reads the restart state a previous agent left for a server without a
/// process; removes it when unreadable (the server then starts afresh).
fn resumable(layout: &Layout, name: &str) -> Option<Resumption> {
    let path = layout.restart_state_path(name);
    match restart_state::read(&path) {
        Ok(resumption) => resumption,
        Err(error) => {
            tracing::warn!(server = name, path = %path.display(), %error, "removing unreadable restart state; the server starts with no restarts counted");
            remove_restart_state(layout, name);
            None
        }
    }
}

pub(crate) fn remove_restart_state(layout: &Layout, name: &str) {
    if let Err(error) = restart_state::remove(&layout.restart_state_path(name)) {
        tracing::warn!(server = name, %error, "cannot remove restart state");
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
}

enum Event {
    DesiredChanged,
    /// The handle was dropped: the agent no longer supervises this server.
    Detached,
    /// `None` for an adopted process, whose exit status is unknown.
    Exited(Option<ExitStatus>),
    Probed(u64, Result<(), String>),
    TimerFired(Timer),
}

struct Task {
    name: String,
    layout: Layout,
    desired_rx: watch::Receiver<Option<DesiredServer>>,
    lifecycle: Lifecycle,
    publish: watch::Sender<ObservedServer>,
    changes: Option<Changes>,
    proc: Option<Proc>,
    /// The run to probe and when, as the lifecycle asked.
    probe: Option<(u64, Instant)>,
    /// The armed timers, as the lifecycle asked.
    timers: BTreeMap<Timer, Instant>,
    /// The pid file as last written for the live process.
    saved: Option<PidFile>,
    /// The restart state as last written while there is no process.
    resumed: Option<Resumption>,
    /// A templated server's generated files, as the latest desired state
    /// gives them; written at each spawn.
    files: BTreeMap<String, String>,
    /// The live process started with files other than `files`.
    restart_needed: bool,
}

impl Task {
    async fn run(mut self) {
        self.take_desired().await;
        loop {
            match self.next_event().await {
                Event::Detached => break,
                Event::DesiredChanged => self.take_desired().await,
                Event::Exited(status) => self.on_exit(status).await,
                Event::Probed(run, result) => {
                    // The probe may have reached whatever took the port
                    // after the process died: the exit is fed first, and
                    // the lifecycle ignores the probe of a run that ended.
                    if let Some(status) = self.exited_meanwhile() {
                        self.on_exit(status).await;
                    }
                    self.feed(Input::Probed { run, result }).await;
                }
                Event::TimerFired(timer) => {
                    self.timers.remove(&timer);
                    // A desired state that arrived at the same moment wins
                    // over a restart.
                    self.take_desired().await;
                    self.note_timer(timer);
                    self.feed(Input::TimerFired(timer)).await;
                }
            }
        }
        if self.lifecycle.observed().state.is_alive() {
            tracing::info!(server = %self.name, pid = ?self.lifecycle.observed().pid, "no longer supervising server; it keeps running");
        }
    }

    async fn next_event(&mut self) -> Event {
        let probe = self
            .probe
            .zip(self.lifecycle.desired().map(|d| d.spec.clone()));
        let next_timer = self
            .timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(timer, at)| (*timer, *at));
        tokio::select! {
            // An exit is seen before a probe result that raced with it.
            biased;
            status = wait_exit(&mut self.proc, &self.name) => Event::Exited(status),
            changed = self.desired_rx.changed() => match changed {
                Ok(()) => Event::DesiredChanged,
                Err(_) => Event::Detached,
            },
            (run, result) = probe_at(probe) => {
                self.probe = None;
                Event::Probed(run, result)
            }
            timer = timer_at(next_timer) => Event::TimerFired(timer),
        }
    }

    async fn take_desired(&mut self) {
        let Some(desired) = self.desired_rx.borrow_and_update().clone() else {
            return;
        };
        self.files = desired.files;
        // The lifecycle runs what the agent starts: for a templated server
        // the template's command on its instance.
        let desired = Desired {
            spec: app_server::launch_spec(&self.layout, &desired.spec),
            intent: desired.intent,
            generation: desired.generation,
        };
        if self.lifecycle.desired() != Some(&desired) {
            self.feed(Input::Desired(Box::new(desired))).await;
        }
        self.check_files();
    }

    /// Notes whether the live process runs files other than the ones its
    /// configuration now generates, and publishes a change of that.
    fn check_files(&mut self) {
        let needed = self.proc.is_some()
            && !self.files.is_empty()
            && app_server::files_differ(&self.layout, &self.name, &self.files);
        if needed != self.restart_needed {
            self.restart_needed = needed;
            if needed {
                tracing::info!(server = %self.name, "configuration files changed; the server needs a restart to use them");
            }
            self.publish();
        }
    }

    /// Feeds `input` to the lifecycle and performs what it asks, feeding
    /// back what the actions report (a spawn's result), then publishes the
    /// observation once: states passed through on the way (a new
    /// generation paired with the old state) are never seen.
    async fn feed(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        let mut changed = false;
        while let Some(input) = inputs.pop_front() {
            for action in self.lifecycle.step(input, now_ms()) {
                match action {
                    Action::Spawn => inputs.push_back(self.spawn().await),
                    Action::StopGracefully => self.stop_gracefully(),
                    Action::Kill => self.kill(),
                    Action::StartProbe { run, after } => {
                        self.probe = Some((run, Instant::now() + after));
                    }
                    Action::StopProbe => self.probe = None,
                    Action::ScheduleTimer { timer, after } => {
                        self.timers.insert(timer, Instant::now() + after);
                    }
                    Action::CancelTimer(timer) => {
                        self.timers.remove(&timer);
                    }
                    Action::Report => changed = true,
                }
            }
        }
        self.save_pid_file();
        self.save_restart_state();
        if changed {
            self.publish();
        }
    }

    /// Writes the pid file when what a restarted agent needs from it
    /// changed: the process, its generation, the restart counts, and
    /// whether it is ready since when. Written before the change is
    /// published, so an agent restart never reports less than was reported.
    fn save_pid_file(&mut self) {
        let Some(proc) = &self.proc else {
            return;
        };
        let observed = self.lifecycle.observed();
        let ready = observed.state == ServerState::Ready;
        let file = PidFile {
            pid: proc.id.pid,
            start_time: proc.id.start_time,
            generation: observed.generation,
            restarts: observed.restarts,
            streak: self.lifecycle.streak(),
            ready,
            since_ms: observed.since_ms,
        };
        if self.saved == Some(file) {
            return;
        }
        match file.write(&self.layout.pid_path(&self.name)) {
            Ok(()) => self.saved = Some(file),
            // The server runs; only what a restarted agent knows of it is lost.
            Err(error) => tracing::warn!(server = %self.name, %error, "cannot write pid file"),
        }
    }

    /// Keeps the restart state of a server without a process (a pending
    /// restart, a failure) for a restarted agent, and removes it once
    /// there is nothing to resume. Written before the change is published,
    /// like the pid file.
    fn save_restart_state(&mut self) {
        let resumption = self.lifecycle.resumption();
        if self.resumed == resumption {
            return;
        }
        let path = self.layout.restart_state_path(&self.name);
        let written = match &resumption {
            Some(resumption) => restart_state::write(&path, resumption),
            None => restart_state::remove(&path),
        };
        match written {
            Ok(()) => self.resumed = resumption,
            // Only what a restarted agent knows of the server is lost.
            Err(error) => tracing::warn!(server = %self.name, %error, "cannot save restart state"),
        }
    }

    fn spec(&self) -> Option<ServerSpec> {
        self.lifecycle.desired().map(|d| d.spec.clone())
    }

    /// Checks the ports and spawns the desired spec's process; returns
    /// what happened, for the lifecycle.
    async fn spawn(&mut self) -> Input {
        let Some(spec) = self.spec() else {
            return Input::SpawnFailed {
                message: "no desired state to start from".into(),
            };
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
            return Input::SpawnFailed { message };
        }
        if spec.template.is_some() {
            let (layout, files, template_spec) =
                (self.layout.clone(), self.files.clone(), spec.clone());
            let prepared = tokio::task::spawn_blocking(move || {
                app_server::prepare(&layout, &template_spec, &files)
            })
            .await
            .unwrap_or_else(|e| {
                Err(app_server::InstanceError::Create {
                    dir: self.layout.instance_dir(&self.name),
                    source: std::io::Error::other(e.to_string()),
                })
            });
            if let Err(error) = prepared {
                let message = error.to_string();
                tracing::error!(server = %self.name, error = %message, "not starting the server: its instance is not ready");
                logs::append_marker(&log, &format!("not started: {message}"));
                return Input::SpawnFailed { message };
            }
            self.restart_needed = false;
        }
        let program = spec.argv.first().map(String::as_str).unwrap_or_default();
        let generation = self.lifecycle.observed().generation;
        match process::spawn(&self.layout, &spec) {
            Ok(Spawned { child, id }) => {
                logs::append_marker(
                    &log,
                    &format!(
                        "started `{program}` as pid {} (generation {generation})",
                        id.pid
                    ),
                );
                tracing::info!(server = %self.name, pid = id.pid, generation, "spawned server");
                self.proc = Some(Proc {
                    id,
                    child: Some(child),
                });
                Input::Spawned { pid: id.pid }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(server = %self.name, error = %message, "cannot spawn server");
                logs::append_marker(&log, &message);
                Input::SpawnFailed { message }
            }
        }
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

    /// Logs why a timer that ends a process fired; the lifecycle decides
    /// what follows.
    fn note_timer(&self, timer: Timer) {
        let Some(spec) = self.lifecycle.desired().map(|d| &d.spec) else {
            return;
        };
        match timer {
            Timer::StartTimeout => {
                let timeout = spec.ready.start_timeout;
                tracing::warn!(server = %self.name, %timeout, "start timed out; killing the process group");
            }
            Timer::StopTimeout => {
                let timeout = DurationSpec(spec.stop.timeout.0);
                tracing::warn!(server = %self.name, %timeout, "server did not stop in time; killing the process group");
                logs::append_marker(
                    &self.layout.log_path(&self.name),
                    &format!("not stopped after {timeout}; killing the process group"),
                );
            }
            Timer::Restart => {}
        }
    }

    fn stop_gracefully(&self) {
        let Some(spec) = self.spec() else {
            return;
        };
        let log = self.layout.log_path(&self.name);
        if let (Some(port), Some(proc)) = (app_server::shutdown_port(&spec), &self.proc) {
            logs::append_marker(&log, &format!("sending the shutdown word to port {port}"));
            tokio::spawn(shut_down_tomcat(
                port,
                proc.id,
                spec.stop.signal.number(),
                self.name.clone(),
                log,
            ));
            return;
        }
        if let Some(command) = &spec.stop.command {
            match process::spawn_stop_command(&self.layout, &spec, command) {
                Ok(child) => {
                    logs::append_marker(
                        &log,
                        &format!("running stop command `{}`", command.join(" ")),
                    );
                    tracing::info!(server = %self.name, command = ?command, "running stop command");
                    tokio::spawn(reap_stop_command(
                        child,
                        spec.stop.timeout.0,
                        self.name.clone(),
                    ));
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

    fn kill(&self) {
        logs::append_marker(
            &self.layout.log_path(&self.name),
            "killing the process group",
        );
        self.signal(libc::SIGKILL);
    }

    /// Cleans up after the process ended and tells the lifecycle.
    async fn on_exit(&mut self, status: Option<ExitStatus>) {
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
        self.saved = None;
        logs::append_marker(
            &self.layout.log_path(&self.name),
            &format!("pid {} {what}", proc.id.pid),
        );
        tracing::info!(server = %self.name, pid = proc.id.pid, %what, "server process ended");
        self.probe = None;
        self.feed(Input::Exited { exit_code, what }).await;
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

    fn publish(&self) {
        let mut observed = self.lifecycle.observed().clone();
        observed.restart_needed = self.restart_needed && observed.state.is_alive();
        let observed = &observed;
        let modified = self.publish.send_if_modified(|current| {
            if current == observed {
                return false;
            }
            if current.state != observed.state {
                tracing::info!(
                    server = %self.name,
                    from = %current.state,
                    to = %observed.state,
                    pid = ?observed.pid,
                    last_error = ?observed.last_error,
                    "server state changed"
                );
            }
            *current = observed.clone();
            true
        });
        if let (true, Some(changes)) = (modified, &self.changes) {
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
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

/// Runs the probe of run `run` at its time; never returns when none is due.
async fn probe_at(probe: Option<((u64, Instant), ServerSpec)>) -> (u64, Result<(), String>) {
    let Some(((run, at), spec)) = probe else {
        return std::future::pending().await;
    };
    tokio::time::sleep_until(at).await;
    (run, probe::probe(&spec).await)
}

/// Waits for the earliest armed timer; never returns when none is armed.
async fn timer_at(next: Option<(Timer, Instant)>) -> Timer {
    match next {
        Some((timer, at)) => {
            tokio::time::sleep_until(at).await;
            timer
        }
        None => std::future::pending().await,
    }
}

/// Asks Tomcat to stop through its shutdown port; when nothing answers
/// there, sends the stop signal to the group instead. The stop timeout the
/// lifecycle armed ends it either way.
async fn shut_down_tomcat(
    port: u16,
    id: ProcessId,
    signal: i32,
    server: String,
    log: std::path::PathBuf,
) {
    match app_server::send_shutdown(port).await {
        Ok(()) => tracing::info!(server, port, "sent the shutdown word"),
        Err(error) => {
            tracing::warn!(server, port, %error, "cannot send the shutdown word; sending the stop signal instead");
            logs::append_marker(
                &log,
                &format!("shutdown port {port} refused ({error}); sending the stop signal"),
            );
            if let Err(error) = id.signal_group(signal) {
                tracing::error!(server, %error, "cannot signal process group");
            }
        }
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
