//! `dure node list|show|create|update|delete`; `node list --from NODE` is that
//! node's own view of its peers' membership.

use crate::cli::NodeCommand;
use crate::commands::changes::print_change;
use crate::context::Context;
use crate::output::{ago, fields, now_ms, or_dash, print_json, Cell, Colour, Table};
use crate::spec::{node_spec, updated_node};
use dure_api::{AgentMode, ConfigChange, NodeStatus, NodeView, PeerState, PeerView, ServerView};
use dure_core::NodeSpec;

pub async fn run(ctx: &Context, command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Show { name } => {
            let node = ctx.client.get_node(&name).await?;
            if ctx.json() {
                return print_json(&node);
            }
            let servers = ctx.client.list_servers().await?;
            let nodes = ctx.client.list_nodes().await?;
            let backups: Vec<&str> = nodes
                .iter()
                .filter(|n| n.spec.backup_of.as_deref() == Some(name.as_str()))
                .map(|n| n.spec.name.as_str())
                .collect();
            print!("{}", node_details(&node, &servers, &backups, now_ms()));
            Ok(())
        }
        NodeCommand::Create(args) => {
            let spec = node_spec(&args)?;
            let client = ctx.client.clone().with_save(args.save.choice());
            let changed = client
                .change::<NodeView>(ConfigChange::CreateNode(&spec))
                .await?;
            let name = &spec.name;
            print_change(
                ctx,
                &changed,
                format!(
                    "node `{name}` created at address {}; start its agent with `dure agent --node {name}`",
                    spec.address
                ),
                format!("node `{name}` created in your change set"),
            )
        }
        NodeCommand::Update(args) => {
            let reader = ctx.client.clone().with_changes_view(!args.save.save);
            let view = reader.get_node(&args.name).await?;
            let spec = updated_node(&view.spec, &args)?;
            let name = &spec.name;
            if spec == view.spec {
                if ctx.json() {
                    return print_json(&view);
                }
                println!("node `{name}` already has every value given; nothing changed");
                return Ok(());
            }
            let client = ctx.client.clone().with_save(args.save.choice());
            let changed = client
                .change::<NodeView>(ConfigChange::PutNode(&spec))
                .await?;
            let backup = match &spec.backup_of {
                Some(primary) => format!("; it is the backup of node `{primary}`"),
                None => String::new(),
            };
            print_change(
                ctx,
                &changed,
                format!("node `{name}` updated{backup}"),
                format!("node `{name}` updated in your change set"),
            )
        }
        NodeCommand::Delete { name, save } => {
            let client = ctx.client.clone().with_save(save.choice());
            let changed = client
                .change::<NodeSpec>(ConfigChange::DeleteNode(&name))
                .await?;
            print_change(
                ctx,
                &changed,
                format!("node `{name}` deleted"),
                format!("node `{name}` deleted in your change set"),
            )
        }
        NodeCommand::List { from: Some(node) } => {
            let peers = ctx.client.node_peers(&node).await?;
            if ctx.json() {
                return print_json(&peers);
            }
            if peers.is_empty() {
                println!("node `{node}` has reported no peers yet: its agent reports its view once its membership runs");
                return Ok(());
            }
            peer_table(&peers, now_ms()).print();
            Ok(())
        }
        NodeCommand::List { from: None } => {
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

/// Returns the node list table: ADDRESS is the configured address, AGENT
/// where the controller reaches the node's agent (`host:port`, as the agent
/// last said; `-` until it did).
pub fn node_table(nodes: &[NodeView], now: u64) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "ADDRESS",
        "AGENT",
        "STATUS",
        "MODE",
        "SERVERS",
        "VERSION",
        "LAST SEEN",
        "MEMBERSHIP",
        "SINCE",
    ]);
    for node in nodes {
        let address = match node.spec.address.as_str() {
            "" => "-",
            host => host,
        };
        let colour = match node.status {
            NodeStatus::Online => Colour::Green,
            NodeStatus::Unreachable => Colour::Red,
            NodeStatus::Unregistered => Colour::Gray,
        };
        table.row(vec![
            node.spec.name.as_str().into(),
            address.into(),
            or_dash(node.agent_address.as_deref()).into(),
            Cell::coloured(node.status.to_string(), colour),
            mode_cell(node),
            node.servers.to_string().into(),
            or_dash(node.agent_version.as_deref()).into(),
            node.last_seen_ms
                .map_or_else(|| "-".to_string(), |t| ago(t, now))
                .into(),
            node.membership.map_or_else(|| "-".into(), membership_cell),
            node.membership_since_ms
                .map_or_else(|| "-".to_string(), |t| ago(t, now))
                .into(),
        ]);
    }
    table
}

/// Returns the `node list --from NODE` table: that node's own view of
/// its peers (the JEUS `nodelist`).
pub fn peer_table(peers: &[PeerView], now: u64) -> Table {
    let mut table = Table::new(&["NODE", "STATE", "ADDRESS", "VERSION", "SINCE"]);
    for peer in peers {
        table.row(vec![
            peer.node.as_str().into(),
            membership_cell(peer.state),
            or_dash(peer.address.as_deref()).into(),
            or_dash(peer.version.as_deref()).into(),
            ago(peer.since_ms, now).into(),
        ]);
    }
    table
}

fn membership_cell(state: PeerState) -> Cell {
    let colour = match state {
        PeerState::Running => Colour::Green,
        PeerState::Failed => Colour::Red,
        PeerState::Inactive => Colour::Gray,
    };
    Cell::coloured(state.to_string(), colour)
}

/// Returns the `node show` text: its definition, its agent, its servers.
pub fn node_details(node: &NodeView, servers: &[ServerView], backups: &[&str], now: u64) -> String {
    let on_node: Vec<&str> = servers
        .iter()
        .filter(|s| s.spec.node == node.spec.name)
        .map(|s| s.spec.name.as_str())
        .collect();
    let list = |names: &[&str]| match names {
        [] => "-".to_string(),
        names => names.join(", "),
    };
    let mode = match (node.mode, node.independent_since_ms) {
        (AgentMode::Independent, Some(since)) => format!("{} since {}", node.mode, ago(since, now)),
        _ => mode_cell(node).text,
    };
    let pairs = vec![
        ("name", node.spec.name.clone()),
        (
            "address",
            or_dash(Some(node.spec.address.as_str()).filter(|a| !a.is_empty())),
        ),
        ("backup of", or_dash(node.spec.backup_of.as_deref())),
        ("backups", list(backups)),
        ("status", node.status.to_string()),
        ("mode", mode),
        ("agent", or_dash(node.agent_address.as_deref())),
        ("version", or_dash(node.agent_version.as_deref())),
        (
            "last seen",
            node.last_seen_ms
                .map_or_else(|| "-".to_string(), |t| ago(t, now)),
        ),
        ("servers", list(&on_node)),
    ];
    fields(&pairs)
}

/// `managed`, `independent` (running from its local copy) or `-` for a
/// node no agent has registered for.
fn mode_cell(node: &NodeView) -> Cell {
    match (node.status, node.mode) {
        (NodeStatus::Unregistered, _) => "-".into(),
        (_, AgentMode::Managed) => node.mode.to_string().into(),
        (_, AgentMode::Independent) => Cell::coloured(node.mode.to_string(), Colour::Yellow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_core::NodeSpec;

    #[test]
    fn table_shows_address_agent_endpoint_status_and_age() {
        let nodes = vec![
            NodeView {
                spec: NodeSpec {
                    name: "n1".into(),
                    address: "10.0.0.5".into(),
                    // A document saved by an older version: ignored, the
                    // agent's own word counts.
                    agent_port: Some(7171),
                    backup_of: None,
                    shared_dirs: Vec::new(),
                },
                status: NodeStatus::Online,
                agent_address: Some("10.0.0.5:40123".into()),
                agent_version: Some("0.1.0".into()),
                last_seen_ms: Some(9_000),
                servers: 2,
                mode: AgentMode::Managed,
                independent_since_ms: None,
                membership: None,
                membership_since_ms: None,
            },
            NodeView {
                spec: NodeSpec {
                    name: "n3".into(),
                    address: "10.0.0.7".into(),
                    agent_port: None,
                    backup_of: None,
                    shared_dirs: Vec::new(),
                },
                status: NodeStatus::Online,
                agent_address: Some("10.0.9.7:7171".into()),
                agent_version: Some("0.1.0".into()),
                last_seen_ms: Some(10_000),
                servers: 1,
                mode: AgentMode::Independent,
                independent_since_ms: Some(4_000),
                membership: Some(PeerState::Failed),
                membership_since_ms: Some(8_000),
            },
            NodeView {
                spec: NodeSpec {
                    name: "n2".into(),
                    address: String::new(),
                    agent_port: None,
                    backup_of: None,
                    shared_dirs: Vec::new(),
                },
                status: NodeStatus::Unregistered,
                agent_address: None,
                agent_version: None,
                last_seen_ms: None,
                servers: 0,
                mode: AgentMode::Managed,
                independent_since_ms: None,
                membership: None,
                membership_since_ms: None,
            },
        ];
        assert_eq!(
            node_table(&nodes, 10_000).render(false),
            "NAME  ADDRESS   AGENT           STATUS        MODE         SERVERS  VERSION  LAST SEEN  MEMBERSHIP  SINCE\n\
             n1    10.0.0.5  10.0.0.5:40123  online        managed      2        0.1.0    1s ago     -           -\n\
             n3    10.0.0.7  10.0.9.7:7171   online        independent  1        0.1.0    0ms ago    FAILED      2s ago\n\
             n2    -         -               unregistered  -            0        -        -          -           -\n"
        );
    }
}
