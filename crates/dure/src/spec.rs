//! Turns `dure server create|update` and `dure node create` flags into
//! documents and checks them the way the controller will, so a bad
//! definition is refused (exit 2) before any request, with the core's
//! message and the flag that fixes it.

use crate::cli::{
    CreateNodeArgs, CreateServerArgs, ServerSettings, UpdateNodeArgs, UpdateServerArgs,
};
use crate::exit::UsageError;
use dure_core::template::ServerTemplate;
use dure_core::{Domain, DomainError, NodeSpec, ServerSpec};
use std::collections::BTreeSet;

/// Returns the server definition the flags describe; fields without a flag
/// keep the core's defaults.
pub fn server_spec(args: &CreateServerArgs) -> Result<ServerSpec, UsageError> {
    let mut spec = ServerSpec::new(&args.name, &args.node, args.argv.clone());
    spec.template = args.template.map(ServerTemplate::new);
    apply_settings(&mut spec, &args.settings)?;
    check_alone(&spec)?;
    Ok(spec)
}

/// Returns `current` with what the flags of `dure server update` change;
/// refuses an update that gives no flag at all.
pub fn updated_spec(
    current: &ServerSpec,
    args: &UpdateServerArgs,
) -> Result<ServerSpec, UsageError> {
    if gives_nothing(args) {
        return Err(UsageError(format!(
            "nothing to change: give what to change about server `{}` (see `dure server update --help`)",
            args.name
        )));
    }
    let mut spec = current.clone();
    if let Some(node) = &args.node {
        spec.node = node.clone();
    }
    if !args.argv.is_empty() {
        spec.argv = args.argv.clone();
    }
    let given_ports: BTreeSet<&str> = args
        .settings
        .ports
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    for name in unique(&args.remove_ports, "--remove-port NAME")? {
        if given_ports.contains(name) {
            return Err(UsageError(format!(
                "port `{name}` is both set (--port) and removed (--remove-port); give one"
            )));
        }
        if spec.ports.remove(name).is_none() {
            return Err(UsageError(format!(
                "server `{}` has no port `{name}` to remove",
                spec.name
            )));
        }
    }
    let given_env: BTreeSet<&str> = args.settings.env.iter().map(|(k, _)| k.as_str()).collect();
    for key in unique(&args.unset_env, "--unset-env KEY")? {
        if given_env.contains(key) {
            return Err(UsageError(format!(
                "environment variable `{key}` is both set (--env) and unset (--unset-env); give one"
            )));
        }
        if spec.env.remove(key).is_none() {
            return Err(UsageError(format!(
                "server `{}` has no environment variable `{key}` to unset",
                spec.name
            )));
        }
    }
    if args.no_stop_command {
        spec.stop.command = None;
    }
    if args.no_dir {
        spec.dir = None;
    }
    if args.no_app_dir {
        spec.app_dir = None;
    }
    apply_settings(&mut spec, &args.settings)?;
    check_alone(&spec)?;
    Ok(spec)
}

/// Whether an update names no field to change.
fn gives_nothing(args: &UpdateServerArgs) -> bool {
    let s = &args.settings;
    args.node.is_none()
        && args.argv.is_empty()
        && args.remove_ports.is_empty()
        && args.unset_env.is_empty()
        && !args.no_stop_command
        && !args.no_dir
        && !args.no_app_dir
        && s.ports.is_empty()
        && s.ready.is_none()
        && s.ready_timeout.is_none()
        && s.restart.is_none()
        && s.max_restarts.is_none()
        && s.stop_timeout.is_none()
        && s.stop_signal.is_none()
        && s.stop_command.is_empty()
        && s.env.is_empty()
        && s.dir.is_none()
        && s.app_dir.is_none()
        && s.weight.is_none()
        && s.heap.is_none()
        && s.java_home.is_none()
        && s.catalina_home.is_none()
        && s.wlp_home.is_none()
}

/// Returns each value once, refusing one given twice.
fn unique<'a>(values: &'a [String], flag: &str) -> Result<BTreeSet<&'a str>, UsageError> {
    let mut seen = BTreeSet::new();
    for value in values {
        if !seen.insert(value.as_str()) {
            return Err(UsageError(format!(
                "`{value}` is given twice: give each {flag} once"
            )));
        }
    }
    Ok(seen)
}

/// Sets every field a flag gives; a port or variable given twice is refused.
fn apply_settings(spec: &mut ServerSpec, settings: &ServerSettings) -> Result<(), UsageError> {
    let mut ports = BTreeSet::new();
    for (name, port) in &settings.ports {
        if !ports.insert(name) {
            return Err(UsageError(format!(
                "port `{name}` is given twice: give each --port NAME once"
            )));
        }
        spec.ports.insert(name.clone(), *port);
    }
    let mut keys = BTreeSet::new();
    for (key, value) in &settings.env {
        if !keys.insert(key) {
            return Err(UsageError(format!(
                "environment variable `{key}` is given twice: give each --env KEY once"
            )));
        }
        spec.env.insert(key.clone(), value.clone());
    }
    if let Some(dir) = &settings.dir {
        spec.dir = Some(dir.clone());
    }
    if let Some(app_dir) = &settings.app_dir {
        spec.app_dir = Some(app_dir.clone());
    }
    if let Some(check) = &settings.ready {
        spec.ready.check = check.clone();
    }
    if let Some(timeout) = settings.ready_timeout {
        spec.ready.start_timeout = timeout;
    }
    if let Some(mode) = settings.restart {
        spec.restart.mode = mode;
    }
    if let Some(max) = settings.max_restarts {
        spec.restart.max_restarts = max;
    }
    if let Some(timeout) = settings.stop_timeout {
        spec.stop.timeout = timeout;
    }
    if let Some(signal) = settings.stop_signal {
        spec.stop.signal = signal;
    }
    if !settings.stop_command.is_empty() {
        spec.stop.command = Some(settings.stop_command.clone());
    }
    if let Some(weight) = settings.weight {
        spec.weight = weight;
    }
    apply_template_settings(spec, settings)
}

/// Sets the template settings the flags give; refused for a server with
/// no template, which has none of them.
fn apply_template_settings(
    spec: &mut ServerSpec,
    settings: &ServerSettings,
) -> Result<(), UsageError> {
    let given = [
        ("--heap", settings.heap.is_some()),
        ("--java-home", settings.java_home.is_some()),
        ("--catalina-home", settings.catalina_home.is_some()),
        ("--wlp-home", settings.wlp_home.is_some()),
    ];
    let Some(template) = spec.template.as_mut() else {
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            return Err(UsageError(format!(
                "server `{}` has no template: {flag} applies to servers created with --template",
                spec.name
            )));
        }
        return Ok(());
    };
    if let Some(heap) = &settings.heap {
        template.heap = Some(heap.clone());
    }
    if let Some(java_home) = &settings.java_home {
        template.java_home = Some(java_home.clone());
    }
    if let Some(home) = &settings.catalina_home {
        template.catalina_home = Some(home.clone());
    }
    if let Some(home) = &settings.wlp_home {
        template.wlp_home = Some(home.clone());
    }
    Ok(())
}

/// Runs the core's own server checks against a domain that holds only the
/// server's node: everything but conflicts with other servers, which only
/// the controller can see.
pub fn check_alone(spec: &ServerSpec) -> Result<(), UsageError> {
    let mut domain = Domain::default();
    domain
        .nodes
        .insert(spec.node.clone(), bare_node(&spec.node));
    domain.create_server(spec.clone()).map_err(usage)
}

/// Returns the node definition of `dure node create`, checked like the
/// controller will (whether the primary of `--backup-of` exists only the
/// controller can tell).
pub fn node_spec(args: &CreateNodeArgs) -> Result<NodeSpec, UsageError> {
    let spec = NodeSpec {
        name: args.name.clone(),
        address: args.address.clone(),
        agent_port: None,
        backup_of: args.backup_of.clone(),
        shared_dirs: args.shared_dirs.clone(),
    };
    check_node_alone(spec)
}

/// The node definition of `dure node update`: `current` with what the
/// flags give, checked like [`node_spec`].
pub fn updated_node(current: &NodeSpec, args: &UpdateNodeArgs) -> Result<NodeSpec, UsageError> {
    let mut spec = current.clone();
    if let Some(address) = &args.address {
        spec.address = address.clone();
    }
    if args.no_backup_of {
        spec.backup_of = None;
    } else if let Some(primary) = &args.backup_of {
        spec.backup_of = Some(primary.clone());
    }
    check_node_alone(spec)
}

/// `spec` checked on its own (with a bare primary, whose existence and
/// servers only the controller knows).
fn check_node_alone(spec: NodeSpec) -> Result<NodeSpec, UsageError> {
    let mut domain = Domain::default();
    if let Some(primary) = spec.backup_of.as_deref().filter(|p| *p != spec.name) {
        domain.nodes.insert(primary.to_string(), bare_node(primary));
    }
    domain.create_node(spec.clone()).map_err(usage)?;
    Ok(spec)
}

fn bare_node(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.to_string(),
        address: String::new(),
        agent_port: None,
        backup_of: None,
        shared_dirs: Vec::new(),
    }
}

/// The core's message and, where a flag fixes it, that flag.
fn usage(error: DomainError) -> UsageError {
    match flag_hint(&error) {
        Some(hint) => UsageError(format!("{error} ({hint})")),
        None => UsageError(error.to_string()),
    }
}

/// The flag that fixes a refused definition, where there is one.
pub fn flag_hint(error: &DomainError) -> Option<String> {
    use DomainError::*;
    Some(match error {
        ReadyPortUndefined { port_name, .. } => {
            format!("add --port {port_name}=PORT, or give another --ready")
        }
        NoCommand { .. } | NulInCommand { .. } => {
            "the command goes after `--`, or give --template".into()
        }
        TemplateWithCommand { .. } => "give no command after `--` with --template".into(),
        TemplatePortMissing { port, .. } => format!("add --port {port}=PORT"),
        TemplateSettingInvalid { setting, .. } => format!("--{}", setting.replace('_', "-")),
        DirNotAbsolute { .. } => "--dir".into(),
        AppDirNotAbsolute { .. } => "--app-dir".into(),
        EnvNameInvalid { .. } | NulInEnvValue { .. } => "--env KEY=VALUE".into(),
        PortZero { .. } | PortTwice { .. } | PortInUse { .. } => "--port NAME=PORT".into(),
        DurationZero { what, .. } => match *what {
            "start timeout" => "--ready-timeout".into(),
            "stop timeout" => "--stop-timeout".into(),
            _ => return None,
        },
        StopCommandEmpty { .. } => "--stop-arg".into(),
        WeightTooLarge { .. } => "--weight".into(),
        NodeAddressInvalid { .. } => "--address".into(),
        OwnBackup { .. } | BackupOfUnknownNode { .. } | BackupChain { .. } | BackupTaken { .. } => {
            "--backup-of".into()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, ServerCommand};
    use clap::Parser;
    use dure_core::{ReadyCheck, RestartMode, StopSignal};
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<ServerSpec, String> {
        let mut argv = vec!["dure", "server", "create"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Server(verb) => match verb.command {
                ServerCommand::Create(args) => server_spec(&args).map_err(|e| e.0),
                other => panic!("parsed as {other:?}"),
            },
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn template_flags_make_a_templated_server_and_are_refused_without_one() {
        let spec = parse(&[
            "t1",
            "--node",
            "n1",
            "--template",
            "tomcat",
            "--port",
            "http=8080",
            "--heap",
            "512m",
            "--catalina-home",
            "/opt/tomcat",
        ])
        .unwrap();
        let template = spec.template.expect("a template");
        assert_eq!(
            template.heap.map(|h| h.to_string()).as_deref(),
            Some("512m")
        );
        assert_eq!(template.catalina_home.as_deref(), Some("/opt/tomcat"));
        assert!(spec.argv.is_empty());
        let err = parse(&["t1", "--node", "n1", "--template", "tomcat"]).unwrap_err();
        assert!(
            err.contains("needs port `http`") && err.contains("--port http=PORT"),
            "{err}"
        );
        let err = parse(&[
            "t1",
            "--node",
            "n1",
            "--template",
            "tomcat",
            "--port",
            "http=8080",
            "--wlp-home",
            "/opt/ol/wlp",
        ])
        .unwrap_err();
        assert!(err.contains("applies to liberty servers only"), "{err}");
        let err = parse(&["w1", "--node", "n1", "--heap", "1g", "--", "/bin/app"]).unwrap_err();
        assert!(
            err.contains("--heap applies to servers created with --template"),
            "{err}"
        );
        assert!(
            parse(&["w1", "--node", "n1"]).is_err(),
            "a command or a template"
        );
    }

    #[test]
    fn minimal_flags_keep_core_defaults() {
        let spec = parse(&["web1", "--node", "n1", "--", "/bin/sleep", "100"]).unwrap();
        assert_eq!(spec.name, "web1");
        assert_eq!(spec.node, "n1");
        assert_eq!(spec.argv, vec!["/bin/sleep", "100"]);
        assert_eq!(spec.weight, 100);
        assert_eq!(spec.ready, Default::default());
        assert_eq!(spec.stop, Default::default());
        assert_eq!(spec.restart, Default::default());
    }

    #[test]
    fn every_flag_lands_in_the_spec() {
        let spec = parse(&[
            "web1",
            "--node",
            "n1",
            "--port",
            "http=9080",
            "--port",
            "admin=9090",
            "--ready",
            "http:admin:/ok",
            "--ready-timeout",
            "90s",
            "--restart",
            "never",
            "--max-restarts",
            "2",
            "--stop-timeout",
            "5s",
            "--stop-signal",
            "INT",
            "--stop-arg",
            "/opt/app/bin/stop",
            "--stop-arg",
            "--now",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--dir",
            "/srv/web1",
            "--weight",
            "50",
            "--",
            "java",
            "-jar",
            "app.jar",
        ])
        .unwrap();
        assert_eq!(spec.ports.get("http"), Some(&9080));
        assert_eq!(spec.ports.get("admin"), Some(&9090));
        assert_eq!(
            spec.ready.check,
            ReadyCheck::Http {
                port: "admin".into(),
                path: "/ok".into()
            }
        );
        assert_eq!(spec.ready.start_timeout.as_millis(), 90_000);
        assert_eq!(spec.restart.mode, RestartMode::Never);
        assert_eq!(spec.restart.max_restarts, 2);
        assert_eq!(spec.stop.timeout.as_millis(), 5_000);
        assert_eq!(spec.stop.signal, StopSignal::Int);
        assert_eq!(
            spec.stop.command,
            Some(vec!["/opt/app/bin/stop".to_string(), "--now".to_string()])
        );
        assert_eq!(spec.env.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(spec.dir.as_deref(), Some("/srv/web1"));
        assert_eq!(spec.weight, 50);
        assert_eq!(spec.argv, vec!["java", "-jar", "app.jar"]);
    }

    #[test]
    fn bad_values_are_refused_with_the_core_message() {
        let err = parse(&["w", "--node", "n", "--ready", "http:", "--", "x"]).unwrap_err();
        assert!(err.contains("readiness check `http:` is invalid"), "{err}");
        let err = parse(&["w", "--node", "n", "--stop-timeout", "10", "--", "x"]).unwrap_err();
        assert!(err.contains("duration `10` is invalid"), "{err}");
        let err = parse(&["w", "--node", "n", "--port", "http=99999", "--", "x"]).unwrap_err();
        assert!(err.contains("port `http=99999` is invalid"), "{err}");
        let err = parse(&["w", "--node", "n", "--restart", "always", "--", "x"]).unwrap_err();
        assert!(err.contains("restart policy `always` is invalid"), "{err}");
        let err = parse(&["w", "--node", "n", "--weight", "5000", "--", "x"]).unwrap_err();
        assert!(err.contains("5000"), "{err}");
        let err = parse(&["w", "--node", "n"]).unwrap_err();
        assert!(err.contains("CMD"), "{err}");
    }

    #[test]
    fn cross_field_rules_are_checked_locally() {
        let err = parse(&["w", "--node", "n", "--ready", "http:/health", "--", "x"]).unwrap_err();
        assert!(
            err.contains("uses port `http`, which the server does not define"),
            "{err}"
        );
        assert!(
            err.ends_with("(add --port http=PORT, or give another --ready)"),
            "{err}"
        );
        let err = parse(&["bad name", "--node", "n", "--", "x"]).unwrap_err();
        assert!(err.contains("server name `bad name` is invalid"), "{err}");
        let err = parse(&[
            "w", "--node", "n", "--port", "a=1", "--port", "a=2", "--", "x",
        ])
        .unwrap_err();
        assert!(err.contains("port `a` is given twice"), "{err}");
        let err = parse(&["w", "--node", "n", "--dir", "rel", "--", "x"]).unwrap_err();
        assert!(err.contains("absolute"), "{err}");
    }

    fn update(current: &ServerSpec, args: &[&str]) -> Result<ServerSpec, String> {
        let mut argv = vec!["dure", "server", "update", "web1"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Server(verb) => match verb.command {
                ServerCommand::Update(args) => updated_spec(current, &args).map_err(|e| e.0),
                other => panic!("parsed as {other:?}"),
            },
            other => panic!("parsed as {other:?}"),
        }
    }

    fn current() -> ServerSpec {
        parse(&[
            "web1",
            "--node",
            "n1",
            "--port",
            "http=9080",
            "--port",
            "admin=9090",
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--dir",
            "/srv",
            "--stop-arg",
            "/bin/stop",
            "--ready",
            "tcp:admin",
            "--",
            "/bin/app",
            "run",
        ])
        .unwrap()
    }

    #[test]
    fn an_update_changes_only_what_is_given() {
        let before = current();
        let after = update(
            &before,
            &["--weight", "7", "--port", "http=9180", "--env", "C=3"],
        )
        .unwrap();
        let mut expected = before.clone();
        expected.weight = 7;
        expected.ports.insert("http".into(), 9180);
        expected.env.insert("C".into(), "3".into());
        assert_eq!(after, expected);

        let after = update(
            &before,
            &[
                "--unset-env",
                "A",
                "--no-dir",
                "--no-stop-command",
                "--",
                "/bin/app2",
            ],
        )
        .unwrap();
        assert_eq!(after.env.keys().collect::<Vec<_>>(), ["B"]);
        assert_eq!((after.dir, after.stop.command), (None, None));
        assert_eq!(after.argv, ["/bin/app2"]);
        assert_eq!(after.ports, before.ports);

        let after = update(&before, &["--remove-port", "http", "--node", "n2"]).unwrap();
        assert_eq!(after.ports.keys().collect::<Vec<_>>(), ["admin"]);
        assert_eq!(after.node, "n2");
    }

    #[test]
    fn a_bad_update_is_refused_with_what_to_do() {
        let before = current();
        let err = update(&before, &[]).unwrap_err();
        assert!(err.starts_with("nothing to change"), "{err}");
        let err = update(&before, &["--remove-port", "admin"]).unwrap_err();
        assert!(
            err.contains("uses port `admin`, which the server does not define"),
            "{err}"
        );
        assert!(err.contains("give another --ready"), "{err}");
        let err = update(&before, &["--remove-port", "ftp"]).unwrap_err();
        assert_eq!(err, "server `web1` has no port `ftp` to remove");
        let err = update(&before, &["--unset-env", "Z"]).unwrap_err();
        assert_eq!(
            err,
            "server `web1` has no environment variable `Z` to unset"
        );
        let err = update(&before, &["--env", "A=2", "--unset-env", "A"]).unwrap_err();
        assert!(err.contains("both set (--env) and unset"), "{err}");
        let err = update(&before, &["--port", "http=1", "--remove-port", "http"]).unwrap_err();
        assert!(err.contains("both set (--port) and removed"), "{err}");
        let err = update(&before, &["--dir", "rel"]).unwrap_err();
        assert!(err.ends_with("(--dir)"), "{err}");
        let err = update(&before, &["--dir", "/a", "--no-dir"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        let err = update(&before, &["--app-dir", "apps"]).unwrap_err();
        assert!(
            err.contains("application directory `apps` must be an absolute path (--app-dir)"),
            "{err}"
        );
    }

    #[test]
    fn the_application_directory_is_set_and_dropped() {
        let before = current();
        assert_eq!(before.app_dir, None);
        let after = update(&before, &["--app-dir", "/srv/apps"]).unwrap();
        assert_eq!(after.app_dir.as_deref(), Some(Path::new("/srv/apps")));
        let dropped = update(&after, &["--no-app-dir"]).unwrap();
        assert_eq!(dropped, before);
    }

    #[test]
    fn node_flags_are_checked_locally() {
        let node = |args: &[&str]| -> Result<NodeSpec, String> {
            let mut argv = vec!["dure", "node", "create"];
            argv.extend_from_slice(args);
            let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
            match cli.command {
                Command::Node(verb) => match verb.command {
                    crate::cli::NodeCommand::Create(args) => node_spec(&args).map_err(|e| e.0),
                    other => panic!("parsed as {other:?}"),
                },
                other => panic!("parsed as {other:?}"),
            }
        };
        let spec = node(&["n2", "--address", "db2.example.com", "--backup-of", "n1"]).unwrap();
        assert_eq!(spec.backup_of.as_deref(), Some("n1"));
        assert_eq!(spec.address, "db2.example.com");
        let err = node(&["n2", "--address", "db 2"]).unwrap_err();
        assert!(
            err.contains("address `db 2` is invalid") && err.ends_with("(--address)"),
            "{err}"
        );
        let err = node(&["n2", "--address", "h", "--backup-of", "n2"]).unwrap_err();
        assert_eq!(err, "node `n2` cannot be its own backup (--backup-of)");
        let err = node(&["bad name", "--address", "h"]).unwrap_err();
        assert!(err.contains("node name `bad name` is invalid"), "{err}");
        assert!(node(&["n2"]).unwrap_err().contains("--address"));
    }
}
