//! The client verbs: one module per kind of object, each turning a parsed
//! subcommand into API calls and printing the answer as a table or JSON.

pub mod app;
pub mod audit;
pub mod changes;
pub mod cluster;
pub mod config;
pub mod declarative;
pub mod domain;
pub mod events;
pub mod export;
pub mod lb;
pub mod node;
pub mod operation;
pub mod server;
pub mod token;

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
    use crate::cli::{ClusterCommand, ConfigCommand, LbCommand, NodeCommand, ServerCommand};
    match command {
        Command::Node(verb) => {
            matches!(
                verb.command,
                NodeCommand::Create(_) | NodeCommand::Delete { .. }
            )
        }
        Command::Server(verb) => matches!(
            verb.command,
            ServerCommand::Create(_) | ServerCommand::Update(_) | ServerCommand::Delete { .. }
        ),
        Command::Cluster(verb) => matches!(
            verb.command,
            ClusterCommand::Create { .. }
                | ClusterCommand::Delete { .. }
                | ClusterCommand::AddMember { .. }
                | ClusterCommand::RemoveMember { .. }
                | ClusterCommand::Balance(_)
        ),
        Command::Lb(verb) => matches!(
            verb.command,
            LbCommand::Create { .. } | LbCommand::Delete { .. } | LbCommand::Route { .. }
        ),
        Command::Changes(args) => args.command.is_some(),
        Command::Config(verb) => matches!(verb.command, ConfigCommand::Rollback { .. }),
        Command::Apply(_) => true,
        _ => false,
    }
}

async fn dispatch(ctx: &Context, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node(verb) => node::run(ctx, verb.command).await,
        Command::Server(verb) => server::run(ctx, verb.command).await,
        Command::Cluster(verb) => cluster::run(ctx, verb.command).await,
        Command::Lb(verb) => lb::run(ctx, verb.command).await,
        Command::Operation(verb) => operation::run(ctx, verb.command).await,
        Command::App(verb) => app::run(ctx, verb.command).await,
        Command::Events(leaf) => events::run(ctx, leaf.args).await,
        Command::Changes(args) => changes::run(ctx, args).await,
        Command::Config(verb) => config::run(ctx, verb.command).await,
        Command::Export(args) => declarative::export(ctx, args).await,
        Command::Diff(leaf) => declarative::diff(ctx, leaf.args).await,
        Command::Apply(leaf) => declarative::apply(ctx, leaf.args).await,
        Command::Domain(args) => domain::run(ctx, args.command).await,
        Command::Token(verb) => token::run(ctx, verb.command).await,
        Command::Audit(leaf) => audit::run(ctx, leaf.args).await,
        Command::Controller(_)
        | Command::Agent(_)
        | Command::Up(_)
        | Command::DemoApp(_)
        | Command::Completions { .. } => {
            anyhow::bail!("internal: `{command:?}` is not a client verb")
        }
    }
}
