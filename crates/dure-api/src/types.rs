//! JSON shapes of requests and responses.

use dure_core::application::{AppVersion, ArtifactKind};
use dure_core::balance::latency;
use dure_core::operation::OperationOptions;
use dure_core::{
    ClusterBalance, ClusterSpec, ClusterStatus, Intent, LbSpec, NodeSpec, ObservedServer, Route,
    ServerSpec, ServerState,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use dure_core::membership::{MembershipSettings, PeerState};
use std::time::Duration;

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
    /// Stable machine-readable code: `invalid`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `too_large`, `unavailable`, `internal`.
    pub code: String,
    /// Lowercase, specific, says what to do.
    pub message: String,
}

/// The answer of `GET /v1/health` without a token: liveness only, so a
/// monitor or a balancer can probe the controller without a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    pub status: String,
}

/// The answer of `GET /v1/health` with a valid token: liveness and details.
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
    /// The node's configuration, as saved (or staged, in the change set view).
    pub spec: NodeSpec,
    pub status: NodeStatus,
    /// `host:port` of the agent's own endpoint (logs, status) as the agent
    /// last told this controller, in its registration or a report: observed
    /// state, never saved. Absent until the controller heard from the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    pub servers: usize,
    /// How the node's agent last said it runs.
    #[serde(default)]
    pub mode: AgentMode,
    /// While `mode` is independent: since when, in ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub independent_since_ms: Option<u64>,
    /// The node's membership state among the agents: the latest change any
    /// peer reported. Absent until a peer reported on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<PeerState>,
    /// Since when `membership` holds, in ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_since_ms: Option<u64>,
}

/// One peer in a node's view of the membership (`dure node list --from NODE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub node: String,
    pub state: PeerState,
    /// When the peer entered `state`, in ms since the Unix epoch.
    pub since_ms: u64,
    /// Its membership endpoint, `IP:PORT`, as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its agent's version, once seen running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Where a node's membership endpoint is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddress {
    pub node: String,
    /// `IP:PORT` of its UDP membership socket.
    pub address: String,
}

/// What an agent needs to take part in the membership, given with the
/// answer to its registration and kept in its data directory.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipSetup {
    /// The domain key(s) every membership datagram is authenticated with.
    #[serde(flatten)]
    pub keys: MembershipKeys,
    /// The domain's settings (`/domain.json`).
    pub settings: MembershipSettings,
    /// Every other node whose membership endpoint the controller knows.
    pub peers: Vec<PeerAddress>,
}

/// The membership keys an agent uses now: it seals every datagram with
/// `key` and opens one under `key` or any of `accept`. During a rotation
/// (`dure domain rotate-key`) the controller hands out, in turn, the old
/// key with the new one accepted, then the new key with the old one
/// accepted, then the new key alone, so agents that move a little apart
/// in time still understand each other.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipKeys {
    /// Hex.
    pub key: String,
    /// Hex; empty outside a rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<String>,
}

impl MembershipKeys {
    /// One key, nothing else accepted.
    pub fn single(key: String) -> MembershipKeys {
        MembershipKeys {
            key,
            accept: Vec::new(),
        }
    }
}

impl std::fmt::Debug for MembershipKeys {
    /// Never prints a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipKeys")
            .field("accepted", &self.accept.len())
            .finish_non_exhaustive()
    }
}

/// Answer of `POST /v1/domain/rotate-key?grace=`: when agents learn the
/// new key (now), seal with it, and stop accepting the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    pub rotated_at: String,
    pub grace_ms: u64,
    /// From here on agents seal with the new key (the old one still opens).
    pub seal_new_at: String,
    /// From here on the old key opens nothing.
    pub done_at: String,
}

/// Query of `POST /v1/domain/rotate-key`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateKeyQuery {
    /// How long each step of the rollout lasts (such as `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
}

impl std::fmt::Debug for MembershipSetup {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipSetup")
            .field("settings", &self.settings)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
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
    /// The intent when it is issued and not carried out yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingIntent>,
}

/// An intent issued and not carried out yet: the agent has not answered
/// its generation, or the state it reports does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingIntent {
    pub intent: Intent,
    pub generation: u64,
    /// The cluster operation that issued it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
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

/// Body of `POST /v1/lbs/{name}/routes` (add a route: `cluster` required)
/// and `POST /v1/lbs/{name}/routes/remove` (remove the route matching
/// `host` and `path`, of `cluster` when given).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteChange {
    /// The listener's address; may be left out when the balancer has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// What a balancer runs on: `GET /v1/lbs/{name}/table`, a blocking read
/// that changes with the definition, the clusters it routes to, their
/// servers' states and the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbTable {
    pub lb: LbSpec,
    /// Every cluster a route names, by name.
    pub clusters: BTreeMap<String, LbCluster>,
}

/// One cluster as a balancer needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbCluster {
    pub balance: ClusterBalance,
    /// In the cluster's member order.
    pub members: Vec<LbMember>,
}

/// One member: where to reach it, its share and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbMember {
    pub server: String,
    pub node: String,
    /// The node's configured address, or else the address its agent
    /// reports from; empty when neither is known.
    pub address: String,
    /// The server's `http` port; `None` when it declares none (the
    /// balancer cannot send it requests).
    pub port: Option<u16>,
    /// The server's weight (0 takes no new requests).
    pub weight: u32,
    pub backup: bool,
    /// The same state the cluster view shows (`unknown` when its node is
    /// unreachable).
    pub state: ServerState,
    /// A graceful stop is draining it: no new requests, those in flight
    /// finish. Absent from controllers that predate it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// How often a running balancer reports its figures to the controller.
pub const LB_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How many report intervals a balancer instance may stay silent before
/// the controller forgets it.
pub const LB_REPORTS_MISSED: u32 = 5;
/// The most members one report may carry.
pub const LB_REPORT_MAX_MEMBERS: usize = 10_000;

/// Body of `POST /v1/lbs/{name}/report`: one running balancer instance's
/// figures per member, sent every [`LB_REPORT_INTERVAL`] and at once when
/// a draining member's last request ends. Counters count from the
/// instance's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Accepts unknown fields, like agent reports: a balancer may be newer.
pub struct LbReport {
    /// This run of the balancer (random, new at every start): 1 to 64
    /// letters, digits, `-` and `_`.
    pub instance_id: String,
    /// Where the instance serves `/stats` and `/metrics`, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub members: Vec<LbMemberFigures>,
}

impl LbReport {
    /// Says what makes the report unusable, if anything does.
    pub fn check(&self) -> Result<(), String> {
        let id = &self.instance_id;
        let well_formed = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(format!(
                "`instance_id` `{id}` is invalid: give 1 to 64 letters, digits, `-` and `_`"
            ));
        }
        if self.members.len() > LB_REPORT_MAX_MEMBERS {
            return Err(format!(
                "the report has {} members; at most {LB_REPORT_MAX_MEMBERS} are taken",
                self.members.len()
            ));
        }
        for member in &self.members {
            if member.cluster.is_empty() || member.member.is_empty() {
                return Err("every member of a report needs its `cluster` and `member`".into());
            }
            let buckets = member.latency_buckets.len();
            if buckets != 0 && buckets != latency::BUCKETS {
                return Err(format!(
                    "member `{}` of cluster `{}` has {buckets} latency buckets; give {} or none",
                    member.member,
                    member.cluster,
                    latency::BUCKETS
                ));
            }
            if member.in_flight > member.requests {
                return Err(format!(
                    "member `{}` of cluster `{}` has more requests in flight ({}) than requests ({})",
                    member.member, member.cluster, member.in_flight, member.requests
                ));
            }
        }
        Ok(())
    }
}

/// One member's figures, as one balancer instance counts them or summed
/// over every live instance of a balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbMemberFigures {
    pub cluster: String,
    pub member: String,
    /// The address requests go to (`IP:PORT`).
    #[serde(default)]
    pub addr: String,
    /// Attempts sent to the member.
    pub requests: u64,
    #[serde(default)]
    pub responses: ResponseCounts,
    /// Failed attempts: connect failures, resets, timeouts.
    #[serde(default)]
    pub errors: u64,
    /// Failed attempts that were retried on another member.
    #[serde(default)]
    pub retries: u64,
    pub in_flight: u64,
    /// Latency to the response headers.
    #[serde(default)]
    pub latency_ms: LatencyPercentiles,
    /// Counts per bucket of `dure_core::balance::latency` (so percentiles
    /// of a sum can be read); empty when not given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_buckets: Vec<u64>,
    /// `up`, `down`, `draining`, `ejected` or `unhealthy`; instances that
    /// disagree are summed as, for example, `up 1, ejected 1`.
    pub health: String,
    /// When an active check last ended, in ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_ms: Option<u64>,
    /// Why the last active check failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A member's health, as a balancer instance reports it: taking requests.
pub const LB_HEALTH_UP: &str = "up";
/// The controller drains it: only its sticky clients, until the drain timeout.
pub const LB_HEALTH_DRAINING: &str = "draining";
/// The controller says it is down.
pub const LB_HEALTH_DOWN: &str = "down";

/// Responses by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseCounts {
    #[serde(rename = "1xx", default)]
    pub informational: u64,
    #[serde(rename = "2xx", default)]
    pub success: u64,
    #[serde(rename = "3xx", default)]
    pub redirection: u64,
    #[serde(rename = "4xx", default)]
    pub client_error: u64,
    #[serde(rename = "5xx", default)]
    pub server_error: u64,
}

impl ResponseCounts {
    /// The sum of two counts, class by class.
    pub fn plus(self, other: ResponseCounts) -> ResponseCounts {
        ResponseCounts {
            informational: self.informational.saturating_add(other.informational),
            success: self.success.saturating_add(other.success),
            redirection: self.redirection.saturating_add(other.redirection),
            client_error: self.client_error.saturating_add(other.client_error),
            server_error: self.server_error.saturating_add(other.server_error),
        }
    }
}

/// Latency percentiles in milliseconds; `None` without samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyPercentiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

impl LatencyPercentiles {
    /// The percentiles of the counts `buckets` on the core's latency scale.
    pub fn of_buckets(buckets: &[u64]) -> LatencyPercentiles {
        let ms = |q| latency::quantile(buckets, q).map(|d| d.as_secs_f64() * 1000.0);
        LatencyPercentiles {
            p50: ms(0.5),
            p95: ms(0.95),
            p99: ms(0.99),
        }
    }
}

/// `GET /v1/lbs/{name}/stats` (and each entry of `GET /v1/lb-stats`): the
/// figures of every live instance of a balancer, and their sum per member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbStats {
    pub lb: String,
    /// The instances heard from within the last [`LB_REPORTS_MISSED`]
    /// report intervals, by instance id.
    pub instances: Vec<LbInstanceStats>,
    /// Per member (by cluster, then member), summed over the instances;
    /// percentiles of the summed latency counts.
    pub members: Vec<LbMemberFigures>,
}

/// One live balancer instance, as its last report said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbInstanceStats {
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When its last report arrived, in ms since the Unix epoch.
    pub reported_ms: u64,
    /// How old its last report is, in ms, when this answer was made.
    pub age_ms: u64,
    pub members: Vec<LbMemberFigures>,
}

/// `GET /v1/clusters/{name}/balance`: a cluster as balancers see it, from
/// the saved configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterBalanceView {
    pub name: String,
    /// Its settings and members, as in a balancer's table.
    #[serde(flatten)]
    pub cluster: LbCluster,
    /// Every balancer route that sends it requests.
    pub routes: Vec<LbRoute>,
}

/// A balancer route, with the balancer and listener it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbRoute {
    pub lb: String,
    pub listen: String,
    pub route: Route,
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
    /// `api` (a configuration edit), `config` (a save, apply, rollback or
    /// discard), `intent`, `operation`, `server.state`, `node.state`,
    /// `node.drift` (what changed while a node's agent was in INDEPENDENT
    /// mode), `backup`, `controller`.
    pub kind: String,
    /// What it is about, such as `server/web1` or `cluster/demo`.
    pub subject: String,
    pub message: String,
}

/// Query of `GET /v1/operations`: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationQuery {
    /// Only operations on this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
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

/// Query of `GET /v1/events/stream`. A reconnecting client sends the
/// `Last-Event-ID` header instead of `after`; it wins over `after`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStreamQuery {
    /// Send the events after this number first (default: only new ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Only events whose subject starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// The SSE event name of the message that tells a subscriber it lagged.
pub const STREAM_LAGGED: &str = "lagged";
/// The SSE event name of the message that ends a stream on a failure.
pub const STREAM_FAILED: &str = "failed";

/// Data of the `lagged` message of the event stream: the events after
/// `after` and before `oldest` were trimmed from the log before they could
/// be sent. The stream goes on from `oldest`; read the state again (the
/// message's id is `oldest - 1`, so a reconnect resumes there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamLag {
    pub after: u64,
    pub oldest: u64,
}

/// Body of `POST /v1/agent/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Agent messages accept unknown fields (unlike operator input), so a newer
// agent can talk to an older controller during a rolling upgrade.
pub struct AgentHello {
    pub node: String,
    /// Address the controller and peers use to reach this node. It becomes
    /// the node's configured address only when the registration creates
    /// the node; the controller reaches the agent's endpoint at it.
    pub address: String,
    /// Port of the agent's own HTTP endpoint (logs, status): observed
    /// state, kept in the controller's memory, never in the configuration.
    pub agent_port: u16,
    pub version: String,
    /// Identifies this run of the agent (random, new at every start): while
    /// a node's agent is live, the controller refuses another instance for
    /// the same node. Absent from agents that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// UDP port of the agent's membership socket (at `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentWelcome {
    /// The node's configuration, as saved.
    pub node: NodeSpec,
    /// How often the agent must report; missing three in a row marks it unreachable.
    pub heartbeat_interval_ms: u64,
    /// The domain key, membership settings and peers; absent from older controllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipSetup>,
}

/// One server as the agent must run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredServer {
    pub spec: ServerSpec,
    pub intent: Intent,
    pub generation: u64,
    /// A templated server's configuration files, by path in its instance
    /// directory, as the core generates them from the configuration; the
    /// agent writes them at each start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// Answer of `GET /v1/servers/{name}/config`: the files Dure writes for a
/// server with a template (none for any other server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<dure_core::template::TemplateKind>,
    /// Contents by path relative to the server's instance directory.
    pub files: BTreeMap<String, String>,
    /// Whether the running process started with other files (its agent
    /// says so): it runs the old ones until restarted.
    pub restart_needed: bool,
}

/// Body of `PUT /v1/clusters/{name}/servers`: the cluster's application
/// server settings, each at its default when left out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterServers {
    #[serde(default)]
    pub session_replication: dure_core::template::SessionReplication,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_peer_recovery: Option<dure_core::template::TransactionPeerRecovery>,
}

/// Answer of the agent's long poll `GET /v1/agent/nodes/{node}/desired?index=N&wait=30s`:
/// returned as soon as `index` is greater than the one asked for, or when the
/// wait runs out (with the same index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredNode {
    pub index: u64,
    pub servers: Vec<DesiredServer>,
    /// The membership keys to use now, with every answer, so a key
    /// rotation reaches running agents; absent from older controllers.
    /// Never kept in the local copy (it is taken out before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_keys: Option<MembershipKeys>,
    /// The application versions the node's servers must have staged or
    /// installed (`dure app deploy`); left out while there are none, so a
    /// local copy written before them checks the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppInstall>,
}

/// The view index an answer of a read was taken at (blocking queries):
/// send it back as `?index=` to wait for a change past it.
pub const INDEX_HEADER: &str = "x-dure-index";

/// The blocking part of a read's query: wait up to `wait` (such as `30s`,
/// at most 5m) for the view index to pass `index`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchQuery {
    pub index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
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
// Accepts unknown fields, like `AgentHello`: agents may be newer.
pub struct AgentReport {
    pub servers: Vec<ObservedServer>,
    /// How the agent runs; absent from agents that predate the modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AgentMode>,
    /// With mode independent: since when, in ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub independent_since_ms: Option<u64>,
    /// What changed while the agent ran without the controller, one
    /// human-readable line each; sent once, when it is back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Where the agent's own endpoint is, as in its registration: a
    /// controller that restarted learns it from the next report. Absent
    /// from agents that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_port: Option<u16>,
    /// The agent's version, as in its registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The agent instance, as in its registration: a report from another
    /// instance than the node's live one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The membership port, as in its registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_port: Option<u16>,
    /// This node's view of its peers; absent before membership started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerView>>,
    /// What each server has of the applications it was asked to stage or
    /// install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppObserved>,
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
    /// With no offset: how many lines from the end (at most the bytes of
    /// one chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

impl LogQuery {
    /// Checks that the query asks for one thing: an offset, the last lines
    /// or the last bytes.
    pub fn check(&self) -> Result<(), String> {
        let given = [
            self.offset.is_some(),
            self.lines.is_some(),
            self.tail.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err("give one of ?offset=N, ?lines=N and ?tail=BYTES, not several".into());
        }
        Ok(())
    }
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
    /// Following the controller, or running from the local copy.
    #[serde(default)]
    pub mode: AgentMode,
    /// While independent: since when, in ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub independent_since_ms: Option<u64>,
    /// Desired-state index of the local copy on disk, if there is a usable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_copy_index: Option<u64>,
    /// Why the local copy was refused or could not be saved; cleared by the
    /// next successful save.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_copy_error: Option<String>,
    /// Where this node's membership socket is reached, `IP:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_address: Option<String>,
    /// This node's view of its peers.
    #[serde(default)]
    pub peers: Vec<PeerView>,
    /// Membership datagrams refused (not authentic under the domain key).
    #[serde(default)]
    pub membership_refused: u64,
}

/// How a configuration-changing call was handled; sent as the
/// `Dure-Change` response header (`saved` or `staged`).
pub const CHANGE_HEADER: &str = "dure-change";

/// Query accepted by every configuration-changing call and by reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeQuery {
    /// `true`: commit at once as its own revision; `false`: stage in the
    /// caller's change set; absent: the controller's default (`auto_save`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save: Option<bool>,
    /// Reads only: `changes` shows the caller's change set applied on top of
    /// the saved configuration; `saved` (default) the saved one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// Replacing writes only: the document's digest
    /// (`dure_core::document_digest`) as the caller read it; the change is
    /// refused (409) when the document is no longer so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

/// How a document differs: `added`, `modified` or `deleted`.
pub use dure_core::changeset::ChangeKind;

/// `Dure-Change` header values.
pub const CHANGE_SAVED: &str = "saved";
pub const CHANGE_STAGED: &str = "staged";

/// One document that differs between two versions of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentChange {
    /// Such as `/clusters/web/cluster.json`.
    pub path: String,
    pub kind: ChangeKind,
    /// Unified diff of the canonical JSON (old → new); empty in the answer
    /// of an apply that did not ask for diffs (`diff=true`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

/// `GET /v1/changes`: the caller's staged change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSetView {
    /// Version of the saved configuration the change set started from
    /// (0 when there is no change set).
    #[serde(default)]
    pub base_version: u64,
    /// The saved version now.
    #[serde(default)]
    pub saved_version: u64,
    /// Store revision the change set started from (0 when there is none).
    pub base_revision: u64,
    /// The saved store revision now.
    pub saved_revision: u64,
    pub changes: Vec<DocumentChange>,
    /// Staged paths that a save made since changed as well: saving is
    /// refused until the change set is discarded and staged again.
    #[serde(default)]
    pub conflicts: Vec<String>,
}

/// Answer of `POST /v1/changes/save`, `POST /v1/config/apply` and
/// `POST /v1/config/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveResult {
    /// The new configuration version (the current one when nothing changed).
    #[serde(default)]
    pub version: u64,
    /// The store revision of that version.
    pub revision: u64,
    pub changes: Vec<DocumentChange>,
    /// What happened, in one sentence ("nothing to save: …", "dry run: …").
    #[serde(default)]
    pub message: String,
}

/// Optional body of `POST /v1/changes/save`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    /// Recorded in the history instead of the staged edits' own messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Query of `GET /v1/config/history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// At most this many versions, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Query of `GET /v1/config/documents`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentsQuery {
    /// The configuration version to read (default: the current one);
    /// `rev` is its older name, accepted with the same meaning.
    #[serde(default, alias = "rev", skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// Query of `GET /v1/config/diff`: from one configuration version to
/// another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffQuery {
    pub from: u64,
    /// Default: the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// Query of `POST /v1/config/apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyQuery {
    /// Report what would change and commit nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Recorded in the history (default `apply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Answer each changed document with its unified diff. Without it the
    /// answer names the changed documents only: a whole-domain apply
    /// changes tens of thousands of them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diff: bool,
}

/// One saved version of the configuration: `GET /v1/config/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    /// 1 for the first save, one more for every later one: the number
    /// operators use (`config show --rev`, `diff`, `rollback`, pack names).
    #[serde(default)]
    pub version: u64,
    /// The store revision that saved it; an internal detail.
    pub revision: u64,
    pub actor: String,
    pub time_ms: u64,
    /// What the save was: `save`, `apply`, `rollback to 12`, `create server web1`, …
    pub message: String,
    /// Document paths the save changed.
    pub paths: Vec<String>,
}

/// The whole configuration tree: path → document. Body of
/// `POST /v1/config/apply`, answer of `GET /v1/config/documents?version=N`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentTree {
    /// The configuration version of this tree (ignored on apply).
    #[serde(default)]
    pub version: u64,
    /// The store revision this tree was read at (ignored on apply).
    #[serde(default)]
    pub revision: u64,
    pub documents: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A [`DocumentTree`] as the controller reads the body of
/// `POST /v1/config/apply`: each document kept as its JSON text, so a tree
/// of tens of thousands of documents is never built as a tree of values
/// (several times the size of its text) before it is read as documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocumentTree {
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub revision: u64,
    pub documents: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>,
}

/// Body of `POST /v1/config/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The configuration version to go back to; `revision` is its older
    /// name, accepted with the same meaning.
    #[serde(alias = "revision")]
    pub version: u64,
}

/// How a node's agent is running, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// Following the controller.
    #[default]
    Managed,
    /// Running from its local copy because the controller could not be reached.
    Independent,
}

impl std::fmt::Display for AgentMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AgentMode::Managed => "managed",
            AgentMode::Independent => "independent",
        })
    }
}

/// Query of `GET /v1/domain/pack`, whose answer is the archive itself
/// (`application/gzip`, file name in `Content-Disposition`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainPackQuery {
    /// Include the admin token in the archive.
    #[serde(default)]
    pub include_secrets: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_carry_the_agent_endpoint_and_older_ones_still_parse() {
        let old: AgentReport = serde_json::from_str(r#"{"servers":[],"mode":"managed"}"#)
            .expect("a report without the endpoint");
        assert_eq!(
            (old.address, old.agent_port, old.version),
            (None, None, None)
        );
        // A newer agent's report with fields this version does not know.
        let newer: AgentReport =
            serde_json::from_str(r#"{"servers":[],"load_average":0.5}"#).expect("newer report");
        assert!(newer.servers.is_empty());
        let new = AgentReport {
            servers: Vec::new(),
            mode: None,
            independent_since_ms: None,
            drift: Vec::new(),
            address: Some("10.0.0.5".into()),
            agent_port: Some(7071),
            version: Some("1.0.0".into()),
            instance_id: None,
            membership_port: None,
            peers: None,
            apps: Vec::new(),
        };
        let text = serde_json::to_string(&new).expect("json");
        assert_eq!(
            text,
            r#"{"servers":[],"address":"10.0.0.5","agent_port":7071,"version":"1.0.0"}"#
        );
        assert_eq!(
            serde_json::from_str::<AgentReport>(&text).expect("parse"),
            new
        );
    }

    #[test]
    fn a_document_tree_reads_back_as_raw_documents_with_the_same_values() {
        let tree = DocumentTree {
            version: 3,
            revision: 9,
            documents: [
                (
                    "/nodes/n1/node.json".to_string(),
                    serde_json::json!({"name": "n1"}),
                ),
                ("/x".to_string(), serde_json::json!({"a": [1, {"b": null}]})),
            ]
            .into_iter()
            .collect(),
        };
        let text = serde_json::to_string(&tree).expect("json");
        let raw: RawDocumentTree = serde_json::from_str(&text).expect("raw tree");
        assert_eq!((raw.version, raw.revision), (3, 9));
        let values: std::collections::BTreeMap<String, serde_json::Value> = raw
            .documents
            .iter()
            .map(|(path, doc)| {
                let value = serde_json::from_str(doc.get()).expect("each document is JSON");
                (path.clone(), value)
            })
            .collect();
        assert_eq!(values, tree.documents);
        let unknown = r#"{"documents":{},"extra":1}"#;
        assert!(serde_json::from_str::<RawDocumentTree>(unknown).is_err());
    }
}

/// An API token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// `tok-` and 12 hex digits; the part of the token before the `.`.
    pub id: String,
    pub role: dure_core::access::Role,
    pub description: String,
    pub created_ms: u64,
    /// Who created it (the creating token's actor name).
    pub created_by: String,
    /// When it stops being accepted; `None`: never.
    #[serde(default)]
    pub expires_ms: Option<u64>,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_ms: Option<u64>,
    #[serde(default)]
    pub revoked_by: Option<String>,
    /// For a join token: the node whose agent may join with it, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// For a join token: when an agent joined with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_ms: Option<u64>,
}

/// Answer of `GET /v1/whoami`: the caller's own token as the controller
/// resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// The token's id (`tok-…`), or `admin` for the bootstrap token.
    pub id: String,
    pub description: String,
    pub role: dure_core::access::Role,
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub role: dure_core::access::Role,
    /// How long the token is accepted; `None`: until revoked.
    #[serde(default)]
    pub ttl: Option<dure_core::DurationSpec>,
    /// What the token is for; recorded as part of the actor of every
    /// event and history record it causes.
    #[serde(default)]
    pub description: String,
    /// A one-time join token for this node's agent instead of an API
    /// token (`role` is then ignored; the ttl defaults to 15 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Body of `POST /v1/agent/join`, sent with a join token as the bearer
/// token: the node and a certificate request for the agent's new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node: String,
    /// A PEM `CERTIFICATE REQUEST`; only its key is used.
    pub csr_pem: String,
}

/// Body of `POST /v1/agent/nodes/{node}/certificate`, sent with the
/// node's current certificate: a request for a new key, before the
/// current certificate expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

/// Answer of a join or a renewal: the node certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    pub node: String,
    /// The certificate and the CA certificate after it, PEM.
    pub cert_pem: String,
    /// When it stops being valid.
    pub not_after_ms: u64,
}

/// Answer of `POST /v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token to send: `<id>.<secret>`.
    pub token: String,
}

/// One line of the audit log: a mutating or denied API call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the call ended, RFC 3339 UTC.
    pub time: String,
    pub time_ms: u64,
    /// Also sent back to the caller as `X-Request-Id`.
    pub request_id: String,
    /// The actor's name (`tok-… (description)`, `admin`); `None` when the
    /// token was missing or not valid.
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub actor_id: Option<String>,
    #[serde(default)]
    pub role: Option<dure_core::access::Role>,
    /// The caller's address, `IP:PORT`.
    #[serde(default)]
    pub source: Option<String>,
    pub method: String,
    /// The request's path, without its query.
    pub path: String,
    /// What the call is about: `servers/web1`, `tokens/tok-…`, `config/apply`.
    pub target: String,
    /// The answer's HTTP status.
    pub status: u16,
    /// Refused by the authorization check (401 or 403).
    pub denied: bool,
    /// Why it was refused, for denied calls.
    #[serde(default)]
    pub error: Option<String>,
}

/// Query of `GET /v1/audit`: the newest matching lines, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only lines of the last D (`1h`, `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<dure_core::DurationSpec>,
    /// Only lines of this actor: a token id, or an actor name such as `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only denied calls.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub denied: bool,
    /// At most this many (default 100, at most 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// An application version a server must have (`DesiredNode::apps`): staged
/// — fetched from the controller, its SHA-256 checked, ready beside the
/// application directory — and, once `activate`, installed in place of
/// the version before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInstall {
    pub server: String,
    pub context: String,
    pub version: u64,
    pub digest: String,
    pub size: u64,
    pub kind: ArtifactKind,
    /// Installed in place (the server is stopped), not only staged.
    #[serde(default)]
    pub activate: bool,
}

/// What a server has of one of its applications (`AgentReport::apps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppObserved {
    pub server: String,
    pub context: String,
    /// The version in the application directory, and its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_digest: Option<String>,
    /// The version staged, ready to be installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<u64>,
    /// Why the version asked for could not be staged or installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AppFailure>,
}

/// A version that could not be staged or installed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppFailure {
    pub version: u64,
    pub message: String,
}

/// Answer of `POST /v1/artifacts`: where the upload is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactStored {
    /// SHA-256 of the bytes, lowercase hex: the artifact's name.
    pub digest: String,
    pub size: u64,
    pub kind: ArtifactKind,
}

/// Body of `POST /v1/clusters/{name}/apps`: deploy an uploaded artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Context path, such as `/shop`; `/` is the root.
    pub context: String,
    /// The digest `POST /v1/artifacts` answered.
    pub digest: String,
    /// Batch by batch through the balancers' drain; otherwise every member
    /// at once.
    #[serde(default)]
    pub rolling: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// Body of `POST /v1/clusters/{name}/apps/rollback`: deploy an earlier
/// version's artifact again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRollbackRequest {
    /// The version to go back to.
    pub to: u64,
    #[serde(default)]
    pub rolling: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// Answer of a deploy or a rollback: the new version and the operation
/// installing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployStarted {
    pub version: AppVersion,
    pub operation: Operation,
}

/// An application version as history shows it: the record and how its
/// operation went (`None` once the operation record was trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppVersionView {
    #[serde(flatten)]
    pub record: AppVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OperationStatus>,
}

/// One member's copy of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMemberView {
    pub server: String,
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AppFailure>,
}

/// One context of a cluster: its newest version and each member's copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    pub context: String,
    pub newest: AppVersionView,
    pub members: Vec<AppMemberView>,
}
