//! Turns `dure server create` flags into a `ServerSpec` and checks it the
//! way the controller will, so a bad definition is refused (exit 2) before
//! any request, with the same message the API would give.

use crate::cli::CreateServerArgs;
use crate::exit::UsageError;
use dure_core::{Domain, NodeSpec, ServerSpec};

/// Returns the server definition the flags describe; fields without a flag
/// keep the core's defaults.
pub fn server_spec(args: &CreateServerArgs) -> Result<ServerSpec, UsageError> {
    let mut spec = ServerSpec::new(&args.name, &args.node, args.argv.clone());
    spec.dir = args.dir.clone();
    for (name, port) in &args.ports {
        if spec.ports.insert(name.clone(), *port).is_some() {
            return Err(UsageError(format!(
                "port `{name}` is given twice: give each --port NAME once"
            )));
        }
    }
    for (key, value) in &args.env {
        if spec.env.insert(key.clone(), value.clone()).is_some() {
            return Err(UsageError(format!(
                "environment variable `{key}` is given twice: give each --env KEY once"
            )));
        }
    }
    if let Some(check) = &args.ready {
        spec.ready.check = check.clone();
    }
    if let Some(timeout) = args.ready_timeout {
        spec.ready.start_timeout = timeout;
    }
    if let Some(mode) = args.restart {
        spec.restart.mode = mode;
    }
    if let Some(max) = args.max_restarts {
        spec.restart.max_restarts = max;
    }
    if let Some(timeout) = args.stop_timeout {
        spec.stop.timeout = timeout;
    }
    if let Some(signal) = args.stop_signal {
        spec.stop.signal = signal;
    }
    if !args.stop_command.is_empty() {
        spec.stop.command = Some(args.stop_command.clone());
    }
    if let Some(weight) = args.weight {
        spec.weight = weight;
    }
    check_alone(&spec)?;
    Ok(spec)
}

/// Runs the core's own server checks against a domain that holds only the
/// server's node: everything but conflicts with other servers, which only
/// the controller can see.
pub fn check_alone(spec: &ServerSpec) -> Result<(), UsageError> {
    let mut domain = Domain::default();
    domain.nodes.insert(
        spec.node.clone(),
        NodeSpec {
            name: spec.node.clone(),
            address: String::new(),
            agent_port: None,
            backup_of: None,
        },
    );
    domain
        .create_server(spec.clone())
        .map_err(|e| UsageError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, ServerCommand};
    use clap::Parser;
    use dure_core::{ReadyCheck, RestartMode, StopSignal};

    fn parse(args: &[&str]) -> Result<ServerSpec, String> {
        let mut argv = vec!["dure", "server", "create"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Server(ServerCommand::Create(args)) => server_spec(&args).map_err(|e| e.0),
            other => panic!("parsed as {other:?}"),
        }
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
}
