//! The command line: every subcommand, flag and value parser, as clap
//! derive definitions. Nothing here talks to the network; values that clap
//! parses (ports, durations, readiness checks) are refused before anything
//! runs, with exit code 2.

use crate::exit::UsageError;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dure_core::model::MAX_WEIGHT;
use dure_core::{DurationSpec, ReadyCheck, RestartMode, StopSignal};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The default controller API address of the client verbs and the agent:
/// where `dure controller` and `dure up` listen by default, so the defaults
/// meet without flags.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(
    name = "dure",
    version,
    about = "Dure: a cluster manager for application servers",
    long_about = "Dure: a cluster manager for application servers.\n\n\
        Run `dure up --demo` for a controller, an agent and a demo cluster on this machine, \
        then use the client verbs (`dure cluster list`, `dure server logs demo-1`, ...) \
        against it from another shell.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Controller API address.
    #[arg(long, global = true, env = "DURE_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// Bearer token; when unset the client verbs read `<data>/admin.token`.
    #[arg(long, global = true, env = "DURE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory (default: $DURE_HOME, else ./.dure).
    #[arg(long, global = true, env = "DURE_DATA")]
    pub data: Option<PathBuf>,
    /// Output format: table or json; for `export` and `domain pack` also
    /// where to write (a file or directory).
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_name = "table|json|PATH",
        value_parser = parse_output,
        default_value = "table"
    )]
    pub output: Output,
}

/// What `-o` names: a format every verb understands, or — for the verbs that
/// write files — where to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Format(OutputFormat),
    Path(PathBuf),
}

impl Output {
    /// The format to print in (a path means the verb prints a table).
    pub fn format(&self) -> OutputFormat {
        match self {
            Output::Format(format) => *format,
            Output::Path(_) => OutputFormat::Table,
        }
    }
}

fn parse_output(text: &str) -> Result<Output, String> {
    match text {
        "table" => Ok(Output::Format(OutputFormat::Table)),
        "json" => Ok(Output::Format(OutputFormat::Json)),
        "" => Err("give table, json, or (for export and domain pack) a path".into()),
        path => Ok(Output::Path(PathBuf::from(path))),
    }
}

/// Moves an `-o PATH` into the verb that writes files (`export`, `domain
/// pack`); any other verb only takes a format.
pub fn route_output_path(command: Command, output: &Output) -> Result<Command, UsageError> {
    let Output::Path(path) = output else {
        return Ok(command);
    };
    let merge = |given: Option<PathBuf>| match given {
        None => Ok(Some(path.clone())),
        Some(_) => Err(UsageError(format!(
            "the output path is given twice (`-o {}` and an argument); give it once",
            path.display()
        ))),
    };
    match command {
        Command::Export(mut args) => {
            args.path = merge(args.path)?;
            Ok(Command::Export(args))
        }
        Command::Domain(DomainCommand::Pack(mut args)) => {
            args.file = merge(args.file)?;
            Ok(Command::Domain(DomainCommand::Pack(args)))
        }
        _ => Err(UsageError(format!(
            "output format `{}` is invalid: use -o table or -o json (only `dure export` and `dure domain pack` take a path)",
            path.display()
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: configuration, REST API, cluster operations.
    Controller(ControllerArgs),
    /// Run the node agent that starts and watches this host's servers.
    Agent(AgentArgs),
    /// Run a controller and an agent in one process (first try, development).
    Up(UpArgs),
    /// A tiny HTTP app used by `dure up --demo`.
    DemoApp(DemoAppArgs),
    /// Nodes (hosts with an agent).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Servers (supervised processes).
    #[command(subcommand)]
    Server(ServerCommand),
    /// Clusters (ordered groups of servers).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Tracked cluster operations.
    #[command(subcommand)]
    Operation(OperationCommand),
    /// The event log.
    Events(EventsArgs),
    /// Your staged configuration changes: list (`--diff`), `save` or `discard` them.
    Changes(ChangesArgs),
    /// The saved configuration: history, any revision, differences, rollback.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write the configuration: TOML to stdout (`-o json`: JSON), or to PATH
    /// (a directory of JSON documents, FILE.toml or FILE.json).
    Export(ExportArgs),
    /// Show what applying a configuration file or directory would change
    /// (exit 0: nothing, 1: changes, 2 or more: error).
    Diff(TreeFileArgs),
    /// Make the saved configuration exactly a file's or directory's, as one revision.
    Apply(ApplyArgs),
    /// Domain backup and restore: pack, unpack, verify.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Settings of `dure controller`. Each one is taken from its flag, else
/// its `DURE_` variable, else the configuration file, else the default.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Configuration file (TOML) [default: <data>/controller.toml when it exists].
    #[arg(long, env = "DURE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address the API listens on (port 0 picks a free one) [default: 127.0.0.1:7070].
    #[arg(long, env = "DURE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// How often agents must report; a node that misses three is unreachable [default: 1s].
    #[arg(long, env = "DURE_HEARTBEAT", value_name = "DURATION")]
    pub heartbeat: Option<DurationSpec>,
    /// Save configuration changes at once unless a call asks to stage them [default: false].
    #[arg(
        long,
        env = "DURE_AUTO_SAVE",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub auto_save: Option<bool>,
    /// Write a domain pack to <data>/backups/ at every start and keep the newest N (0: off) [default: 0].
    #[arg(long, env = "DURE_BACKUP_ON_BOOT", value_name = "N")]
    pub backup_on_boot: Option<u32>,
    /// Keep the newest N events; housekeeping deletes older ones (0: keep all) [default: 100000].
    #[arg(long, env = "DURE_EVENT_RETENTION", value_name = "N")]
    pub event_retention: Option<u64>,
    /// Keep the newest N cluster operation records; housekeeping deletes older ones, never a running one (0: keep all) [default: 10000].
    #[arg(long, env = "DURE_OPERATION_RETENTION", value_name = "N")]
    pub operation_retention: Option<u64>,
    /// How often housekeeping trims the event log and the history of the controller's own records [default: 5m].
    #[arg(long, env = "DURE_HOUSEKEEPING_INTERVAL", value_name = "DURATION")]
    pub housekeeping_interval: Option<DurationSpec>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Base URL of the controller.
    #[arg(long, env = "DURE_CONTROLLER", default_value = DEFAULT_ADDR)]
    pub controller: String,
    /// Name of this node.
    #[arg(long, env = "DURE_NODE")]
    pub node: String,
    /// Address of the agent's own endpoint (logs, status).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Host name or IP address the controller uses to reach this node.
    #[arg(long, default_value = "127.0.0.1")]
    pub advertise: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address the controller API listens on (port 0 picks a free one).
    #[arg(long, default_value_t = dure_controller::settings::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Name of the local node.
    #[arg(long, default_value = "local")]
    pub node: String,
    /// Define and start a demo cluster of three servers.
    #[arg(long)]
    pub demo: bool,
    /// First port of the demo servers; they use consecutive ports.
    #[arg(long, default_value_t = 8081, value_parser = clap::value_parser!(u16).range(1..=65533))]
    pub demo_port: u16,
    /// On exit, kill every server of the local node first.
    #[arg(long)]
    pub stop_on_exit: bool,
}

#[derive(Debug, Args)]
pub struct DemoAppArgs {
    /// Name the app answers with.
    #[arg(long)]
    pub name: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes with their status.
    List,
    /// Show one node: its definition, its agent and its servers.
    Show { name: String },
    /// Define a node before its agent first registers (registering creates it too).
    Create(CreateNodeArgs),
    /// Delete a node's definition; it must have no servers and no live agent.
    Delete {
        name: String,
        #[command(flatten)]
        save: SaveArgs,
    },
}

#[derive(Debug, Args)]
pub struct CreateNodeArgs {
    /// Node name.
    pub name: String,
    /// Host name or IP address other parts use to reach the node.
    #[arg(long, value_name = "HOST")]
    pub address: String,
    /// The node whose servers this node takes over when that node dies.
    #[arg(long, value_name = "NODE")]
    pub backup_of: Option<String>,
    #[command(flatten)]
    pub save: SaveArgs,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Define a server.
    Create(Box<CreateServerArgs>),
    /// Change a server's definition: only what the flags give; the rest stays.
    Update(Box<UpdateServerArgs>),
    /// List servers.
    List,
    /// Show one server's definition and state.
    Show { name: String },
    /// Start a server and wait until it is ready.
    Start(ServerActionArgs),
    /// Stop a server gracefully and wait until it is stopped.
    Stop(ServerActionArgs),
    /// Kill a server's process group at once.
    Kill(ServerActionArgs),
    /// Delete a server's definition.
    Delete {
        name: String,
        /// Kill the server first if it is running.
        #[arg(long)]
        stop: bool,
        #[command(flatten)]
        save: SaveArgs,
    },
    /// Print a server's log.
    Logs {
        name: String,
        /// Keep printing new output until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
        /// How many lines from the end to print first.
        #[arg(long, value_name = "LINES")]
        tail: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct ServerActionArgs {
    pub name: String,
    /// Return as soon as the controller accepted the request.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this long (default: the server's own timeout plus 30s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<DurationSpec>,
}

#[derive(Debug, Args)]
pub struct CreateServerArgs {
    /// Server name.
    pub name: String,
    /// Node the server runs on.
    #[arg(long)]
    pub node: String,
    #[command(flatten)]
    pub settings: ServerSettings,
    #[command(flatten)]
    pub save: SaveArgs,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// `dure server update`: each flag changes one field, every other field
/// keeps its saved value.
#[derive(Debug, Args)]
pub struct UpdateServerArgs {
    /// Server name.
    pub name: String,
    /// Move the server to another node (a running server cannot move: stop it first).
    #[arg(long)]
    pub node: Option<String>,
    #[command(flatten)]
    pub settings: ServerSettings,
    /// Remove a named port (repeatable).
    #[arg(long = "remove-port", value_name = "NAME")]
    pub remove_ports: Vec<String>,
    /// Remove an environment variable (repeatable).
    #[arg(long = "unset-env", value_name = "KEY")]
    pub unset_env: Vec<String>,
    /// Drop the stop command: stop with the stop signal again.
    #[arg(long, conflicts_with = "stop_command")]
    pub no_stop_command: bool,
    /// Drop the working directory: run in the agent's server directory.
    #[arg(long, conflicts_with = "dir")]
    pub no_dir: bool,
    #[command(flatten)]
    pub save: SaveArgs,
    /// A new program and its arguments, after `--` [default: keep the command].
    #[arg(last = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// The server fields `create` and `update` set from flags.
#[derive(Debug, Args)]
pub struct ServerSettings {
    /// A named port, NAME=PORT (repeatable), such as http=9080.
    #[arg(long = "port", value_name = "NAME=PORT", value_parser = parse_port)]
    pub ports: Vec<(String, u16)>,
    /// Readiness check: http:/PATH, http:PORT:/PATH, tcp:PORT or none.
    #[arg(long, value_name = "CHECK")]
    pub ready: Option<ReadyCheck>,
    /// Time from spawn to ready after which the start counts as failed.
    #[arg(long, value_name = "DURATION")]
    pub ready_timeout: Option<DurationSpec>,
    /// Restart policy: never or on-failure.
    #[arg(long, value_name = "MODE")]
    pub restart: Option<RestartMode>,
    /// Restarts allowed in a row before the server is left failed.
    #[arg(long, value_name = "N")]
    pub max_restarts: Option<u32>,
    /// Time a graceful stop may take before the process group is killed.
    #[arg(long, value_name = "DURATION")]
    pub stop_timeout: Option<DurationSpec>,
    /// Signal of a graceful stop: TERM, INT, QUIT, HUP, USR1 or USR2.
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal)]
    pub stop_signal: Option<StopSignal>,
    /// One word of a stop command run instead of the signal (repeat for each word).
    #[arg(long = "stop-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub stop_command: Vec<String>,
    /// An environment variable, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Working directory on the node (absolute).
    #[arg(long, value_name = "PATH")]
    pub dir: Option<String>,
    /// Relative share of load-balanced traffic.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_WEIGHT)))]
    pub weight: Option<u32>,
}

/// Whether a configuration change is saved at once or staged.
#[derive(Debug, Clone, Copy, Args)]
pub struct SaveArgs {
    /// Save the change at once as its own revision.
    #[arg(long, conflicts_with = "stage")]
    pub save: bool,
    /// Stage the change in your change set (see `dure changes`).
    #[arg(long)]
    pub stage: bool,
}

impl SaveArgs {
    /// The `?save=` to send; neither flag leaves it to the controller.
    pub fn choice(self) -> Option<bool> {
        match (self.save, self.stage) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Define a cluster from existing servers, in start order.
    Create {
        name: String,
        /// A member server (repeat, in start order).
        #[arg(long = "member", value_name = "SERVER", required = true)]
        members: Vec<String>,
        #[command(flatten)]
        save: SaveArgs,
    },
    /// List clusters with their status.
    List,
    /// Show a cluster's members and their states.
    Show { name: String },
    /// Start the members in order (each ready before the next).
    Start {
        name: String,
        /// Start all members at once.
        #[arg(long)]
        parallel: bool,
        /// Go on with the next members when one fails.
        #[arg(long)]
        continue_on_error: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop the members gracefully, in reverse order.
    Stop {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Kill every member at once.
    Kill {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a cluster's definition; its servers stay.
    Delete {
        name: String,
        #[command(flatten)]
        save: SaveArgs,
    },
    /// Add a server to a cluster.
    AddMember {
        name: String,
        server: String,
        /// Index in the member list (0 is first; default: the end).
        #[arg(long)]
        position: Option<usize>,
        #[command(flatten)]
        save: SaveArgs,
    },
    /// Remove a server from a cluster.
    RemoveMember {
        name: String,
        server: String,
        #[command(flatten)]
        save: SaveArgs,
    },
}

#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Return as soon as the operation is created.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum OperationCommand {
    /// Show one operation with its steps.
    Show { id: String },
    /// List operations, newest first.
    List {
        /// Only operations on this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// At most this many (the controller caps it at 1000).
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Write the whole domain (configuration, its history, intents) to one archive.
    Pack(PackArgs),
    /// Prepare a controller data directory (--data) from an archive.
    Unpack(UnpackArgs),
    /// Check every checksum of an archive and print what it holds.
    Verify {
        /// The archive written by `dure domain pack`.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// Where to write: a file, or a directory for the default name
    /// (dure-domain-<name>-rev<N>-<time>.tar.gz) [default: the current directory].
    pub file: Option<PathBuf>,
    /// Also pack the admin token (keep such an archive as secret as the token).
    #[arg(long)]
    pub include_secrets: bool,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The archive written by `dure domain pack`.
    pub file: PathBuf,
    /// Address the new controller listens on: an IP, or IP:PORT [default: the packed one].
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Option<(std::net::IpAddr, Option<u16>)>,
    /// Port of the new controller's API [default: the packed one].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Rename a node: NEW (when the domain has one node) or OLD=NEW.
    #[arg(long, value_name = "[OLD=]NEW")]
    pub node: Option<dure_controller::backup::NodeRename>,
    /// Replace a data directory that is not empty (the old one is moved aside).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ChangesArgs {
    /// Show the unified diff of every staged document.
    #[arg(long)]
    pub diff: bool,
    #[command(subcommand)]
    pub command: Option<ChangesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ChangesCommand {
    /// Save every staged change as one revision.
    Save {
        /// What the revision is for (default: the staged edits, in order).
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Drop every staged change.
    Discard,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Saved versions (1, 2, 3, …), newest first: who saved each, when, and what.
    History {
        /// At most this many versions.
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Print the configuration (or one document) as it was at a version.
    Show {
        /// The version, as `dure config history` numbers it [default: the current one].
        #[arg(long, value_name = "VERSION")]
        rev: Option<u64>,
        /// One document, such as /clusters/shop/cluster.json.
        path: Option<String>,
    },
    /// What changed from version FROM to version TO [default: the current one].
    Diff { from: u64, to: Option<u64> },
    /// Make the configuration equal to version VERSION's, as a new version.
    Rollback {
        #[arg(value_name = "VERSION")]
        number: u64,
    },
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A directory, FILE.toml or FILE.json [default: TOML on stdout].
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TreeFileArgs {
    /// A directory of JSON documents, FILE.toml or FILE.json (as `dure export` writes them).
    #[arg(short, long, value_name = "PATH")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub tree: TreeFileArgs,
    /// Only say what would change.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events after this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: u64,
    /// At most this many events per request.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only events whose subject starts with this, such as `server/web1`.
    #[arg(long, value_name = "PREFIX")]
    pub subject: Option<String>,
    /// Only the newest N events (default 50 unless --after is given).
    #[arg(short = 'n', long, value_name = "N")]
    pub last: Option<usize>,
    /// Keep printing new events until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
}

/// Reads `NAME=PORT`.
pub fn parse_port(text: &str) -> Result<(String, u16), String> {
    let (name, port) = text
        .split_once('=')
        .ok_or_else(|| format!("port `{text}` is invalid: write NAME=PORT, such as http=9080"))?;
    if name.is_empty() {
        return Err(format!(
            "port `{text}` has no name: write NAME=PORT, such as http=9080"
        ));
    }
    let number: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
        format!("port `{text}` is invalid: the port must be a number from 1 to 65535")
    })?;
    Ok((name.to_string(), number))
}

/// Reads a listen address: an IP, or IP:PORT.
pub fn parse_listen(text: &str) -> Result<(std::net::IpAddr, Option<u16>), String> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok((ip, None));
    }
    text.parse::<SocketAddr>()
        .map(|addr| (addr.ip(), Some(addr.port())))
        .map_err(|_| {
            format!("listen address `{text}` is invalid: write an IP such as 0.0.0.0, or IP:PORT such as 0.0.0.0:7070")
        })
}

/// Reads `KEY=VALUE` (the value may be empty and may contain `=`).
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "environment setting `{text}` is invalid: write KEY=VALUE"
        )),
    }
}

/// Reads a signal name with or without `SIG`, in any case.
pub fn parse_signal(text: &str) -> Result<StopSignal, String> {
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    // StopSignal's wire form is its upper-case name; reuse it rather than
    // keeping a second list of names here.
    serde_json::from_value(serde_json::Value::String(bare.to_string())).map_err(|_| {
        format!("stop signal `{text}` is invalid: use TERM, INT, QUIT, HUP, USR1 or USR2")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_output_path_goes_to_the_verb_that_writes_files() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).expect("parses");
            route_output_path(cli.command, &cli.global.output)
        };
        match parse(&["dure", "domain", "pack", "-o", "/tmp/x.tar.gz"]) {
            Ok(Command::Domain(DomainCommand::Pack(args))) => {
                assert_eq!(args.file, Some(PathBuf::from("/tmp/x.tar.gz")));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["dure", "export", "-o", "json"]) {
            Ok(Command::Export(args)) => assert_eq!(args.path, None, "json is a format"),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["dure", "cluster", "list", "-o", "out.txt"]).is_err());
    }

    #[test]
    fn clients_default_to_where_the_controller_listens() {
        let listen = dure_controller::settings::DEFAULT_LISTEN;
        assert_eq!(DEFAULT_ADDR, crate::roles::local_url(listen));
    }

    #[test]
    fn port_values() {
        assert_eq!(parse_port("http=9080"), Ok(("http".into(), 9080)));
        for bad in ["http", "=9080", "http=", "http=0", "http=70000", "http=x"] {
            let err = parse_port(bad).unwrap_err();
            assert!(err.starts_with("port `"), "{bad}: {err}");
        }
    }

    #[test]
    fn listen_values() {
        let ip: std::net::IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(parse_listen("0.0.0.0"), Ok((ip, None)));
        assert_eq!(parse_listen("0.0.0.0:7171"), Ok((ip, Some(7171))));
        assert!(parse_listen("host:1").unwrap_err().contains("IP:PORT"));
    }

    #[test]
    fn env_values() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("A").is_err());
    }

    #[test]
    fn signal_values() {
        assert_eq!(parse_signal("TERM"), Ok(StopSignal::Term));
        assert_eq!(parse_signal("sigusr1"), Ok(StopSignal::Usr1));
        assert_eq!(parse_signal("int"), Ok(StopSignal::Int));
        assert!(parse_signal("KILL").unwrap_err().contains("TERM, INT"));
    }
}
