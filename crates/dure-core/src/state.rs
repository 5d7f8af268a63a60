//! Server lifecycle: what the controller wants of a server ([`Intent`]),
//! what the agent sees of it ([`ServerState`], [`ObservedServer`]) and which
//! state changes are allowed.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Heartbeat intervals a side may miss before the other counts it as
/// away: the controller's rule for a node's agent (unreachable, its
/// servers `unknown`) and the agent's for the controller (INDEPENDENT).
pub const MISSED_HEARTBEATS: u32 = 3;

/// How long a side may stay silent before it counts as away, for a given
/// heartbeat interval.
pub fn silent_limit(heartbeat: Duration) -> Duration {
    heartbeat * MISSED_HEARTBEATS
}

/// What the controller wants a server to be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    /// Running and, once its probe passes, ready.
    Run,
    /// Stopped gracefully (stop command or signal, then kill after the timeout).
    #[default]
    Stop,
    /// Stopped at once: the whole process group is killed.
    Kill,
    /// Kept as it is: the controller cannot tell what it wants, because its
    /// record of the intent is unreadable. The agent neither starts nor
    /// stops the server; the controller rebuilds the intent from the
    /// agent's next report of it. Never asked for by an operator.
    Hold,
}

/// The intent words, each once: the wire name and the action that asks for
/// the intent (the verbs of `/v1/servers/{s}/{action}` and of the CLI).
const INTENT_WORDS: [(Intent, &str, &str); 3] = [
    (Intent::Run, "run", "start"),
    (Intent::Stop, "stop", "stop"),
    (Intent::Kill, "kill", "kill"),
];

impl Intent {
    fn words(self) -> (&'static str, &'static str) {
        if self == Intent::Hold {
            // No action asks for it, so it is not among the action words.
            return ("hold", "hold");
        }
        let (_, name, action) = INTENT_WORDS
            .into_iter()
            .find(|(intent, _, _)| *intent == self)
            .expect("every intent has its words");
        (name, action)
    }

    /// The wire name: `run`, `stop` or `kill`.
    pub fn as_str(self) -> &'static str {
        self.words().0
    }

    /// The action that asks for it: `start`, `stop` or `kill`.
    pub fn action(self) -> &'static str {
        self.words().1
    }

    /// The intent an action word asks for, if it is one.
    pub fn from_action(word: &str) -> Option<Intent> {
        INTENT_WORDS
            .into_iter()
            .find(|(_, _, action)| *action == word)
            .map(|(intent, _, _)| intent)
    }
}

impl Intent {
    /// Whether a server in `state` shows this intent carried out by its
    /// agent: for run, a process was started (or gave up: `failed`); for
    /// stop and kill, none is alive. `unknown` shows nothing either way.
    pub fn is_carried_out_in(self, state: ServerState) -> bool {
        match self {
            Intent::Run => matches!(
                state,
                ServerState::Starting
                    | ServerState::Running
                    | ServerState::Ready
                    | ServerState::Failed
            ),
            Intent::Stop | Intent::Kill => state.is_down(),
            Intent::Hold => true,
        }
    }

    /// Whether this intent, issued as `generation`, is still to be carried
    /// out by the agent that last reported `observed`: the agent has not
    /// answered that generation, or the state it reports does not match.
    /// A server whose node is unreachable (`unknown`) is pending only when
    /// the last report answered an older generation: nothing more is known.
    pub fn is_pending(self, generation: u64, observed: &ObservedServer) -> bool {
        if generation == 0 || self == Intent::Hold {
            // Never issued (the default stop of a server never started), or
            // held: nothing is asked of the agent.
            return false;
        }
        observed.generation < generation
            || (observed.state != ServerState::Unknown && !self.is_carried_out_in(observed.state))
    }
}

impl fmt::Display for Intent {
    /// The wire name: `run`, `stop` or `kill`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not an intent's wire name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an intent: use run, stop or kill")]
pub struct UnknownIntent(pub String);

impl std::str::FromStr for Intent {
    type Err = UnknownIntent;
    fn from_str(word: &str) -> Result<Intent, UnknownIntent> {
        INTENT_WORDS
            .into_iter()
            .find(|(_, name, _)| *name == word)
            .map(|(intent, _, _)| intent)
            .ok_or_else(|| UnknownIntent(word.to_string()))
    }
}

/// The observed state of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    Stopped,
    /// Spawned; its readiness probe has not passed yet.
    Starting,
    /// Running, but its probe failed after it had been ready.
    Running,
    /// Running and passing its readiness probe.
    Ready,
    Stopping,
    /// Exited on its own, could not be spawned, or gave up restarting.
    Failed,
    /// No fresh report: the node's agent is unreachable. Never reported by an
    /// agent; the controller derives it.
    Unknown,
}

impl ServerState {
    /// True when a process is (believed to be) alive.
    pub fn is_alive(self) -> bool {
        matches!(
            self,
            ServerState::Starting
                | ServerState::Running
                | ServerState::Ready
                | ServerState::Stopping
        )
    }

    /// True when no process is alive and none is expected to be.
    pub fn is_down(self) -> bool {
        matches!(self, ServerState::Stopped | ServerState::Failed)
    }

    /// Whether an agent may move a server from `self` to `next`.
    pub fn can_become(self, next: ServerState) -> bool {
        use ServerState::*;
        if self == next {
            return true;
        }
        match (self, next) {
            (_, Unknown) | (Unknown, _) => false,
            (Stopped | Failed, Starting | Failed) => true,
            (Starting, Ready | Running | Stopping | Stopped | Failed) => true,
            (Running, Ready | Stopping | Stopped | Failed | Starting) => true,
            (Ready, Running | Stopping | Stopped | Failed | Starting) => true,
            (Stopping, Stopped | Failed) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerState::Stopped => "stopped",
            ServerState::Starting => "starting",
            ServerState::Running => "running",
            ServerState::Ready => "ready",
            ServerState::Stopping => "stopping",
            ServerState::Failed => "failed",
            ServerState::Unknown => "unknown",
        })
    }
}

/// What an agent reports about one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedServer {
    pub name: String,
    pub state: ServerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When the server entered `state`, in ms since the Unix epoch.
    pub since_ms: u64,
    /// Restarts by policy since the last start asked for by the controller.
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The desired-state generation this observation answers.
    #[serde(default)]
    pub generation: u64,
    /// The running process started with configuration files other than
    /// the ones its configuration now generates (a templated server): it
    /// runs the old ones until it is restarted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_needed: bool,
}

impl ObservedServer {
    pub fn stopped(name: &str, now_ms: u64) -> Self {
        ObservedServer {
            name: name.to_string(),
            state: ServerState::Stopped,
            pid: None,
            since_ms: now_ms,
            restarts: 0,
            exit_code: None,
            last_error: None,
            generation: 0,
            restart_needed: false,
        }
    }

    /// What may be said of server `name` on `node` from the node's last
    /// report (`last`, `None` when the report did not mention it), sent at
    /// `reported_ms`: the one "unknown when stale" rule behind every view
    /// and the cluster light. While the node's reports are `fresh`, the
    /// report, or `stopped` for a server it does not mention; once they are
    /// stale, `unknown`, never stopped, keeping what was last reported (the
    /// generation it answered, the pid) and saying so in `last_error`.
    pub fn as_known(
        node: &str,
        name: &str,
        last: Option<&ObservedServer>,
        fresh: bool,
        reported_ms: u64,
    ) -> ObservedServer {
        match (fresh, last) {
            (true, Some(observed)) => observed.clone(),
            (true, None) => ObservedServer::stopped(name, reported_ms),
            (false, Some(observed)) => ObservedServer {
                state: ServerState::Unknown,
                last_error: Some(format!(
                    "node `{node}` is unreachable; last reported {}",
                    observed.state
                )),
                ..observed.clone()
            },
            (false, None) => ObservedServer {
                state: ServerState::Unknown,
                ..ObservedServer::stopped(name, reported_ms)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServerState::*;

    const ALL: [ServerState; 7] = [Stopped, Starting, Running, Ready, Stopping, Failed, Unknown];

    #[test]
    fn agents_never_report_unknown() {
        for state in ALL {
            if state != Unknown {
                assert!(!state.can_become(Unknown));
                assert!(!Unknown.can_become(state));
            }
        }
    }

    #[test]
    fn a_stopped_server_must_start_before_it_is_ready() {
        assert!(!Stopped.can_become(Ready));
        assert!(!Stopped.can_become(Running));
        assert!(Stopped.can_become(Starting));
        assert!(Starting.can_become(Ready));
        assert!(Ready.can_become(Stopping));
        assert!(Stopping.can_become(Stopped));
        assert!(!Stopping.can_become(Ready));
    }

    #[test]
    fn texts_are_the_wire_names() {
        for intent in [Intent::Run, Intent::Stop, Intent::Kill] {
            let wire = serde_json::to_value(intent).unwrap();
            assert_eq!(wire, serde_json::Value::String(intent.to_string()));
            assert_eq!(intent.as_str().parse::<Intent>(), Ok(intent));
            assert_eq!(Intent::from_action(intent.action()), Some(intent));
        }
        assert_eq!(Intent::Run.action(), "start");
        assert_eq!(Intent::from_action("run"), None);
        // Hold is only ever the controller's, never asked for.
        assert_eq!(serde_json::to_value(Intent::Hold).unwrap(), "hold");
        assert_eq!(Intent::from_action("hold"), None);
        assert!("hold".parse::<Intent>().is_err());
        assert_eq!(
            "start".parse::<Intent>().unwrap_err().to_string(),
            "`start` is not an intent: use run, stop or kill"
        );
        for state in ALL {
            let wire = serde_json::to_value(state).unwrap();
            assert_eq!(wire, serde_json::Value::String(state.to_string()));
        }
    }

    #[test]
    fn a_stale_report_is_unknown_never_stopped() {
        let ready = ObservedServer {
            state: Ready,
            pid: Some(7),
            generation: 4,
            ..ObservedServer::stopped("a", 1)
        };
        assert_eq!(
            ObservedServer::as_known("n1", "a", Some(&ready), true, 9),
            ready
        );
        assert_eq!(
            ObservedServer::as_known("n1", "a", None, true, 9),
            ObservedServer::stopped("a", 9)
        );
        let stale = ObservedServer::as_known("n1", "a", Some(&ready), false, 9);
        assert_eq!(
            (stale.state, stale.pid, stale.generation),
            (Unknown, Some(7), 4)
        );
        assert_eq!(
            stale.last_error.as_deref(),
            Some("node `n1` is unreachable; last reported ready")
        );
        let never = ObservedServer::as_known("n1", "a", None, false, 0);
        assert_eq!((never.state, never.generation), (Unknown, 0));
    }

    #[test]
    fn an_intent_is_pending_until_its_generation_is_answered_in_a_matching_state() {
        let seen = |state, generation| ObservedServer {
            state,
            generation,
            ..ObservedServer::stopped("a", 1)
        };
        assert!(
            !Intent::Stop.is_pending(0, &seen(Stopped, 0)),
            "never issued"
        );
        assert!(Intent::Stop.is_pending(3, &seen(Ready, 2)), "not answered");
        assert!(
            !Intent::Hold.is_pending(7, &seen(Ready, 2)),
            "nothing asked"
        );
        assert!(
            Intent::Stop.is_pending(3, &seen(Unknown, 2)),
            "not answered, node away"
        );
        assert!(
            !Intent::Stop.is_pending(3, &seen(Unknown, 3)),
            "nothing more known"
        );
        assert!(
            Intent::Stop.is_pending(3, &seen(Stopping, 3)),
            "still stopping"
        );
        assert!(!Intent::Stop.is_pending(3, &seen(Stopped, 3)));
        assert!(!Intent::Kill.is_pending(3, &seen(Failed, 4)));
        assert!(Intent::Run.is_pending(3, &seen(Stopped, 3)));
        assert!(!Intent::Run.is_pending(3, &seen(Starting, 3)));
        assert!(
            !Intent::Run.is_pending(3, &seen(Failed, 3)),
            "tried and gave up"
        );
    }

    #[test]
    fn alive_and_down_are_disjoint() {
        for state in ALL {
            assert!(!(state.is_alive() && state.is_down()), "{state}");
        }
    }
}
