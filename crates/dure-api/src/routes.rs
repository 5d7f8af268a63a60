//! Route paths of the API, shared by the server's router and the client so
//! the two can never disagree.

pub const PREFIX: &str = "/v1";

pub fn server(name: &str) -> String {
    format!("/v1/servers/{name}")
}
pub fn server_action(name: &str, action: &str) -> String {
    format!("/v1/servers/{name}/{action}")
}
pub fn cluster(name: &str) -> String {
    format!("/v1/clusters/{name}")
}
pub fn cluster_action(name: &str, action: &str) -> String {
    format!("/v1/clusters/{name}/{action}")
}
pub fn cluster_member(cluster: &str, server: &str) -> String {
    format!("/v1/clusters/{cluster}/members/{server}")
}
pub fn node(name: &str) -> String {
    format!("/v1/nodes/{name}")
}
pub fn operation(id: &str) -> String {
    format!("/v1/operations/{id}")
}
pub fn agent_desired(node: &str) -> String {
    format!("/v1/agent/nodes/{node}/desired")
}
pub fn agent_report(node: &str) -> String {
    format!("/v1/agent/nodes/{node}/report")
}
pub const AGENT_REGISTER: &str = "/v1/agent/register";
pub const HEALTH: &str = "/v1/health";
pub const NODES: &str = "/v1/nodes";
pub const SERVERS: &str = "/v1/servers";
pub const CLUSTERS: &str = "/v1/clusters";
pub const OPERATIONS: &str = "/v1/operations";
pub const EVENTS: &str = "/v1/events";
pub const CHANGES: &str = "/v1/changes";
pub const CHANGES_SAVE: &str = "/v1/changes/save";
pub const CHANGES_DISCARD: &str = "/v1/changes/discard";
pub const CONFIG_HISTORY: &str = "/v1/config/history";
pub const CONFIG_DOCUMENTS: &str = "/v1/config/documents";
pub const CONFIG_DIFF: &str = "/v1/config/diff";
pub const CONFIG_ROLLBACK: &str = "/v1/config/rollback";
pub const CONFIG_APPLY: &str = "/v1/config/apply";
pub const DOMAIN_PACK: &str = "/v1/domain/pack";

/// Routes served by the agent itself (on its own port).
pub mod agent {
    pub fn logs(server: &str) -> String {
        format!("/v1/logs/{server}")
    }
    pub const STATUS: &str = "/v1/status";
}
