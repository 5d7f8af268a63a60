//! The configuration the benchmark applies: `nodes` nodes with `servers`
//! servers each, and a round number in the environment of every node's
//! first server. Applying the tree of the next round changes one server on
//! every node, so the save wakes every agent's long poll.

use dure_api::DocumentTree;
use dure_core::model::paths;
use dure_core::{NodeSpec, ServerSpec};

/// The environment variable that carries the round.
pub const ROUND_VAR: &str = "BENCH_ROUND";
/// The first port of a node's servers; server `j` listens on `BASE_PORT + j`.
const BASE_PORT: u16 = 20000;

/// Name of simulated node `i`.
pub fn node_name(i: usize) -> String {
    format!("bench-{i:05}")
}

/// Name of server `j` on node `i`; server 0 carries the round.
pub fn server_name(i: usize, j: usize) -> String {
    format!("bench-{i:05}-s{j:02}")
}

/// The whole configuration of `nodes` × `servers` at `round`.
pub fn tree(nodes: usize, servers: usize, round: u64) -> anyhow::Result<DocumentTree> {
    let mut documents = std::collections::BTreeMap::new();
    for i in 0..nodes {
        let node = node_name(i);
        let spec = NodeSpec {
            name: node.clone(),
            address: "127.0.0.1".into(),
            agent_port: None,
            backup_of: None,
            shared_dirs: Vec::new(),
        };
        documents.insert(paths::node(&node), serde_json::to_value(&spec)?);
        for j in 0..servers {
            let name = server_name(i, j);
            let mut spec = ServerSpec::new(&name, &node, vec!["/bin/sleep".into(), "600".into()]);
            let port = u16::try_from(j)
                .ok()
                .and_then(|j| BASE_PORT.checked_add(j))
                .ok_or_else(|| anyhow::anyhow!("too many servers per node: {servers}"))?;
            spec.ports.insert("http".into(), port);
            if j == 0 {
                spec.env.insert(ROUND_VAR.into(), round.to_string());
            }
            documents.insert(paths::server(&node, &name), serde_json::to_value(&spec)?);
        }
    }
    Ok(DocumentTree {
        version: 0,
        revision: 0,
        documents,
    })
}
