//! The command line: every subcommand, flag and value parser, as clap
//! derive definitions. Nothing here talks to the network; values that clap
//! parses (ports, durations, readiness checks) are refused before anything
//! runs, with exit code 2.
//!
//! Each subcommand takes only the flags that apply to it: the client verbs
//! take [`ClientArgs`] (where the controller is, the token) and an output
//! format, the roles their own. Values that `DURE_` variables may give are
//! read from the environment here, after parsing, not by clap: clap would
//! list an argument given by a variable in its usage lines as if it were
//! required.

use crate::exit::UsageError;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dure_core::model::MAX_WEIGHT;
use dure_core::{DurationSpec, ReadyCheck, RestartMode, StopSignal};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The default controller API address of the client verbs and the agent:
/// where `dure controller` and `dure up` listen by default, so the defaults
/// meet without flags.
pub const DEFAULT_ADDR: &str = "https://127.0.0.1:7070";

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
    #[command(subcommand)]
    pub command: Command,
}

/// Returns a `DURE_` variable's value; an empty one counts as unset.
pub fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Where a client verb finds the controller and its token.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Controller API address, such as https://ctl-host:7070 [env: DURE_ADDR] [default: https://127.0.0.1:7070].
    #[arg(long, global = true, value_name = "URL")]
    pub addr: Option<String>,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub ca: CaArg,
    #[command(flatten)]
    pub data: DataArg,
}

impl ClientArgs {
    /// The flag, else `DURE_ADDR`, else the default.
    pub fn addr(&self) -> String {
        self.addr
            .clone()
            .or_else(|| env_value("DURE_ADDR"))
            .unwrap_or_else(|| DEFAULT_ADDR.to_string())
    }
}

/// The bearer token, given on the command line or (kept out of `ps`) in a file.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Bearer token; others on this host can read it in `ps`, so prefer --token-file [env: DURE_TOKEN].
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the bearer token, such as the controller's admin.token (surrounding whitespace is ignored) [env: DURE_TOKEN_FILE].
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// The CA an HTTPS client trusts.
#[derive(Debug, Clone, Args)]
pub struct CaArg {
    /// CA certificate (PEM) the controller's certificate must be signed by [env: DURE_CA] [default: ca.pem in the data directory].
    #[arg(long = "ca", global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl CaArg {
    /// The flag, else `DURE_CA` (`None`: neither; the data directory's).
    pub fn given(&self) -> Option<PathBuf> {
        self.ca
            .clone()
            .or_else(|| env_value("DURE_CA").map(PathBuf::from))
    }
}

/// The data directory.
#[derive(Debug, Clone, Args)]
pub struct DataArg {
    /// Data directory [env: DURE_DATA] [default: $DURE_HOME, else ./.dure].
    #[arg(long = "data", global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

impl DataArg {
    /// The flag, else `DURE_DATA` (`None`: neither; see `context::data_dir`).
    pub fn given(&self) -> Option<PathBuf> {
        self.data
            .clone()
            .or_else(|| env_value("DURE_DATA").map(PathBuf::from))
    }
}

/// `-o` of the verbs that only print.
#[derive(Debug, Clone, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_name = "table|json",
        value_parser = parse_format,
        default_value = "table"
    )]
    pub output: OutputFormat,
}

/// `-o` of the verbs that write a file: a format, or where to write.
#[derive(Debug, Clone, Args)]
pub struct OutputArg {
    /// Output format (table or json), or the PATH to write to.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "table|json|PATH",
        value_parser = parse_output,
        default_value = "table"
    )]
    pub output: Output,
}

impl OutputArg {
    /// The path given both as `-o PATH` and as the argument, refused; else
    /// whichever was given.
    pub fn path(&self, given: Option<PathBuf>) -> Result<Option<PathBuf>, UsageError> {
        match (&self.output, given) {
            (Output::Path(path), Some(_)) => Err(UsageError(format!(
                "the output path is given twice (`-o {}` and an argument); give it once",
                path.display()
            ))),
            (Output::Path(path), None) => Ok(Some(path.clone())),
            (Output::Format(_), given) => Ok(given),
        }
    }
}

/// What `-o` names on a verb that writes files: a format, or where to write.
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
        "" => Err("give table, json, or a path".into()),
        path => Ok(parse_format(path)
            .map(Output::Format)
            .unwrap_or_else(|_| Output::Path(PathBuf::from(path)))),
    }
}

fn parse_format(text: &str) -> Result<OutputFormat, String> {
    match text {
        "table" => Ok(OutputFormat::Table),
        "json" => Ok(OutputFormat::Json),
        other => Err(format!(
            "output format `{other}` is invalid: use -o table or -o json (only `dure export` and `dure domain pack` take a path)"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// A group of client verbs: where the controller is, the output format,
/// then the verb.
#[derive(Debug, Args)]
pub struct Verb<C: Subcommand> {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(subcommand)]
    pub command: C,
}

/// One client verb without subcommands: where the controller is, the
/// output format, then the verb's own arguments.
#[derive(Debug, Args)]
pub struct Leaf<A: Args> {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub args: A,
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
    Node(Verb<NodeCommand>),
    /// Servers (supervised processes).
    Server(Verb<ServerCommand>),
    /// Clusters (ordered groups of servers).
    Cluster(Verb<ClusterCommand>),
    /// Balancers: definitions, routes, and `dure lb run` to run one.
    Lb(Verb<LbCommand>),
    /// Applications of a cluster: deploy (rolling), list, show, history, rollback.
    App(Verb<AppCommand>),
    /// Tracked cluster operations.
    Operation(Verb<OperationCommand>),
    /// The event log.
    Events(Leaf<EventsArgs>),
    /// Your staged configuration changes: list (`--diff`), `save` or `discard` them.
    Changes(ChangesArgs),
    /// The saved configuration: history, any revision, differences, rollback.
    Config(Verb<ConfigCommand>),
    /// Write the configuration: TOML to stdout (`-o json`: JSON), or to PATH
    /// (a directory of JSON documents, FILE.toml or FILE.json).
    Export(ExportArgs),
    /// Show what applying a configuration file or directory would change
    /// (exit 0: nothing, 1: changes, 2 or more: error).
    Diff(Leaf<TreeFileArgs>),
    /// Make the saved configuration exactly a file's or directory's, as one revision.
    Apply(Leaf<ApplyArgs>),
    /// Domain backup and restore: pack, unpack, verify.
    Domain(DomainArgs),
    /// API tokens with roles (admin, operator, viewer): create, list, revoke.
    Token(Verb<TokenCommand>),
    /// The audit log: every mutating call and every denied call.
    Audit(Leaf<AuditArgs>),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// How a client verb reaches the controller and prints; `None` for the
    /// roles and `completions`.
    pub fn client(&self) -> Option<(&ClientArgs, OutputFormat)> {
        match self {
            Command::Node(v) => Some((&v.client, v.format.output)),
            Command::Server(v) => Some((&v.client, v.format.output)),
            Command::Cluster(v) => Some((&v.client, v.format.output)),
            Command::Lb(v) => Some((&v.client, v.format.output)),
            Command::Operation(v) => Some((&v.client, v.format.output)),
            Command::App(v) => Some((&v.client, v.format.output)),
            Command::Config(v) => Some((&v.client, v.format.output)),
            Command::Token(v) => Some((&v.client, v.format.output)),
            Command::Audit(l) => Some((&l.client, l.format.output)),
            Command::Events(l) => Some((&l.client, l.format.output)),
            Command::Diff(l) => Some((&l.client, l.format.output)),
            Command::Apply(l) => Some((&l.client, l.format.output)),
            Command::Changes(a) => Some((&a.client, a.format.output)),
            Command::Export(a) => Some((&a.client, a.output.output.format())),
            Command::Domain(a) => Some((&a.client, a.command.format())),
            Command::Controller(_)
            | Command::Agent(_)
            | Command::Up(_)
            | Command::DemoApp(_)
            | Command::Completions { .. } => None,
        }
    }
}

/// Settings of `dure controller`. Each one is taken from its flag, else
/// its `DURE_` variable, else the configuration file, else the default.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// Configuration file (TOML) [default: <data>/controller.toml when it exists].
    #[arg(long, env = "DURE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address the API listens on, HOST:PORT (port 0 picks a free one; a host name binds the first address it resolves to, IPv4 first) [default: 127.0.0.1:7070].
    #[arg(long, env = "DURE_LISTEN", value_name = "HOST:PORT", value_parser = resolve_listen)]
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
    /// Keep the newest N application versions of each cluster; housekeeping deletes older ones and the artifacts only they named, never a context's newest nor one a member has (0: keep all) [default: 20].
    #[arg(long, env = "DURE_APP_VERSIONS_KEPT", value_name = "N")]
    pub app_versions_kept: Option<u64>,
    /// How often housekeeping trims the event log and the history of the controller's own records [default: 5m].
    #[arg(long, env = "DURE_HOUSEKEEPING_INTERVAL", value_name = "DURATION")]
    pub housekeeping_interval: Option<DurationSpec>,
    /// The largest application artifact an upload may store, in bytes; a larger one is refused [default: 536870912 (512 MiB)].
    #[arg(long, env = "DURE_ARTIFACT_MAX_BYTES", value_name = "BYTES")]
    pub artifact_max_bytes: Option<u64>,
    /// Host name or address clients and agents reach the controller by, written into its certificate (repeatable; localhost, 127.0.0.1 and the listen address always are).
    #[arg(long, value_name = "HOST")]
    pub advertise: Vec<String>,
    /// Serve plain HTTP instead of HTTPS; only allowed when --listen is a loopback address [default: false].
    #[arg(long, env = "DURE_INSECURE_HTTP", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_http: Option<bool>,
    /// Your own CA certificate (PEM) instead of the built-in CA in the data directory; with --tls-ca-key it issues the server and node certificates.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-ca-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_key: Option<PathBuf>,
    /// Your own server certificate chain (PEM) instead of one the CA issues at every start; needs --tls-key and --tls-ca-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// How long the node certificates issued to agents are valid; agents renew them at two thirds [default: 720h].
    #[arg(long, env = "DURE_NODE_CERT_LIFETIME", value_name = "DURATION")]
    pub node_cert_lifetime: Option<DurationSpec>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Base URL of the controller, such as https://ctl-host:7070 [env: DURE_CONTROLLER] [default: https://127.0.0.1:7070].
    #[arg(long, alias = "addr", value_name = "URL")]
    pub controller: Option<String>,
    /// Name of this node (required) [env: DURE_NODE].
    #[arg(long)]
    pub node: Option<String>,
    /// Address of the agent's own endpoint (logs, status), HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "HOST:PORT", value_parser = resolve_listen)]
    pub listen: SocketAddr,
    /// Host name or IP address the controller uses to reach this node.
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
    pub advertise: String,
    /// Where the membership UDP socket binds, HOST:PORT [default: the --listen address's IP, a free port].
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve_listen)]
    pub membership_listen: Option<SocketAddr>,
    /// Join the membership through a live member's membership address, IP:PORT (repeatable).
    #[arg(long, value_name = "IP:PORT")]
    pub join: Vec<SocketAddr>,
    /// One-time join token (`dure token create --join --node NAME`) for an agent without a valid node certificate in its data directory; others on this host can read it in `ps`, so prefer --join-token-file [env: DURE_JOIN_TOKEN].
    #[arg(long, value_name = "TOKEN", conflicts_with = "join_token_file")]
    pub join_token: Option<String>,
    /// File holding the join token (surrounding whitespace is ignored) [env: DURE_JOIN_TOKEN_FILE].
    #[arg(long, value_name = "PATH")]
    pub join_token_file: Option<PathBuf>,
    /// A bearer token instead of a node certificate, for tools and tests; agents join with join tokens.
    #[command(flatten)]
    pub token: TokenArgs,
    /// CA certificate (PEM) the controller's certificate must be signed by [env: DURE_CA] [default: ca.pem in the agent's data directory].
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Data directory [env: DURE_DATA] [default: $DURE_HOME/agent-NODE, else ./.dure/agent-NODE].
    #[arg(long = "data", value_name = "DIR")]
    pub data: Option<PathBuf>,
}

impl AgentArgs {
    /// The join token: `--join-token`, else `--join-token-file`, else
    /// `DURE_JOIN_TOKEN`, else `DURE_JOIN_TOKEN_FILE`.
    pub fn join_token(&self) -> Result<Option<String>, UsageError> {
        let file = self
            .join_token_file
            .clone()
            .or_else(|| env_value("DURE_JOIN_TOKEN_FILE").map(PathBuf::from));
        if let Some(token) = self.join_token.clone().filter(|t| !t.is_empty()) {
            return Ok(Some(token));
        }
        if self.join_token_file.is_none() {
            if let Some(token) = env_value("DURE_JOIN_TOKEN") {
                return Ok(Some(token));
            }
        }
        let Some(path) = file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            UsageError(format!(
                "cannot read the join token file {}: {}",
                path.display(),
                e.to_string().to_lowercase()
            ))
        })?;
        match text.trim() {
            "" => Err(UsageError(format!(
                "the join token file {} is empty: it must hold the token `dure token create --join --node NAME` printed",
                path.display()
            ))),
            token => Ok(Some(token.to_string())),
        }
    }

    /// The flag, else `DURE_CONTROLLER`, else the default.
    pub fn controller(&self) -> String {
        self.controller
            .clone()
            .or_else(|| env_value("DURE_CONTROLLER"))
            .unwrap_or_else(|| DEFAULT_ADDR.to_string())
    }

    /// The flag, else `DURE_NODE`; one of them is required.
    pub fn node(&self) -> Result<String, UsageError> {
        self.node
            .clone()
            .or_else(|| env_value("DURE_NODE"))
            .ok_or_else(|| {
                UsageError(
                    "the agent needs its node's name: pass --node NAME or set DURE_NODE".into(),
                )
            })
    }

    /// The flag, else `DURE_DATA`.
    pub fn data(&self) -> Option<PathBuf> {
        self.data
            .clone()
            .or_else(|| env_value("DURE_DATA").map(PathBuf::from))
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// Address the controller API listens on, HOST:PORT (port 0 picks a free one; a host name binds the first address it resolves to, IPv4 first).
    #[arg(long, default_value_t = dure_controller::settings::DEFAULT_LISTEN, value_name = "HOST:PORT", value_parser = resolve_listen)]
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
    /// With --demo: where the in-process balancer puts the demo cluster, IP:PORT.
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        value_name = "IP:PORT",
        requires = "demo"
    )]
    pub lb_listen: SocketAddr,
    /// Without --demo: the balancer this process serves once it is defined (`dure lb create NAME …`).
    #[arg(
        long,
        default_value = "local",
        value_name = "NAME",
        conflicts_with = "demo"
    )]
    pub lb: String,
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
    /// List nodes with their status and membership state.
    List {
        /// Show this node's own view of its peers instead (as its agent last reported it).
        #[arg(long, value_name = "NODE")]
        from: Option<String>,
    },
    /// Show one node: its definition, its agent and its servers.
    Show { name: String },
    /// Define a node before its agent first registers (registering creates it too).
    Create(CreateNodeArgs),
    /// Change a node's definition: only what the flags give; the rest stays.
    Update(UpdateNodeArgs),
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
    /// A directory on a shared filesystem the node reaches (repeatable), such as a transaction log directory.
    #[arg(long = "shared-dir", value_name = "DIR")]
    pub shared_dirs: Vec<String>,
    #[command(flatten)]
    pub save: SaveArgs,
}

#[derive(Debug, Args)]
pub struct UpdateNodeArgs {
    /// Node name.
    pub name: String,
    /// Host name or IP address other parts use to reach the node.
    #[arg(long, value_name = "HOST")]
    pub address: Option<String>,
    /// The node whose servers this node takes over when that node dies.
    #[arg(long, value_name = "NODE", conflicts_with = "no_backup_of")]
    pub backup_of: Option<String>,
    /// Make this node the backup of no node.
    #[arg(long)]
    pub no_backup_of: bool,
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
    /// Print the configuration files Dure writes for a templated server.
    Config { name: String },
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
    /// An application server template, tomcat or liberty: Dure writes its configuration files and runs it (give no command then).
    #[arg(long, value_name = "KIND")]
    pub template: Option<dure_core::template::TemplateKind>,
    #[command(flatten)]
    pub settings: ServerSettings,
    #[command(flatten)]
    pub save: SaveArgs,
    /// The program and its arguments, after `--` (not with --template).
    #[arg(last = true, required_unless_present = "template", value_name = "CMD")]
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
    /// Drop the application directory.
    #[arg(long, conflicts_with = "app_dir")]
    pub no_app_dir: bool,
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
    /// Directory on the node where `dure app deploy` installs this server's applications (absolute).
    #[arg(long, value_name = "DIR")]
    pub app_dir: Option<PathBuf>,
    /// Relative share of load-balanced traffic.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_WEIGHT)))]
    pub weight: Option<u32>,
    /// A templated server's JVM heap, such as 512m or 2g.
    #[arg(long, value_name = "SIZE")]
    pub heap: Option<dure_core::template::HeapSize>,
    /// A templated server's Java installation (absolute) [default: found on the node].
    #[arg(long, value_name = "DIR")]
    pub java_home: Option<String>,
    /// A Tomcat server's installation, CATALINA_HOME (absolute) [default: /usr/share/tomcat10].
    #[arg(long, value_name = "DIR")]
    pub catalina_home: Option<String>,
    /// A Liberty server's installation, the `wlp` directory (absolute) [default: /opt/ol/wlp].
    #[arg(long, value_name = "DIR")]
    pub wlp_home: Option<String>,
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
    /// Restart the members: stop all then start all, or --rolling batch by batch (drain, stop, start, ready, back in rotation).
    Restart {
        name: String,
        /// One batch at a time, the others serving; a member that does not come back ready ends it.
        #[arg(long)]
        rolling: bool,
        /// Members per batch of a rolling restart [default: 1].
        #[arg(long, value_name = "N", requires = "rolling", value_parser = clap::value_parser!(u32).range(1..))]
        batch: Option<u32>,
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
    /// Set how balancers spread requests over the members (a member's weight is its server's --weight).
    Balance(BalanceArgs),
    /// Set the members' application server settings: session replication, transaction peer recovery.
    Update(ClusterUpdateArgs),
    /// Write the cluster's members and balancing as an HAProxy backend, an nginx upstream or a plugin-cfg.xml.
    Export(ClusterExportArgs),
}

/// Flags of `dure cluster update`: each changes one setting, the others stay.
#[derive(Debug, Args)]
pub struct ClusterUpdateArgs {
    pub name: String,
    /// How Tomcat members share sessions: none, delta (every member holds every session) or backup (one backup copy).
    #[arg(long, value_name = "MODE")]
    pub session_replication: Option<dure_core::template::SessionReplication>,
    /// Turn Liberty transaction peer recovery on, with the members' logs under this shared directory.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "no_transaction_peer_recovery"
    )]
    pub transaction_log_dir: Option<String>,
    /// Turn Liberty transaction peer recovery off.
    #[arg(long)]
    pub no_transaction_peer_recovery: bool,
    #[command(flatten)]
    pub save: SaveArgs,
}

/// Flags of `dure cluster export`.
#[derive(Debug, Args)]
pub struct ClusterExportArgs {
    pub name: String,
    /// haproxy (a backend section), nginx (an upstream block) or plugin-cfg (a WebSphere-style plugin-cfg.xml).
    #[arg(long, value_name = "FORMAT", value_parser = parse_export_format)]
    pub format: dure_core::lb_export::ExportFormat,
    /// The file to write [default: stdout]. An argument rather than `-o`,
    /// which every cluster verb takes as table|json.
    #[arg(value_name = "PATH")]
    pub file: Option<PathBuf>,
}

fn parse_export_format(text: &str) -> Result<dure_core::lb_export::ExportFormat, String> {
    text.parse()
        .map_err(|e: dure_core::lb_export::UnknownFormat| e.to_string())
}

/// Flags of `dure cluster balance`: each one given replaces that setting,
/// the others stay as they are.
#[derive(Debug, Args)]
pub struct BalanceArgs {
    pub name: String,
    /// round_robin (smooth weighted), random (weighted), least_conn or ip_hash.
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    pub policy: Option<dure_core::balance::Policy>,
    /// none, cookie (the balancer sets a route cookie) or session (the route is the suffix of the application's session id, as Tomcat's jvmRoute).
    #[arg(long, value_name = "MODE", value_enum)]
    pub sticky: Option<StickyMode>,
    /// The sticky cookie's name [default: DURE_ROUTE for cookie, JSESSIONID for session].
    #[arg(long, value_name = "NAME", requires = "sticky")]
    pub cookie: Option<String>,
    /// The balancer's active check of each member's http port: tcp or http:/PATH.
    #[arg(long, value_name = "CHECK")]
    pub check: Option<dure_core::ActiveCheck>,
    /// Time between two checks of a member.
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<DurationSpec>,
    /// Passed checks in a row that put a member back.
    #[arg(long, value_name = "N")]
    pub rise: Option<u32>,
    /// Failed checks in a row that take a member out.
    #[arg(long, value_name = "N")]
    pub fall: Option<u32>,
    /// How long a draining member keeps its sticky sessions.
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<DurationSpec>,
    /// A member used only while every other is down (repeat; replaces the list).
    #[arg(long = "backup", value_name = "SERVER")]
    pub backup: Vec<String>,
    /// No backup members.
    #[arg(long, conflicts_with = "backup")]
    pub no_backup: bool,
    #[command(flatten)]
    pub save: SaveArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StickyMode {
    None,
    Cookie,
    Session,
}

fn parse_policy(text: &str) -> Result<dure_core::balance::Policy, String> {
    text.parse()
        .map_err(|e: dure_core::balance::UnknownPolicy| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// Define a balancer: where it listens and, optionally, its first routes.
    Create {
        name: String,
        /// Address to listen on, IP:PORT such as 0.0.0.0:8080 (repeat for more listeners).
        #[arg(long = "listen", value_name = "IP:PORT", required = true)]
        listen: Vec<String>,
        /// TLS certificate chain (PEM file on the balancer's host) for the listeners.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM file on the balancer's host).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// A route of every listener: CLUSTER, or [HOST][/PATH]=CLUSTER such as shop.example.com/cart=cart (repeat).
        #[arg(long = "route", value_name = "ROUTE", value_parser = parse_route)]
        routes: Vec<dure_core::Route>,
        #[command(flatten)]
        save: SaveArgs,
    },
    /// List balancers with their listeners and routes.
    List,
    /// Show a balancer's listeners and routes.
    Show { name: String },
    /// Delete a balancer's definition (running `dure lb run` instances keep their last table).
    Delete {
        name: String,
        #[command(flatten)]
        save: SaveArgs,
    },
    /// Add or remove a balancer's routes.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Run a balancer: serve its definition, following the controller live.
    Run(LbRunArgs),
    /// Show each member's share of requests, responses, errors, latency and health, as the running balancers report them.
    Stats {
        /// Only this balancer [default: every balancer with a running instance].
        lb: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Send requests matching a host and path prefix to a cluster.
    Add {
        lb: String,
        #[command(flatten)]
        route: RouteArgs,
        #[command(flatten)]
        save: SaveArgs,
    },
    /// Remove the route matching a host and path prefix.
    Remove {
        lb: String,
        #[command(flatten)]
        route: RouteArgs,
        #[command(flatten)]
        save: SaveArgs,
    },
}

/// Which route, on which listener.
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// The cluster requests go to (required to add; to remove, only that cluster's route).
    #[arg(long, value_name = "CLUSTER")]
    pub cluster: Option<String>,
    /// Only requests for this host (the Host header) [default: any host].
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only requests whose path starts with this prefix [default: any path].
    #[arg(long, value_name = "PREFIX")]
    pub path: Option<String>,
    /// The listener, IP:PORT (needed when the balancer has several).
    #[arg(long, value_name = "IP:PORT")]
    pub listener: Option<String>,
}

/// Settings of `dure lb run`; the token comes from --token-file (or
/// --token, DURE_TOKEN_FILE, DURE_TOKEN).
#[derive(Debug, Args)]
pub struct LbRunArgs {
    /// Name of the balancer definition to serve (required).
    #[arg(long, value_name = "LB")]
    pub name: String,
    /// Base URL of the controller [env: DURE_CONTROLLER] [default: --addr, else http://127.0.0.1:7070].
    #[arg(long, value_name = "URL")]
    pub controller: Option<String>,
    /// Where to serve /stats, /metrics and /health, HOST:PORT [default: none].
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve_listen)]
    pub admin: Option<SocketAddr>,
    /// On SIGINT or SIGTERM, how long requests in flight may take to finish before their connections are cut.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub grace: dure_core::DurationSpec,
    /// Threads serving connections, 1 to 256 [default: one per core the process may run on].
    #[arg(long, value_name = "N", value_parser = worker_count)]
    pub workers: Option<usize>,
}

/// Reads a worker count, 1 to `dure_lb::MAX_WORKERS`.
fn worker_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=dure_lb::MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "worker count `{text}` is invalid: write a whole number from 1 to {}",
            dure_lb::MAX_WORKERS
        )),
    }
}

/// Reads `CLUSTER` or `[HOST][/PATH]=CLUSTER`; the domain checks the parts.
pub fn parse_route(text: &str) -> Result<dure_core::Route, String> {
    let (matching, cluster) = match text.rsplit_once('=') {
        Some((matching, cluster)) => (matching, cluster),
        None => ("", text),
    };
    if cluster.is_empty() {
        return Err(format!(
            "route `{text}` names no cluster: write CLUSTER or [HOST][/PATH]=CLUSTER"
        ));
    }
    let (host, path) = match matching.find('/') {
        Some(at) => (&matching[..at], &matching[at..]),
        None => (matching, ""),
    };
    let some = |part: &str| (!part.is_empty()).then(|| part.to_string());
    Ok(dure_core::Route {
        host: some(host),
        // `/` matches every path, as no prefix does: one way to say it.
        path: some(path).filter(|p| p != "/"),
        cluster: cluster.to_string(),
    })
}

#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Return as soon as the operation is created.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Upload a WAR file or an application directory and install it in every member.
    Deploy {
        cluster: String,
        /// A WAR file (installed as NAME.war), or a directory (an exploded application, installed as NAME/).
        #[arg(long = "war", value_name = "FILE|DIR")]
        artifact: PathBuf,
        /// Context path, such as /shop (/ is the root) [default: from the file name, ROOT.war: /].
        #[arg(long, value_name = "/PATH")]
        context: Option<String>,
        #[command(flatten)]
        rollout: RolloutArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Each context with its newest version and how many members have it.
    List { cluster: String },
    /// Each context's newest version and every member's copy.
    Show {
        cluster: String,
        /// Only this context.
        #[arg(long, value_name = "/PATH")]
        context: Option<String>,
    },
    /// Every version deployed, newest first.
    History { cluster: String },
    /// Deploy an earlier version's artifact again, as a new version.
    Rollback {
        cluster: String,
        /// The version to go back to (see `dure app history`).
        #[arg(long, value_name = "VERSION")]
        to: u64,
        #[command(flatten)]
        rollout: RolloutArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// How a deploy goes through the members.
#[derive(Debug, Clone, Copy, Args)]
pub struct RolloutArgs {
    /// Batch by batch through the balancers' drain, the others serving; without it every member at once.
    #[arg(long)]
    pub rolling: bool,
    /// Members per batch of a rolling deploy [default: 1].
    #[arg(long, value_name = "N", requires = "rolling", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Option<u32>,
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

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only calls of the last DURATION, such as 30m or 24h.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<DurationSpec>,
    /// Only calls of this actor: a token id (`tok-…`) or `admin`.
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// Only calls that were refused (401 or 403).
    #[arg(long)]
    pub denied: bool,
    /// At most the newest N lines (the controller caps it at 10000).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100)]
    pub last: usize,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once, keep it.
    Create {
        /// What the token may do: admin (everything), operator (start, stop, kill, restart; read all), viewer (read only).
        #[arg(
            long,
            value_name = "ROLE",
            required_unless_present = "join",
            conflicts_with = "join"
        )]
        role: Option<dure_core::access::Role>,
        /// A one-time join token for the agent of --node instead: it trades it for its node certificate, once [default ttl: 15m].
        #[arg(long, requires = "node")]
        join: bool,
        /// The node whose agent may join with the token.
        #[arg(long, value_name = "NAME", requires = "join")]
        node: Option<String>,
        /// How long it is accepted, such as 15m or 720h [default: until revoked].
        #[arg(long, value_name = "DURATION")]
        ttl: Option<DurationSpec>,
        /// What it is for; events and history name it with the token's id.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (never their secrets), revoked and expired ones too.
    List,
    /// Revoke a token: it is refused from now on.
    Revoke {
        /// The token's id, `tok-…`, as `dure token list` shows it.
        id: String,
    },
    /// Show the token this command runs with: its id, role and description.
    Whoami,
}

/// `dure domain`: where the controller (or its data directory) is, then the verb.
#[derive(Debug, Args)]
pub struct DomainArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: DomainCommand,
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
        #[command(flatten)]
        format: FormatArg,
    },
    /// Replace the membership key agents authenticate each other with; the
    /// old key keeps opening datagrams until the rollout is done.
    RotateKey {
        /// Each step of the rollout: agents learn the new key, seal with it
        /// after one grace and stop accepting the old one after two (1s to 1h).
        #[arg(long, value_name = "DURATION", default_value = "10s")]
        grace: DurationSpec,
        #[command(flatten)]
        format: FormatArg,
    },
}

impl DomainCommand {
    /// The format the verb prints in.
    pub fn format(&self) -> OutputFormat {
        match self {
            DomainCommand::Pack(args) => args.output.output.format(),
            DomainCommand::Unpack(args) => args.format.output,
            DomainCommand::Verify { format, .. } => format.output,
            DomainCommand::RotateKey { format, .. } => format.output,
        }
    }
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// Where to write: a file, or a directory for the default name
    /// (dure-domain-<name>-rev<N>-<time>.tar.gz) [default: the current directory].
    pub file: Option<PathBuf>,
    /// Also pack the admin token and the membership key (keep such an
    /// archive as secret as the token).
    #[arg(long)]
    pub include_secrets: bool,
    #[command(flatten)]
    pub output: OutputArg,
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
    #[command(flatten)]
    pub format: FormatArg,
}

#[derive(Debug, Args)]
pub struct ChangesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub format: FormatArg,
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
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArg,
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

/// Reads a listen address, HOST:PORT: an IP address, or a host name
/// resolved by the system resolver, binding its first address (IPv4 first,
/// so `localhost` means 127.0.0.1 where it has both).
pub fn resolve_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let invalid = || {
        format!("listen address `{text}` is invalid: write HOST:PORT, such as localhost:7070 or 0.0.0.0:7070")
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() || !dure_core::NodeSpec::address_is_valid(host) {
        return Err(invalid());
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| {
            format!("host name `{host}` of listen address `{text}` does not resolve: {e}")
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| {
            format!("host name `{host}` of listen address `{text}` resolves to no address")
        })
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
    fn an_output_path_goes_only_to_the_verbs_that_write_files() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.command);
        match parse(&["dure", "domain", "pack", "-o", "/tmp/x.tar.gz"]) {
            Ok(Command::Domain(DomainArgs {
                command: DomainCommand::Pack(args),
                ..
            })) => {
                assert_eq!(
                    args.output.path(None).unwrap(),
                    Some(PathBuf::from("/tmp/x.tar.gz"))
                );
                assert!(args.output.path(Some("y".into())).is_err(), "given twice");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["dure", "export", "-o", "json"]) {
            Ok(Command::Export(args)) => {
                assert_eq!(args.output.path(None).unwrap(), None, "json is a format");
                assert_eq!(args.output.output.format(), OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&["dure", "cluster", "list", "-o", "out.txt"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("output format `out.txt` is invalid"),
            "{err}"
        );
        let err = parse(&["dure", "domain", "verify", "f", "-o", "out.txt"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("output format `out.txt` is invalid"),
            "{err}"
        );
    }

    #[test]
    fn listen_addresses_may_name_hosts() {
        assert_eq!(
            resolve_listen("0.0.0.0:7070"),
            Ok("0.0.0.0:7070".parse().unwrap())
        );
        assert_eq!(resolve_listen("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        let local = resolve_listen("localhost:7171").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 7171, "{local}");
        for bad in ["localhost", "localhost:x", ":7070", "a b:1"] {
            assert!(
                resolve_listen(bad).unwrap_err().contains("write HOST:PORT"),
                "{bad}"
            );
        }
        let err = resolve_listen("nowhere.invalid:7070").unwrap_err();
        assert!(
            err.contains("host name `nowhere.invalid`") && err.contains("does not resolve"),
            "{err}"
        );
    }

    #[test]
    fn clients_default_to_where_the_controller_listens() {
        let listen = dure_controller::settings::DEFAULT_LISTEN;
        assert_eq!(DEFAULT_ADDR, dure_controller::local_url(listen, true));
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

    /// Every subcommand that runs, with its path: the leaves of the tree,
    /// after clap has propagated the global flags into them.
    fn leaves() -> Vec<(String, clap::Command)> {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
            let subs: Vec<_> = cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            if subs.is_empty() {
                out.push((path.to_string(), cmd.clone()));
            }
            for sub in subs {
                let path = format!("{path} {}", sub.get_name()).trim().to_string();
                walk(sub, &path, out);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut out = Vec::new();
        walk(&cli, "", &mut out);
        out
    }

    #[test]
    fn every_verb_shows_only_the_flags_that_apply_to_it() {
        let leaves = leaves();
        assert!(leaves.len() > 40, "{} leaves", leaves.len());
        for (path, cmd) in &leaves {
            let visible: Vec<&clap::Arg> =
                cmd.get_arguments().filter(|a| !a.is_hide_set()).collect();
            let longs: Vec<&str> = visible.iter().filter_map(|a| a.get_long()).collect();
            for arg in visible.iter().filter(|a| a.get_long().is_some()) {
                assert!(
                    arg.get_help().is_some(),
                    "`dure {path}`: {:?} has no help",
                    arg.get_id()
                );
            }
            let role = ["controller", "agent", "up", "demo-app", "completions"]
                .iter()
                .any(|r| path == r);
            if role {
                for flag in ["addr", "output"] {
                    assert!(
                        !longs.contains(&flag),
                        "`dure {path}` shows --{flag}: {longs:?}"
                    );
                }
            } else {
                for flag in ["addr", "token", "token-file", "data", "output"] {
                    assert!(
                        longs.contains(&flag),
                        "`dure {path}` lacks --{flag}: {longs:?}"
                    );
                }
            }
            let takes_token = !role || path == "agent";
            assert_eq!(
                longs.contains(&"token-file"),
                takes_token,
                "`dure {path}`: {longs:?}"
            );
            if let Some(output) = visible.iter().find(|a| a.get_long() == Some("output")) {
                let text = format!(
                    "{:?} {}",
                    output.get_value_names(),
                    output
                        .get_help()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                );
                let writes_files = path == "export" || path == "domain pack";
                assert_eq!(
                    text.contains("PATH"),
                    writes_files,
                    "`dure {path}` -o: {text}"
                );
            }
        }
        let agent = &leaves.iter().find(|(p, _)| p == "agent").expect("agent").1;
        let addr = agent
            .get_arguments()
            .find(|a| a.get_long() == Some("controller"));
        assert!(addr.is_some(), "the agent takes --controller");
        assert!(
            Cli::try_parse_from(["dure", "agent", "--addr", "http://h:1"]).is_ok(),
            "--addr stays a hidden alias of the agent's --controller"
        );
    }
}
