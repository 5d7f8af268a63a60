//! The TOML form of a configuration tree: one table per document, keyed by
//! the document's name, which the table does not repeat:
//!
//! ```toml
//! [domain.membership]
//! probe_interval = "200ms"
//!
//! [nodes.n1]
//! address = "10.0.0.5"
//!
//! [servers.web1]
//! argv = ["/opt/app/bin/run"]
//! node = "n1"
//!
//! [clusters.shop]
//! members = ["web1"]
//!
//! [lbs.front]
//! listeners = [{ listen = "0.0.0.0:8080", routes = [{ cluster = "shop" }] }]
//! ```

use super::typed::NamedMap;
use dure_api::DocumentTree;
use dure_core::model::paths::{self, DocumentPath};
use dure_core::{ClusterSpec, DomainSettings, LbSpec, NodeSpec, ServerSpec};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlTree {
    /// `/domain.json`, the one document without a name.
    #[serde(default)]
    domain: Option<DomainSettings>,
    #[serde(default)]
    nodes: NamedMap<NodeSpec>,
    #[serde(default)]
    servers: NamedMap<ServerSpec>,
    #[serde(default)]
    clusters: NamedMap<ClusterSpec>,
    #[serde(default)]
    lbs: NamedMap<LbSpec>,
}

impl TomlTree {
    /// The documents, by path, as canonical JSON values.
    pub fn documents(self) -> BTreeMap<String, Value> {
        let json = |doc: serde_json::Result<Value>| doc.unwrap_or_default();
        let nodes = self
            .nodes
            .0
            .into_values()
            .map(|n| (paths::node(&n.name), json(serde_json::to_value(&n))));
        let servers = self.servers.0.into_values().map(|s| {
            (
                paths::server(&s.node, &s.name),
                json(serde_json::to_value(&s)),
            )
        });
        let clusters = self
            .clusters
            .0
            .into_values()
            .map(|c| (paths::cluster(&c.name), json(serde_json::to_value(&c))));
        let lbs = self
            .lbs
            .0
            .into_values()
            .map(|l| (paths::lb(&l.name), json(serde_json::to_value(&l))));
        let domain = self
            .domain
            .map(|d| (paths::DOMAIN.to_string(), json(serde_json::to_value(d))));
        domain
            .into_iter()
            .chain(nodes)
            .chain(servers)
            .chain(clusters)
            .chain(lbs)
            .collect()
    }
}

/// Writes a tree in the TOML form: the domain settings first, then nodes,
/// servers, clusters and balancers.
pub fn to_toml(tree: &DocumentTree) -> anyhow::Result<String> {
    let mut domain = None;
    let mut sections: [(&str, toml::Table); 4] = [
        ("nodes", toml::Table::new()),
        ("servers", toml::Table::new()),
        ("clusters", toml::Table::new()),
        ("lbs", toml::Table::new()),
    ];
    for (path, doc) in &tree.documents {
        let (section, name) = match paths::parse(path) {
            Some(DocumentPath::Domain) => {
                let table = toml::Value::try_from(doc).map_err(|e| {
                    anyhow::anyhow!("document `{path}` cannot be written as TOML: {e}")
                })?;
                domain = Some(table);
                continue;
            }
            Some(DocumentPath::Node { node }) => (0, node),
            Some(DocumentPath::Server { server, .. }) => (1, server),
            Some(DocumentPath::Cluster { cluster }) => (2, cluster),
            Some(DocumentPath::Lb { lb }) => (3, lb),
            None => anyhow::bail!("the controller sent `{path}`, which is not a document path"),
        };
        let mut doc = doc.clone();
        if let Some(object) = doc.as_object_mut() {
            object.remove("name");
        }
        let table = toml::Value::try_from(&doc)
            .map_err(|e| anyhow::anyhow!("document `{path}` cannot be written as TOML: {e}"))?;
        sections[section].1.insert(name.to_string(), table);
    }
    let mut text = format!(
        "# Dure configuration at version {}.\n\
         # Each table is one document, named by its key. Apply it with\n\
         # `dure apply -f FILE`; `dure diff -f FILE` shows what that would change.\n",
        tree.version
    );
    if let Some(table) = domain {
        let mut wrapper = toml::Table::new();
        wrapper.insert("domain".to_string(), table);
        text.push('\n');
        text.push_str(&toml::to_string(&wrapper)?);
    }
    for (name, table) in sections {
        if table.is_empty() {
            continue;
        }
        let mut wrapper = toml::Table::new();
        wrapper.insert(name.to_string(), toml::Value::Table(table));
        text.push('\n');
        text.push_str(&toml::to_string(&wrapper)?);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_core::model::canonical_json;

    fn tree() -> DocumentTree {
        let documents = serde_json::json!({
            "/nodes/n1/node.json": {"name": "n1", "address": "127.0.0.1", "agent_port": 7171},
            "/nodes/n1/servers/web1/server.json": {
                "name": "web1", "node": "n1", "argv": ["/bin/app", "--port", "9080"],
                "ports": {"http": 9080}, "env": {"A": "b"}, "ready": {"check": "http:/health"}
            },
            "/clusters/shop/cluster.json": {"name": "shop", "members": ["web1"]},
            "/clusters/cart/cluster.json": {
                "name": "cart", "members": ["web1"], "balance": {"policy": "ip_hash"}
            },
            "/lbs/front/lb.json": {"name": "front", "listeners": [
                {"listen": "0.0.0.0:8080", "routes": [{"cluster": "shop", "path": "/api"}]}
            ]}
        });
        let documents: BTreeMap<String, Value> = serde_json::from_value(documents).unwrap();
        // Canonical values, as the controller sends them.
        let canonical = documents
            .into_iter()
            .map(|(p, v)| {
                let typed = super::super::typed::document_value(&p, &v).unwrap();
                (p, typed)
            })
            .collect();
        DocumentTree {
            version: 2,
            revision: 7,
            documents: canonical,
        }
    }

    #[test]
    fn the_toml_form_round_trips() {
        let tree = tree();
        let text = to_toml(&tree).unwrap();
        assert!(text.contains("[nodes.n1]\n"), "{text}");
        assert!(
            text.contains(
                "[servers.web1]\nargv = [\"/bin/app\", \"--port\", \"9080\"]\nnode = \"n1\"\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("[clusters.shop]\nmembers = [\"web1\"]\n"),
            "{text}"
        );
        assert!(text.find("[nodes.n1]") < text.find("[servers.web1]"));
        assert!(
            text.find("[clusters.shop]") < text.find("[[lbs.front.listeners]]"),
            "{text}"
        );
        assert!(!text.contains("name ="), "{text}");
        let back: TomlTree = toml::from_str(&text).unwrap();
        let docs = back.documents();
        assert_eq!(docs, tree.documents);
        for value in docs.values() {
            assert!(!canonical_json(value).is_empty());
        }
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let text = "[nodes.n1]\naddress = \"a\"\n\n[servers.web1]\nnode = \"n1\"\nargv = [\"x\"]\nweight = \"heavy\"\n";
        let parsed = toml::Deserializer::parse(text).unwrap();
        let err = serde_path_to_error::deserialize::<_, TomlTree>(parsed).unwrap_err();
        assert_eq!(err.path().to_string(), "servers.web1.weight");
        let inner = err.inner().to_string();
        assert!(inner.contains("line 7"), "{inner}");
        let text = "[servers.web1]\nnode = \"n1\"\nargv = [\"x\"]\nwieght = 5\n";
        let err = toml::from_str::<TomlTree>(text).unwrap_err().to_string();
        assert!(
            err.contains("unknown field `wieght`") && err.contains("line 4"),
            "{err}"
        );
    }
}
