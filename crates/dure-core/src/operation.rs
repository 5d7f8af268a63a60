//! Cluster operations: the plan (which members act in which wave, or for a
//! restart in which batch) and the record that tracks an operation's
//! progress member by member.

use crate::model::ServerSpec;
use crate::state::{Intent, ServerState};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Time past a member's own start or stop timeout before a waiter gives up
/// on it: the agent's poll and report round trip.
pub const MEMBER_WAIT_SLACK: Duration = Duration::from_secs(10);
/// How long an immediate stop (a kill) may take to be confirmed.
pub const KILL_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    /// Start members (in order, each waiting for ready, unless parallel).
    Start,
    /// Stop members gracefully in reverse order.
    Stop,
    /// Kill every member at once.
    Kill,
    /// Stop the members, then start them again: all of them, or with
    /// `rolling` batch by batch (drain, stop, start, ready, back in
    /// rotation), the rest untouched while a batch is out.
    Restart,
    /// Install an application version: a restart whose batches first
    /// stage the artifact (fetched and its checksum verified, nothing
    /// stopped yet) and install it between stop and start.
    Deploy,
}

impl OperationKind {
    /// The intent each member is given (by a restart, last).
    pub fn intent(self) -> Intent {
        match self {
            OperationKind::Start | OperationKind::Restart | OperationKind::Deploy => Intent::Run,
            OperationKind::Stop => Intent::Stop,
            OperationKind::Kill => Intent::Kill,
        }
    }

    /// How long to wait for server `spec` to finish this operation before
    /// it counts as failed: the one rule for the controller's operations
    /// and the CLI's waits.
    pub fn member_wait(self, spec: &ServerSpec) -> Duration {
        match self {
            OperationKind::Start | OperationKind::Restart | OperationKind::Deploy => {
                spec.ready.start_timeout.0 + MEMBER_WAIT_SLACK
            }
            OperationKind::Stop => spec.stop.timeout.0 + MEMBER_WAIT_SLACK,
            OperationKind::Kill => KILL_WAIT,
        }
    }

    /// Whether a member in `state` has finished this operation: `Some(true)`
    /// done, `Some(false)` failed, `None` still in progress.
    pub fn member_outcome(self, state: ServerState) -> Option<bool> {
        match (self, state) {
            (
                OperationKind::Start | OperationKind::Restart | OperationKind::Deploy,
                ServerState::Ready,
            ) => Some(true),
            (
                OperationKind::Start | OperationKind::Restart | OperationKind::Deploy,
                ServerState::Failed,
            ) => Some(false),
            (OperationKind::Stop | OperationKind::Kill, ServerState::Stopped) => Some(true),
            (OperationKind::Stop | OperationKind::Kill, ServerState::Failed) => Some(true),
            _ => None,
        }
    }
}

impl OperationKind {
    /// Whether it goes batch by batch (drain, stop, start, ready), so
    /// `rolling` and `batch` apply: a restart and a deploy.
    pub fn goes_by_batches(self) -> bool {
        matches!(self, OperationKind::Restart | OperationKind::Deploy)
    }

    /// The operation an action word (`start`, `stop`, `kill`, `restart`)
    /// asks for: the words of a server's actions, and `restart`.
    pub fn from_action(word: &str) -> Option<OperationKind> {
        if word == "restart" {
            return Some(OperationKind::Restart);
        }
        Intent::from_action(word).and_then(|intent| match intent {
            Intent::Run => Some(OperationKind::Start),
            Intent::Stop => Some(OperationKind::Stop),
            Intent::Kill => Some(OperationKind::Kill),
            Intent::Hold => None,
        })
    }
}

impl fmt::Display for OperationKind {
    /// The action word of the intent it gives each member; `restart`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperationKind::Restart => f.write_str("restart"),
            OperationKind::Deploy => f.write_str("deploy"),
            kind => f.write_str(kind.intent().action()),
        }
    }
}

/// Options an operator may give a cluster operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationOptions {
    /// Start every member at once instead of one after another.
    #[serde(default)]
    pub parallel: bool,
    /// Go on with the next members when one fails.
    #[serde(default)]
    pub continue_on_error: bool,
    /// A restart batch by batch, each back in rotation before the next.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolling: bool,
    /// How many members a rolling restart takes out at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

impl OperationOptions {
    /// Says why these options do not fit an operation of `kind`, if they do not.
    pub fn check(&self, kind: OperationKind) -> Result<(), String> {
        if self.rolling && !kind.goes_by_batches() {
            return Err(format!(
                "`rolling` is an option of a restart or a deploy, not of a {kind}"
            ));
        }
        match self.batch {
            Some(_) if !self.rolling => {
                Err("`batch` is the size of a rolling restart's batches: give `rolling` too".into())
            }
            Some(0) => Err("`batch` must be at least 1".into()),
            _ => Ok(()),
        }
    }
}

/// Groups members into waves: all members of a wave act together, and a
/// wave waits for the one before it to finish.
pub fn plan_waves(
    kind: OperationKind,
    members: &[String],
    options: OperationOptions,
) -> Vec<Vec<String>> {
    match kind {
        OperationKind::Kill => vec![members.to_vec()],
        OperationKind::Start if options.parallel => vec![members.to_vec()],
        OperationKind::Start => members.iter().map(|m| vec![m.clone()]).collect(),
        OperationKind::Stop if options.parallel => vec![members.iter().rev().cloned().collect()],
        OperationKind::Stop => members.iter().rev().map(|m| vec![m.clone()]).collect(),
        OperationKind::Restart | OperationKind::Deploy if options.rolling => {
            let size = usize::try_from(options.batch.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
            members.chunks(size).map(<[String]>::to_vec).collect()
        }
        OperationKind::Restart | OperationKind::Deploy => vec![members.to_vec()],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Pending,
    InProgress,
    Done,
    Failed,
    /// Not attempted because an earlier member failed.
    Skipped,
    /// Already in the target state; nothing was done.
    AlreadyDone,
}

impl StepStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, StepStatus::Pending | StepStatus::InProgress)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationStatus {
    Running,
    Succeeded,
    Failed,
}

impl fmt::Display for OperationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperationStatus::Running => "running",
            OperationStatus::Succeeded => "succeeded",
            OperationStatus::Failed => "failed",
        })
    }
}

/// Progress of one member within an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStep {
    pub server: String,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

/// A tracked multi-step action on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub kind: OperationKind,
    pub cluster: String,
    pub options: OperationOptions,
    pub status: OperationStatus,
    pub steps: Vec<MemberStep>,
    /// Who asked for it.
    pub actor: String,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why it failed, or a note such as "already running".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The intents it issued that were not carried out when it ended; each
    /// goes once its agent carries it out (or another intent replaces it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_standing: Vec<StandingIntent>,
}

/// An intent an operation issued and left standing when it ended: its
/// member's agent had not carried it out. It stays desired state, so the
/// agent carries it out when it can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingIntent {
    pub server: String,
    pub node: String,
    pub intent: Intent,
    pub generation: u64,
    /// Why it was not carried out, such as "node `n2` unreachable".
    pub reason: String,
}

impl fmt::Display for StandingIntent {
    /// `stop on `web2` (node `n2` unreachable)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on `{}` ({})",
            self.intent.action(),
            self.server,
            self.reason
        )
    }
}

impl Operation {
    /// The overall status once every step has finished.
    pub fn outcome(&self) -> OperationStatus {
        if self.steps.iter().any(|s| s.status == StepStatus::Failed) {
            OperationStatus::Failed
        } else {
            OperationStatus::Succeeded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn start_is_in_order_and_stop_in_reverse() {
        let members = names(&["a", "b", "c"]);
        let opts = OperationOptions::default();
        assert_eq!(
            plan_waves(OperationKind::Start, &members, opts),
            vec![names(&["a"]), names(&["b"]), names(&["c"])]
        );
        assert_eq!(
            plan_waves(OperationKind::Stop, &members, opts),
            vec![names(&["c"]), names(&["b"]), names(&["a"])]
        );
        assert_eq!(
            plan_waves(OperationKind::Kill, &members, opts),
            vec![members.clone()]
        );
        let parallel = OperationOptions {
            parallel: true,
            ..opts
        };
        assert_eq!(
            plan_waves(OperationKind::Start, &members, parallel),
            vec![members]
        );
    }

    #[test]
    fn a_rolling_restart_goes_batch_by_batch_in_member_order() {
        let members = names(&["a", "b", "c"]);
        let rolling = |batch| OperationOptions {
            rolling: true,
            batch,
            ..OperationOptions::default()
        };
        assert_eq!(
            plan_waves(OperationKind::Restart, &members, rolling(None)),
            vec![names(&["a"]), names(&["b"]), names(&["c"])]
        );
        assert_eq!(
            plan_waves(OperationKind::Restart, &members, rolling(Some(2))),
            vec![names(&["a", "b"]), names(&["c"])]
        );
        assert_eq!(
            plan_waves(
                OperationKind::Restart,
                &members,
                OperationOptions::default()
            ),
            vec![members.clone()]
        );
        assert!(rolling(Some(2)).check(OperationKind::Restart).is_ok());
        assert!(rolling(Some(0)).check(OperationKind::Restart).is_err());
        assert!(rolling(None).check(OperationKind::Stop).is_err());
        let batch_alone = OperationOptions {
            batch: Some(2),
            ..OperationOptions::default()
        };
        assert!(batch_alone.check(OperationKind::Restart).is_err());
        // Records written before these options read and write back alike.
        let old = r#"{"parallel":false,"continue_on_error":true}"#;
        let read: OperationOptions = serde_json::from_str(old).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
    }

    #[test]
    fn texts_are_the_wire_names() {
        for kind in [
            OperationKind::Start,
            OperationKind::Stop,
            OperationKind::Kill,
            OperationKind::Restart,
        ] {
            let wire = serde_json::to_value(kind).unwrap();
            assert_eq!(wire, serde_json::Value::String(kind.to_string()));
            assert_eq!(OperationKind::from_action(&kind.to_string()), Some(kind));
        }
        assert_eq!(OperationKind::from_action("run"), None);
        for status in [
            OperationStatus::Running,
            OperationStatus::Succeeded,
            OperationStatus::Failed,
        ] {
            let wire = serde_json::to_value(status).unwrap();
            assert_eq!(wire, serde_json::Value::String(status.to_string()));
        }
    }

    #[test]
    fn outcomes() {
        assert_eq!(
            OperationKind::Start.member_outcome(ServerState::Ready),
            Some(true)
        );
        assert_eq!(
            OperationKind::Start.member_outcome(ServerState::Failed),
            Some(false)
        );
        assert_eq!(
            OperationKind::Start.member_outcome(ServerState::Starting),
            None
        );
        assert_eq!(
            OperationKind::Stop.member_outcome(ServerState::Stopped),
            Some(true)
        );
        assert_eq!(
            OperationKind::Kill.member_outcome(ServerState::Stopping),
            None
        );
    }
}
