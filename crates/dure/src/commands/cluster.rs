//! `dure cluster ...`: define clusters, see their status, and start, stop,
//! kill or restart one as a unit through a tracked operation.

use crate::cli::{ClusterCommand, ClusterUpdateArgs, WaitArgs};
use crate::commands::changes::print_change;
use crate::commands::lb::balance_summary;
use crate::commands::server::observed_cell;
use crate::context::Context;
use crate::exit::{Failure, UsageError};
use crate::output::{colour_stdout, or_dash, print_json, Cell, Colour, Table};
use crate::progress::{follow_operation, summary, Mode};
use dure_api::{
    AddMember, ClusterServers, ClusterView, ConfigChange, Operation, OperationKind, OperationStatus,
};
use dure_core::operation::OperationOptions;
use dure_core::template::TransactionPeerRecovery;
use dure_core::{document_digest, ClusterSpec, ClusterStatus, LbSpec, ServerState};

pub async fn run(ctx: &Context, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Create {
            name,
            members,
            save,
        } => {
            let count = members.len();
            let spec = ClusterSpec::new(&name, members);
            let client = ctx.client.clone().with_save(save.choice());
            let changed = client
                .change::<ClusterView>(ConfigChange::CreateCluster(&spec))
                .await?;
            let name = &spec.name;
            print_change(
                ctx,
                &changed,
                format!(
                    "cluster `{name}` created with {count} member(s); start it with `dure cluster start {name}`"
                ),
                format!("cluster `{name}` created with {count} member(s) in your change set"),
            )
        }
        ClusterCommand::List => {
            let clusters = ctx.client.list_clusters().await?;
            if ctx.json() {
                return print_json(&clusters);
            }
            if clusters.is_empty() {
                println!("no clusters yet: define one with `dure cluster create NAME --member SERVER ...`");
                return Ok(());
            }
            cluster_table(&clusters).print();
            Ok(())
        }
        ClusterCommand::Show { name } => {
            let view = ctx.client.get_cluster(&name).await?;
            if ctx.json() {
                return print_json(&view);
            }
            let status = status_cell(view.status).render(colour_stdout());
            println!(
                "cluster {}: {status}, {}/{} ready",
                view.spec.name,
                ready_count(&view),
                view.members.len()
            );
            member_table(&view).print();
            println!("balancing: {}", balance_summary(&view.spec.balance));
            println!("servers: {}", servers_summary(&view.spec));
            let lbs = ctx.client.list_lbs().await?;
            println!("balancers: {}", serving_balancers(&lbs, &view.spec.name));
            Ok(())
        }
        ClusterCommand::Start {
            name,
            parallel,
            continue_on_error,
            wait,
        } => {
            let options = OperationOptions {
                parallel,
                continue_on_error,
                ..OperationOptions::default()
            };
            operate(ctx, &name, OperationKind::Start, options, wait).await
        }
        ClusterCommand::Stop { name, wait } => {
            operate(
                ctx,
                &name,
                OperationKind::Stop,
                OperationOptions::default(),
                wait,
            )
            .await
        }
        ClusterCommand::Kill { name, wait } => {
            operate(
                ctx,
                &name,
                OperationKind::Kill,
                OperationOptions::default(),
                wait,
            )
            .await
        }
        ClusterCommand::Restart {
            name,
            rolling,
            batch,
            wait,
        } => {
            let options = OperationOptions {
                rolling,
                batch,
                ..OperationOptions::default()
            };
            operate(ctx, &name, OperationKind::Restart, options, wait).await
        }
        ClusterCommand::Delete { name, save } => {
            let client = ctx.client.clone().with_save(save.choice());
            let changed = client
                .change::<ClusterSpec>(ConfigChange::DeleteCluster(&name))
                .await?;
            print_change(
                ctx,
                &changed,
                format!("cluster `{name}` deleted; its servers stay"),
                format!("cluster `{name}` deleted in your change set; its servers stay"),
            )
        }
        ClusterCommand::AddMember {
            name,
            server,
            position,
            save,
        } => {
            let member = AddMember {
                server: server.clone(),
                position,
            };
            let client = ctx.client.clone().with_save(save.choice());
            let change = ConfigChange::AddMember {
                cluster: &name,
                member: &member,
            };
            let changed = client.change::<ClusterView>(change).await?;
            let members = changed.value.spec.members.join(", ");
            print_change(
                ctx,
                &changed,
                format!("server `{server}` added to cluster `{name}`; members in order: {members}"),
                format!("server `{server}` added to cluster `{name}` in your change set; members in order: {members}"),
            )
        }
        ClusterCommand::Balance(args) => crate::commands::lb::balance(ctx, args).await,
        ClusterCommand::Update(args) => update(ctx, args).await,
        ClusterCommand::Export(args) => crate::commands::export::run(ctx, args).await,
        ClusterCommand::RemoveMember { name, server, save } => {
            let client = ctx.client.clone().with_save(save.choice());
            let change = ConfigChange::RemoveMember {
                cluster: &name,
                server: &server,
            };
            let changed = client.change::<ClusterView>(change).await?;
            let members = changed.value.spec.members.join(", ");
            print_change(
                ctx,
                &changed,
                format!("server `{server}` removed from cluster `{name}`; members in order: {members}"),
                format!("server `{server}` removed from cluster `{name}` in your change set; members in order: {members}"),
            )
        }
    }
}

/// Changes a cluster's application server settings the flags give, read
/// and written back with the digest of what was read.
async fn update(ctx: &Context, args: ClusterUpdateArgs) -> anyhow::Result<()> {
    if args.session_replication.is_none()
        && args.transaction_log_dir.is_none()
        && !args.no_transaction_peer_recovery
    {
        return Err(UsageError(format!(
            "nothing to change: give what to change about cluster `{}` (see `dure cluster update --help`)",
            args.name
        ))
        .into());
    }
    let name = args.name;
    let reader = ctx.client.clone().with_changes_view(!args.save.save);
    let current = reader.get_cluster(&name).await?.spec;
    let mut settings = ClusterServers {
        session_replication: current.session_replication,
        transaction_peer_recovery: current.transaction_peer_recovery,
    };
    let read = document_digest(&settings);
    if let Some(mode) = args.session_replication {
        settings.session_replication = mode;
    }
    if let Some(dir) = args.transaction_log_dir {
        settings.transaction_peer_recovery = Some(TransactionPeerRecovery {
            enabled: true,
            log_dir: Some(dir),
        });
    }
    if args.no_transaction_peer_recovery {
        settings.transaction_peer_recovery = None;
    }
    let client = ctx
        .client
        .clone()
        .with_save(args.save.choice())
        .with_expect(Some(read));
    let changed = client
        .change::<ClusterView>(ConfigChange::SetClusterServers {
            cluster: &name,
            settings: &settings,
        })
        .await?;
    let summary = servers_summary(&changed.value.spec);
    print_change(
        ctx,
        &changed,
        format!("cluster `{name}` servers: {summary}"),
        format!("cluster `{name}` servers in your change set: {summary}"),
    )
}

/// A cluster's application server settings in one line.
fn servers_summary(spec: &ClusterSpec) -> String {
    let recovery = match &spec.transaction_peer_recovery {
        Some(TransactionPeerRecovery {
            enabled: true,
            log_dir,
        }) => format!(
            "on, logs under {}",
            log_dir.as_deref().unwrap_or("(no directory)")
        ),
        _ => "off".to_string(),
    };
    format!(
        "session replication {}, transaction peer recovery {recovery}",
        spec.session_replication
    )
}

/// Starts, stops or kills a cluster and, unless told not to wait, follows
/// the operation to its end. Exit 1 when it failed.
async fn operate(
    ctx: &Context,
    name: &str,
    kind: OperationKind,
    options: OperationOptions,
    wait: WaitArgs,
) -> anyhow::Result<()> {
    let op = ctx.client.cluster_operation(name, kind, &options).await?;
    follow(ctx, name, op, wait).await
}

/// Follows an operation just begun on cluster `name` to its end, unless
/// told not to wait. Exit 1 when it failed.
pub async fn follow(
    ctx: &Context,
    name: &str,
    op: Operation,
    wait: WaitArgs,
) -> anyhow::Result<()> {
    let kind = op.kind;
    let mode = Mode::choose(ctx.json());
    if wait.no_wait {
        if ctx.json() {
            return print_json(&op);
        }
        println!(
            "operation {} to {kind} cluster `{name}` is {}; follow it with `dure operation show {}`",
            op.id, op.status, op.id
        );
        if let Some(message) = &op.message {
            println!("{message}");
        }
        return Ok(());
    }
    if mode != Mode::Quiet {
        println!("operation {}: {kind} cluster `{name}`", op.id);
    }
    let first_message = op.message.clone();
    if let (Some(message), true) = (&first_message, mode != Mode::Quiet) {
        println!("{message}");
    }
    let done = follow_operation(&ctx.client, op, mode).await?;
    if ctx.json() {
        print_json(&done)?;
    } else {
        if done.message.is_some()
            && done.message != first_message
            && done.status != OperationStatus::Failed
        {
            println!("{}", done.message.as_deref().unwrap_or_default());
        }
        if done.status != OperationStatus::Failed {
            println!("{}", summary(&done));
        }
    }
    if done.status == OperationStatus::Failed {
        // In JSON mode the document says it all; the message still goes to
        // stderr so a script's log shows why.
        return Err(Failure(summary(&done)).into());
    }
    Ok(())
}

/// Returns the status light as a cell, coloured like itself.
pub fn status_cell(status: ClusterStatus) -> Cell {
    let colour = match status {
        ClusterStatus::Green => Colour::Green,
        ClusterStatus::Yellow => Colour::Yellow,
        ClusterStatus::Red => Colour::Red,
        ClusterStatus::Gray => Colour::Gray,
    };
    Cell::coloured(status.to_string(), colour)
}

fn ready_count(view: &ClusterView) -> usize {
    view.members
        .iter()
        .filter(|m| m.observed.state == ServerState::Ready)
        .count()
}

/// Returns the cluster list table.
pub fn cluster_table(clusters: &[ClusterView]) -> Table {
    let mut table = Table::new(&["NAME", "STATUS", "MEMBERS", "READY"]);
    for view in clusters {
        table.row(vec![
            view.spec.name.as_str().into(),
            status_cell(view.status),
            view.spec.members.len().to_string().into(),
            ready_count(view).to_string().into(),
        ]);
    }
    table
}

/// Returns the members of a cluster in start order.
pub fn member_table(view: &ClusterView) -> Table {
    let mut table = Table::new(&[
        "#",
        "SERVER",
        "NODE",
        "STATE",
        "PID",
        "RESTARTS",
        "LAST ERROR",
    ]);
    for (i, member) in view.members.iter().enumerate() {
        let observed = &member.observed;
        table.row(vec![
            (i + 1).to_string().into(),
            member.server.as_str().into(),
            member.node.as_str().into(),
            observed_cell(observed),
            or_dash(observed.pid.filter(|_| observed.state.is_alive())).into(),
            observed.restarts.to_string().into(),
            or_dash(observed.last_error.as_deref()).into(),
        ]);
    }
    table
}

/// The balancers with a route to `cluster`, each with the listeners that
/// route there (`front on 0.0.0.0:8080`), or `none`.
fn serving_balancers(lbs: &[LbSpec], cluster: &str) -> String {
    let serving: Vec<String> = lbs
        .iter()
        .filter_map(|lb| {
            let listens: Vec<&str> = lb
                .listeners
                .iter()
                .filter(|l| l.routes.iter().any(|r| r.cluster == cluster))
                .map(|l| l.listen.as_str())
                .collect();
            (!listens.is_empty()).then(|| format!("{} on {}", lb.name, listens.join(", ")))
        })
        .collect();
    if serving.is_empty() {
        "none (`dure lb create NAME --listen IP:PORT --route CLUSTER` puts one in front)"
            .to_string()
    } else {
        serving.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_api::MemberView;
    use dure_core::ObservedServer;

    fn member(name: &str, state: ServerState, pid: Option<u32>, error: Option<&str>) -> MemberView {
        MemberView {
            server: name.into(),
            node: "local".into(),
            observed: ObservedServer {
                name: name.into(),
                state,
                pid,
                since_ms: 0,
                restarts: 0,
                exit_code: None,
                last_error: error.map(str::to_string),
                generation: 1,
                restart_needed: false,
            },
        }
    }

    fn demo() -> ClusterView {
        ClusterView {
            spec: ClusterSpec::new("demo", vec!["demo-1".into(), "demo-2".into()]),
            status: ClusterStatus::Yellow,
            members: vec![
                member("demo-1", ServerState::Ready, Some(10), None),
                member(
                    "demo-2",
                    ServerState::Failed,
                    Some(11),
                    Some("exited with code 1"),
                ),
            ],
        }
    }

    #[test]
    fn list_shows_light_members_and_ready() {
        assert_eq!(
            cluster_table(&[demo()]).render(false),
            "NAME  STATUS  MEMBERS  READY\ndemo  yellow  2        1\n"
        );
        assert!(cluster_table(&[demo()])
            .render(true)
            .contains("\x1b[33myellow\x1b[0m"));
    }

    #[test]
    fn show_lists_members_in_order() {
        assert_eq!(
            member_table(&demo()).render(false),
            "#  SERVER  NODE   STATE   PID  RESTARTS  LAST ERROR\n\
             1  demo-1  local  ready   10   0         -\n\
             2  demo-2  local  failed  -    0         exited with code 1\n"
        );
    }
}
