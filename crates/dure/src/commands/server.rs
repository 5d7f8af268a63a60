//! `dure server ...`: define, list, show, start, stop, kill, delete and read
//! the logs of single servers.

use crate::cli::{ServerActionArgs, ServerCommand, UpdateServerArgs};
use crate::commands::changes::print_change;
use crate::context::Context;
use crate::exit::Failure;
use crate::output::{ago, fields, now_ms, or_dash, print_json, Cell, Colour, Table};
use crate::progress::{server_line, wait_server, Mode};
use crate::spec::{server_spec, updated_spec};
use dure_api::{ConfigChange, LogQuery, OperationKind, ServerView};
use dure_core::{ServerSpec, ServerState};
use std::io::Write;
use std::time::Duration;

/// How often `logs -f` asks for more.
const LOG_POLL: Duration = Duration::from_millis(300);

pub async fn run(ctx: &Context, command: ServerCommand) -> anyhow::Result<()> {
    match command {
        ServerCommand::Create(args) => {
            let spec = server_spec(&args)?;
            let client = ctx.client.clone().with_save(args.save.choice());
            let changed = client
                .change::<ServerView>(ConfigChange::CreateServer(&spec))
                .await?;
            let (name, node) = (&spec.name, &spec.node);
            print_change(
                ctx,
                &changed,
                format!(
                    "server `{name}` created on node `{node}`; start it with `dure server start {name}`"
                ),
                format!("server `{name}` created on node `{node}` in your change set"),
            )
        }
        ServerCommand::Update(args) => update(ctx, &args).await,
        ServerCommand::List => {
            let servers = ctx.client.list_servers().await?;
            if ctx.json() {
                return print_json(&servers);
            }
            if servers.is_empty() {
                println!("no servers yet: define one with `dure server create NAME --node NODE -- CMD ...`");
                return Ok(());
            }
            server_table(&servers).print();
            Ok(())
        }
        ServerCommand::Show { name } => {
            let view = ctx.client.get_server(&name).await?;
            if ctx.json() {
                return print_json(&view);
            }
            print!("{}", server_details(&view, now_ms()));
            Ok(())
        }
        ServerCommand::Start(args) => act(ctx, args, OperationKind::Start).await,
        ServerCommand::Stop(args) => act(ctx, args, OperationKind::Stop).await,
        ServerCommand::Kill(args) => act(ctx, args, OperationKind::Kill).await,
        ServerCommand::Delete { name, stop, save } => {
            let client = ctx.client.clone().with_save(save.choice());
            let changed = client
                .change::<ServerSpec>(ConfigChange::DeleteServer { name: &name, stop })
                .await?;
            print_change(
                ctx,
                &changed,
                format!("server `{name}` deleted"),
                format!("server `{name}` deleted in your change set"),
            )
        }
        ServerCommand::Logs { name, follow, tail } => logs(ctx, &name, follow, tail).await,
        ServerCommand::Config { name } => config(ctx, &name).await,
    }
}

/// Prints the files Dure writes for a templated server, each under its
/// path in the server's instance directory.
async fn config(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let config = ctx.client.server_config(name).await?;
    if ctx.json() {
        return print_json(&config);
    }
    let Some(template) = config.template else {
        println!("server `{name}` has no template: Dure writes no configuration files for it");
        return Ok(());
    };
    println!("server `{name}` ({template}): files in its instance directory");
    if config.restart_needed {
        println!(
            "restart needed: the running process started with other files; restart it to use these"
        );
    }
    for (path, content) in &config.files {
        println!("--- {path}");
        print!("{content}");
    }
    Ok(())
}

/// Reads the server's definition as the caller sees it (with their staged
/// changes, unless `--save`), changes what the flags give and writes it back.
async fn update(ctx: &Context, args: &UpdateServerArgs) -> anyhow::Result<()> {
    let reader = ctx.client.clone().with_changes_view(!args.save.save);
    let view = reader.get_server(&args.name).await?;
    let spec = updated_spec(&view.spec, args)?;
    if spec == view.spec {
        if ctx.json() {
            return print_json(&view);
        }
        println!(
            "server `{}` already has every value given; nothing changed",
            spec.name
        );
        return Ok(());
    }
    let client = ctx
        .client
        .clone()
        .with_save(args.save.choice())
        .with_expect(Some(dure_core::document_digest(&view.spec)));
    let changed = client
        .change::<ServerView>(ConfigChange::ReplaceServer(&spec))
        .await?;
    let name = &spec.name;
    print_change(
        ctx,
        &changed,
        format!(
            "server `{name}` updated; a running process picks up the change at its next start (`dure server stop {name}`, then `start`)"
        ),
        format!("server `{name}` updated in your change set"),
    )
}

/// Sets the server's intent, then (unless `--no-wait`) follows it until its
/// agent reports the outcome.
async fn act(ctx: &Context, args: ServerActionArgs, kind: OperationKind) -> anyhow::Result<()> {
    let intent = kind.intent();
    let view = ctx.client.server_intent(&args.name, intent).await?;
    if args.no_wait {
        if ctx.json() {
            return print_json(&view);
        }
        println!(
            "{} of server `{}` requested (generation {})",
            kind, args.name, view.generation
        );
        return Ok(());
    }
    let timeout = args
        .timeout
        .map_or_else(|| kind.member_wait(&view.spec), |t| t.0);
    let mode = Mode::choose(ctx.json());
    let done = wait_server(
        &ctx.client,
        &args.name,
        kind,
        view.generation,
        timeout,
        mode,
    )
    .await?;
    if ctx.json() {
        print_json(&done)?;
    }
    if kind.member_outcome(done.observed.state) == Some(false) {
        let why = done
            .observed
            .last_error
            .as_deref()
            .unwrap_or("no error was reported");
        return Err(Failure(format!("server `{}` failed to start: {why}", args.name)).into());
    }
    Ok(())
}

/// Prints the tail of the log, then with `follow` keeps printing what is
/// appended until Ctrl-C.
async fn logs(ctx: &Context, name: &str, follow: bool, tail: Option<u64>) -> anyhow::Result<()> {
    let mut query = LogQuery {
        lines: tail,
        ..LogQuery::default()
    };
    loop {
        let chunk = ctx.client.server_logs(name, &query).await?;
        if ctx.json() {
            print_json(&chunk)?;
        } else if !chunk.data.is_empty() {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(chunk.data.as_bytes())?;
            stdout.flush()?;
        }
        if !follow {
            return Ok(());
        }
        query = LogQuery {
            offset: Some(chunk.next_offset),
            ..LogQuery::default()
        };
        tokio::select! {
            _ = tokio::time::sleep(LOG_POLL) => {}
            // Ctrl-C is the ordinary way to end `logs -f`, not an error.
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Returns a cell for a server state, coloured by health.
/// The state of a server as tables show it, with `restart needed` when
/// its process runs configuration files its configuration no longer
/// generates.
pub fn observed_cell(observed: &dure_core::ObservedServer) -> Cell {
    let cell = state_cell(observed.state);
    if observed.restart_needed {
        Cell::coloured(
            format!("{} (restart needed)", observed.state),
            Colour::Yellow,
        )
    } else {
        cell
    }
}

pub fn state_cell(state: ServerState) -> Cell {
    let colour = match state {
        ServerState::Ready => Colour::Green,
        ServerState::Starting | ServerState::Running | ServerState::Stopping => Colour::Yellow,
        ServerState::Failed => Colour::Red,
        ServerState::Stopped | ServerState::Unknown => Colour::Gray,
    };
    Cell::coloured(state.to_string(), colour)
}

/// Returns "http=9080,admin=9090" in name order.
fn ports_text(view: &ServerView) -> String {
    if view.spec.ports.is_empty() {
        return "-".into();
    }
    view.spec
        .ports
        .iter()
        .map(|(name, port)| format!("{name}={port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Returns the server list table.
pub fn server_table(servers: &[ServerView]) -> Table {
    let mut table = Table::new(&[
        "NAME", "NODE", "INTENT", "STATE", "PID", "RESTARTS", "PORTS", "CLUSTER",
    ]);
    for view in servers {
        table.row(vec![
            view.spec.name.as_str().into(),
            view.spec.node.as_str().into(),
            view.intent.to_string().into(),
            observed_cell(&view.observed),
            or_dash(view.observed.pid.filter(|_| view.observed.state.is_alive())).into(),
            view.observed.restarts.to_string().into(),
            ports_text(view).into(),
            or_dash(view.cluster.as_deref()).into(),
        ]);
    }
    table
}

/// Returns the `server show` text: state first, then the definition.
pub fn server_details(view: &ServerView, now: u64) -> String {
    let spec = &view.spec;
    let observed = &view.observed;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let stop = match &spec.stop.command {
        Some(command) => format!("command {:?}, timeout {}", command, spec.stop.timeout),
        None => format!(
            "signal {}, timeout {}",
            signal_name(spec.stop.signal),
            spec.stop.timeout
        ),
    };
    let template = spec.template.as_ref().map_or("-".to_string(), |t| {
        let mut text = t.kind.to_string();
        if let Some(heap) = &t.heap {
            text.push_str(&format!(", heap {heap}"));
        }
        if let Some(java_home) = &t.java_home {
            text.push_str(&format!(", java home {java_home}"));
        }
        text
    });
    let configuration = match (&spec.template, observed.restart_needed) {
        (None, _) => "-".to_string(),
        (Some(_), false) => format!("generated (`dure server config {}`)", spec.name),
        (Some(_), true) => format!(
            "restart needed: the process runs older files (`dure server config {}`)",
            spec.name
        ),
    };
    let pairs = vec![
        ("name", spec.name.clone()),
        ("node", spec.node.clone()),
        ("cluster", or_dash(view.cluster.as_deref())),
        (
            "state",
            server_line(view)
                .trim_start_matches(&format!("{} ", spec.name))
                .to_string(),
        ),
        ("since", ago(observed.since_ms, now)),
        (
            "intent",
            format!(
                "{} (generation {}, agent has {})",
                view.intent, view.generation, observed.generation
            ),
        ),
        ("pending", pending_text(view)),
        (
            "pid",
            or_dash(observed.pid.filter(|_| observed.state.is_alive())),
        ),
        ("restarts", observed.restarts.to_string()),
        ("exit code", or_dash(observed.exit_code)),
        ("last error", or_dash(observed.last_error.as_deref())),
        ("template", template),
        ("config", configuration),
        ("command", shell_words(&spec.argv)),
        ("dir", or_dash(spec.dir.as_deref())),
        (
            "app dir",
            or_dash(spec.app_dir.as_deref().map(|d| d.display().to_string())),
        ),
        ("env", if env.is_empty() { "-".into() } else { env }),
        ("ports", ports_text(view)),
        (
            "ready",
            format!(
                "{} (start timeout {})",
                spec.ready.check, spec.ready.start_timeout
            ),
        ),
        (
            "restart",
            format!(
                "{} (at most {} in a row)",
                spec.restart.mode, spec.restart.max_restarts
            ),
        ),
        ("stop", stop),
        ("weight", spec.weight.to_string()),
    ];
    fields(&pairs)
}

/// The intent not carried out yet and who issued it, or `-`.
fn pending_text(view: &ServerView) -> String {
    match &view.pending {
        None => "-".into(),
        Some(pending) => {
            let by = pending
                .operation
                .as_ref()
                .map(|id| format!(", issued by operation `{id}`"))
                .unwrap_or_default();
            format!(
                "{} (generation {}{by}), not carried out yet",
                pending.intent.action(),
                pending.generation
            )
        }
    }
}

fn signal_name(signal: dure_core::StopSignal) -> &'static str {
    use dure_core::StopSignal;
    match signal {
        StopSignal::Term => "SIGTERM",
        StopSignal::Int => "SIGINT",
        StopSignal::Quit => "SIGQUIT",
        StopSignal::Hup => "SIGHUP",
        StopSignal::Usr1 => "SIGUSR1",
        StopSignal::Usr2 => "SIGUSR2",
    }
}

/// Joins argv for display, quoting words with spaces or quotes so the
/// line reads like the command it is.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_core::{Intent, ObservedServer, ServerSpec};

    fn view(name: &str, state: ServerState) -> ServerView {
        let spec: ServerSpec = serde_json::from_value(serde_json::json!({
            "name": name, "node": "n1", "argv": ["/bin/app", "--say", "hi there"],
            "ports": {"http": 9080, "admin": 9090}, "ready": {"check": "http:/health"}
        }))
        .unwrap();
        ServerView {
            spec,
            intent: Intent::Run,
            generation: 3,
            observed: ObservedServer {
                name: name.into(),
                state,
                pid: Some(42),
                since_ms: 1_000,
                restarts: 1,
                exit_code: None,
                last_error: None,
                generation: 3,
                restart_needed: false,
            },
            cluster: Some("c".into()),
            pending: None,
        }
    }

    #[test]
    fn list_table() {
        let servers = vec![
            view("web1", ServerState::Ready),
            view("web2", ServerState::Stopped),
        ];
        assert_eq!(
            server_table(&servers).render(false),
            "NAME  NODE  INTENT  STATE    PID  RESTARTS  PORTS                 CLUSTER\n\
             web1  n1    run     ready    42   1         admin=9090,http=9080  c\n\
             web2  n1    run     stopped  -    1         admin=9090,http=9080  c\n"
        );
    }

    #[test]
    fn details_quote_the_command() {
        let text = server_details(&view("web1", ServerState::Ready), 61_000);
        assert!(
            text.contains("command:     /bin/app --say 'hi there'\n"),
            "{text}"
        );
        assert!(text.contains("state:       ready (pid 42)\n"), "{text}");
        assert!(text.contains("since:       1m ago\n"), "{text}");
        assert!(
            text.contains("ready:       http:/health (start timeout 1m)\n"),
            "{text}"
        );
        assert!(
            text.contains("stop:        signal SIGTERM, timeout 30s\n"),
            "{text}"
        );
        assert!(text.contains("pending:     -\n"), "{text}");
    }

    #[test]
    fn details_name_a_pending_intent_and_its_operation() {
        let mut view = view("web2", ServerState::Unknown);
        view.pending = Some(dure_api::PendingIntent {
            intent: Intent::Stop,
            generation: 4,
            operation: Some("op-12".into()),
        });
        let text = server_details(&view, 61_000);
        assert!(
            text.contains(
                "pending:     stop (generation 4, issued by operation `op-12`), not carried out yet\n"
            ),
            "{text}"
        );
    }
}
