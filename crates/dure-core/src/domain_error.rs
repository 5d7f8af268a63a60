//! Why the domain refused a configuration: one variant per rule, with the
//! names and values involved as fields, so callers can tell the cases apart
//! (the API maps each to a status, the CLI adds the flag that fixes it).
//! Messages speak only of the domain: documents, nodes, servers, clusters,
//! ports; never of flags or HTTP.

use crate::name::{NameError, NameKind};

/// How a refused edit should be reported (maps to HTTP 400 / 404 / 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The input itself breaks a rule.
    Invalid,
    /// The input names something that does not exist.
    NotFound,
    /// The input is well formed but clashes with what exists.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Name(#[from] NameError),

    // Documents.
    #[error("document `{path}` is invalid: {reason}")]
    DocumentInvalid { path: String, reason: String },
    #[error("/domain.json is invalid: {reason}")]
    SettingsInvalid { reason: String },
    #[error("`{path}` is not a known document path: use /domain.json, /nodes/<node>/node.json, /nodes/<node>/servers/<server>/server.json, /clusters/<cluster>/cluster.json or /lbs/<lb>/lb.json")]
    UnknownDocumentPath { path: String },
    #[error("document `{path}` names an object that belongs at `{expected}`")]
    MisplacedDocument { path: String, expected: String },
    #[error("document `{path}` defines server `{server}`, which `{other_path}` defines too: server names are unique in the domain")]
    ServerDefinedTwice {
        path: String,
        server: String,
        other_path: String,
    },

    // Any object.
    #[error("{kind} `{name}` does not exist")]
    NotFound { kind: NameKind, name: String },
    #[error("{kind} `{name}` already exists")]
    AlreadyExists { kind: NameKind, name: String },

    // Nodes.
    #[error("node `{node}` address `{address}` is invalid: give a host name (such as db1.example.com) or an IP address")]
    NodeAddressInvalid { node: String, address: String },
    #[error("node `{node}` cannot be its own backup")]
    OwnBackup { node: String },
    #[error("node `{node}` is a backup of node `{primary}`, which does not exist")]
    BackupOfUnknownNode { node: String, primary: String },
    #[error("node `{node}` still has server `{server}`; delete its servers first")]
    NodeHasServers { node: String, server: String },
    #[error(
        "node `{node}` has backup node `{backup}`; give `{backup}` another primary (or none) first"
    )]
    NodeHasBackup { node: String, backup: String },
    #[error("node `{node}` cannot be a backup of node `{primary}`: `{primary}` is itself a backup of `{primary_of}`, and backups neither chain nor form cycles")]
    BackupChain {
        node: String,
        primary: String,
        primary_of: String,
    },
    #[error("node `{node}` cannot be a backup of node `{primary}`: node `{other}` already is, and a node has one backup")]
    BackupTaken {
        node: String,
        primary: String,
        other: String,
    },
    #[error("node `{backup}` cannot take over server `{server}` of node `{primary}`, whose backup it is: port {port} is also used by its own server `{own}`")]
    BackupPortClash {
        backup: String,
        primary: String,
        server: String,
        port: u16,
        own: String,
    },
    #[error("node `{from}` is already named `{to}`")]
    RenameToSameName { from: String, to: String },

    // Servers.
    #[error("server `{server}` is placed on node `{node}`, which does not exist; start that node's agent or create the node first")]
    ServerOnUnknownNode { server: String, node: String },
    #[error("server `{server}` has no command: give the program and its arguments")]
    NoCommand { server: String },
    #[error("server `{server}` command contains a NUL byte")]
    NulInCommand { server: String },
    #[error("server `{server}` environment variable name `{key}` is invalid: it must be non-empty without `=`")]
    EnvNameInvalid { server: String, key: String },
    #[error("server `{server}` environment value of `{key}` contains a NUL byte")]
    NulInEnvValue { server: String, key: String },
    #[error("server `{server}` working directory `{dir}` must be an absolute path")]
    DirNotAbsolute { server: String, dir: String },
    #[error("server `{server}` application directory `{dir}` must be an absolute path")]
    AppDirNotAbsolute { server: String, dir: String },
    #[error("server `{server}` port `{port_name}` is 0: give a port from 1 to 65535")]
    PortZero { server: String, port_name: String },
    #[error("server `{server}` uses port {port} twice (`{first}` and `{second}`)")]
    PortTwice {
        server: String,
        port: u16,
        first: String,
        second: String,
    },
    #[error("server `{server}` port {port} is already used by `{other}` on node `{node}`")]
    PortInUse {
        server: String,
        port: u16,
        other: String,
        node: String,
    },
    #[error("server `{server}` readiness check `{check}` uses port `{port_name}`, which the server does not define; define port `{port_name}` or check another")]
    ReadyPortUndefined {
        server: String,
        check: String,
        port_name: String,
    },
    #[error("server `{server}` {what} must be greater than 0")]
    DurationZero { server: String, what: &'static str },
    #[error("server `{server}` stop command is empty")]
    StopCommandEmpty { server: String },
    #[error("server `{server}` weight {weight} is too large: use 0 to {max}")]
    WeightTooLarge {
        server: String,
        weight: u32,
        max: u32,
    },
    #[error(
        "server `{server}` uses template `{template}`, which decides the command: give no command"
    )]
    TemplateWithCommand { server: String, template: String },
    #[error("server `{server}` uses template `{template}`, which needs port `{port}`: define it")]
    TemplatePortMissing {
        server: String,
        template: String,
        port: &'static str,
    },
    #[error("server `{server}` template `{template}` setting `{setting}` is invalid: {reason}")]
    TemplateSettingInvalid {
        server: String,
        template: String,
        setting: &'static str,
        reason: String,
    },
    #[error(
        "server `{server}` is a member of cluster `{cluster}`; remove it from the cluster first"
    )]
    ServerInCluster { server: String, cluster: String },

    // Clusters.
    #[error("cluster `{cluster}` has no members: a cluster needs at least one (delete the cluster instead)")]
    NoMembers { cluster: String },
    #[error("cluster `{cluster}` member `{member}` is not a server; create it first")]
    MemberNotServer { cluster: String, member: String },
    #[error("cluster `{cluster}` lists member `{member}` twice")]
    MemberTwice { cluster: String, member: String },
    #[error("server `{server}` is already a member of cluster `{cluster}`; a server belongs to at most one cluster")]
    MemberElsewhere { server: String, cluster: String },
    #[error("position {position} is past the end of cluster `{cluster}` ({members} members)")]
    PositionPastEnd {
        cluster: String,
        position: usize,
        members: usize,
    },
    #[error("server `{server}` is not a member of cluster `{cluster}`")]
    NotAMember { cluster: String, server: String },
    #[error("cluster `{cluster}` is routed to by balancer `{lb}`; remove its routes first")]
    ClusterRoutedBy { cluster: String, lb: String },
    #[error("cluster `{cluster}` backup `{server}` is not a member of the cluster")]
    BackupNotMember { cluster: String, server: String },
    #[error("cluster `{cluster}` balancing setting is invalid: {reason}")]
    BalanceInvalid { cluster: String, reason: String },
    #[error("cluster `{cluster}` replicates sessions, but member `{server}` is not a tomcat server: give it --template tomcat or turn replication off")]
    ReplicationNeedsTomcat { cluster: String, server: String },
    #[error("cluster `{cluster}` replicates sessions, but member `{server}` has no `replication` port: define one")]
    ReplicationNeedsPort { cluster: String, server: String },
    #[error("cluster `{cluster}` replicates sessions, but node `{node}` of member `{server}` has no address for the other members to reach it: give the node an address")]
    ReplicationNeedsAddress {
        cluster: String,
        server: String,
        node: String,
    },
    #[error("cluster `{cluster}` transaction peer recovery is refused: {reason}")]
    PeerRecoveryInvalid { cluster: String, reason: String },
    #[error("cluster `{cluster}` sticky cookie name `{cookie}` is invalid: use letters, digits and `-`, `_`, `.`")]
    CookieNameInvalid { cluster: String, cookie: String },

    // Balancers.
    #[error("balancer `{lb}` has no listeners: give at least one address to listen on")]
    NoListeners { lb: String },
    #[error("balancer `{lb}` listen address `{listen}` is invalid: give IP:PORT, such as 0.0.0.0:8080 or [::]:443, with a port from 1 to 65535")]
    ListenAddressInvalid { lb: String, listen: String },
    #[error("balancer `{lb}` listens on `{listen}` twice")]
    ListenerTwice { lb: String, listen: String },
    #[error("balancer `{lb}` listener `{listen}` TLS {what} path `{path}` must be absolute")]
    TlsPathNotAbsolute {
        lb: String,
        listen: String,
        what: &'static str,
        path: String,
    },
    #[error(
        "balancer `{lb}` route host `{host}` is invalid: give a host name such as shop.example.com"
    )]
    RouteHostInvalid { lb: String, host: String },
    #[error("balancer `{lb}` route path `{path}` is invalid: give a path prefix starting with `/`, without spaces, `?` or `#`")]
    RoutePathInvalid { lb: String, path: String },
    #[error("balancer `{lb}` routes to cluster `{cluster}`, which does not exist; create the cluster first")]
    RouteToUnknownCluster { lb: String, cluster: String },
    #[error("balancer `{lb}` listener `{listen}` has route `{route}` twice")]
    RouteTwice {
        lb: String,
        listen: String,
        route: String,
    },
    #[error("balancer `{lb}` has no listener `{listen}`")]
    NoSuchListener { lb: String, listen: String },
    #[error("balancer `{lb}` has {count} listeners: say which one the route is on")]
    ListenerAmbiguous { lb: String, count: usize },
    #[error("balancer `{lb}` listener `{listen}` has no route `{route}`")]
    NoSuchRoute {
        lb: String,
        listen: String,
        route: String,
    },

    // Read, change, write back.
    #[error(
        "{what} changed since it was read (another change came first): read it again and retry"
    )]
    ChangedSinceRead { what: String },
}

impl DomainError {
    pub fn class(&self) -> ErrorClass {
        use DomainError::*;
        match self {
            NotFound { .. } => ErrorClass::NotFound,
            AlreadyExists { .. }
            | PortInUse { .. }
            | MemberElsewhere { .. }
            | NodeHasServers { .. }
            | NodeHasBackup { .. }
            | BackupPortClash { .. }
            | ServerInCluster { .. }
            | ClusterRoutedBy { .. }
            | ListenerTwice { .. }
            | RouteTwice { .. }
            | ChangedSinceRead { .. } => ErrorClass::Conflict,
            NoSuchListener { .. } | NoSuchRoute { .. } => ErrorClass::NotFound,
            Name(_)
            | DocumentInvalid { .. }
            | UnknownDocumentPath { .. }
            | SettingsInvalid { .. }
            | MisplacedDocument { .. }
            | ServerDefinedTwice { .. }
            | NodeAddressInvalid { .. }
            | OwnBackup { .. }
            | BackupOfUnknownNode { .. }
            | BackupChain { .. }
            | BackupTaken { .. }
            | RenameToSameName { .. }
            | ServerOnUnknownNode { .. }
            | NoCommand { .. }
            | NulInCommand { .. }
            | EnvNameInvalid { .. }
            | NulInEnvValue { .. }
            | DirNotAbsolute { .. }
            | AppDirNotAbsolute { .. }
            | PortZero { .. }
            | PortTwice { .. }
            | ReadyPortUndefined { .. }
            | DurationZero { .. }
            | StopCommandEmpty { .. }
            | WeightTooLarge { .. }
            | NoMembers { .. }
            | MemberNotServer { .. }
            | MemberTwice { .. }
            | PositionPastEnd { .. }
            | NotAMember { .. }
            | BackupNotMember { .. }
            | BalanceInvalid { .. }
            | CookieNameInvalid { .. }
            | TemplateWithCommand { .. }
            | TemplatePortMissing { .. }
            | TemplateSettingInvalid { .. }
            | ReplicationNeedsTomcat { .. }
            | ReplicationNeedsPort { .. }
            | ReplicationNeedsAddress { .. }
            | PeerRecoveryInvalid { .. }
            | NoListeners { .. }
            | ListenAddressInvalid { .. }
            | TlsPathNotAbsolute { .. }
            | RouteHostInvalid { .. }
            | RoutePathInvalid { .. }
            | RouteToUnknownCluster { .. }
            | ListenerAmbiguous { .. } => ErrorClass::Invalid,
        }
    }
}
