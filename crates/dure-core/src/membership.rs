//! Node membership as one node sees it: for every peer, one of INACTIVE,
//! RUNNING or FAILED, changed only by what the failure detector says
//! ([`Signal`]) and only along the transitions the product allows:
//!
//! ```text
//! INACTIVE ──alive──▶ RUNNING ──left──▶ INACTIVE
//!                      │  ▲
//!           unreachable│  │alive
//!                      ▼  │
//!                     FAILED
//! ```
//!
//! A peer that leaves gracefully becomes INACTIVE; one that the detector
//! gives up on (crashed, hung, cut off) becomes FAILED; either returns to
//! RUNNING when it answers again. Nothing else ever happens: a peer never
//! seen running cannot fail, and a failed peer that says it leaves stays
//! FAILED until it answers (its servers may still need a backup).
//!
//! Time is passed in (ms since the Unix epoch); the detector itself (SWIM,
//! in the agent) is not here, only its settings ([`MembershipSettings`],
//! the `membership` section of `/domain.json`) and what they imply.

use crate::duration::DurationSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A peer node's membership state as seen by another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Known (from the configuration or gossip) but not taking part: never
    /// seen, or left gracefully.
    Inactive,
    /// Answers probes.
    Running,
    /// Stopped answering without leaving.
    Failed,
}

impl PeerState {
    /// Whether `self → next` is one of the four allowed transitions.
    pub fn can_become(self, next: PeerState) -> bool {
        use PeerState::*;
        matches!(
            (self, next),
            (Inactive, Running) | (Running, Inactive) | (Running, Failed) | (Failed, Running)
        )
    }

    /// The state after `signal`: the whole transition rule.
    pub fn after(self, signal: Signal) -> PeerState {
        use PeerState::*;
        match (self, signal) {
            (_, Signal::Alive) => Running,
            (Running, Signal::Left) => Inactive,
            (Running, Signal::Unreachable) => Failed,
            // A peer never seen running cannot fail or leave, and a failed
            // peer stays failed until it answers.
            (state, Signal::Left | Signal::Unreachable) => state,
        }
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerState::Inactive => "INACTIVE",
            PeerState::Running => "RUNNING",
            PeerState::Failed => "FAILED",
        })
    }
}

/// What the failure detector says about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// The peer answered (directly, indirectly, or gossip says it is up).
    Alive,
    /// The peer announced that it leaves (its agent stops normally).
    Left,
    /// The detector declared the peer down without a leave.
    Unreachable,
}

/// What a transition means to an operator; each is a controller event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// INACTIVE → RUNNING.
    Joined,
    /// RUNNING → INACTIVE.
    Left,
    /// RUNNING → FAILED.
    Failed,
    /// FAILED → RUNNING.
    Recovered,
}

impl Change {
    /// The change a transition is; `None` for a pair that is not a transition.
    pub fn of(from: PeerState, to: PeerState) -> Option<Change> {
        use PeerState::*;
        match (from, to) {
            (Inactive, Running) => Some(Change::Joined),
            (Running, Inactive) => Some(Change::Left),
            (Running, Failed) => Some(Change::Failed),
            (Failed, Running) => Some(Change::Recovered),
            _ => None,
        }
    }

    /// The word events use: `joined`, `left`, `failed`, `recovered`.
    pub fn word(self) -> &'static str {
        match self {
            Change::Joined => "joined",
            Change::Left => "left",
            Change::Failed => "failed",
            Change::Recovered => "recovered",
        }
    }
}

/// One peer in a node's view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub state: PeerState,
    /// When the peer entered `state`, in ms since the Unix epoch.
    pub since_ms: u64,
    /// Where its membership endpoint was last seen (`IP:PORT`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its agent's version, once it has been seen running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A transition of one peer, out of [`View::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub peer: String,
    pub from: PeerState,
    pub to: PeerState,
    pub at_ms: u64,
}

impl Transition {
    pub fn change(&self) -> Change {
        Change::of(self.from, self.to)
            .expect("a transition is only made along an allowed pair (checked in observe)")
    }
}

/// One node's view of its peers, by node name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    peers: BTreeMap<String, Peer>,
}

impl View {
    /// Adds a peer known from the configuration as INACTIVE (it becomes
    /// RUNNING when it answers); a peer already known is left as it is.
    pub fn know(&mut self, peer: &str, address: Option<String>, now_ms: u64) {
        self.peers.entry(peer.to_string()).or_insert(Peer {
            state: PeerState::Inactive,
            since_ms: now_ms,
            address,
            version: None,
        });
    }

    /// Applies what the detector said about `peer`; returns the transition
    /// when its state changed. A peer not known yet starts INACTIVE (a
    /// dynamic join is INACTIVE → RUNNING). `address` and `version`, when
    /// given, are kept whatever the state does.
    pub fn observe(
        &mut self,
        peer: &str,
        signal: Signal,
        address: Option<String>,
        version: Option<String>,
        now_ms: u64,
    ) -> Option<Transition> {
        self.know(peer, None, now_ms);
        let entry = self
            .peers
            .get_mut(peer)
            .expect("the peer was just inserted when missing");
        if address.is_some() {
            entry.address = address;
        }
        if version.is_some() {
            entry.version = version;
        }
        let from = entry.state;
        let to = from.after(signal);
        if to == from {
            return None;
        }
        debug_assert!(from.can_become(to), "{from} -> {to} is not a transition");
        entry.state = to;
        entry.since_ms = now_ms;
        Some(Transition {
            peer: peer.to_string(),
            from,
            to,
            at_ms: now_ms,
        })
    }

    pub fn get(&self, peer: &str) -> Option<&Peer> {
        self.peers.get(peer)
    }

    pub fn peers(&self) -> &BTreeMap<String, Peer> {
        &self.peers
    }
}

/// The `membership` section of `/domain.json`: how agents watch each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSettings {
    /// How often each agent probes one peer (SWIM's protocol period).
    #[serde(default = "default_probe_interval")]
    pub probe_interval: DurationSpec,
    /// How long a peer that missed a probe (direct and indirect) stays
    /// suspected before it is FAILED; it clears the suspicion by answering.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: DurationSpec,
}

/// Defaults chosen for a LAN: a dead node is FAILED everywhere in about
/// 2 s with no false FAILED at 5% packet loss (`bench/membership`, 1000
/// nodes). Memberlist's LAN profile (1 s probes, 500 ms probe timeout, 3
/// indirect probes, suspicion of 4 × log10(n) probe intervals) takes 5 s
/// and more. Here the interval is 5 times shorter and the suspicion a
/// fixed threshold; what keeps 5% loss from failing live nodes is that a
/// false suspicion needs the direct probe and all five indirect ones lost
/// (about 2 in 100 000 probes), and that updates are gossiped every half
/// interval to four peers, so the suspected node hears of it and its
/// refutation spreads well within the threshold even at 1000 nodes.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// See [`DEFAULT_PROBE_INTERVAL`].
pub const DEFAULT_FAILURE_THRESHOLD: Duration = Duration::from_millis(800);
/// Below this a probe interval is refused: a probe's round trip on a loaded
/// host can take tens of milliseconds, and one probe must end before the next.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(50);

fn default_probe_interval() -> DurationSpec {
    DurationSpec(DEFAULT_PROBE_INTERVAL)
}

fn default_failure_threshold() -> DurationSpec {
    DurationSpec(DEFAULT_FAILURE_THRESHOLD)
}

impl Default for MembershipSettings {
    fn default() -> Self {
        MembershipSettings {
            probe_interval: default_probe_interval(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

/// Why membership settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("membership probe_interval {interval} is too short: give at least {min}")]
    ProbeIntervalTooShort {
        interval: DurationSpec,
        min: DurationSpec,
    },
    #[error("membership failure_threshold {threshold} is shorter than probe_interval {interval}: a suspected peer must have at least one probe interval to answer")]
    ThresholdBelowInterval {
        threshold: DurationSpec,
        interval: DurationSpec,
    },
}

/// The detector's timings, all derived from the two settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorTimings {
    /// One peer probed per interval.
    pub probe_interval: Duration,
    /// How long a direct probe waits for its answer before asking others
    /// to probe indirectly: 40% of the interval, leaving the rest for the
    /// indirect round.
    pub probe_timeout: Duration,
    /// Peers asked to probe indirectly (memberlist's 3 and two more: a
    /// false suspicion at 5% loss needs all of them lost).
    pub indirect_probes: usize,
    /// Suspected → FAILED.
    pub suspicion: Duration,
    /// How often updates (only while there are any) are also pushed to a
    /// few peers outside probes: half the interval.
    pub gossip_interval: Duration,
    /// Peers per gossip round.
    pub gossip_fanout: usize,
}

impl MembershipSettings {
    /// Checks the settings; returns the first problem.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.probe_interval.0 < MIN_PROBE_INTERVAL {
            return Err(SettingsError::ProbeIntervalTooShort {
                interval: self.probe_interval,
                min: DurationSpec(MIN_PROBE_INTERVAL),
            });
        }
        if self.failure_threshold.0 < self.probe_interval.0 {
            return Err(SettingsError::ThresholdBelowInterval {
                threshold: self.failure_threshold,
                interval: self.probe_interval,
            });
        }
        Ok(())
    }

    /// The detector's timings for these settings.
    pub fn timings(&self) -> DetectorTimings {
        let interval = self.probe_interval.0;
        DetectorTimings {
            probe_interval: interval,
            probe_timeout: interval * 2 / 5,
            indirect_probes: 5,
            suspicion: self.failure_threshold.0,
            gossip_interval: interval / 2,
            gossip_fanout: 4,
        }
    }

    /// The time within which a dead node is FAILED on every peer in a
    /// small cluster, as documented: the wait for the next probe of it
    /// (one interval), the probe itself (one interval), the suspicion and
    /// two gossip rounds to spread the verdict. A thousand nodes need a
    /// few more rounds (see `bench/membership`).
    pub fn detection_bound(&self) -> Duration {
        let t = self.timings();
        t.probe_interval * 2 + t.suspicion + t.gossip_interval * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [PeerState; 3] = [PeerState::Inactive, PeerState::Running, PeerState::Failed];

    #[test]
    fn only_the_four_transitions_are_allowed() {
        let allowed: Vec<_> = ALL
            .iter()
            .flat_map(|a| ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        use PeerState::*;
        assert_eq!(
            allowed,
            vec![
                (Inactive, Running),
                (Running, Inactive),
                (Running, Failed),
                (Failed, Running)
            ]
        );
    }

    #[test]
    fn a_graceful_leave_is_inactive_and_a_crash_is_failed() {
        let mut view = View::default();
        view.know("n2", Some("10.0.0.2:7946".into()), 1);
        assert_eq!(view.get("n2").map(|p| p.state), Some(PeerState::Inactive));
        let up = view.observe("n2", Signal::Alive, None, Some("0.1.0".into()), 2);
        assert_eq!(up.map(|t| t.change()), Some(Change::Joined));
        let left = view.observe("n2", Signal::Left, None, None, 3);
        assert_eq!(left.map(|t| t.change()), Some(Change::Left));
        view.observe("n2", Signal::Alive, None, None, 4);
        let failed = view.observe("n2", Signal::Unreachable, None, None, 5);
        assert_eq!(failed.map(|t| t.change()), Some(Change::Failed));
        let peer = view.get("n2").expect("known");
        assert_eq!(
            (
                peer.since_ms,
                peer.address.as_deref(),
                peer.version.as_deref()
            ),
            (5, Some("10.0.0.2:7946"), Some("0.1.0"))
        );
        let back = view.observe("n2", Signal::Alive, None, None, 6);
        assert_eq!(back.map(|t| t.change()), Some(Change::Recovered));
    }

    #[test]
    fn a_peer_never_seen_running_neither_fails_nor_leaves() {
        let mut view = View::default();
        assert_eq!(view.observe("n3", Signal::Unreachable, None, None, 1), None);
        assert_eq!(view.observe("n3", Signal::Left, None, None, 2), None);
        assert_eq!(view.get("n3").map(|p| p.state), Some(PeerState::Inactive));
    }

    #[test]
    fn default_settings_detect_within_two_seconds() {
        let settings = MembershipSettings::default();
        assert_eq!(settings.check(), Ok(()));
        assert!(settings.detection_bound() < Duration::from_secs(2));
        let json = serde_json::to_string(&settings).expect("plain struct");
        assert_eq!(
            json,
            r#"{"probe_interval":"200ms","failure_threshold":"800ms"}"#
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_setting() {
        let short = MembershipSettings {
            probe_interval: DurationSpec::from_millis(10),
            ..MembershipSettings::default()
        };
        assert!(short
            .check()
            .is_err_and(|e| e.to_string().contains("probe_interval 10ms is too short")));
        let low = MembershipSettings {
            failure_threshold: DurationSpec::from_millis(100),
            ..MembershipSettings::default()
        };
        assert!(low
            .check()
            .is_err_and(|e| e.to_string().contains("failure_threshold 100ms")));
    }

    fn signal() -> impl Strategy<Value = Signal> {
        prop_oneof![
            Just(Signal::Alive),
            Just(Signal::Left),
            Just(Signal::Unreachable)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Under any sequence of signals about any peers, every state change
        /// is one of the four transitions, is reported exactly once with the
        /// time it happened, and each leave/failure follows the signal that
        /// means it.
        #[test]
        fn no_other_transition_ever_happens(
            inputs in prop::collection::vec((0usize..4, signal(), 0u64..5), 1..200),
            known in prop::collection::vec(0usize..4, 0..4),
        ) {
            let mut view = View::default();
            let mut now = 1_000u64;
            for peer in &known {
                view.know(&format!("n{peer}"), None, now);
            }
            for (peer, signal, step) in inputs {
                now += step;
                let name = format!("n{peer}");
                let before = view.get(&name).map(|p| p.state).unwrap_or(PeerState::Inactive);
                let since_before = view.get(&name).map(|p| p.since_ms);
                let transition = view.observe(&name, signal, None, None, now);
                let after = view.get(&name).map(|p| p.state).expect("observed peers are known");
                match transition {
                    Some(t) => {
                        prop_assert!(before.can_become(after), "{before} -> {after}");
                        prop_assert_eq!((t.from, t.to, t.at_ms), (before, after, now));
                        let expected = match t.change() {
                            Change::Joined | Change::Recovered => Signal::Alive,
                            Change::Left => Signal::Left,
                            Change::Failed => Signal::Unreachable,
                        };
                        prop_assert_eq!(signal, expected);
                        prop_assert_eq!(view.get(&name).map(|p| p.since_ms), Some(now));
                    }
                    None => {
                        prop_assert_eq!(before, after);
                        if since_before.is_some() {
                            prop_assert_eq!(view.get(&name).map(|p| p.since_ms), since_before);
                        }
                    }
                }
            }
        }
    }
}
