//! Route paths of the API, shared by the server's router and the client so
//! the two can never disagree.
//!
//! Names given to these functions are percent-encoded as one path segment:
//! a name with `/`, `?` or `#` (which the naming rule refuses) then reaches
//! the controller whole and is refused there, instead of silently naming
//! another resource.

use dure_core::access::Permission;
use std::fmt::Write;

pub const PREFIX: &str = "/v1";

/// `name` as one path segment: every byte but letters, digits, `-` and `_`
/// percent-encoded.
pub fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `pattern` with each `{…}` parameter replaced, in order, by the next of
/// `names` as one path segment.
fn fill(pattern: &str, names: &[&str]) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut names = names.iter();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&names.next().map(|n| segment(n)).unwrap_or_default());
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

// Route patterns, in the router's `{param}` syntax: the controller's router
// serves these and the functions below fill them in for the client.
pub const NODE: &str = "/v1/nodes/{name}";
/// A node's own view of its peers' membership.
pub const NODE_PEERS: &str = "/v1/nodes/{name}/peers";
pub const SERVER: &str = "/v1/servers/{name}";
pub const SERVER_LOGS: &str = "/v1/servers/{name}/logs";
/// The configuration files Dure generates for a templated server.
pub const SERVER_CONFIG: &str = "/v1/servers/{name}/config";
pub const SERVER_ACTION: &str = "/v1/servers/{name}/{action}";
pub const CLUSTER: &str = "/v1/clusters/{name}";
pub const CLUSTER_MEMBERS: &str = "/v1/clusters/{name}/members";
pub const CLUSTER_MEMBER: &str = "/v1/clusters/{name}/members/{server}";
pub const CLUSTER_ACTION: &str = "/v1/clusters/{name}/{action}";
pub const CLUSTER_BALANCE: &str = "/v1/clusters/{name}/balance";
/// A cluster's application server settings (session replication,
/// transaction peer recovery).
pub const CLUSTER_SERVERS: &str = "/v1/clusters/{name}/servers";
pub const LB: &str = "/v1/lbs/{name}";
pub const LB_ROUTES: &str = "/v1/lbs/{name}/routes";
pub const LB_ROUTES_REMOVE: &str = "/v1/lbs/{name}/routes/remove";
pub const LB_TABLE: &str = "/v1/lbs/{name}/table";
/// A running balancer instance's figures, posted every second.
pub const LB_REPORT: &str = "/v1/lbs/{name}/report";
/// The figures of a balancer's live instances and their sum.
pub const LB_STATS: &str = "/v1/lbs/{name}/stats";
pub const OPERATION: &str = "/v1/operations/{id}";
/// A cluster's applications: `GET` each context's newest version and each
/// member's copy, `POST` deploys an uploaded artifact.
pub const CLUSTER_APPS: &str = "/v1/clusters/{name}/apps";
/// Every application version of a cluster, newest first.
pub const CLUSTER_APPS_HISTORY: &str = "/v1/clusters/{name}/apps/history";
/// Deploys an earlier application version's artifact again.
pub const CLUSTER_APPS_ROLLBACK: &str = "/v1/clusters/{name}/apps/rollback";
/// Uploads an artifact (the body, streamed), stored by its SHA-256.
pub const ARTIFACTS: &str = "/v1/artifacts";
/// An agent fetches an artifact by its SHA-256 to install it.
pub const AGENT_ARTIFACT: &str = "/v1/agent/artifacts/{digest}";
pub const AGENT_DESIRED: &str = "/v1/agent/nodes/{node}/desired";
pub const AGENT_REPORT: &str = "/v1/agent/nodes/{node}/report";
/// A node's agent trades a certificate request for a new certificate.
pub const AGENT_CERTIFICATE: &str = "/v1/agent/nodes/{node}/certificate";
/// An agent's first call: a join token for its node certificate.
pub const AGENT_JOIN: &str = "/v1/agent/join";
/// The parameter of agent routes naming the node the call is about.
pub const NODE_PARAM: &str = "{node}";

pub fn server(name: &str) -> String {
    fill(SERVER, &[name])
}
pub fn server_action(name: &str, action: &str) -> String {
    fill(SERVER_ACTION, &[name, action])
}
pub fn server_config(name: &str) -> String {
    fill(SERVER_CONFIG, &[name])
}
pub fn cluster_servers(name: &str) -> String {
    fill(CLUSTER_SERVERS, &[name])
}
pub fn cluster(name: &str) -> String {
    fill(CLUSTER, &[name])
}
pub fn cluster_action(name: &str, action: &str) -> String {
    fill(CLUSTER_ACTION, &[name, action])
}
pub fn cluster_member(cluster: &str, server: &str) -> String {
    fill(CLUSTER_MEMBER, &[cluster, server])
}
pub fn cluster_balance(name: &str) -> String {
    fill(CLUSTER_BALANCE, &[name])
}
pub fn lb(name: &str) -> String {
    fill(LB, &[name])
}
pub fn lb_routes(name: &str) -> String {
    fill(LB_ROUTES, &[name])
}
pub fn lb_routes_remove(name: &str) -> String {
    fill(LB_ROUTES_REMOVE, &[name])
}
pub fn lb_table(name: &str) -> String {
    fill(LB_TABLE, &[name])
}
pub fn lb_report(name: &str) -> String {
    fill(LB_REPORT, &[name])
}
pub fn lb_stats(name: &str) -> String {
    fill(LB_STATS, &[name])
}
pub fn node(name: &str) -> String {
    fill(NODE, &[name])
}
pub fn node_peers(name: &str) -> String {
    fill(NODE_PEERS, &[name])
}
pub fn operation(id: &str) -> String {
    fill(OPERATION, &[id])
}
pub fn cluster_apps(name: &str) -> String {
    fill(CLUSTER_APPS, &[name])
}
pub fn cluster_apps_history(name: &str) -> String {
    fill(CLUSTER_APPS_HISTORY, &[name])
}
pub fn cluster_apps_rollback(name: &str) -> String {
    fill(CLUSTER_APPS_ROLLBACK, &[name])
}
pub fn agent_artifact(digest: &str) -> String {
    fill(AGENT_ARTIFACT, &[digest])
}
pub fn agent_desired(node: &str) -> String {
    fill(AGENT_DESIRED, &[node])
}
pub fn agent_report(node: &str) -> String {
    fill(AGENT_REPORT, &[node])
}
pub fn agent_certificate(node: &str) -> String {
    fill(AGENT_CERTIFICATE, &[node])
}
pub const AGENT_REGISTER: &str = "/v1/agent/register";
pub const HEALTH: &str = "/v1/health";
pub const NODES: &str = "/v1/nodes";
pub const SERVERS: &str = "/v1/servers";
pub const CLUSTERS: &str = "/v1/clusters";
pub const LBS: &str = "/v1/lbs";
/// The figures of every balancer with a live instance (not under `/v1/lbs/`,
/// where it would take the place of a balancer named `stats`).
pub const LB_STATS_ALL: &str = "/v1/lb-stats";
pub const OPERATIONS: &str = "/v1/operations";
pub const EVENTS: &str = "/v1/events";
/// Server-Sent Events: the event log live, resumable with `Last-Event-ID`.
pub const EVENTS_STREAM: &str = "/v1/events/stream";
pub const CHANGES: &str = "/v1/changes";
pub const CHANGES_SAVE: &str = "/v1/changes/save";
pub const CHANGES_DISCARD: &str = "/v1/changes/discard";
pub const CONFIG_HISTORY: &str = "/v1/config/history";
pub const CONFIG_DOCUMENTS: &str = "/v1/config/documents";
pub const CONFIG_DIFF: &str = "/v1/config/diff";
pub const CONFIG_ROLLBACK: &str = "/v1/config/rollback";
pub const CONFIG_APPLY: &str = "/v1/config/apply";
pub const DOMAIN_PACK: &str = "/v1/domain/pack";
/// A new membership key, rolled out to agents with a grace window.
pub const DOMAIN_ROTATE_KEY: &str = "/v1/domain/rotate-key";
/// API tokens with roles: list and create.
pub const TOKENS: &str = "/v1/tokens";
/// One API token: `DELETE` revokes it (the record stays, refused).
pub const TOKEN: &str = "/v1/tokens/{id}";
/// The audit log: mutating and denied calls.
pub const AUDIT: &str = "/v1/audit";
/// Who the caller's token is: its id, description and role, so a client
/// (the console) can leave out what the role may not do.
pub const WHOAMI: &str = "/v1/whoami";

pub fn token(id: &str) -> String {
    fill(TOKEN, &[id])
}

/// An HTTP method a route is served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    /// The method of a request's method name; `HEAD` is served as `GET`.
    pub fn of(name: &str) -> Option<Method> {
        match name {
            "GET" | "HEAD" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }
}

/// One route of the controller's API: what it is, what it requires, and
/// whether its calls go to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub pattern: &'static str,
    pub permission: Permission,
    /// Reports that arrive every second from every agent and balancer:
    /// audited only when denied, so they do not rotate real actions away.
    pub heartbeat: bool,
}

impl Route {
    const fn new(method: Method, pattern: &'static str, permission: Permission) -> Route {
        Route {
            method,
            pattern,
            permission,
            heartbeat: false,
        }
    }

    const fn heartbeat(self) -> Route {
        Route {
            heartbeat: true,
            ..self
        }
    }

    /// Whether an allowed call is written to the audit log: every call
    /// that may change something (but heartbeats) and every admin call
    /// (tokens, the audit log itself, domain packs holding everything).
    pub fn audited(&self) -> bool {
        !self.heartbeat && (self.method != Method::Get || self.permission == Permission::Admin)
    }

    /// The node a call of this route is about: the `{node}` segment of
    /// `path` (as sent, percent-encoded), if the pattern has one.
    pub fn node_segment<'a>(&self, path: &'a str) -> Option<&'a str> {
        let at = self.pattern.split('/').position(|s| s == NODE_PARAM)?;
        path.split('/').nth(at)
    }

    /// The route of a request: its method and the pattern it matched.
    pub fn find(method: &str, pattern: &str) -> Option<&'static Route> {
        let method = Method::of(method)?;
        TABLE
            .iter()
            .find(|route| route.method == method && route.pattern == pattern)
    }
}

use Method::{Delete as DELETE, Get as GET, Post as POST, Put as PUT};
use Permission::{
    Admin as ADMIN, Configure as CONFIGURE, Join as JOIN, Node as NODE_LINK, Operate as OPERATE,
    Public as PUBLIC, Read as READ,
};

/// Every route the controller serves with the permission it requires: the
/// router is built from this table (a route missing here is not served)
/// and the access matrix test walks it, so no route goes unchecked.
pub const TABLE: &[Route] = &[
    Route::new(GET, HEALTH, PUBLIC),
    Route::new(GET, NODES, READ),
    Route::new(POST, NODES, CONFIGURE),
    Route::new(GET, NODE, READ),
    Route::new(PUT, NODE, CONFIGURE),
    Route::new(DELETE, NODE, CONFIGURE),
    Route::new(GET, NODE_PEERS, READ),
    Route::new(GET, SERVERS, READ),
    Route::new(POST, SERVERS, CONFIGURE),
    Route::new(GET, SERVER, READ),
    Route::new(PUT, SERVER, CONFIGURE),
    Route::new(DELETE, SERVER, CONFIGURE),
    Route::new(GET, SERVER_LOGS, READ),
    Route::new(GET, SERVER_CONFIG, READ),
    Route::new(POST, SERVER_ACTION, OPERATE),
    Route::new(GET, CLUSTERS, READ),
    Route::new(POST, CLUSTERS, CONFIGURE),
    Route::new(GET, CLUSTER, READ),
    Route::new(DELETE, CLUSTER, CONFIGURE),
    Route::new(POST, CLUSTER_MEMBERS, CONFIGURE),
    Route::new(DELETE, CLUSTER_MEMBER, CONFIGURE),
    Route::new(POST, CLUSTER_ACTION, OPERATE),
    Route::new(GET, CLUSTER_BALANCE, READ),
    Route::new(PUT, CLUSTER_BALANCE, CONFIGURE),
    Route::new(PUT, CLUSTER_SERVERS, CONFIGURE),
    Route::new(GET, CLUSTER_APPS, READ),
    Route::new(POST, CLUSTER_APPS, CONFIGURE),
    Route::new(GET, CLUSTER_APPS_HISTORY, READ),
    Route::new(POST, CLUSTER_APPS_ROLLBACK, CONFIGURE),
    Route::new(POST, ARTIFACTS, CONFIGURE),
    Route::new(GET, LBS, READ),
    Route::new(POST, LBS, CONFIGURE),
    Route::new(GET, LB, READ),
    Route::new(PUT, LB, CONFIGURE),
    Route::new(DELETE, LB, CONFIGURE),
    Route::new(POST, LB_ROUTES, CONFIGURE),
    Route::new(POST, LB_ROUTES_REMOVE, CONFIGURE),
    Route::new(GET, LB_TABLE, READ),
    Route::new(POST, LB_REPORT, OPERATE).heartbeat(),
    Route::new(GET, LB_STATS, READ),
    Route::new(GET, LB_STATS_ALL, READ),
    Route::new(GET, OPERATIONS, READ),
    Route::new(GET, OPERATION, READ),
    Route::new(GET, EVENTS, READ),
    Route::new(GET, EVENTS_STREAM, READ),
    Route::new(GET, CHANGES, READ),
    Route::new(DELETE, CHANGES, CONFIGURE),
    Route::new(POST, CHANGES_SAVE, CONFIGURE),
    Route::new(POST, CHANGES_DISCARD, CONFIGURE),
    Route::new(GET, CONFIG_HISTORY, READ),
    Route::new(GET, CONFIG_DOCUMENTS, READ),
    Route::new(GET, CONFIG_DIFF, READ),
    Route::new(POST, CONFIG_ROLLBACK, CONFIGURE),
    Route::new(POST, CONFIG_APPLY, CONFIGURE),
    Route::new(GET, DOMAIN_PACK, ADMIN),
    Route::new(POST, DOMAIN_ROTATE_KEY, ADMIN),
    Route::new(GET, TOKENS, ADMIN),
    Route::new(POST, TOKENS, ADMIN),
    Route::new(DELETE, TOKEN, ADMIN),
    Route::new(GET, AUDIT, ADMIN),
    Route::new(GET, WHOAMI, READ),
    Route::new(POST, AGENT_REGISTER, NODE_LINK),
    Route::new(GET, AGENT_DESIRED, NODE_LINK),
    Route::new(POST, AGENT_REPORT, NODE_LINK).heartbeat(),
    Route::new(GET, AGENT_ARTIFACT, NODE_LINK),
    Route::new(POST, AGENT_CERTIFICATE, NODE_LINK),
    Route::new(POST, AGENT_JOIN, JOIN),
];

/// Routes served by the agent itself (on its own port).
pub mod agent {
    pub fn logs(server: &str) -> String {
        super::fill(LOGS_PATTERN, &[server])
    }
    /// The router's pattern of [`logs`].
    pub const LOGS_PATTERN: &str = "/v1/logs/{server}";
    pub const STATUS: &str = "/v1/status";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_one_segment() {
        assert_eq!(server("web-1_a"), "/v1/servers/web-1_a");
        assert_eq!(server("a?b"), "/v1/servers/a%3Fb");
        assert_eq!(
            cluster_member("c/d", "x#y"),
            "/v1/clusters/c%2Fd/members/x%23y"
        );
        assert_eq!(node("é"), "/v1/nodes/%C3%A9");
        assert_eq!(agent::logs("a b"), "/v1/logs/a%20b");
        assert_eq!(
            agent::LOGS_PATTERN.replace("{server}", "web1"),
            agent::logs("web1")
        );
        assert_eq!(server_action("w", "start"), "/v1/servers/w/start");
        assert_eq!(agent_report("n1"), "/v1/agent/nodes/n1/report");
        let report = Route::find("POST", AGENT_REPORT).expect("route");
        assert_eq!(report.node_segment(&agent_report("n1")), Some("n1"));
        assert_eq!(
            Route::find("GET", NODE)
                .expect("route")
                .node_segment("/v1/nodes/n1"),
            None
        );
        assert_eq!(operation("op-3"), "/v1/operations/op-3");
    }

    #[test]
    fn every_route_is_declared_once() {
        for (i, route) in TABLE.iter().enumerate() {
            let again = TABLE[i + 1..]
                .iter()
                .any(|r| r.method == route.method && r.pattern == route.pattern);
            assert!(!again, "{route:?} is declared twice");
            assert_eq!(
                Route::find(route.method.as_str(), route.pattern),
                Some(route)
            );
        }
        assert_eq!(
            Route::find("HEAD", NODES).map(|r| r.permission),
            Some(Permission::Read)
        );
        assert!(Route::find("PATCH", NODES).is_none());
        assert!(Route::find(POST.as_str(), LB_REPORT).is_some_and(|r| !r.audited()));
        assert!(Route::find(GET.as_str(), TOKENS).is_some_and(|r| r.audited()));
        assert!(Route::find(GET.as_str(), NODES).is_some_and(|r| !r.audited()));
    }

    #[test]
    fn no_call_that_changes_something_is_open_to_readers() {
        for route in TABLE {
            if route.method != GET {
                assert!(
                    !matches!(route.permission, PUBLIC | READ),
                    "{route:?} changes something: it needs more than {}",
                    route.permission
                );
            }
        }
        let public: Vec<&str> = TABLE
            .iter()
            .filter(|r| r.permission == PUBLIC)
            .map(|r| r.pattern)
            .collect();
        assert_eq!(public, [HEALTH], "only liveness is public");
    }
}
