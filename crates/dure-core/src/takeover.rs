//! Backup nodes' decisions, pure: when a backup starts its own copy of one
//! of its primary's servers, when it hands the server back, and when a
//! primary cut off from everyone stops its own copy (self-fencing). Each is
//! a function of what that side knows now, time passed in, so the rules
//! are property-tested against a simulated world: whatever happens —
//! node loss, an agent killed while its servers run on, a partition, the
//! controller down, a return — both copies of a server never serve at the
//! same time.
//!
//! Why it holds:
//! * A backup starts a copy only when the primary's copy does not answer
//!   its readiness probe from the backup's side (a dead agent is not a dead
//!   node: its servers run on and answer), the primary has been FAILED for
//!   `takeover_after`, and either the controller says the primary's lease
//!   has expired or, with the controller unreachable, a majority of the
//!   nodes the backup reaches (itself included) see the primary FAILED.
//!   Once the primary's copy answered while the primary was FAILED (its
//!   agent died, its servers ran on), the backup does not take that server
//!   over by itself until the primary is RUNNING again: with no agent left
//!   to fence it, a later silence could be a partition.
//! * A primary that reaches neither the controller nor any peer stops its
//!   copy after `self_fence_after`, which is shorter than `takeover_after`:
//!   a partitioned primary has stopped before its backup may start.
//! * Not covered: a primary's agent dying and its host being cut off
//!   close together — the cut before the backup has seen the orphaned
//!   copy answer, or the agent's death while cut off before it fenced.
//!   Its servers then serve on their side of the partition with no agent
//!   to fence them, and the backup cannot tell that from a dead host.
//! * A primary starts its copy again only when the backup runs none, or —
//!   handing back — after it has been RUNNING again for `handback_after`,
//!   and then without serving until the backup has stopped its copy.

use crate::membership::PeerState;
use crate::DurationSpec;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The timings of takeover, fencing and handback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeoverSettings {
    /// How long a primary is FAILED before its backup may take over.
    #[serde(default = "default_takeover_after")]
    pub takeover_after: DurationSpec,
    /// How long a primary cut off from the controller and every peer keeps
    /// its servers before it stops them: shorter than `takeover_after`.
    #[serde(default = "default_self_fence_after")]
    pub self_fence_after: DurationSpec,
    /// How long a returned primary is RUNNING before it takes its servers back.
    #[serde(default = "default_handback_after")]
    pub handback_after: DurationSpec,
}

/// Default [`TakeoverSettings::takeover_after`]: twice the membership's
/// detection bound (1.4 s), so a FAILED that a late probe answer reverses
/// is not acted on.
pub const DEFAULT_TAKEOVER_AFTER: Duration = Duration::from_secs(3);
/// Default [`TakeoverSettings::self_fence_after`]: half the takeover delay.
pub const DEFAULT_SELF_FENCE_AFTER: Duration = Duration::from_millis(1500);
/// Default [`TakeoverSettings::handback_after`].
pub const DEFAULT_HANDBACK_AFTER: Duration = Duration::from_secs(10);

fn default_takeover_after() -> DurationSpec {
    DurationSpec(DEFAULT_TAKEOVER_AFTER)
}
fn default_self_fence_after() -> DurationSpec {
    DurationSpec(DEFAULT_SELF_FENCE_AFTER)
}
fn default_handback_after() -> DurationSpec {
    DurationSpec(DEFAULT_HANDBACK_AFTER)
}

impl Default for TakeoverSettings {
    fn default() -> Self {
        TakeoverSettings {
            takeover_after: default_takeover_after(),
            self_fence_after: default_self_fence_after(),
            handback_after: default_handback_after(),
        }
    }
}

/// Why takeover settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("self_fence_after {fence} must be shorter than takeover_after {takeover}: a cut-off primary must stop its servers before its backup starts them")]
pub struct FenceNotFirst {
    pub fence: DurationSpec,
    pub takeover: DurationSpec,
}

impl TakeoverSettings {
    pub fn check(&self) -> Result<(), FenceNotFirst> {
        if self.self_fence_after.0 >= self.takeover_after.0 {
            return Err(FenceNotFirst {
                fence: self.self_fence_after,
                takeover: self.takeover_after,
            });
        }
        Ok(())
    }
}

/// What the controller says of the primary's lease, as the backup hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Renewed within its time to live.
    Held,
    /// Not renewed within its time to live.
    Expired,
    /// The controller does not answer the backup.
    Unknown,
}

/// What one backup knows about one of its primary's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupView {
    /// The primary's membership state in the backup's view, and for how long.
    pub primary: PeerState,
    pub primary_for: Duration,
    pub lease: Lease,
    /// Other nodes the backup reaches (neither it nor the primary), and how
    /// many of them see the primary FAILED.
    pub peers_reached: usize,
    pub peers_see_failed: usize,
    /// The primary left gracefully asking its backup to take over
    /// (`dure agent stop --handover`), having stopped its own copy.
    pub handover: bool,
    /// The primary's copy answers its readiness probe from the backup's side.
    pub primary_copy_answers: bool,
    /// It answered while the primary was FAILED, since the primary was last
    /// RUNNING: the primary's agent died and its servers ran on. A later
    /// silence may then be a partition the backup cannot tell from a death,
    /// and no agent is left there to fence, so the backup does not take
    /// over by itself (an operator does, or the agent's return settles it).
    pub answered_while_failed: bool,
    /// The backup runs its copy.
    pub running: bool,
}

/// What the backup does about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStep {
    /// Nothing now.
    Wait,
    /// Start a copy.
    Start,
    /// Drain and stop its copy: the primary has the server back.
    HandBack,
}

/// The backup's decision; see the module docs.
pub fn backup_step(
    view: &BackupView,
    primary_copy_ready: bool,
    settings: &TakeoverSettings,
) -> BackupStep {
    if view.running {
        // The primary's own copy is ready (started for the handback, held
        // out of service until this one stops).
        let back = view.primary == PeerState::Running
            && view.primary_for >= settings.handback_after.0
            && primary_copy_ready;
        return if back {
            BackupStep::HandBack
        } else {
            BackupStep::Wait
        };
    }
    if view.primary_copy_answers || view.answered_while_failed {
        return BackupStep::Wait;
    }
    let start = match view.primary {
        PeerState::Failed => view.primary_for >= settings.takeover_after.0 && confirmed(view),
        PeerState::Inactive => view.handover,
        PeerState::Running => false,
    };
    if start {
        BackupStep::Start
    } else {
        BackupStep::Wait
    }
}

/// The controller's word, or without it a majority of the nodes the backup
/// reaches, itself included.
fn confirmed(view: &BackupView) -> bool {
    match view.lease {
        Lease::Expired => true,
        Lease::Held => false,
        Lease::Unknown => {
            let voters = view.peers_reached + 1;
            let agree = view.peers_see_failed.min(view.peers_reached) + 1;
            agree * 2 > voters
        }
    }
}

/// What a primary knows about one of its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryView {
    /// How long it has reached neither the controller nor any peer; `None`
    /// while it reaches one of them.
    pub cut_off_for: Option<Duration>,
    /// How long its backup has seen it RUNNING again after a failure
    /// (`None` when it has not failed or has no backup).
    pub back_for: Option<Duration>,
    /// The backup runs a copy, as the primary last heard.
    pub backup_running: bool,
    /// Its own copy runs / serves.
    pub running: bool,
    pub serving: bool,
}

/// What the primary does about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryStep {
    Wait,
    /// Stop its copy: it is cut off and its backup may take over soon.
    Fence,
    /// Start its copy without serving, for a handback.
    StartHeld,
    /// Serve with its copy: the backup runs none.
    Serve,
}

/// The primary's decision; see the module docs.
pub fn primary_step(view: &PrimaryView, settings: &TakeoverSettings) -> PrimaryStep {
    if let Some(cut) = view.cut_off_for {
        return if view.running && cut >= settings.self_fence_after.0 {
            PrimaryStep::Fence
        } else {
            PrimaryStep::Wait
        };
    }
    if view.backup_running {
        let back = view
            .back_for
            .is_some_and(|b| b >= settings.handback_after.0);
        return if back && !view.running {
            PrimaryStep::StartHeld
        } else {
            PrimaryStep::Wait
        };
    }
    if !view.serving {
        PrimaryStep::Serve
    } else {
        PrimaryStep::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TICK: Duration = Duration::from_millis(100);
    /// The membership's detection bound with the default settings.
    const DETECTION: Duration = Duration::from_millis(1400);
    /// The primary's lease: renewed every tick it reaches the controller.
    const LEASE_TTL: Duration = Duration::from_secs(2);

    /// What can happen to the world at one tick.
    #[derive(Debug, Clone, Copy)]
    enum Event {
        Nothing,
        /// The primary's host dies: its agent and its copy with it.
        NodeDies,
        /// Only the primary's agent dies: its copy runs on.
        AgentDies,
        /// The primary's host and agent come back (its copy stopped).
        NodeReturns,
        /// The primary's link is cut, or healed.
        Cut,
        Heal,
        ControllerDown,
        ControllerUp,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            30 => Just(Event::Nothing),
            1 => Just(Event::NodeDies),
            1 => Just(Event::AgentDies),
            2 => Just(Event::NodeReturns),
            1 => Just(Event::Cut),
            2 => Just(Event::Heal),
            1 => Just(Event::ControllerDown),
            2 => Just(Event::ControllerUp),
        ]
    }

    #[derive(Debug, Default)]
    struct World {
        node_dead: bool,
        agent_dead: bool,
        cut: bool,
        controller_down: bool,
        /// The primary's copy runs / serves; the backup's copy runs.
        primary_running: bool,
        primary_serving: bool,
        backup_running: bool,
        /// Since when (ms) the backup sees the primary unreachable / reachable.
        unreachable_since: Option<u64>,
        reachable_since: u64,
        failed_once: bool,
        answered_while_failed: bool,
        cut_since: Option<u64>,
        lease_renewed: u64,
    }

    impl World {
        fn apply(&mut self, event: Event, now: u64) {
            match event {
                Event::Nothing => {}
                Event::NodeDies => {
                    self.node_dead = true;
                    self.agent_dead = true;
                    self.primary_running = false;
                    self.primary_serving = false;
                }
                // The double fault the rules do not cover (module docs).
                Event::AgentDies if self.cut && self.primary_running => {}
                Event::AgentDies => self.agent_dead = true,
                Event::NodeReturns if self.node_dead || self.agent_dead => {
                    // A rebooted host starts without its copy; a restarted
                    // agent finds its copy still running.
                    if self.node_dead {
                        self.primary_running = false;
                        self.primary_serving = false;
                    }
                    self.node_dead = false;
                    self.agent_dead = false;
                }
                Event::NodeReturns => {}
                // The double fault the rules do not cover (module docs).
                Event::Cut if self.agent_dead && !self.node_dead && !self.answered_while_failed => {
                }
                Event::Cut => {
                    if !self.cut {
                        self.cut = true;
                        self.cut_since = Some(now);
                    }
                }
                Event::Heal => {
                    self.cut = false;
                    self.cut_since = None;
                }
                Event::ControllerDown => self.controller_down = true,
                Event::ControllerUp => self.controller_down = false,
            }
        }

        /// Whether the backup and peers reach the primary's agent.
        fn primary_reachable(&self) -> bool {
            !self.agent_dead && !self.cut
        }

        fn tick(&mut self, now: u64, settings: &TakeoverSettings) {
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap();
            // The detector's view, at the backup and at every peer alike.
            if self.primary_reachable() {
                if self.unreachable_since.take().is_some() {
                    self.reachable_since = now;
                }
            } else if self.unreachable_since.is_none() {
                self.unreachable_since = Some(now);
            }
            let (state, state_for) = match self.unreachable_since {
                Some(since) if now - since >= ms(DETECTION) => {
                    self.failed_once = true;
                    (
                        PeerState::Failed,
                        Duration::from_millis(now - since - ms(DETECTION)),
                    )
                }
                _ => (
                    PeerState::Running,
                    Duration::from_millis(now - self.reachable_since),
                ),
            };
            if self.primary_reachable() && !self.controller_down {
                self.lease_renewed = now;
            }
            let lease = if self.controller_down {
                Lease::Unknown
            } else if now - self.lease_renewed > ms(LEASE_TTL) {
                Lease::Expired
            } else {
                Lease::Held
            };
            let answers = self.primary_running && !self.cut;
            match state {
                PeerState::Failed if answers => self.answered_while_failed = true,
                PeerState::Running => self.answered_while_failed = false,
                _ => {}
            }
            let backup = BackupView {
                primary: state,
                primary_for: state_for,
                lease,
                peers_reached: 2,
                peers_see_failed: if state == PeerState::Failed { 2 } else { 0 },
                handover: false,
                primary_copy_answers: answers,
                answered_while_failed: self.answered_while_failed,
                running: self.backup_running,
            };
            let primary_ready = self.primary_running && !self.primary_serving;
            match backup_step(&backup, primary_ready, settings) {
                BackupStep::Start => self.backup_running = true,
                BackupStep::HandBack => self.backup_running = false,
                BackupStep::Wait => {}
            }
            // The primary decides only while its agent runs; it hears the
            // backup's state only while it is not cut off.
            if !self.agent_dead {
                let cut_off = self.cut.then(|| now - self.cut_since.unwrap_or(now));
                let primary = PrimaryView {
                    cut_off_for: cut_off.map(Duration::from_millis),
                    back_for: (self.failed_once && state == PeerState::Running)
                        .then_some(state_for),
                    backup_running: self.backup_running,
                    running: self.primary_running,
                    serving: self.primary_serving,
                };
                match primary_step(&primary, settings) {
                    PrimaryStep::Fence => {
                        self.primary_running = false;
                        self.primary_serving = false;
                    }
                    PrimaryStep::StartHeld => self.primary_running = true,
                    PrimaryStep::Serve => {
                        self.primary_running = true;
                        self.primary_serving = true;
                        self.failed_once = false;
                    }
                    PrimaryStep::Wait => {}
                }
            }
        }
    }

    /// A running server on a healthy primary, then `events`, one per tick.
    fn run(events: &[Event], settings: &TakeoverSettings) -> Result<World, String> {
        let mut world = World {
            primary_running: true,
            primary_serving: true,
            ..World::default()
        };
        let tick = u64::try_from(TICK.as_millis()).unwrap();
        for (i, event) in events.iter().enumerate() {
            let now = (i as u64 + 1) * tick;
            world.apply(*event, now);
            world.tick(now, settings);
            // Serving is the primary's copy in service, or the backup's.
            if world.primary_serving && world.backup_running {
                return Err(format!(
                    "both copies serve at tick {i} after {:?}: {world:?}",
                    &events[..=i]
                ));
            }
        }
        Ok(world)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn both_copies_never_serve(events in proptest::collection::vec(event(), 1..400)) {
            let result = run(&events, &TakeoverSettings::default());
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }

    fn quiet(ticks: usize) -> Vec<Event> {
        vec![Event::Nothing; ticks]
    }

    #[test]
    fn a_dead_node_is_taken_over_after_the_lease_and_handed_back_after_its_return() {
        let settings = TakeoverSettings::default();
        let mut events = vec![Event::NodeDies];
        events.extend(quiet(60));
        let world = run(&events, &settings).unwrap();
        assert!(world.backup_running, "{world:?}");
        events.push(Event::NodeReturns);
        events.extend(quiet(140));
        let world = run(&events, &settings).unwrap();
        assert!(!world.backup_running && world.primary_serving, "{world:?}");
    }

    #[test]
    fn a_killed_agent_is_no_dead_node_also_when_its_host_is_then_cut_off() {
        let mut events = vec![Event::AgentDies];
        events.extend(quiet(200));
        let world = run(&events, &TakeoverSettings::default()).unwrap();
        assert!(!world.backup_running && world.primary_serving, "{world:?}");
        events.push(Event::Cut);
        events.extend(quiet(200));
        let world = run(&events, &TakeoverSettings::default()).unwrap();
        assert!(!world.backup_running, "{world:?}");
    }

    #[test]
    fn a_cut_off_primary_fences_itself_before_its_backup_starts_also_without_the_controller() {
        for controller in [Event::Nothing, Event::ControllerDown] {
            let mut events = vec![controller, Event::Cut];
            let fence_ticks = 15; // 1.5 s
            events.extend(quiet(fence_ticks));
            let world = run(&events, &TakeoverSettings::default()).unwrap();
            assert!(!world.primary_running && !world.backup_running, "{world:?}");
            events.extend(quiet(60));
            let world = run(&events, &TakeoverSettings::default()).unwrap();
            assert!(world.backup_running, "{controller:?}: {world:?}");
        }
    }

    #[test]
    fn a_backup_waits_while_the_controller_holds_the_lease_or_no_majority_agrees() {
        let view = BackupView {
            primary: PeerState::Failed,
            primary_for: Duration::from_secs(60),
            lease: Lease::Held,
            peers_reached: 2,
            peers_see_failed: 2,
            handover: false,
            primary_copy_answers: false,
            answered_while_failed: false,
            running: false,
        };
        let settings = TakeoverSettings::default();
        assert_eq!(backup_step(&view, false, &settings), BackupStep::Wait);
        let unknown = BackupView {
            lease: Lease::Unknown,
            peers_see_failed: 0,
            ..view
        };
        assert_eq!(backup_step(&unknown, false, &settings), BackupStep::Wait);
        let agreed = BackupView {
            peers_see_failed: 1,
            ..unknown
        };
        assert_eq!(backup_step(&agreed, false, &settings), BackupStep::Start);
        let answering = BackupView {
            lease: Lease::Expired,
            primary_copy_answers: true,
            ..view
        };
        assert_eq!(backup_step(&answering, false, &settings), BackupStep::Wait);
        let left = BackupView {
            primary: PeerState::Inactive,
            lease: Lease::Held,
            ..view
        };
        assert_eq!(
            backup_step(&left, false, &settings),
            BackupStep::Wait,
            "a graceful stop starts nothing"
        );
        let handed = BackupView {
            handover: true,
            ..left
        };
        assert_eq!(backup_step(&handed, false, &settings), BackupStep::Start);
    }

    #[test]
    fn fencing_must_come_before_takeover() {
        let bad = TakeoverSettings {
            self_fence_after: DurationSpec(Duration::from_secs(3)),
            ..TakeoverSettings::default()
        };
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("shorter than takeover_after"));
        assert!(TakeoverSettings::default().check().is_ok());
    }
}
