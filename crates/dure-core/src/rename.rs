//! Renaming a node, as a restore onto a new host does: the node's document
//! moves to its new name, every server placed on it follows (its `node`
//! field and so its document path), and every `backup_of` naming it is
//! updated. Clusters list servers by name and do not change.

use crate::domain::{Domain, DomainError};
use crate::name::{validate_name, NameKind};

impl Domain {
    /// Renames node `from` to `to`; refused when `from` does not exist,
    /// `to` is taken or not a valid name. Nothing changes when refused.
    pub fn rename_node(&mut self, from: &str, to: &str) -> Result<(), DomainError> {
        validate_name(NameKind::Node, to)?;
        if from == to {
            return Err(DomainError::RenameToSameName {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        if self.nodes.contains_key(to) {
            return Err(DomainError::AlreadyExists {
                kind: NameKind::Node,
                name: to.to_string(),
            });
        }
        let Some(mut node) = self.nodes.remove(from) else {
            return Err(DomainError::NotFound {
                kind: NameKind::Node,
                name: from.to_string(),
            });
        };
        node.name = to.to_string();
        self.nodes.insert(to.to_string(), node);
        for other in self.nodes.values_mut() {
            if other.backup_of.as_deref() == Some(from) {
                other.backup_of = Some(to.to_string());
            }
        }
        let moving: Vec<String> = self.servers_on(from).map(|s| s.name.clone()).collect();
        for name in moving {
            if let Some(mut server) = self.remove_server(&name) {
                server.node = to.to_string();
                self.insert_server(server);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::paths;
    use crate::{Domain, DomainError, NodeSpec, ServerSpec};

    fn domain() -> Domain {
        let node = |name: &str, backup_of: Option<&str>| NodeSpec {
            name: name.into(),
            address: "127.0.0.1".into(),
            agent_port: None,
            backup_of: backup_of.map(str::to_string),
            shared_dirs: Vec::new(),
        };
        let server = |name: &str, node: &str| ServerSpec::new(name, node, vec!["/bin/true".into()]);
        let mut domain = Domain::default();
        for n in [node("a", None), node("b", Some("a"))] {
            domain.nodes.insert(n.name.clone(), n);
        }
        for s in [server("web1", "a"), server("web2", "b")] {
            domain.insert_server(s);
        }
        domain
    }

    #[test]
    fn the_node_its_servers_and_backups_follow() {
        let mut domain = domain();
        domain.rename_node("a", "c").expect("rename");
        let docs = domain.documents();
        assert!(docs.contains_key(&paths::node("c")));
        assert!(!docs.contains_key(&paths::node("a")));
        assert!(docs.contains_key(&paths::server("c", "web1")));
        assert!(docs.contains_key(&paths::server("b", "web2")));
        assert_eq!(domain.nodes["b"].backup_of.as_deref(), Some("c"));
        assert!(domain.validate().is_empty(), "{:?}", domain.validate());
    }

    #[test]
    fn refusals_change_nothing() {
        let original = domain();
        let cases = [("x", "c"), ("a", "b"), ("a", "a"), ("a", "bad name")];
        for (from, to) in cases {
            let mut domain = original.clone();
            let err = domain.rename_node(from, to).expect_err("refused");
            assert!(
                matches!(
                    err,
                    DomainError::NotFound { .. }
                        | DomainError::AlreadyExists { .. }
                        | DomainError::RenameToSameName { .. }
                        | DomainError::Name(_)
                ),
                "{from} -> {to}: {err}"
            );
            assert_eq!(domain, original, "{from} -> {to}");
        }
    }
}
