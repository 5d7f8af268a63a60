//! `dure`: the one binary of Dure. Role subcommands (`controller`, `agent`,
//! `up`, `demo-app`, `lb run`) run a long-lived process; client verbs (`node`,
//! `server`, `cluster`, `lb`, `operation`, `events`, `changes`, `config`, `token`, `audit`,
//! `export`, `diff`, `apply`, `domain`) talk to the controller's API or, for
//! `domain`, read archives and data directories. This module parses the
//! command line, sets up logging and the async runtime, and turns the
//! outcome into an exit code.

mod cli;
mod commands;
mod context;
mod controller_settings;
mod demo;
mod demo_app;
mod exit;
mod lb_role;
mod output;
mod progress;
mod roles;
mod signal;
mod spec;
mod tree;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command, LbCommand, Verb};
use context::Context;
use exit::{exit_for, Exit};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    // clap prints help and version with exit 0 and usage errors with exit 2.
    let cli = Cli::parse();
    init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(Exit::Failed.code());
        }
    };
    let result = runtime.block_on(run(cli));
    // Tasks of the controller or agent that ignore shutdown must not keep
    // the process alive.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::from(Exit::Success.code()),
        Err(error) => {
            match error.downcast_ref::<exit::Answer>() {
                Some(answer) => eprintln!("{answer}"),
                None => eprintln!("error: {error:#}"),
            }
            ExitCode::from(exit_for(&error).code())
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Controller(args) => roles::controller(args).await,
        Command::Agent(args) => roles::agent(args).await,
        Command::Up(args) => roles::up(args).await,
        Command::DemoApp(args) => demo_app::run(args).await,
        Command::Lb(Verb {
            client,
            command: LbCommand::Run(args),
            ..
        }) => roles::lb(client, args).await,
        Command::Completions { shell } => {
            restore_sigpipe();
            clap_complete::generate(shell, &mut Cli::command(), "dure", &mut std::io::stdout());
            Ok(())
        }
        command => {
            restore_sigpipe();
            let Some((client, output)) = command.client() else {
                anyhow::bail!("internal: `{command:?}` is not a client verb");
            };
            let ctx = Context::new(client, output)?;
            commands::run(&ctx, command)
                .await
                .map_err(|error| ctx.explain(error))
        }
    }
}

/// Lets `dure events | head` end quietly: Rust ignores SIGPIPE, which turns
/// a closed pipe into a panic in `println!`. Only for short-lived client
/// commands; the roles keep ignoring it so a vanished peer cannot kill them.
fn restore_sigpipe() {
    // SAFETY: resetting a signal disposition to its default has no memory
    // effects; no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs go to stderr. Roles that run alone log at info; `up` and the client
/// verbs only warn, so their own output stays readable. `RUST_LOG` wins.
fn init_tracing(command: &Command) {
    let default = match command {
        Command::Controller(_) | Command::Agent(_) => "info",
        Command::Lb(verb) if matches!(verb.command, LbCommand::Run(_)) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
