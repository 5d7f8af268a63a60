//! The long-running roles: `dure controller`, `dure agent`, and `dure up`
//! (both in one process, optionally with the demo cluster). Each runs until
//! SIGINT or SIGTERM and then shuts down cleanly; servers keep running, as
//! everywhere in Dure: the agent and controller are not their parents in
//! any way that matters.

use crate::cli::{
    env_value, AgentArgs, CaArg, ClientArgs, ControllerArgs, LbRunArgs, TokenArgs, UpArgs,
};
use crate::context::{client_tls, controller_url, data_dir, given_token, TokenSource};
use crate::controller_settings;
use crate::demo;
use crate::exit::{Exit, Explained, Failure, UsageError};
use crate::lb_role::{LbInstance, StandbyLb};
use crate::signal::Shutdown;
use anyhow::Context as _;
use dure_agent::{Agent, AgentConfig, LinkError};
use dure_api::Client;
use dure_controller::local_url;
use dure_controller::{Controller, ControllerConfig};
use dure_core::{validate_name, NameKind};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

async fn start_controller(config: ControllerConfig) -> anyhow::Result<Controller> {
    let listen = config.listen;
    let data = config.data_dir.clone();
    Controller::start(config).await.with_context(|| {
        format!(
            "cannot start the controller on {listen} with data directory {}",
            data.display()
        )
    })
}

pub async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::install()?;
    let (config, file) = controller_settings::resolve(&args)?;
    let backups = config.backup_on_boot;
    let controller = start_controller(config).await?;
    println!(
        "dure controller {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        controller.url()
    );
    match controller.ca_file() {
        Some(ca) => println!(
            "CA certificate: {} (clients and agents verify the API with it: --ca or DURE_CA)",
            absolute(ca)
        ),
        None => println!("plain HTTP on loopback (--insecure-http): no TLS"),
    }
    if let Some(file) = file {
        println!("config file: {}", absolute(&file));
    }
    println!("admin token: {}", absolute(controller.token_path()));
    if backups > 0 {
        println!("automatic backups: the newest {backups} in backups/ of the data directory");
    }
    let signal = shutdown.wait().await;
    println!("got {signal}; stopping the controller (servers keep running)");
    controller.shutdown().await
}

pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::install()?;
    let node = args.node()?;
    validate_name(NameKind::Node, &node).map_err(|e| UsageError(e.to_string()))?;
    // Agents are known by their node certificates; a token is for tools
    // and tests.
    let given = given_token(&args.token)?;
    let join_token = args.join_token()?;
    let controller = controller_url(&args.controller());
    let data = args
        .data()
        .unwrap_or_else(|| data_dir(None).join(format!("agent-{node}")));
    if given.is_none() && join_token.is_none() && dure_agent::credentials::needs_join(&data, &node)
    {
        return Err(UsageError(format!(
            "the agent of node `{node}` has no node certificate in {} and no join token: create one on the controller with `dure token create --join --node {node}` and pass it with --join-token-file FILE (or DURE_JOIN_TOKEN_FILE)",
            data.display()
        ))
        .into());
    }
    let tls = client_tls(
        &controller,
        &CaArg {
            ca: args.ca.clone(),
        },
        &data,
    )?;
    let (token, token_source) = match &given {
        Some((token, source)) => (token.clone(), token_source(&args.token, source)),
        None => (String::new(), rejoin_hint(&node)),
    };
    let mut agent = Agent::start(AgentConfig {
        node: node.clone(),
        controller: controller.clone(),
        token,
        token_source,
        join_token,
        data_dir: data.clone(),
        listen: args.listen,
        advertise_address: args.advertise,
        membership_listen: args.membership_listen,
        join: args.join,
        tls,
    })
    .await
    .with_context(|| {
        format!(
            "cannot start the agent of node `{}` with data directory {}",
            node,
            data.display()
        )
    })?;
    println!(
        "dure agent {} of node `{}` listening on {}, controller {}",
        env!("CARGO_PKG_VERSION"),
        node,
        local_url(agent.addr(), agent.is_tls()),
        controller
    );
    let ended = tokio::select! {
        signal = shutdown.wait() => Ok(signal),
        failed = agent.link_failed() => Err(failed),
    };
    match ended {
        Ok(signal) => {
            println!("got {signal}; stopping the agent (servers keep running)");
            agent.shutdown().await
        }
        Err(failed) => {
            if let Err(error) = agent.shutdown().await {
                tracing::warn!(error = %format!("{error:#}"), "agent shutdown failed");
            }
            Err(link_failure(failed))
        }
    }
}

/// Where the agent's token came from, for the message when the controller
/// refuses it.
/// `dure lb run`: serves balancer `--name` until SIGINT or SIGTERM.
pub async fn lb(client: ClientArgs, args: LbRunArgs) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::install()?;
    validate_name(NameKind::Lb, &args.name).map_err(|e| UsageError(e.to_string()))?;
    let (token, _) = given_token(&client.token)?.ok_or_else(|| {
        UsageError(
            "the balancer needs the controller's admin token: pass --token-file PATH or set DURE_TOKEN_FILE; --token and DURE_TOKEN work too"
                .into(),
        )
    })?;
    let controller = controller_url(
        &args
            .controller
            .clone()
            .or_else(|| env_value("DURE_CONTROLLER"))
            .unwrap_or_else(|| client.addr()),
    );
    let tls = client_tls(
        &controller,
        &client.ca,
        &data_dir(client.data.given().as_deref()),
    )?;
    let defaults = dure_lb::Settings::default();
    let settings = dure_lb::Settings {
        admin: args.admin,
        workers: args.workers.unwrap_or(defaults.workers),
        ..defaults
    };
    let instance = LbInstance::start(
        Client::with_tls(&controller, &token, tls.as_ref()),
        &args.name,
        settings,
    )
    .await?;
    let listening = instance.listening().await;
    println!(
        "dure lb {} serving balancer `{}` on {}, controller {}, instance {}",
        env!("CARGO_PKG_VERSION"),
        args.name,
        listening
            .iter()
            .map(|a| local_url(*a, false))
            .collect::<Vec<_>>()
            .join(", "),
        controller,
        instance.instance_id()
    );
    if let Some(admin) = instance.balancer().admin_addr() {
        println!("stats on {}/stats", local_url(admin, false));
    }
    let signal = shutdown.wait().await;
    println!(
        "got {signal}; stopping balancer `{}`: no new connections, requests in flight may finish for {}",
        args.name, args.grace
    );
    // A second signal cuts the wait short.
    tokio::select! {
        cut = instance.shutdown(args.grace.0) => {
            if cut > 0 {
                println!("{cut} connection(s) still busy after {}: cut", args.grace);
            }
        }
        got = shutdown.wait() => println!("got {got}; cutting the connections still open"),
    }
    Ok(())
}

fn token_source(args: &TokenArgs, source: &TokenSource) -> String {
    let from = match source {
        TokenSource::GivenFile(path) => format!("the token file {}", path.display()),
        _ if args.token.is_some() => "--token".to_string(),
        _ => "DURE_TOKEN".to_string(),
    };
    format!("give the agent the controller's admin token with {from}")
}

/// What to do when the controller refuses an agent's node certificate.
fn rejoin_hint(node: &str) -> String {
    format!(
        "its node certificate is refused: delete node.key and node.crt from its data directory and join again with a new join token (`dure token create --join --node {node}`, then --join-token-file FILE)"
    )
}

/// The error `dure agent` ends with when the controller link failed: 1 when
/// another agent serves the node, 3 when the token was refused.
fn link_failure(failed: LinkError) -> anyhow::Error {
    let exit = match failed {
        LinkError::AnotherAgent { .. } => Exit::Failed,
        LinkError::TokenRefused { .. } => Exit::Unreachable,
    };
    Explained {
        message: failed.to_string(),
        exit,
    }
    .into()
}

/// How long `dure up`'s balancer lets requests in flight finish when it stops.
const UP_GRACE: Duration = Duration::from_secs(10);

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::install()?;
    validate_name(NameKind::Node, &args.node).map_err(|e| UsageError(e.to_string()))?;
    let exe = if args.demo {
        let path = std::env::current_exe()
            .context("cannot find the path of this program for the demo servers")?;
        Some(
            path.to_str()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the path of this program, {}, is not UTF-8; move it for the demo",
                        path.display()
                    )
                })?
                .to_string(),
        )
    } else {
        None
    };
    let data = data_dir(args.data.given().as_deref());
    // `up` is for a first try on one machine: changes are saved at once.
    let controller = start_controller(ControllerConfig {
        listen: args.listen,
        data_dir: data.clone(),
        heartbeat_interval: dure_controller::settings::DEFAULT_HEARTBEAT,
        auto_save: true,
        backup_on_boot: 0,
        event_retention: dure_controller::settings::DEFAULT_EVENT_RETENTION,
        operation_retention: dure_controller::settings::DEFAULT_OPERATION_RETENTION,
        app_versions_kept: dure_controller::settings::DEFAULT_APP_VERSIONS_KEPT,
        housekeeping_interval: dure_controller::settings::DEFAULT_HOUSEKEEPING_INTERVAL,
        artifact_max_bytes: dure_controller::artifacts::DEFAULT_MAX_BYTES,
        tls: dure_controller::tls::TlsSettings::default(),
    })
    .await?;
    let url = controller.url();
    let tls = match controller.ca_file() {
        Some(ca) => Some(dure_api::ClientTls::from_ca_file(ca)?),
        None => None,
    };
    // The agent joins like any other, with a join token; over plain HTTP
    // (no CA) it falls back to the admin token.
    let agent_data = data.join("agent");
    let (token, join_token) = match &tls {
        Some(_) if dure_agent::credentials::needs_join(&agent_data, &args.node) => (
            String::new(),
            Some(controller.join_token(&args.node).await?),
        ),
        Some(_) => (String::new(), None),
        None => (controller.token().to_string(), None),
    };
    let agent = Agent::start(AgentConfig {
        node: args.node.clone(),
        controller: url.clone(),
        token,
        token_source: rejoin_hint(&args.node),
        join_token,
        data_dir: agent_data,
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        advertise_address: Ipv4Addr::LOCALHOST.to_string(),
        membership_listen: None,
        join: Vec::new(),
        tls: tls.clone(),
    })
    .await;
    let agent = match agent {
        Ok(agent) => agent,
        Err(error) => {
            // Leave nothing half-started behind.
            if let Err(e) = controller.shutdown().await {
                tracing::warn!(error = %format!("{e:#}"), "controller shutdown failed");
            }
            return Err(error.context(format!("cannot start the agent of node `{}`", args.node)));
        }
    };
    let token_path = absolute(controller.token_path());
    println!(
        "dure {} is up: controller and agent of node `{}` in this process",
        env!("CARGO_PKG_VERSION"),
        args.node
    );
    println!("  api:    {url}");
    println!("  token:  {token_path}");
    println!("  data:   {}", absolute(&data));
    println!("  config: configuration changes are saved at once (dure up); `--stage` on a verb stages one");
    println!();
    println!("In another shell:");
    println!("  export DURE_ADDR={url}");
    println!("  export DURE_TOKEN_FILE={token_path}");
    if let Some(ca) = controller.ca_file() {
        println!("  export DURE_CA={}", absolute(ca));
    }
    println!("  dure node list");
    if !args.demo {
        println!(
            "  dure server create web1 --node {} --port http=9080 --ready tcp:http -- python3 -m http.server 9080",
            args.node
        );
        println!("  dure server start web1");
        println!("  dure cluster create web --member web1");
        println!(
            "  dure lb create {} --listen 127.0.0.1:8080 --route web   # served by this process",
            args.lb
        );
    }
    println!();

    let client = Client::with_tls(&url, controller.token(), tls.as_ref());
    let mut signal = None;
    let mut demo_failed = None;
    let mut balancer = None;
    // Without the demo, balancer `--lb` is served here once it is defined.
    let standby = (!args.demo)
        .then(|| StandbyLb::start(client.clone(), &args.lb, dure_lb::Settings::default()));
    if let Some(exe) = exe {
        let setup = async {
            demo::wait_node_online(&client, &args.node).await?;
            let specs = demo::demo_specs(&exe, &args.node, args.demo_port);
            demo::define(&client, &specs).await?;
            demo::start(&client).await?;
            demo::define_lb(&client, args.lb_listen).await?;
            LbInstance::start(client.clone(), demo::LB, dure_lb::Settings::default())
                .await
                .with_context(|| {
                    format!(
                        "cannot put the demo cluster behind {}; pass --lb-listen IP:PORT to use another address",
                        args.lb_listen
                    )
                })
        };
        tokio::select! {
            result = setup => match result {
                Ok(instance) => {
                    balancer = Some(instance);
                    println!();
                    println!("The demo cluster is running behind balancer `{}` in this process:", demo::LB);
                    println!("  curl http://{}/", args.lb_listen);
                    println!("  curl http://127.0.0.1:{}/   (one member directly)", args.demo_port);
                    println!("  dure cluster show {}", demo::CLUSTER);
                    println!("  dure server logs demo-1 -f");
                    println!("  dure cluster stop {}", demo::CLUSTER);
                    println!();
                }
                Err(error) => demo_failed = Some(error),
            },
            got = shutdown.wait() => signal = Some(got),
        }
    }
    if let Some(error) = demo_failed {
        // `--demo` asked for a running demo; one that is not is an error,
        // and what it did start is not left running.
        match demo::kill_demo_servers(&client, &args.node).await {
            Ok(left) if left.is_empty() => {}
            Ok(left) => eprintln!("warning: still running after the kill: {}", left.join(", ")),
            Err(e) => eprintln!("warning: could not kill the demo servers: {e:#}"),
        }
        let agent_result = agent.shutdown().await.context("agent shutdown failed");
        let controller_result = controller
            .shutdown()
            .await
            .context("controller shutdown failed");
        agent_result.and(controller_result)?;
        return Err(Failure(format!("{error:#}")).into());
    }
    let stop = stop_command(args.demo);
    let signal = match signal {
        Some(signal) => signal,
        None => {
            if args.stop_on_exit {
                println!("Press Ctrl-C to stop; the servers of node `{}` are killed first (--stop-on-exit).", args.node);
            } else {
                println!(
                    "Press Ctrl-C to stop the controller and the agent. Servers keep running after that: \
                     to stop them too, run {stop} first, or start `dure up` with --stop-on-exit."
                );
            }
            shutdown.wait().await
        }
    };
    println!();
    println!("got {signal}; stopping");
    let teardown = async {
        if args.stop_on_exit {
            match demo::kill_node_servers(&client, &args.node).await {
                Ok(left) if left.is_empty() => println!("servers of node `{}` killed", args.node),
                Ok(left) => eprintln!("warning: still running after the kill: {}", left.join(", ")),
                Err(error) => eprintln!(
                    "warning: could not kill the servers of node `{}`: {error:#}",
                    args.node
                ),
            }
        } else if let Ok(alive) = demo::alive_on_node(&client, &args.node).await {
            if !alive.is_empty() {
                println!(
                    "servers keep running: {}; run `dure up` again to manage them, \
                     or stop them with {stop} before you stop `dure up` next time",
                    alive.join(", ")
                );
            }
        }
    };
    // A second signal during the clean-up skips it: the operator wants out.
    tokio::select! {
        _ = teardown => {}
        got = shutdown.wait() => println!("got {got}; skipping the clean-up"),
    }
    if let Some(balancer) = balancer {
        balancer.shutdown(UP_GRACE).await;
    }
    if let Some(standby) = standby {
        standby.shutdown(UP_GRACE).await;
    }
    let agent_result = agent.shutdown().await.context("agent shutdown failed");
    let controller_result = controller
        .shutdown()
        .await
        .context("controller shutdown failed");
    agent_result.and(controller_result)?;
    println!("controller and agent stopped");
    Ok(())
}

/// The command that stops what `dure up` runs: the demo cluster, or the
/// operator's own servers one by one.
fn stop_command(demo: bool) -> String {
    if demo {
        format!("`dure cluster stop {}`", demo::CLUSTER)
    } else {
        "`dure server stop NAME`".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_demo_is_stopped_as_the_demo_cluster() {
        assert_eq!(stop_command(true), "`dure cluster stop demo`");
        assert_eq!(stop_command(false), "`dure server stop NAME`");
    }

    #[test]
    fn another_agent_exits_1_and_a_refused_token_exits_3() {
        let another = LinkError::AnotherAgent {
            controller: "http://127.0.0.1:7070".into(),
            node: "n1".into(),
            message: "node `n1` has a live agent at 127.0.0.1:7001 since 06:00:00".into(),
        };
        let error = link_failure(another);
        assert_eq!(crate::exit::exit_for(&error), Exit::Failed);
        assert!(
            error.to_string().contains("live agent at 127.0.0.1:7001"),
            "{error}"
        );
        let refused = LinkError::TokenRefused {
            controller: "http://127.0.0.1:7070".into(),
            node: "n1".into(),
            token_source: "give the agent the controller's admin token with --token".into(),
            message: "bad token (http 401)".into(),
        };
        let error = link_failure(refused);
        assert_eq!(crate::exit::exit_for(&error), Exit::Unreachable);
        assert!(error.to_string().contains("with --token"), "{error}");
    }
}
