//! The lifecycle of one supervised server as a pure state machine: what
//! the agent's supervisor has seen happen ([`Input`]: a desired state, a
//! spawn result, an exit, a probe result, a timer) becomes a new
//! [`ObservedServer`] and the [`Action`]s the supervisor must perform
//! (spawn, stop, kill, probe, arm a timer, report). The supervisor does
//! the I/O and nothing else; every rule about states lives here.
//!
//! Per-server decisions reuse [`reconcile_server`] (what a desired state
//! asks of the current state) and [`decide_restart`] (the restart policy
//! and its backoff).
//!
//! Invariants, property-tested below:
//! - the state is `ready` only while a process the supervisor spawned or
//!   adopted is alive; a probe result of a run that has exited, or that
//!   was not asked for, is ignored: an exit always wins over a probe;
//! - an observation with a pid carries no exit code (the exit code is that
//!   of the run that ended, never of a later one);
//! - restarts by policy wait at least [`MIN_RESTART_WAIT`], follow the
//!   policy's backoff and stop after `max_restarts` in a row — also
//!   across an agent restart: a [`Resumption`] carries the counts and the
//!   pending restart, which resumes with the backoff that remains;
//! - the restart count is reset only by a start asked for, never by a
//!   restart by policy, and nothing is spawned unless the intent is run;
//! - every state change is one [`ServerState::can_become`] allows.

use crate::duration::DurationSpec;
use crate::model::{RestartMode, RestartPolicy, ServerSpec};
use crate::reconcile::{reconcile_server, ReconcileAction};
use crate::restart::{decide_restart, RestartDecision};
use crate::state::{Intent, ObservedServer, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// A process that ran at least this long before crashing starts a new
/// series of restarts: `max_restarts` limits crash loops, not a server's
/// lifetime total.
pub const STABLE_RUN: Duration = Duration::from_secs(60);

/// The shortest wait before a restart by policy, whatever the policy says:
/// a `0ms` backoff must not turn a crashing server into a fork loop.
pub const MIN_RESTART_WAIT: Duration = Duration::from_millis(100);

/// What the supervisor wants of the server now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub spec: ServerSpec,
    pub intent: Intent,
    /// Bumped by the controller on every new intent.
    pub generation: u64,
}

/// What a restarted agent finds of a server still running from before:
/// its pid file and what was saved beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adoption {
    pub pid: u32,
    /// The generation the process was started for.
    pub generation: u64,
    /// Restarts by policy since the last start asked for.
    pub restarts: u32,
    /// Restarts in a row (the policy's budget).
    pub streak: u32,
    /// Whether it was ready when the previous agent last saw it.
    pub ready: bool,
    /// Since when it was ready, in ms since the Unix epoch.
    pub ready_since_ms: u64,
}

/// What a restarted agent finds of a server that had no process when the
/// previous agent stopped: a restart by policy waiting out its backoff, or
/// a server that had failed. Saved beside the server so RESTARTS and the
/// policy's budget survive an agent restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumption {
    /// The generation the previous agent acted on.
    pub generation: u64,
    /// Restarts by policy since the last start asked for.
    pub restarts: u32,
    /// Restarts in a row (the policy's budget spent).
    pub streak: u32,
    /// When the pending restart is due, in ms since the Unix epoch; `None`
    /// when the server had failed.
    pub restart_due_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub last_error: Option<String>,
    /// Since when it has been in its state, in ms since the Unix epoch.
    pub since_ms: u64,
}

/// The timers a server's lifecycle arms; at most one of each at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The process must be ready by the spec's start timeout.
    StartTimeout,
    /// A restart by policy is due.
    Restart,
    /// A graceful stop ran out of time: kill the group.
    StopTimeout,
}

/// What happened, as the supervisor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The latest desired state of the server.
    Desired(Box<Desired>),
    /// The process asked for by [`Action::Spawn`] runs as `pid`.
    Spawned { pid: u32 },
    /// Nothing was spawned: the reason (a port taken, a missing command).
    SpawnFailed { message: String },
    /// The supervised process exited. `exit_code` is `None` when killed by
    /// a signal or adopted (status unknown); `what` says how it ended
    /// (`exited with code 3`).
    Exited {
        exit_code: Option<i32>,
        what: String,
    },
    /// The readiness probe of run `run`, asked for by
    /// [`Action::StartProbe`], finished.
    Probed {
        run: u64,
        result: Result<(), String>,
    },
    /// A timer armed by [`Action::ScheduleTimer`] fired.
    TimerFired(Timer),
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check the ports and spawn the desired spec's process, then feed
    /// back [`Input::Spawned`] or [`Input::SpawnFailed`].
    Spawn,
    /// Run the spec's stop command, or send its stop signal to the group.
    StopGracefully,
    /// SIGKILL the process group.
    Kill,
    /// Probe run `run` after `after`, then feed back [`Input::Probed`];
    /// replaces any probe scheduled before.
    StartProbe {
        run: u64,
        after: Duration,
    },
    /// Drop the scheduled or running probe.
    StopProbe,
    /// Arm `timer` to fire after `after`, replacing one armed before.
    ScheduleTimer {
        timer: Timer,
        after: Duration,
    },
    CancelTimer(Timer),
    /// The observation changed: publish [`Lifecycle::observed`].
    Report,
}

/// The process of the current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Counts the runs of this lifecycle; probes name the run they test.
    number: u64,
    started_ms: u64,
}

/// A process being ended on purpose, and what the server becomes once it
/// has exited.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ending {
    /// SIGKILL was sent because the stop timeout passed.
    escalated: bool,
    stop_timeout: Duration,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Stopped,
    Failed(String),
}

/// One server's lifecycle. See the module docs.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    obs: ObservedServer,
    desired: Option<Desired>,
    /// The generation last acted on; a different one is "new" for
    /// [`reconcile_server`].
    acted: Option<u64>,
    run: Option<Run>,
    runs: u64,
    /// Restarts in a row (the policy's budget); `obs.restarts` counts
    /// every policy restart since the last start asked for.
    streak: u32,
    /// A spawn was asked for and its result has not come back.
    spawning: bool,
    /// The run a probe is scheduled for.
    probing: Option<u64>,
    last_probe_error: Option<String>,
    armed: BTreeSet<Timer>,
    ending: Option<Ending>,
    /// When the pending restart by policy is due, in ms since the epoch.
    restart_due_ms: Option<u64>,
    /// The pending restart was inherited from a previous agent and its
    /// timer is armed once a desired state (with the spec) arrives.
    restart_owed: bool,
}

impl Lifecycle {
    /// A server with no process, `stopped`.
    pub fn new(name: &str, now_ms: u64) -> Lifecycle {
        Lifecycle {
            obs: ObservedServer::stopped(name, now_ms),
            desired: None,
            acted: None,
            run: None,
            runs: 0,
            streak: 0,
            spawning: false,
            probing: None,
            last_probe_error: None,
            armed: BTreeSet::new(),
            ending: None,
            restart_due_ms: None,
            restart_owed: false,
        }
    }

    /// A server that had no process when the previous agent stopped: with
    /// a restart pending it is `starting` and restarts when the backoff
    /// that remains is over (once a desired state still asks it to run);
    /// else it is `failed` as it was. Its generation counts as acted on, so
    /// the same desired state neither resets its counts nor starts it anew.
    pub fn resumed(name: &str, resumption: Resumption, now_ms: u64) -> Lifecycle {
        let mut lifecycle = Lifecycle::new(name, now_ms);
        lifecycle.obs.state = match resumption.restart_due_ms {
            Some(_) => ServerState::Starting,
            None => ServerState::Failed,
        };
        lifecycle.obs.since_ms = resumption.since_ms;
        lifecycle.obs.generation = resumption.generation;
        lifecycle.obs.restarts = resumption.restarts;
        lifecycle.obs.exit_code = resumption.exit_code;
        lifecycle.obs.last_error = resumption.last_error;
        lifecycle.streak = resumption.streak;
        lifecycle.acted = Some(resumption.generation);
        lifecycle.restart_due_ms = resumption.restart_due_ms;
        lifecycle.restart_owed = resumption.restart_due_ms.is_some();
        lifecycle
    }

    /// What a restarted agent needs to resume this server when it has no
    /// process: a restart pending, or a failure the same desired state
    /// does not retry. `None` while a process runs or is being spawned,
    /// and when stopped (nothing to resume).
    pub fn resumption(&self) -> Option<Resumption> {
        if self.run.is_some() || self.spawning {
            return None;
        }
        let restart_due_ms = match self.obs.state {
            ServerState::Starting => Some(self.restart_due_ms?),
            ServerState::Failed if self.acted.is_some() => None,
            _ => return None,
        };
        Some(Resumption {
            generation: self.obs.generation,
            restarts: self.obs.restarts,
            streak: self.streak,
            restart_due_ms,
            exit_code: self.obs.exit_code,
            last_error: self.obs.last_error.clone(),
            since_ms: self.obs.since_ms,
        })
    }

    /// A server whose process a previous agent started and that still
    /// runs: `ready` if it was ready then (until a probe says otherwise),
    /// `running` if not. Its generation counts as acted on, so the same
    /// desired state does not start it again.
    pub fn adopted(name: &str, adoption: Adoption, now_ms: u64) -> Lifecycle {
        let mut lifecycle = Lifecycle::new(name, now_ms);
        if adoption.ready {
            lifecycle.obs.state = ServerState::Ready;
            lifecycle.obs.since_ms = adoption.ready_since_ms;
        } else {
            lifecycle.obs.state = ServerState::Running;
        }
        lifecycle.obs.pid = Some(adoption.pid);
        lifecycle.obs.generation = adoption.generation;
        lifecycle.obs.restarts = adoption.restarts;
        lifecycle.streak = adoption.streak;
        lifecycle.acted = Some(adoption.generation);
        lifecycle.runs = 1;
        lifecycle.run = Some(Run {
            number: 1,
            started_ms: now_ms,
        });
        lifecycle
    }

    /// The observation to report.
    pub fn observed(&self) -> &ObservedServer {
        &self.obs
    }

    /// The desired state last handed over.
    pub fn desired(&self) -> Option<&Desired> {
        self.desired.as_ref()
    }

    /// Restarts in a row, saved with the pid file so an agent restart
    /// keeps the policy's budget.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// The number of the current run, when a process is alive.
    pub fn run(&self) -> Option<u64> {
        self.run.map(|run| run.number)
    }

    /// Applies what happened at `now_ms` and returns what to do, in order.
    pub fn step(&mut self, input: Input, now_ms: u64) -> Vec<Action> {
        let before = self.obs.clone();
        let mut step = Step {
            now_ms,
            actions: Vec::new(),
        };
        match input {
            Input::Desired(desired) => self.desired = Some(*desired),
            Input::Spawned { pid } => self.on_spawned(pid, &mut step),
            Input::SpawnFailed { message } => self.on_spawn_failed(message, &mut step),
            Input::Exited { exit_code, what } => self.on_exit(exit_code, what, &mut step),
            Input::Probed { run, result } => self.on_probe(run, result, &mut step),
            Input::TimerFired(timer) => self.on_timer(timer, &mut step),
        }
        self.reconcile(&mut step);
        self.arm_owed_restart(&mut step);
        self.keep_probing(&mut step);
        if self.obs != before {
            step.actions.push(Action::Report);
        }
        step.actions
    }

    /// Applies the desired state to what the server is doing now.
    fn reconcile(&mut self, step: &mut Step) {
        if self.spawning {
            return;
        }
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
            self.acted = Some(generation);
            self.obs.generation = generation;
        }
        match action {
            ReconcileAction::Spawn => {
                self.obs.restarts = 0;
                self.streak = 0;
                self.obs.exit_code = None;
                self.obs.last_error = None;
                self.spawn(step);
            }
            ReconcileAction::StopGracefully => self.stop_gracefully(step),
            ReconcileAction::KillGroup => self.kill(step),
            ReconcileAction::Nothing => {}
        }
    }

    /// Arms the restart inherited from a previous agent once a spec says
    /// how to start, after what remains of its backoff (never less than
    /// [`MIN_RESTART_WAIT`], so agent restarts cannot make a fork loop).
    fn arm_owed_restart(&mut self, step: &mut Step) {
        if !self.restart_owed || self.desired.is_none() {
            return;
        }
        self.restart_owed = false;
        let Some(due_ms) = self.restart_due_ms else {
            return;
        };
        if self.obs.state != ServerState::Starting || self.run.is_some() || self.spawning {
            return;
        }
        let remaining = Duration::from_millis(due_ms.saturating_sub(step.now_ms));
        self.arm(Timer::Restart, remaining.max(MIN_RESTART_WAIT), step);
    }

    fn spawn(&mut self, step: &mut Step) {
        self.spawning = true;
        step.actions.push(Action::Spawn);
    }

    fn on_spawned(&mut self, pid: u32, step: &mut Step) {
        if !std::mem::take(&mut self.spawning) {
            return;
        }
        self.runs += 1;
        self.run = Some(Run {
            number: self.runs,
            started_ms: step.now_ms,
        });
        self.obs.pid = Some(pid);
        // The exit code of an earlier run is not this run's.
        self.obs.exit_code = None;
        self.last_probe_error = None;
        if let Some(desired) = &self.desired {
            let start_timeout = desired.spec.ready.start_timeout.0;
            self.arm(Timer::StartTimeout, start_timeout, step);
        }
        self.set_state(ServerState::Starting, step);
        self.probe_after(Duration::ZERO, step);
    }

    fn on_spawn_failed(&mut self, message: String, step: &mut Step) {
        if !std::mem::take(&mut self.spawning) {
            return;
        }
        self.obs.pid = None;
        self.obs.exit_code = None;
        self.obs.last_error = Some(message);
        self.set_state(ServerState::Failed, step);
    }

    fn on_probe(&mut self, run: u64, result: Result<(), String>, step: &mut Step) {
        // Only the probe asked for counts, and only while its run lives.
        if self.probing != Some(run) || self.run() != Some(run) || self.ending.is_some() {
            return;
        }
        self.probing = None;
        match (result, self.obs.state) {
            (Ok(()), ServerState::Starting | ServerState::Running) => {
                self.disarm(Timer::StartTimeout, step);
                self.last_probe_error = None;
                self.obs.last_error = None;
                self.set_state(ServerState::Ready, step);
            }
            (Err(reason), ServerState::Starting) => self.last_probe_error = Some(reason),
            (Err(reason), ServerState::Ready | ServerState::Running) => {
                self.obs.last_error = Some(format!("readiness check failed: {reason}"));
                self.set_state(ServerState::Running, step);
            }
            _ => {}
        }
        let interval = self.probe_interval();
        self.probe_after(interval, step);
    }

    fn on_timer(&mut self, timer: Timer, step: &mut Step) {
        if !self.armed.remove(&timer) {
            return;
        }
        match timer {
            Timer::StartTimeout => self.on_start_timeout(step),
            Timer::Restart => {
                self.restart_due_ms = None;
                let wanted = self
                    .desired
                    .as_ref()
                    .is_some_and(|d| d.intent == Intent::Run);
                if wanted && self.run.is_none() {
                    self.spawn(step);
                }
            }
            Timer::StopTimeout => {
                if let Some(ending) = &mut self.ending {
                    ending.escalated = true;
                    step.actions.push(Action::Kill);
                }
            }
        }
    }

    fn on_start_timeout(&mut self, step: &mut Step) {
        let Some(desired) = &self.desired else {
            return;
        };
        if self.run.is_none() || self.ending.is_some() {
            return;
        }
        let start_timeout = desired.spec.ready.start_timeout;
        let stop_timeout = desired.spec.stop.timeout.0;
        let reason = self
            .last_probe_error
            .take()
            .unwrap_or_else(|| "no readiness check finished".to_string());
        self.stop_probe(step);
        step.actions.push(Action::Kill);
        self.ending = Some(Ending {
            escalated: false,
            stop_timeout,
            outcome: Outcome::Failed(format!("not ready after {start_timeout}: {reason}")),
        });
    }

    /// Readies the end of the process: with none running (a restart was
    /// pending) the server is simply stopped. Returns whether there is a
    /// process to end.
    fn prepare_to_end(&mut self, step: &mut Step) -> bool {
        if self.run.is_none() {
            self.disarm(Timer::Restart, step);
            self.restart_due_ms = None;
            self.restart_owed = false;
            self.set_state(ServerState::Stopped, step);
            return false;
        }
        self.stop_probe(step);
        self.disarm(Timer::StartTimeout, step);
        true
    }

    fn stop_gracefully(&mut self, step: &mut Step) {
        if !self.prepare_to_end(step) {
            return;
        }
        if let Some(ending) = &mut self.ending {
            // Already being killed (start timeout): it ends as asked.
            ending.outcome = Outcome::Stopped;
            self.set_state(ServerState::Stopping, step);
            return;
        }
        let stop_timeout = self.stop_timeout();
        self.ending = Some(Ending {
            escalated: false,
            stop_timeout,
            outcome: Outcome::Stopped,
        });
        self.arm(Timer::StopTimeout, stop_timeout, step);
        self.set_state(ServerState::Stopping, step);
        step.actions.push(Action::StopGracefully);
    }

    fn kill(&mut self, step: &mut Step) {
        if !self.prepare_to_end(step) {
            return;
        }
        self.disarm(Timer::StopTimeout, step);
        step.actions.push(Action::Kill);
        let stop_timeout = self.stop_timeout();
        let escalated = self.ending.as_ref().is_some_and(|e| e.escalated);
        self.ending = Some(Ending {
            escalated,
            stop_timeout,
            outcome: Outcome::Stopped,
        });
        self.set_state(ServerState::Stopping, step);
    }

    fn on_exit(&mut self, exit_code: Option<i32>, what: String, step: &mut Step) {
        let Some(run) = self.run.take() else {
            return;
        };
        self.stop_probe(step);
        self.disarm(Timer::StartTimeout, step);
        self.disarm(Timer::StopTimeout, step);
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
                    self.set_state(ServerState::Stopped, step);
                }
                Outcome::Failed(message) => {
                    self.obs.last_error = Some(message);
                    self.set_state(ServerState::Failed, step);
                }
            }
            return;
        }

        let Some(policy) = self.desired.as_ref().map(|d| d.spec.restart.clone()) else {
            // Adopted with no desired state: without a spec it cannot be
            // restarted. The first desired state counts as new, so a `run`
            // there starts it again.
            self.acted = None;
            self.obs.last_error = Some(format!("{what}; waiting for the controller to restart it"));
            self.set_state(ServerState::Failed, step);
            return;
        };
        let ran = Duration::from_millis(step.now_ms.saturating_sub(run.started_ms));
        if ran >= STABLE_RUN {
            self.streak = 0;
        }
        match decide_restart(&policy, self.streak, exit_code) {
            RestartDecision::RestartAfter(wait) => {
                let wait = wait.max(MIN_RESTART_WAIT);
                self.streak += 1;
                self.obs.restarts += 1;
                self.obs.last_error = Some(format!("{what}; restarting in {}", DurationSpec(wait)));
                self.restart_due_ms = Some(step.now_ms.saturating_add(duration_ms(wait)));
                self.arm(Timer::Restart, wait, step);
                self.set_state(ServerState::Starting, step);
            }
            RestartDecision::GiveUp => {
                self.obs.last_error = Some(give_up_message(&policy, self.streak, exit_code, what));
                self.set_state(ServerState::Failed, step);
            }
        }
    }

    /// Probes run while a live process is starting, running or ready, is
    /// not being ended, and a spec says how.
    fn should_probe(&self) -> bool {
        self.run.is_some()
            && self.ending.is_none()
            && self.desired.is_some()
            && matches!(
                self.obs.state,
                ServerState::Starting | ServerState::Running | ServerState::Ready
            )
    }

    /// Starts probing a process that should be probed and is not (an
    /// adopted one, once its desired state arrives).
    fn keep_probing(&mut self, step: &mut Step) {
        if self.probing.is_none() && self.should_probe() {
            self.probe_after(Duration::ZERO, step);
        }
    }

    fn probe_after(&mut self, after: Duration, step: &mut Step) {
        if let (Some(run), true) = (self.run(), self.should_probe()) {
            self.probing = Some(run);
            step.actions.push(Action::StartProbe { run, after });
        }
    }

    fn stop_probe(&mut self, step: &mut Step) {
        if self.probing.take().is_some() {
            step.actions.push(Action::StopProbe);
        }
    }

    /// The probe interval, long enough not to spin when a spec says `0ms`
    /// (validation forbids it, but a slip must not busy-loop the agent).
    fn probe_interval(&self) -> Duration {
        self.desired
            .as_ref()
            .map_or(Duration::ZERO, |d| d.spec.ready.interval.0)
            .max(Duration::from_millis(10))
    }

    fn stop_timeout(&self) -> Duration {
        self.desired
            .as_ref()
            .map_or(Duration::ZERO, |d| d.spec.stop.timeout.0)
    }

    fn arm(&mut self, timer: Timer, after: Duration, step: &mut Step) {
        self.armed.insert(timer);
        step.actions.push(Action::ScheduleTimer { timer, after });
    }

    fn disarm(&mut self, timer: Timer, step: &mut Step) {
        if self.armed.remove(&timer) {
            step.actions.push(Action::CancelTimer(timer));
        }
    }

    fn set_state(&mut self, state: ServerState, step: &Step) {
        if self.obs.state != state {
            debug_assert!(
                self.obs.state.can_become(state),
                "{} -> {state} is not a valid transition",
                self.obs.state
            );
            self.obs.state = state;
            self.obs.since_ms = step.now_ms;
        }
    }
}

/// The time and the actions of one [`Lifecycle::step`].
struct Step {
    now_ms: u64,
    actions: Vec<Action>,
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::backoff;
    use proptest::prelude::*;

    const NOW: u64 = 1_000_000;

    fn spec(mode: RestartMode, max_restarts: u32) -> ServerSpec {
        let mut spec = ServerSpec::new("web", "n1", vec!["/bin/app".into()]);
        spec.restart = RestartPolicy {
            mode,
            max_restarts,
            backoff: DurationSpec::from_millis(100),
            max_backoff: DurationSpec::from_millis(800),
        };
        spec.ready.start_timeout = DurationSpec::from_secs(5);
        spec.stop.timeout = DurationSpec::from_secs(2);
        spec
    }

    fn desired(spec: &ServerSpec, intent: Intent, generation: u64) -> Input {
        Input::Desired(Box::new(Desired {
            spec: spec.clone(),
            intent,
            generation,
        }))
    }

    /// A lifecycle asked to run `spec`, spawned as pid 10, not yet probed.
    fn started(spec: &ServerSpec) -> Lifecycle {
        let mut lifecycle = Lifecycle::new("web", NOW);
        let actions = lifecycle.step(desired(spec, Intent::Run, 1), NOW);
        // The report carries the generation being answered.
        assert_eq!(actions, [Action::Spawn, Action::Report]);
        let actions = lifecycle.step(Input::Spawned { pid: 10 }, NOW);
        assert!(actions.contains(&Action::StartProbe {
            run: 1,
            after: Duration::ZERO
        }));
        assert!(actions.contains(&Action::ScheduleTimer {
            timer: Timer::StartTimeout,
            after: Duration::from_secs(5)
        }));
        assert_eq!(lifecycle.observed().state, ServerState::Starting);
        lifecycle
    }

    fn exited(code: i32) -> Input {
        Input::Exited {
            exit_code: Some(code),
            what: format!("exited with code {code}"),
        }
    }

    #[test]
    fn a_passing_probe_makes_a_started_server_ready() {
        let mut lifecycle = started(&spec(RestartMode::Never, 0));
        let actions = lifecycle.step(
            Input::Probed {
                run: 1,
                result: Ok(()),
            },
            NOW + 5,
        );
        assert!(actions.contains(&Action::CancelTimer(Timer::StartTimeout)));
        assert!(actions.contains(&Action::Report));
        let observed = lifecycle.observed();
        assert_eq!(
            (observed.state, observed.pid, observed.since_ms),
            (ServerState::Ready, Some(10), NOW + 5)
        );
    }

    #[test]
    fn an_exit_wins_over_a_probe_that_raced_with_it() {
        let mut lifecycle = started(&spec(RestartMode::Never, 0));
        lifecycle.step(exited(1), NOW + 1);
        let actions = lifecycle.step(
            Input::Probed {
                run: 1,
                result: Ok(()),
            },
            NOW + 2,
        );
        assert_eq!(actions, []);
        let observed = lifecycle.observed();
        assert_eq!(
            (observed.state, observed.pid, observed.exit_code),
            (ServerState::Failed, None, Some(1))
        );
        assert_eq!(observed.last_error.as_deref(), Some("exited with code 1"));
    }

    #[test]
    fn a_restarted_run_reports_no_exit_code_and_ignores_the_old_runs_probe() {
        let mut lifecycle = started(&spec(RestartMode::OnFailure, 3));
        let actions = lifecycle.step(exited(1), NOW + 1);
        assert!(actions.contains(&Action::ScheduleTimer {
            timer: Timer::Restart,
            after: Duration::from_millis(100)
        }));
        assert_eq!(lifecycle.observed().exit_code, Some(1));
        assert_eq!(
            lifecycle.step(Input::TimerFired(Timer::Restart), NOW + 101),
            [Action::Spawn]
        );
        lifecycle.step(Input::Spawned { pid: 11 }, NOW + 101);
        let observed = lifecycle.observed().clone();
        assert_eq!((observed.pid, observed.exit_code), (Some(11), None));
        assert_eq!(observed.restarts, 1);
        // A late answer of the first run's probe says nothing of this one.
        assert_eq!(
            lifecycle.step(
                Input::Probed {
                    run: 1,
                    result: Ok(()),
                },
                NOW + 102,
            ),
            []
        );
        assert_eq!(lifecycle.observed().state, ServerState::Starting);
    }

    #[test]
    fn a_failed_spawn_fails_with_its_reason_and_is_not_retried() {
        let mut lifecycle = Lifecycle::new("web", NOW);
        let spec = spec(RestartMode::OnFailure, 3);
        lifecycle.step(desired(&spec, Intent::Run, 1), NOW);
        let message = "port 8081 (http) is already in use by pid 7 (python3)";
        lifecycle.step(
            Input::SpawnFailed {
                message: message.into(),
            },
            NOW,
        );
        let observed = lifecycle.observed().clone();
        assert_eq!(observed.state, ServerState::Failed);
        assert_eq!(observed.last_error.as_deref(), Some(message));
        assert_eq!((observed.pid, observed.restarts), (None, 0));
        assert_eq!(lifecycle.step(desired(&spec, Intent::Run, 1), NOW + 1), []);
        assert_eq!(
            lifecycle.step(desired(&spec, Intent::Run, 2), NOW + 2),
            [Action::Spawn, Action::Report]
        );
    }

    #[test]
    fn an_adopted_ready_server_stays_ready_until_its_probe_fails() {
        let adoption = Adoption {
            pid: 10,
            generation: 4,
            restarts: 2,
            streak: 1,
            ready: true,
            ready_since_ms: NOW - 10,
        };
        let mut lifecycle = Lifecycle::adopted("web", adoption, NOW);
        let observed = lifecycle.observed();
        assert_eq!(
            (observed.state, observed.since_ms, observed.restarts),
            (ServerState::Ready, NOW - 10, 2)
        );
        assert_eq!(lifecycle.streak(), 1);
        let spec = spec(RestartMode::OnFailure, 3);
        let actions = lifecycle.step(desired(&spec, Intent::Run, 4), NOW);
        assert_eq!(
            actions,
            [Action::StartProbe {
                run: 1,
                after: Duration::ZERO
            }]
        );
        let actions = lifecycle.step(
            Input::Probed {
                run: 1,
                result: Ok(()),
            },
            NOW + 1,
        );
        assert!(!actions.contains(&Action::Report), "{actions:?}");
        lifecycle.step(
            Input::Probed {
                run: 1,
                result: Err("connection refused".into()),
            },
            NOW + 2,
        );
        assert_eq!(lifecycle.observed().state, ServerState::Running);
    }

    /// A lifecycle run by a previous agent, restart `restarts` of `spec`
    /// pending (due 250 ms from [`NOW`]), `streak` of its budget spent.
    fn resumed_pending(restarts: u32, streak: u32) -> Lifecycle {
        let resumption = Resumption {
            generation: 4,
            restarts,
            streak,
            restart_due_ms: Some(NOW + 250),
            exit_code: Some(1),
            last_error: Some("exited with code 1; restarting in 400ms".into()),
            since_ms: NOW - 350,
        };
        Lifecycle::resumed("web", resumption, NOW)
    }

    #[test]
    fn a_resumed_pending_restart_continues_the_count_and_the_budget() {
        let spec = spec(RestartMode::OnFailure, 3);
        let mut lifecycle = resumed_pending(3, 3);
        let observed = lifecycle.observed().clone();
        assert_eq!(
            (observed.state, observed.restarts, observed.since_ms),
            (ServerState::Starting, 3, NOW - 350)
        );
        // The same desired state: the remaining backoff, no reset, no report.
        assert_eq!(
            lifecycle.step(desired(&spec, Intent::Run, 4), NOW),
            [Action::ScheduleTimer {
                timer: Timer::Restart,
                after: Duration::from_millis(250)
            }]
        );
        assert_eq!(
            lifecycle.step(Input::TimerFired(Timer::Restart), NOW + 250),
            [Action::Spawn]
        );
        lifecycle.step(Input::Spawned { pid: 12 }, NOW + 250);
        assert_eq!(lifecycle.observed().restarts, 3);
        lifecycle.step(exited(1), NOW + 260);
        let observed = lifecycle.observed();
        assert_eq!(
            (observed.state, observed.restarts),
            (ServerState::Failed, 3)
        );
        assert_eq!(
            observed.last_error.as_deref(),
            Some("exited with code 1; gave up after 3 restarts")
        );
        // Failed, it is kept as failed for the next agent.
        let kept = lifecycle.resumption().expect("a failed server is resumed");
        assert_eq!((kept.restart_due_ms, kept.streak), (None, 3));
        let mut again = Lifecycle::resumed("web", kept, NOW + 270);
        assert_eq!(again.step(desired(&spec, Intent::Run, 4), NOW + 270), []);
        assert_eq!(again.observed().state, ServerState::Failed);
    }

    #[test]
    fn a_resumed_restart_that_is_overdue_waits_the_floor_only() {
        let spec = spec(RestartMode::OnFailure, 3);
        let mut lifecycle = resumed_pending(1, 1);
        assert_eq!(
            lifecycle.step(desired(&spec, Intent::Run, 4), NOW + 10_000),
            [Action::ScheduleTimer {
                timer: Timer::Restart,
                after: MIN_RESTART_WAIT
            }]
        );
    }

    #[test]
    fn a_resumed_pending_restart_is_not_carried_out_when_stop_is_asked() {
        let spec = spec(RestartMode::OnFailure, 3);
        for (intent, generation) in [(Intent::Stop, 4), (Intent::Stop, 5), (Intent::Kill, 5)] {
            let mut lifecycle = resumed_pending(1, 1);
            let actions = lifecycle.step(desired(&spec, intent, generation), NOW);
            assert_eq!(actions, [Action::Report], "{intent:?}");
            assert_eq!(lifecycle.observed().state, ServerState::Stopped);
            assert_eq!(lifecycle.resumption(), None, "nothing left to resume");
            assert_eq!(
                lifecycle.step(Input::TimerFired(Timer::Restart), NOW + 260),
                []
            );
        }
    }

    #[test]
    fn a_resumed_failed_server_starts_again_only_for_a_new_start() {
        let spec = spec(RestartMode::OnFailure, 3);
        let resumption = Resumption {
            generation: 4,
            restarts: 3,
            streak: 3,
            restart_due_ms: None,
            exit_code: Some(1),
            last_error: Some("exited with code 1; gave up after 3 restarts".into()),
            since_ms: NOW - 5,
        };
        let mut lifecycle = Lifecycle::resumed("web", resumption.clone(), NOW);
        assert_eq!(lifecycle.resumption(), Some(resumption));
        assert_eq!(lifecycle.step(desired(&spec, Intent::Run, 4), NOW), []);
        assert_eq!(
            lifecycle.step(desired(&spec, Intent::Run, 5), NOW + 1),
            [Action::Spawn, Action::Report]
        );
        assert_eq!(lifecycle.observed().restarts, 0);
    }

    #[test]
    fn a_pending_restart_is_kept_for_the_next_agent_with_its_due_time() {
        let mut lifecycle = started(&spec(RestartMode::OnFailure, 3));
        assert_eq!(lifecycle.resumption(), None, "a live process is adopted");
        lifecycle.step(exited(1), NOW + 1);
        let kept = lifecycle.resumption().expect("a pending restart");
        assert_eq!(
            (
                kept.generation,
                kept.restarts,
                kept.streak,
                kept.restart_due_ms
            ),
            (1, 1, 1, Some(NOW + 101))
        );
        let stopped = Lifecycle::new("web", NOW);
        assert_eq!(stopped.resumption(), None);
    }

    #[test]
    fn a_stop_that_runs_out_of_time_kills_and_says_so() {
        let mut lifecycle = started(&spec(RestartMode::Never, 0));
        let spec = spec(RestartMode::Never, 0);
        let actions = lifecycle.step(desired(&spec, Intent::Stop, 2), NOW + 1);
        assert!(actions.contains(&Action::StopGracefully));
        assert!(actions.contains(&Action::ScheduleTimer {
            timer: Timer::StopTimeout,
            after: Duration::from_secs(2)
        }));
        assert_eq!(lifecycle.observed().state, ServerState::Stopping);
        assert_eq!(
            lifecycle.step(Input::TimerFired(Timer::StopTimeout), NOW + 2),
            [Action::Kill]
        );
        lifecycle.step(
            Input::Exited {
                exit_code: None,
                what: "killed by signal 9".into(),
            },
            NOW + 3,
        );
        let observed = lifecycle.observed();
        assert_eq!(observed.state, ServerState::Stopped);
        assert_eq!(
            observed.last_error.as_deref(),
            Some("killed after stop timeout 2s")
        );
    }

    #[test]
    fn a_timer_that_was_not_armed_does_nothing() {
        let mut lifecycle = started(&spec(RestartMode::OnFailure, 3));
        assert_eq!(
            lifecycle.step(Input::TimerFired(Timer::Restart), NOW + 1),
            []
        );
        assert_eq!(
            lifecycle.step(Input::TimerFired(Timer::StopTimeout), NOW + 1),
            []
        );
    }

    /// One thing that can happen to a supervised server.
    #[derive(Debug, Clone)]
    enum Event {
        Desired {
            intent: Intent,
            new_generation: bool,
        },
        Exit {
            code: Option<i32>,
        },
        Probe {
            ok: bool,
            of_an_earlier_run: bool,
        },
        Fire(Timer),
        Advance {
            ms: u64,
        },
    }

    fn event() -> impl Strategy<Value = Event> {
        let intent = prop_oneof![
            Just(Intent::Run),
            Just(Intent::Stop),
            Just(Intent::Kill),
            Just(Intent::Hold)
        ];
        let timer = prop_oneof![
            Just(Timer::StartTimeout),
            Just(Timer::Restart),
            Just(Timer::StopTimeout)
        ];
        prop_oneof![
            (intent, any::<bool>()).prop_map(|(intent, new_generation)| Event::Desired {
                intent,
                new_generation
            }),
            prop::option::of(0i32..3).prop_map(|code| Event::Exit { code }),
            (any::<bool>(), any::<bool>()).prop_map(|(ok, of_an_earlier_run)| Event::Probe {
                ok,
                of_an_earlier_run
            }),
            timer.prop_map(Event::Fire),
            (0u64..90_000).prop_map(|ms| Event::Advance { ms }),
        ]
    }

    /// The world around a lifecycle: which process is alive, which probe
    /// and timers are pending, as the supervisor would keep them.
    struct World {
        lifecycle: Lifecycle,
        spec: ServerSpec,
        now: u64,
        generation: u64,
        /// The run and pid of the live process.
        alive: Option<(u64, u32)>,
        spawned: u64,
        probe: Option<u64>,
        armed: BTreeSet<Timer>,
        spawn_ok: bool,
    }

    impl World {
        fn feed(&mut self, input: Input) -> Result<(), TestCaseError> {
            let before = self.lifecycle.observed().state;
            let restarts_before = self.lifecycle.observed().restarts;
            let owed = self.lifecycle.restart_owed;
            let actions = self.lifecycle.step(input, self.now);
            let after = self.lifecycle.observed().state;
            prop_assert!(before.can_become(after), "{before} -> {after}");
            // Only a start asked for resets the count; a restart by policy
            // (from `starting`, a resumed one among them) never does.
            let may_reset = actions.contains(&Action::Spawn) && before != ServerState::Starting;
            if !may_reset {
                prop_assert!(
                    self.lifecycle.observed().restarts >= restarts_before,
                    "the restart count went down"
                );
            }
            for action in actions {
                match action {
                    Action::Spawn => {
                        prop_assert!(self.alive.is_none(), "spawned over a live process");
                        let intent = self.lifecycle.desired().map(|d| d.intent);
                        prop_assert_eq!(intent, Some(Intent::Run), "spawned without a run intent");
                        let input = if self.spawn_ok {
                            self.spawned += 1;
                            let pid = 100 + u32::try_from(self.spawned).unwrap_or(0);
                            self.alive = Some((self.lifecycle.runs + 1, pid));
                            Input::Spawned { pid }
                        } else {
                            Input::SpawnFailed {
                                message: "port 1 (http) is already in use".into(),
                            }
                        };
                        self.feed(input)?;
                    }
                    Action::StartProbe { run, .. } => self.probe = Some(run),
                    Action::StopProbe => self.probe = None,
                    Action::ScheduleTimer { timer, after } => {
                        if timer == Timer::Restart {
                            // The policy's backoff for this restart, never
                            // below the floor, within the policy's budget.
                            let policy = &self.spec.restart;
                            let streak = self.lifecycle.streak();
                            prop_assert!(streak >= 1 && streak <= policy.max_restarts);
                            let wanted = backoff(policy, streak - 1).max(MIN_RESTART_WAIT);
                            if owed {
                                // What remains of a previous agent's backoff.
                                prop_assert!(after >= MIN_RESTART_WAIT && after <= wanted);
                            } else {
                                prop_assert_eq!(after, wanted);
                            }
                        }
                        self.armed.insert(timer);
                    }
                    Action::CancelTimer(timer) => {
                        self.armed.remove(&timer);
                    }
                    Action::StopGracefully | Action::Kill | Action::Report => {}
                }
            }
            self.check()
        }

        fn check(&self) -> Result<(), TestCaseError> {
            let observed = self.lifecycle.observed();
            if observed.state == ServerState::Ready {
                prop_assert!(self.alive.is_some(), "ready without a live process");
            }
            prop_assert_eq!(observed.pid, self.alive.map(|(_, pid)| pid));
            if observed.pid.is_some() {
                prop_assert_eq!(observed.exit_code, None, "a live run carries an exit code");
            }
            prop_assert_eq!(&self.lifecycle.armed, &self.armed);
            Ok(())
        }

        fn happen(&mut self, event: Event) -> Result<(), TestCaseError> {
            match event {
                Event::Desired {
                    intent,
                    new_generation,
                } => {
                    self.generation += u64::from(new_generation);
                    let input = desired(&self.spec, intent, self.generation);
                    self.feed(input)
                }
                Event::Exit { code } => {
                    if self.alive.take().is_none() {
                        return Ok(());
                    }
                    self.probe = None;
                    let what = format!("exited with {code:?}");
                    self.feed(Input::Exited {
                        exit_code: code,
                        what,
                    })
                }
                Event::Probe {
                    ok,
                    of_an_earlier_run,
                } => {
                    let run = match (of_an_earlier_run, self.probe.take()) {
                        (true, _) => self.spawned.saturating_sub(1),
                        (false, Some(run)) => run,
                        (false, None) => return Ok(()),
                    };
                    let result = if ok { Ok(()) } else { Err("refused".into()) };
                    let state = self.lifecycle.observed().state;
                    let live_run = self.alive.map(|(run, _)| run);
                    self.feed(Input::Probed { run, result })?;
                    if live_run != Some(run) {
                        prop_assert_eq!(
                            self.lifecycle.observed().state,
                            state,
                            "a probe of another run changed the state"
                        );
                    }
                    Ok(())
                }
                Event::Fire(timer) => {
                    self.armed.remove(&timer);
                    self.feed(Input::TimerFired(timer))
                }
                Event::Advance { ms } => {
                    self.now += ms;
                    Ok(())
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn lifecycle_invariants_hold_whatever_happens(
            events in prop::collection::vec(event(), 1..60),
            on_failure in any::<bool>(),
            max_restarts in 0u32..4,
            spawn_ok in prop::bool::weighted(0.9),
            origin in 0u8..3,
            was_ready in any::<bool>(),
            spent in 0u32..4,
            due_in in 0u64..100,
        ) {
            let mode = if on_failure { RestartMode::OnFailure } else { RestartMode::Never };
            let lifecycle = match origin {
                0 => Lifecycle::new("web", NOW),
                1 => {
                    let adoption = Adoption { pid: 99, generation: 0, restarts: 0, streak: 0, ready: was_ready, ready_since_ms: NOW };
                    Lifecycle::adopted("web", adoption, NOW)
                }
                _ => {
                    // A pending restart only where the policy could have
                    // made one; else a failure.
                    let streak = spent.min(max_restarts);
                    let pending = on_failure && streak >= 1;
                    let resumption = Resumption {
                        generation: 0,
                        restarts: streak + 2,
                        streak,
                        restart_due_ms: pending.then_some(NOW + due_in),
                        exit_code: Some(1),
                        last_error: Some("exited with code 1".into()),
                        since_ms: NOW,
                    };
                    Lifecycle::resumed("web", resumption, NOW)
                }
            };
            let mut world = World {
                alive: lifecycle.run().map(|run| (run, 99)),
                spawned: lifecycle.run().unwrap_or(0),
                lifecycle,
                spec: spec(mode, max_restarts),
                now: NOW,
                generation: 0,
                probe: None,
                armed: BTreeSet::new(),
                spawn_ok,
            };
            for event in events {
                world.happen(event)?;
            }
        }

        #[test]
        fn an_exit_always_wins_over_a_passing_probe(
            mode_on_failure in any::<bool>(),
            probed_first in any::<bool>(),
        ) {
            let mode = if mode_on_failure { RestartMode::OnFailure } else { RestartMode::Never };
            let mut lifecycle = started(&spec(mode, 3));
            if probed_first {
                lifecycle.step(Input::Probed { run: 1, result: Ok(()) }, NOW + 1);
            }
            lifecycle.step(exited(1), NOW + 2);
            lifecycle.step(Input::Probed { run: 1, result: Ok(()) }, NOW + 3);
            prop_assert_ne!(lifecycle.observed().state, ServerState::Ready);
            prop_assert_eq!(lifecycle.observed().pid, None);
        }
    }
}
