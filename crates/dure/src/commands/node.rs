//! `dure node list`.

use crate::cli::NodeCommand;
use crate::context::Context;
use crate::output::{ago, now_ms, or_dash, print_json, Cell, Colour, Table};
use dure_api::{NodeStatus, NodeView};

pub async fn run(ctx: &Context, command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::List => {
            let nodes = ctx.client.list_nodes().await?;
            if ctx.json() {
                return print_json(&nodes);
            }
            if nodes.is_empty() {
                println!("no nodes yet: start an agent with `dure agent --node NAME --token ...`");
                return Ok(());
            }
            node_table(&nodes, now_ms()).print();
            Ok(())
        }
    }
}

/// Returns the node list table.
pub fn node_table(nodes: &[NodeView], now: u64) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "ADDRESS",
        "STATUS",
        "SERVERS",
        "VERSION",
        "LAST SEEN",
    ]);
    for node in nodes {
        let address = match (node.spec.address.as_str(), node.spec.agent_port) {
            ("", _) => "-".to_string(),
            (host, Some(port)) => format!("{host}:{port}"),
            (host, None) => host.to_string(),
        };
        let colour = match node.status {
            NodeStatus::Online => Colour::Green,
            NodeStatus::Unreachable => Colour::Red,
            NodeStatus::Unregistered => Colour::Gray,
        };
        table.row(vec![
            node.spec.name.as_str().into(),
            address.into(),
            Cell::coloured(node.status.to_string(), colour),
            node.servers.to_string().into(),
            or_dash(node.agent_version.as_deref()).into(),
            node.last_seen_ms
                .map_or_else(|| "-".to_string(), |t| ago(t, now))
                .into(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_core::NodeSpec;

    #[test]
    fn table_shows_address_status_and_age() {
        let nodes = vec![
            NodeView {
                spec: NodeSpec {
                    name: "n1".into(),
                    address: "10.0.0.5".into(),
                    agent_port: Some(7171),
                    backup_of: None,
                },
                status: NodeStatus::Online,
                agent_version: Some("0.1.0".into()),
                last_seen_ms: Some(9_000),
                servers: 2,
            },
            NodeView {
                spec: NodeSpec {
                    name: "n2".into(),
                    address: String::new(),
                    agent_port: None,
                    backup_of: None,
                },
                status: NodeStatus::Unregistered,
                agent_version: None,
                last_seen_ms: None,
                servers: 0,
            },
        ];
        assert_eq!(
            node_table(&nodes, 10_000).render(false),
            "NAME  ADDRESS        STATUS        SERVERS  VERSION  LAST SEEN\n\
             n1    10.0.0.5:7171  online        2        0.1.0    1s ago\n\
             n2    -              unregistered  0        -        -\n"
        );
    }
}
