//! The client verbs: one module per kind of object, each turning a parsed
//! subcommand into API calls and printing the answer as a table or JSON.

pub mod changes;
pub mod cluster;
pub mod config;
pub mod declarative;
pub mod domain;
pub mod events;
pub mod node;
pub mod operation;
pub mod server;

use crate::cli::Command;
use crate::context::Context;

/// Runs a client verb; role subcommands are handled in `roles`.
pub async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    let changes_configuration = changes_configuration(&command);
    dispatch(ctx, command).await.map_err(|error| {
        if changes_configuration {
            ctx.explain_config_unreachable(error)
        } else {
            error
        }
    })
}

/// Whether a verb changes the configuration, so that an unreachable
/// controller is explained as "configuration changes are unavailable".
fn changes_configuration(command: &Command) -> bool {
    use crate::cli::{ClusterCommand, ConfigCommand, NodeCommand, ServerCommand};
    match command {
        Command::Node(command) => {
            matches!(command, NodeCommand::Create(_) | NodeCommand::Delete { .. })
        }
        Command::Server(command) => matches!(
            command,
            ServerCommand::Create(_) | ServerCommand::Update(_) | ServerCommand::Delete { .. }
        ),
        Command::Cluster(command) => matches!(
            command,
            ClusterCommand::Create { .. }
                | ClusterCommand::Delete { .. }
                | ClusterCommand::AddMember { .. }
                | ClusterCommand::RemoveMember { .. }
        ),
        Command::Changes(args) => args.command.is_some(),
        Command::Config(command) => matches!(command, ConfigCommand::Rollback { .. }),
        Command::Apply(_) => true,
        _ => false,
    }
}

async fn dispatch(ctx: &Context, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node(command) => node::run(ctx, command).await,
        Command::Server(command) => server::run(ctx, command).await,
        Command::Cluster(command) => cluster::run(ctx, command).await,
        Command::Operation(command) => operation::run(ctx, command).await,
        Command::Events(args) => events::run(ctx, args).await,
        Command::Changes(args) => changes::run(ctx, args).await,
        Command::Config(command) => config::run(ctx, command).await,
        Command::Export(args) => declarative::export(ctx, args).await,
        Command::Diff(args) => declarative::diff(ctx, args).await,
        Command::Apply(args) => declarative::apply(ctx, args).await,
        Command::Domain(command) => domain::run(ctx, command).await,
        Command::Controller(_)
        | Command::Agent(_)
        | Command::Up(_)
        | Command::DemoApp(_)
        | Command::Completions { .. } => {
            anyhow::bail!("internal: `{command:?}` is not a client verb")
        }
    }
}
