//! The client verbs: one module per kind of object, each turning a parsed
//! subcommand into API calls and printing the answer as a table or JSON.

pub mod cluster;
pub mod events;
pub mod node;
pub mod operation;
pub mod server;

use crate::cli::Command;
use crate::context::Context;

/// Runs a client verb; role subcommands are handled in `roles`.
pub async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node(command) => node::run(ctx, command).await,
        Command::Server(command) => server::run(ctx, command).await,
        Command::Cluster(command) => cluster::run(ctx, command).await,
        Command::Operation(command) => operation::run(ctx, command).await,
        Command::Events(args) => events::run(ctx, args).await,
        Command::Controller(_)
        | Command::Agent(_)
        | Command::Up(_)
        | Command::DemoApp(_)
        | Command::Completions { .. } => {
            anyhow::bail!("internal: `{command:?}` is not a client verb")
        }
    }
}
