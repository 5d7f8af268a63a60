//! JSON shapes of requests and responses.

use dure_core::operation::OperationOptions;
use dure_core::{ClusterSpec, ClusterStatus, Intent, NodeSpec, ObservedServer, ServerSpec};
use serde::{Deserialize, Serialize};

pub use dure_core::operation::{MemberStep, Operation, OperationKind, OperationStatus, StepStatus};

/// The body of every error answer: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `unavailable`, `internal`.
    pub code: String,
    /// Lowercase, specific, says what to do.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// The store revision; moves on every write.
    pub revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Heartbeats arrive.
    Online,
    /// Heartbeats stopped; its servers' states are unknown.
    Unreachable,
    /// No agent has registered for this node yet.
    Unregistered,
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeStatus::Online => "online",
            NodeStatus::Unreachable => "unreachable",
            NodeStatus::Unregistered => "unregistered",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub spec: NodeSpec,
    pub status: NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    pub servers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    pub spec: ServerSpec,
    /// What the controller wants of it.
    pub intent: Intent,
    /// Bumped each time the intent is (re)issued.
    pub generation: u64,
    /// What its agent last reported; state `unknown` when the report is stale.
    pub observed: ObservedServer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub server: String,
    pub node: String,
    pub observed: ObservedServer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub spec: ClusterSpec,
    pub status: ClusterStatus,
    pub members: Vec<MemberView>,
}

/// Body of `POST /v1/clusters/{name}/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub server: String,
    /// Index in the member list; the end when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
}

/// Body of `POST /v1/clusters/{name}/{start|stop|kill}`.
pub type OperationRequest = OperationOptions;

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event.
    pub seq: u64,
    pub time_ms: u64,
    /// Who caused it: `admin` for API calls, `agent:<node>`, `controller`.
    pub actor: String,
    /// `api`, `server.state`, `node.state`, `operation`.
    pub kind: String,
    /// What it is about, such as `server/web1` or `cluster/demo`.
    pub subject: String,
    pub message: String,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    /// Only events with `seq` greater than this.
    #[serde(default)]
    pub after: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only events whose subject starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Only the newest this many of the matching events (still oldest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<usize>,
}

/// Body of `POST /v1/agent/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentHello {
    pub node: String,
    /// Address the controller and peers use to reach this node.
    pub address: String,
    /// Port of the agent's own HTTP endpoint (logs, status).
    pub agent_port: u16,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentWelcome {
    pub node: NodeSpec,
    /// How often the agent must report; missing three in a row marks it unreachable.
    pub heartbeat_interval_ms: u64,
}

/// One server as the agent must run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredServer {
    pub spec: ServerSpec,
    pub intent: Intent,
    pub generation: u64,
}

/// Answer of the agent's long poll `GET /v1/agent/nodes/{node}/desired?index=N&wait=30s`:
/// returned as soon as `index` is greater than the one asked for, or when the
/// wait runs out (with the same index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredNode {
    pub index: u64,
    pub servers: Vec<DesiredServer>,
}

/// Query of the long poll.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredQuery {
    #[serde(default)]
    pub index: u64,
    /// How long to block, such as `30s`; at most 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
}

/// Body of `POST /v1/agent/nodes/{node}/report`: the state of every server
/// the agent manages. Also the heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    pub servers: Vec<ObservedServer>,
}

/// A piece of a server's log, served by the agent and proxied by the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Byte offset of `data` in the current log file.
    pub offset: u64,
    /// Where the next read should start.
    pub next_offset: u64,
    /// Current file size.
    pub size: u64,
    /// The bytes read, as UTF-8 (invalid sequences replaced).
    pub data: String,
}

/// Query of the log endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// Start here; when absent, the last `tail` bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// With no offset: how many bytes from the end (default 16 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u64>,
}

/// Query of `DELETE /v1/servers/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteServerQuery {
    /// Stop (kill) the server first if it is running.
    #[serde(default)]
    pub stop: bool,
}

/// What the agent's own status endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub node: String,
    pub version: String,
    /// Whether the last contact with the controller succeeded.
    pub controller_reachable: bool,
    pub servers: Vec<ObservedServer>,
}
