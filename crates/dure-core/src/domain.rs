//! The whole domain configuration in memory, the rules that span documents
//! (unique ports per node, one cluster per server, existing members) and the
//! edits an operator can make, each checked against those rules. Why an
//! edit is refused is a [`DomainError`] (in `domain_error`).

use crate::domain_settings::DomainSettings;
use crate::lb::LbSpec;
use crate::model::{canonical_json, paths, ClusterSpec, NodeSpec, ServerSpec, MAX_WEIGHT};
use crate::name::{validate_name, NameKind};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::domain_error::{DomainError, ErrorClass};

/// Every node, server, cluster and balancer, keyed by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domain {
    /// `/domain.json`; all defaults when the document is absent.
    pub settings: DomainSettings,
    pub nodes: BTreeMap<String, NodeSpec>,
    /// Private so every edit goes through `insert_server`/`remove_server`,
    /// which keep `servers_by_node` in step.
    servers: BTreeMap<String, ServerSpec>,
    pub clusters: BTreeMap<String, ClusterSpec>,
    /// Balancer definitions; their rules and edits are in `lb_rules`.
    pub lbs: BTreeMap<String, LbSpec>,
    /// Node name → names of the servers placed on it. Every woken agent
    /// asks for its node's servers after each save; without this index one
    /// save would cost nodes × all servers.
    servers_by_node: BTreeMap<String, BTreeSet<String>>,
}

impl Domain {
    /// Reads a domain from its documents: path → JSON, as bytes (canonical
    /// documents from the store) or as parsed values (an applied tree).
    pub fn from_documents<'a, S: DocumentSource>(
        docs: impl IntoIterator<Item = (&'a str, S)>,
    ) -> Result<Domain, DomainError> {
        let mut domain = Domain::default();
        for (path, source) in docs {
            let bad = |e: serde_json::Error| DomainError::DocumentInvalid {
                path: path.to_string(),
                reason: e.to_string(),
            };
            match paths::parse(path) {
                Some(paths::DocumentPath::Domain) => {
                    domain.settings = source.read().map_err(bad)?;
                }
                Some(paths::DocumentPath::Node { node }) => {
                    let spec: NodeSpec = source.read().map_err(bad)?;
                    expect_path(path, &paths::node(&spec.name), node == spec.name)?;
                    domain.nodes.insert(spec.name.clone(), spec);
                }
                Some(paths::DocumentPath::Server { node, server }) => {
                    let spec: ServerSpec = source.read().map_err(bad)?;
                    let matches = node == spec.node && server == spec.name;
                    expect_path(path, &paths::server(&spec.node, &spec.name), matches)?;
                    if let Some(other) = domain.insert_server(spec) {
                        return Err(DomainError::ServerDefinedTwice {
                            path: path.to_string(),
                            other_path: paths::server(&other.node, &other.name),
                            server: other.name,
                        });
                    }
                }
                Some(paths::DocumentPath::Cluster { cluster }) => {
                    let spec: ClusterSpec = source.read().map_err(bad)?;
                    expect_path(path, &paths::cluster(&spec.name), cluster == spec.name)?;
                    domain.clusters.insert(spec.name.clone(), spec);
                }
                Some(paths::DocumentPath::Lb { lb }) => {
                    let spec: LbSpec = source.read().map_err(bad)?;
                    expect_path(path, &paths::lb(&spec.name), lb == spec.name)?;
                    domain.lbs.insert(spec.name.clone(), spec);
                }
                None => {
                    return Err(DomainError::UnknownDocumentPath {
                        path: path.to_string(),
                    })
                }
            }
        }
        Ok(domain)
    }

    /// Every document of the domain, path → canonical JSON.
    pub fn documents(&self) -> BTreeMap<String, Vec<u8>> {
        let nodes = self
            .nodes
            .values()
            .map(|n| (paths::node(&n.name), canonical_json(n)));
        let servers = self
            .servers
            .values()
            .map(|s| (paths::server(&s.node, &s.name), canonical_json(s)));
        let clusters = self
            .clusters
            .values()
            .map(|c| (paths::cluster(&c.name), canonical_json(c)));
        let lbs = self
            .lbs
            .values()
            .map(|l| (paths::lb(&l.name), canonical_json(l)));
        let settings = (!self.settings.is_default())
            .then(|| (paths::DOMAIN.to_string(), canonical_json(&self.settings)));
        settings
            .into_iter()
            .chain(nodes)
            .chain(servers)
            .chain(clusters)
            .chain(lbs)
            .collect()
    }

    /// Checks every rule; returns every violation found (empty when valid).
    pub fn validate(&self) -> Vec<DomainError> {
        let mut errors = Vec::new();
        if let Err(e) = self.settings.membership.check() {
            errors.push(DomainError::SettingsInvalid {
                reason: e.to_string(),
            });
        }
        for node in self.nodes.values() {
            errors.extend(self.check_node(node).err());
            errors.extend(self.check_backup_ports(node));
        }
        // Each server is checked against the others on its node only (the
        // index keeps this linear in the number of servers; it runs on
        // every save).
        for server in self.servers.values() {
            errors.extend(self.check_server(server).err());
        }
        for cluster in self.clusters.values() {
            errors.extend(self.check_cluster(cluster).err());
        }
        for lb in self.lbs.values() {
            errors.extend(self.check_lb(lb).err());
        }
        errors
    }

    /// Returns the rule violations of this domain that `before` did not
    /// have: what an edit, a save or an apply broke. Problems the saved
    /// configuration already had do not block an unrelated change.
    pub fn new_problems(&self, before: &Domain) -> Vec<DomainError> {
        let old = before.validate();
        self.validate()
            .into_iter()
            .filter(|problem| !old.contains(problem))
            .collect()
    }

    /// The cluster `server` is a member of, if any.
    pub fn cluster_of(&self, server: &str) -> Option<&ClusterSpec> {
        self.clusters
            .values()
            .find(|c| c.members.iter().any(|m| m == server))
    }

    /// Every server, keyed by name. (Read-only: edits go through the
    /// methods below, which keep the by-node index in step.)
    pub fn servers(&self) -> &BTreeMap<String, ServerSpec> {
        &self.servers
    }

    /// Servers placed on `node`, in name order (from the index: cost
    /// proportional to that node's servers, not the domain's).
    pub fn servers_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a ServerSpec> + 'a {
        self.servers_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|name| self.servers.get(name))
    }

    /// Puts `server` in place (no rule checks) and indexes it by node;
    /// returns the definition it replaced.
    pub(crate) fn insert_server(&mut self, server: ServerSpec) -> Option<ServerSpec> {
        self.servers_by_node
            .entry(server.node.clone())
            .or_default()
            .insert(server.name.clone());
        let replaced = self.servers.insert(server.name.clone(), server);
        if let Some(old) = &replaced {
            let node = &self.servers[&old.name].node;
            if &old.node != node {
                self.unindex(&old.node, &old.name);
            }
        }
        replaced
    }

    /// Takes server `name` out (no rule checks) and out of the index.
    pub(crate) fn remove_server(&mut self, name: &str) -> Option<ServerSpec> {
        let removed = self.servers.remove(name)?;
        self.unindex(&removed.node, name);
        Some(removed)
    }

    fn unindex(&mut self, node: &str, server: &str) {
        if let Some(names) = self.servers_by_node.get_mut(node) {
            names.remove(server);
            if names.is_empty() {
                self.servers_by_node.remove(node);
            }
        }
    }

    pub fn server(&self, name: &str) -> Result<&ServerSpec, DomainError> {
        self.servers
            .get(name)
            .ok_or_else(|| not_found(NameKind::Server, name))
    }

    pub fn cluster(&self, name: &str) -> Result<&ClusterSpec, DomainError> {
        self.clusters
            .get(name)
            .ok_or_else(|| not_found(NameKind::Cluster, name))
    }

    pub fn node(&self, name: &str) -> Result<&NodeSpec, DomainError> {
        self.nodes
            .get(name)
            .ok_or_else(|| not_found(NameKind::Node, name))
    }

    /// Creates or replaces a node.
    pub fn put_node(&mut self, node: NodeSpec) -> Result<(), DomainError> {
        self.check_node(&node)?;
        self.nodes.insert(node.name.clone(), node);
        Ok(())
    }

    /// Creates a node; refused when one of that name exists.
    pub fn create_node(&mut self, node: NodeSpec) -> Result<(), DomainError> {
        validate_name(NameKind::Node, &node.name)?;
        if self.nodes.contains_key(&node.name) {
            return Err(DomainError::AlreadyExists {
                kind: NameKind::Node,
                name: node.name,
            });
        }
        self.put_node(node)
    }

    /// Deletes a node; refused while servers are placed on it or another
    /// node is its backup.
    pub fn delete_node(&mut self, name: &str) -> Result<NodeSpec, DomainError> {
        self.node(name)?;
        if let Some(server) = self.servers_on(name).next() {
            return Err(DomainError::NodeHasServers {
                node: name.to_string(),
                server: server.name.clone(),
            });
        }
        if let Some(backup) = self
            .nodes
            .values()
            .find(|n| n.backup_of.as_deref() == Some(name))
        {
            return Err(DomainError::NodeHasBackup {
                node: name.to_string(),
                backup: backup.name.clone(),
            });
        }
        self.nodes
            .remove(name)
            .ok_or_else(|| not_found(NameKind::Node, name))
    }

    pub fn create_server(&mut self, server: ServerSpec) -> Result<(), DomainError> {
        validate_name(NameKind::Server, &server.name)?;
        if self.servers.contains_key(&server.name) {
            return Err(DomainError::AlreadyExists {
                kind: NameKind::Server,
                name: server.name,
            });
        }
        self.check_server(&server)?;
        self.insert_server(server);
        Ok(())
    }

    /// Replaces an existing server's definition; returns the old one.
    pub fn replace_server(&mut self, server: ServerSpec) -> Result<ServerSpec, DomainError> {
        self.server(&server.name)?;
        self.check_server(&server)?;
        let name = server.name.clone();
        self.insert_server(server)
            .ok_or_else(|| not_found(NameKind::Server, &name))
    }

    /// Deletes a server; refused while it is a cluster member. (Whether it is
    /// running is the controller's business: it knows the observed state.)
    pub fn delete_server(&mut self, name: &str) -> Result<ServerSpec, DomainError> {
        self.server(name)?;
        if let Some(cluster) = self.cluster_of(name) {
            return Err(DomainError::ServerInCluster {
                server: name.to_string(),
                cluster: cluster.name.clone(),
            });
        }
        self.remove_server(name)
            .ok_or_else(|| not_found(NameKind::Server, name))
    }

    pub fn create_cluster(&mut self, cluster: ClusterSpec) -> Result<(), DomainError> {
        validate_name(NameKind::Cluster, &cluster.name)?;
        if self.clusters.contains_key(&cluster.name) {
            return Err(DomainError::AlreadyExists {
                kind: NameKind::Cluster,
                name: cluster.name,
            });
        }
        self.check_cluster(&cluster)?;
        self.clusters.insert(cluster.name.clone(), cluster);
        Ok(())
    }

    /// Deletes a cluster; its servers stay. Refused while a balancer
    /// routes to it.
    pub fn delete_cluster(&mut self, name: &str) -> Result<ClusterSpec, DomainError> {
        self.cluster(name)?;
        if let Some(lb) = self.lb_routing_to(name) {
            return Err(DomainError::ClusterRoutedBy {
                cluster: name.to_string(),
                lb: lb.name.clone(),
            });
        }
        self.clusters
            .remove(name)
            .ok_or_else(|| not_found(NameKind::Cluster, name))
    }

    /// Adds `server` to `cluster` at `position` (end when `None`).
    pub fn add_member(
        &mut self,
        cluster: &str,
        server: &str,
        position: Option<usize>,
    ) -> Result<&ClusterSpec, DomainError> {
        let mut updated = self.cluster(cluster)?.clone();
        let at = position.unwrap_or(updated.members.len());
        if at > updated.members.len() {
            return Err(DomainError::PositionPastEnd {
                cluster: cluster.to_string(),
                position: at,
                members: updated.members.len(),
            });
        }
        updated.members.insert(at, server.to_string());
        self.store_cluster(updated)
    }

    /// Sets a cluster's application server settings (session replication,
    /// transaction peer recovery), checked against its members.
    pub fn set_cluster_servers(
        &mut self,
        cluster: &str,
        session_replication: crate::template::SessionReplication,
        transaction_peer_recovery: Option<crate::template::TransactionPeerRecovery>,
    ) -> Result<&ClusterSpec, DomainError> {
        let mut updated = self.cluster(cluster)?.clone();
        updated.session_replication = session_replication;
        updated.transaction_peer_recovery = transaction_peer_recovery;
        self.store_cluster(updated)
    }

    /// Removes `server` from `cluster`; refused for the last member.
    pub fn remove_member(
        &mut self,
        cluster: &str,
        server: &str,
    ) -> Result<&ClusterSpec, DomainError> {
        let mut updated = self.cluster(cluster)?.clone();
        let before = updated.members.len();
        updated.members.retain(|m| m != server);
        // A member that leaves is no one's backup any more.
        updated.balance.backup.retain(|m| m != server);
        if updated.members.len() == before {
            return Err(DomainError::NotAMember {
                cluster: cluster.to_string(),
                server: server.to_string(),
            });
        }
        self.store_cluster(updated)
    }

    /// Puts an edited cluster in place of its old self once it passes the
    /// cluster rules.
    fn store_cluster(&mut self, updated: ClusterSpec) -> Result<&ClusterSpec, DomainError> {
        self.check_cluster(&updated)?;
        Ok(self
            .clusters
            .entry(updated.name.clone())
            .insert_entry(updated)
            .into_mut())
    }

    fn check_node(&self, node: &NodeSpec) -> Result<(), DomainError> {
        validate_name(NameKind::Node, &node.name)?;
        if !NodeSpec::address_is_valid(&node.address) {
            return Err(DomainError::NodeAddressInvalid {
                node: node.name.clone(),
                address: node.address.clone(),
            });
        }
        if let Some(primary) = &node.backup_of {
            validate_name(NameKind::Node, primary)?;
            if primary == &node.name {
                return Err(DomainError::OwnBackup {
                    node: node.name.clone(),
                });
            }
            let Some(primary_spec) = self.nodes.get(primary) else {
                return Err(DomainError::BackupOfUnknownNode {
                    node: node.name.clone(),
                    primary: primary.clone(),
                });
            };
            // A backup that is a primary's backup too would take over
            // servers it cannot hand on: one level only (a cycle is a
            // chain too).
            if let Some(primary_of) = &primary_spec.backup_of {
                return Err(DomainError::BackupChain {
                    node: node.name.clone(),
                    primary: primary.clone(),
                    primary_of: primary_of.clone(),
                });
            }
            // Two backups of one node would both take it over.
            if let Some(other) = self
                .nodes
                .values()
                .find(|n| n.name != node.name && n.backup_of.as_ref() == Some(primary))
            {
                return Err(DomainError::BackupTaken {
                    node: node.name.clone(),
                    primary: primary.clone(),
                    other: other.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks that a backup node can host its primary's servers beside its
    /// own: no port of one is a port of the other. Only for a node whose
    /// primary exists (else [`Domain::check_node`] says so).
    fn check_backup_ports(&self, node: &NodeSpec) -> Option<DomainError> {
        let primary = node
            .backup_of
            .as_ref()
            .filter(|p| self.nodes.contains_key(*p))?;
        for server in self.servers_on(primary) {
            for own in self.servers_on(&node.name) {
                if let Some(port) = server
                    .ports
                    .values()
                    .find(|p| own.ports.values().any(|q| q == *p))
                {
                    return Some(DomainError::BackupPortClash {
                        backup: node.name.clone(),
                        primary: primary.clone(),
                        server: server.name.clone(),
                        port: *port,
                        own: own.name.clone(),
                    });
                }
            }
        }
        None
    }

    /// Checks one server against the rest of the domain. Conflicts name
    /// `server` first, so an edit's error is about the thing edited.
    fn check_server(&self, server: &ServerSpec) -> Result<(), DomainError> {
        let neighbours = self.servers_on(&server.node);
        let name = &server.name;
        let of = || name.clone();
        validate_name(NameKind::Server, name)?;
        validate_name(NameKind::Node, &server.node)?;
        if !self.nodes.contains_key(&server.node) {
            return Err(DomainError::ServerOnUnknownNode {
                server: of(),
                node: server.node.clone(),
            });
        }
        crate::template::check_server(server)?;
        if server.template.is_none() && server.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(DomainError::NoCommand { server: of() });
        }
        if server.argv.iter().any(|a| a.contains('\0')) {
            return Err(DomainError::NulInCommand { server: of() });
        }
        for (key, value) in &server.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(DomainError::EnvNameInvalid {
                    server: of(),
                    key: key.clone(),
                });
            }
            if value.contains('\0') {
                return Err(DomainError::NulInEnvValue {
                    server: of(),
                    key: key.clone(),
                });
            }
        }
        if let Some(dir) = server.dir.as_deref().filter(|d| !d.starts_with('/')) {
            return Err(DomainError::DirNotAbsolute {
                server: of(),
                dir: dir.to_string(),
            });
        }
        if let Some(app_dir) = server.app_dir.as_deref().filter(|d| !d.is_absolute()) {
            return Err(DomainError::AppDirNotAbsolute {
                server: of(),
                dir: app_dir.display().to_string(),
            });
        }
        for (port_name, port) in &server.ports {
            validate_name(NameKind::Port, port_name)?;
            if *port == 0 {
                return Err(DomainError::PortZero {
                    server: of(),
                    port_name: port_name.clone(),
                });
            }
        }
        let mut seen = BTreeMap::new();
        for (port_name, port) in &server.ports {
            if let Some(first) = seen.insert(*port, port_name) {
                return Err(DomainError::PortTwice {
                    server: of(),
                    port: *port,
                    first: first.clone(),
                    second: port_name.clone(),
                });
            }
        }
        for other in neighbours.filter(|o| &o.name != name) {
            if let Some(port) = server
                .ports
                .values()
                .find(|p| other.ports.values().any(|q| q == *p))
            {
                return Err(DomainError::PortInUse {
                    server: of(),
                    port: *port,
                    other: other.name.clone(),
                    node: server.node.clone(),
                });
            }
        }
        if let Some(port_name) = server.ready.check.port_name() {
            if !server.ports.contains_key(port_name) {
                return Err(DomainError::ReadyPortUndefined {
                    server: of(),
                    check: server.ready.check.to_string(),
                    port_name: port_name.to_string(),
                });
            }
        }
        for (what, value) in [
            ("readiness interval", server.ready.interval),
            ("readiness timeout", server.ready.timeout),
            ("start timeout", server.ready.start_timeout),
            ("stop timeout", server.stop.timeout),
        ] {
            if value.as_millis() == 0 {
                return Err(DomainError::DurationZero { server: of(), what });
            }
        }
        if let Some(command) = &server.stop.command {
            if command.first().is_none_or(|p| p.is_empty()) {
                return Err(DomainError::StopCommandEmpty { server: of() });
            }
        }
        if server.weight > MAX_WEIGHT {
            return Err(DomainError::WeightTooLarge {
                server: of(),
                weight: server.weight,
                max: MAX_WEIGHT,
            });
        }
        Ok(())
    }

    fn check_cluster(&self, cluster: &ClusterSpec) -> Result<(), DomainError> {
        let name = &cluster.name;
        validate_name(NameKind::Cluster, name)?;
        if cluster.members.is_empty() {
            return Err(DomainError::NoMembers {
                cluster: name.clone(),
            });
        }
        for (i, member) in cluster.members.iter().enumerate() {
            if !self.servers.contains_key(member) {
                return Err(DomainError::MemberNotServer {
                    cluster: name.clone(),
                    member: member.clone(),
                });
            }
            if cluster.members[..i].contains(member) {
                return Err(DomainError::MemberTwice {
                    cluster: name.clone(),
                    member: member.clone(),
                });
            }
            if let Some(other) = self
                .clusters
                .values()
                .find(|c| &c.name != name && c.members.contains(member))
            {
                return Err(DomainError::MemberElsewhere {
                    server: member.clone(),
                    cluster: other.name.clone(),
                });
            }
        }
        crate::lb_rules::check_balance(cluster)?;
        crate::template::check_cluster(self, cluster)
    }
}

/// Where a document's JSON comes from: canonical bytes, or a value already
/// parsed (whose errors then carry no misleading line numbers).
pub trait DocumentSource {
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, serde_json::Error>;
}

impl DocumentSource for &[u8] {
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self)
    }
}

impl DocumentSource for &serde_json::Value {
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        T::deserialize(self)
    }
}

fn not_found(kind: NameKind, name: &str) -> DomainError {
    DomainError::NotFound {
        kind,
        name: name.to_string(),
    }
}

fn expect_path(path: &str, expected: &str, matches: bool) -> Result<(), DomainError> {
    if matches {
        Ok(())
    } else {
        Err(DomainError::MisplacedDocument {
            path: path.to_string(),
            expected: expected.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            address: "127.0.0.1".into(),
            agent_port: None,
            backup_of: None,
            shared_dirs: Vec::new(),
        }
    }

    fn server(name: &str, node: &str, port: u16) -> ServerSpec {
        let mut spec = ServerSpec::new(name, node, vec!["/bin/true".into()]);
        spec.ports.insert("http".to_string(), port);
        spec
    }

    fn cluster(name: &str, members: &[&str]) -> ClusterSpec {
        ClusterSpec::new(name, members.iter().map(|m| m.to_string()).collect())
    }

    fn domain() -> Domain {
        let mut d = Domain::default();
        d.put_node(node("n1")).unwrap();
        d.put_node(node("n2")).unwrap();
        d.create_server(server("web1", "n1", 9080)).unwrap();
        d.create_server(server("web2", "n1", 9081)).unwrap();
        d.create_server(server("web3", "n2", 9080)).unwrap();
        d
    }

    #[test]
    fn port_conflict_names_both_servers_and_the_node() {
        let mut d = domain();
        let err = d.create_server(server("web4", "n1", 9081)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "server `web4` port 9081 is already used by `web2` on node `n1`"
        );
        assert_eq!(err.class(), ErrorClass::Conflict);
        assert!(
            !d.servers.contains_key("web4"),
            "a refused edit changes nothing"
        );
    }

    #[test]
    fn validating_the_whole_domain_finds_port_conflicts_on_their_node_only() {
        let mut d = domain();
        // Written past the edit checks, as a loaded configuration can be.
        d.insert_server(server("web4", "n1", 9081));
        d.insert_server(server("web5", "n2", 9081));
        let problems: Vec<String> = d.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "server `web2` port 9081 is already used by `web4` on node `n1`",
                "server `web4` port 9081 is already used by `web2` on node `n1`"
            ]
        );
    }

    #[test]
    fn node_rules_backups_addresses_and_deletes() {
        let mut d = domain();
        let err = d.create_node(node("n1")).unwrap_err();
        assert_eq!(err.to_string(), "node `n1` already exists");
        assert_eq!(err.class(), ErrorClass::Conflict);

        let mut backup = node("n3");
        backup.backup_of = Some("n3".into());
        let err = d.create_node(backup.clone()).unwrap_err();
        assert_eq!(err, DomainError::OwnBackup { node: "n3".into() });
        backup.backup_of = Some("ghost".into());
        let err = d.create_node(backup.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node `n3` is a backup of node `ghost`, which does not exist"
        );
        assert_eq!(err.class(), ErrorClass::Invalid);
        assert!(
            !d.nodes.contains_key("n3"),
            "a refused edit changes nothing"
        );

        let mut named = node("n4");
        named.address = "db 1".into();
        let err = d.create_node(named.clone()).unwrap_err();
        assert!(
            matches!(err, DomainError::NodeAddressInvalid { .. }),
            "{err}"
        );
        named.address = "db1.example.com".into();
        d.create_node(named).unwrap();

        backup.backup_of = Some("n4".into());
        d.create_node(backup).unwrap();
        let err = d.delete_node("n4").unwrap_err();
        assert_eq!(
            err,
            DomainError::NodeHasBackup {
                node: "n4".into(),
                backup: "n3".into()
            }
        );
        let err = d.delete_node("n1").unwrap_err();
        assert!(matches!(err, DomainError::NodeHasServers { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Conflict);
        d.delete_node("n3").unwrap();
        d.delete_node("n4").unwrap();
        let err = d.delete_node("n4").unwrap_err();
        assert_eq!(err.class(), ErrorClass::NotFound);
    }

    #[test]
    fn backups_neither_chain_nor_cycle_nor_double_and_host_their_primary_s_ports() {
        let mut d = domain();
        let backup_of = |name: &str, primary: &str| NodeSpec {
            backup_of: Some(primary.into()),
            ..node(name)
        };
        d.create_node(backup_of("b1", "n1")).unwrap();
        // A chain: c1 backs up b1, which backs up n1.
        let err = d.create_node(backup_of("c1", "b1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node `c1` cannot be a backup of node `b1`: `b1` is itself a backup of `n1`, and backups neither chain nor form cycles"
        );
        assert_eq!(err.class(), ErrorClass::Invalid);
        // A cycle, made by an edit of the primary: refused at the save.
        let mut after = d.clone();
        let err = after.put_node(backup_of("n1", "b1")).unwrap_err();
        assert!(matches!(err, DomainError::BackupChain { .. }), "{err}");
        // Documents applied as a whole are checked at the save.
        after.nodes.insert("n1".into(), backup_of("n1", "b1"));
        let problems: Vec<String> = after
            .new_problems(&d)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("neither chain nor form cycles")),
            "{problems:?}"
        );
        // A second backup of one node.
        let err = d.create_node(backup_of("b2", "n1")).unwrap_err();
        assert_eq!(
            err,
            DomainError::BackupTaken {
                node: "b2".into(),
                primary: "n1".into(),
                other: "b1".into()
            }
        );
        assert!(
            !d.nodes.contains_key("b2"),
            "a refused edit changes nothing"
        );
        // The backup's own server takes a port of one of n1's servers.
        let taken = d
            .servers_on("n1")
            .next()
            .unwrap()
            .ports
            .values()
            .next()
            .copied()
            .unwrap();
        let mut after = d.clone();
        after.create_server(server("own1", "b1", taken)).unwrap();
        let problems = after.new_problems(&d);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            matches!(&problems[0], DomainError::BackupPortClash { backup, primary, own, port, .. }
                if backup == "b1" && primary == "n1" && own == "own1" && *port == taken),
            "{problems:?}"
        );
        assert_eq!(problems[0].class(), ErrorClass::Conflict);
        // A free port is fine.
        let mut after = d.clone();
        after.create_server(server("own2", "b1", 19_999)).unwrap();
        assert_eq!(after.new_problems(&d), vec![]);
    }

    #[test]
    fn a_backup_whose_primary_goes_missing_is_a_problem() {
        let mut before = domain();
        let mut backup = node("n3");
        backup.backup_of = Some("n2".into());
        before.put_node(backup).unwrap();
        let mut after = before.clone();
        after.nodes.remove("n2");
        after.servers.remove("web3");
        let problems = after.new_problems(&before);
        assert_eq!(
            problems,
            vec![DomainError::BackupOfUnknownNode {
                node: "n3".into(),
                primary: "n2".into()
            }]
        );
    }

    #[test]
    fn same_port_on_another_node_is_fine() {
        let mut d = domain();
        d.create_server(server("web5", "n2", 9081)).unwrap();
    }

    #[test]
    fn server_names_are_unique_in_the_domain() {
        let mut d = domain();
        let err = d.create_server(server("web1", "n2", 9999)).unwrap_err();
        assert_eq!(err.to_string(), "server `web1` already exists");
    }

    #[test]
    fn server_on_unknown_node_is_refused() {
        let mut d = domain();
        let err = d.create_server(server("x", "nowhere", 1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("node `nowhere`, which does not exist"),
            "{err}"
        );
    }

    #[test]
    fn readiness_port_must_exist() {
        let mut d = domain();
        let mut s = server("x", "n2", 7000);
        s.ready.check = "tcp:admin".parse().unwrap();
        let err = d.create_server(s).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "which the server does not define; define port `admin` or check another"
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_argv_and_bad_env_are_refused() {
        let mut d = domain();
        let mut s = server("x", "n2", 7000);
        s.argv.clear();
        assert!(d
            .create_server(s)
            .unwrap_err()
            .to_string()
            .contains("no command"));
        let mut s = server("x", "n2", 7000);
        s.env.insert("A=B".into(), "v".into());
        assert!(d
            .create_server(s)
            .unwrap_err()
            .to_string()
            .contains("`A=B`"));
    }

    #[test]
    fn cluster_rules() {
        let mut d = domain();
        let err = d.create_cluster(cluster("c", &[])).unwrap_err();
        assert!(err.to_string().contains("at least one"), "{err}");
        let err = d.create_cluster(cluster("c", &["ghost"])).unwrap_err();
        assert!(err.to_string().contains("`ghost` is not a server"), "{err}");
        let err = d
            .create_cluster(cluster("c", &["web1", "web1"]))
            .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        d.create_cluster(cluster("c", &["web1", "web2"])).unwrap();
        let err = d.create_cluster(cluster("d", &["web2"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "server `web2` is already a member of cluster `c`; a server belongs to at most one cluster"
        );
        let err = d.add_member("c", "web2", None).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn members_are_ordered_and_the_last_cannot_leave() {
        let mut d = domain();
        d.create_cluster(cluster("c", &["web2"])).unwrap();
        d.add_member("c", "web1", Some(0)).unwrap();
        assert_eq!(d.cluster("c").unwrap().members, ["web1", "web2"]);
        d.remove_member("c", "web1").unwrap();
        let err = d.remove_member("c", "web2").unwrap_err();
        assert!(
            err.to_string().contains("delete the cluster instead"),
            "{err}"
        );
        assert!(d.remove_member("c", "web3").is_err());
    }

    #[test]
    fn deleting_a_cluster_keeps_its_servers_and_members_cannot_be_deleted() {
        let mut d = domain();
        d.create_cluster(cluster("c", &["web1"])).unwrap();
        let err = d.delete_server("web1").unwrap_err();
        assert!(err.to_string().contains("remove it from the cluster first"));
        d.delete_cluster("c").unwrap();
        assert!(d.servers.contains_key("web1"));
        d.delete_server("web1").unwrap();
    }

    #[test]
    fn documents_round_trip() {
        let mut d = domain();
        d.create_cluster(cluster("c", &["web3", "web1"])).unwrap();
        let docs = d.documents();
        assert!(docs.contains_key("/nodes/n1/servers/web1/server.json"));
        assert!(docs.contains_key("/clusters/c/cluster.json"));
        let back =
            Domain::from_documents(docs.iter().map(|(p, b)| (p.as_str(), b.as_slice()))).unwrap();
        assert_eq!(back, d);
        assert!(back.validate().is_empty());
    }

    #[test]
    fn misplaced_documents_are_refused() {
        let bytes = canonical_json(&node("n1"));
        let err = Domain::from_documents([("/nodes/n2/node.json", bytes.as_slice())]).unwrap_err();
        assert!(
            err.to_string().contains("belongs at `/nodes/n1/node.json`"),
            "{err}"
        );
        let err = Domain::from_documents([("/etc/passwd", bytes.as_slice())]).unwrap_err();
        assert!(
            err.to_string().contains("not a known document path"),
            "{err}"
        );
    }
    #[test]
    fn parsed_values_name_the_document_and_field_without_positions() {
        let value = serde_json::json!({"name": "n1", "adress": "x"});
        let err = Domain::from_documents([("/nodes/n1/node.json", &value)]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("document `/nodes/n1/node.json` is invalid: unknown field `adress`"),
            "{text}"
        );
        assert!(!text.contains("line"), "{text}");
    }

    #[test]
    fn new_problems_ignore_what_was_already_broken() {
        let before = domain();
        let mut after = before.clone();
        after.insert_server(server("web9", "n1", 9080));
        let problems = after.new_problems(&before);
        assert!(!problems.is_empty());
        assert!(
            problems.iter().all(|p| p.to_string().contains("port 9080")),
            "{problems:?}"
        );
        // A later unrelated change does not report the old problem again.
        let mut later = after.clone();
        later.put_node(node("n3")).unwrap();
        assert!(later.new_problems(&after).is_empty());
    }
    #[test]
    fn a_server_defined_on_two_nodes_is_refused() {
        let web = |node: &str| canonical_json(&server("web1", node, 9080));
        let (a, b) = (web("n1"), web("n2"));
        let err = Domain::from_documents([
            ("/nodes/n1/servers/web1/server.json", a.as_slice()),
            ("/nodes/n2/servers/web1/server.json", b.as_slice()),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`/nodes/n1/servers/web1/server.json` defines too"),
            "{err}"
        );
    }

    /// One random edit of the domain, through its public edit paths.
    #[derive(Debug, Clone)]
    enum Edit {
        PutNode(usize),
        DeleteNode(usize),
        RenameNode(usize, usize),
        CreateServer(usize, usize, u16),
        ReplaceServer(usize, usize, u16),
        DeleteServer(usize),
        ReloadFromDocuments,
    }

    fn edit() -> impl proptest::strategy::Strategy<Value = Edit> {
        use proptest::prelude::*;
        prop_oneof![
            (0..4usize).prop_map(Edit::PutNode),
            (0..4usize).prop_map(Edit::DeleteNode),
            (0..4usize, 0..4usize).prop_map(|(a, b)| Edit::RenameNode(a, b)),
            (0..6usize, 0..4usize, 9080..9084u16).prop_map(|(s, n, p)| Edit::CreateServer(s, n, p)),
            (0..6usize, 0..4usize, 9080..9084u16)
                .prop_map(|(s, n, p)| Edit::ReplaceServer(s, n, p)),
            (0..6usize).prop_map(Edit::DeleteServer),
            Just(Edit::ReloadFromDocuments),
        ]
    }

    proptest::proptest! {
        /// Whatever edits succeed or are refused, `servers_on` answers
        /// what a scan of every server would.
        #[test]
        fn the_by_node_index_matches_a_full_scan(edits in proptest::collection::vec(edit(), 0..40)) {
            let node_name = |i: usize| format!("n{i}");
            let server_name = |i: usize| format!("s{i}");
            let mut d = Domain::default();
            for edit in edits {
                let _ = match edit {
                    Edit::PutNode(n) => d.put_node(node(&node_name(n))),
                    Edit::DeleteNode(n) => d.delete_node(&node_name(n)).map(drop),
                    Edit::RenameNode(a, b) => d.rename_node(&node_name(a), &node_name(b)),
                    Edit::CreateServer(s, n, p) => {
                        d.create_server(server(&server_name(s), &node_name(n), p))
                    }
                    Edit::ReplaceServer(s, n, p) => d
                        .replace_server(server(&server_name(s), &node_name(n), p))
                        .map(drop),
                    Edit::DeleteServer(s) => d.delete_server(&server_name(s)).map(drop),
                    Edit::ReloadFromDocuments => {
                        let docs = d.documents();
                        d = Domain::from_documents(
                            docs.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
                        )
                        .unwrap();
                        Ok(())
                    }
                };
                for n in (0..4).map(node_name) {
                    let indexed: Vec<&str> = d.servers_on(&n).map(|s| s.name.as_str()).collect();
                    let scanned: Vec<&str> = d
                        .servers()
                        .values()
                        .filter(|s| s.node == n)
                        .map(|s| s.name.as_str())
                        .collect();
                    proptest::prop_assert_eq!(indexed, scanned, "node {}", n);
                }
                let indexed_total: usize = d.servers_by_node.values().map(|names| names.len()).sum();
                proptest::prop_assert_eq!(indexed_total, d.servers().len());
            }
        }
    }
}
