//! The demo that `dure up --demo` sets up through the API: three
//! `demo-app` servers on the local node in a cluster `demo`, defined so that
//! running it again finds them in place, then started as one operation.
//! The demo cluster is put behind balancer `demo`, which `dure up` serves
//! in-process. Also the `--stop-on-exit` clean-up of the local node's
//! servers.

use crate::progress::{follow_operation, summary, Mode};
use dure_api::{
    Client, ClientError, NodeStatus, Operation, OperationKind, OperationStatus, ServerView,
};
use dure_core::operation::OperationOptions;
use dure_core::{
    ClusterSpec, DurationSpec, LbSpec, Listener, ReadyCheck, RestartMode, Route, ServerSpec,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The demo cluster's name.
pub const CLUSTER: &str = "demo";
/// The demo balancer's name.
pub const LB: &str = "demo";
/// How many demo servers there are.
pub const SERVERS: u16 = 3;
/// How long the local agent may take to register.
const NODE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `--stop-on-exit` waits for the servers to go down.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(200);

/// Returns the demo servers: `<exe> demo-app --name demo-N --port P` on
/// consecutive ports from `first_port`.
pub fn demo_specs(exe: &str, node: &str, first_port: u16) -> Vec<ServerSpec> {
    (0..SERVERS)
        .map(|i| {
            let name = format!("demo-{}", i + 1);
            let port = first_port.saturating_add(i);
            let argv = vec![
                exe.to_string(),
                "demo-app".into(),
                "--name".into(),
                name.clone(),
                "--port".into(),
                port.to_string(),
            ];
            let mut spec = ServerSpec::new(&name, node, argv);
            spec.ports.insert("http".to_string(), port);
            spec.ready.check = ReadyCheck::Http {
                port: "http".into(),
                path: "/health".into(),
            };
            spec.restart.mode = RestartMode::OnFailure;
            spec.stop.timeout = DurationSpec::from_secs(10);
            spec
        })
        .collect()
}

/// Waits until `node` is registered and online.
pub async fn wait_node_online(client: &Client, node: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let nodes = client.list_nodes().await?;
        if nodes
            .iter()
            .any(|n| n.spec.name == node && n.status == NodeStatus::Online)
        {
            return Ok(());
        }
        if started.elapsed() > NODE_TIMEOUT {
            anyhow::bail!(
                "node `{node}` did not come online within {}s; see the agent's messages above",
                NODE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn is_not_found(error: &ClientError) -> bool {
    error.status() == Some(404)
}

/// Defines the demo servers and cluster; what already exists as wanted is
/// left alone, what differs (another binary path, other ports) is replaced.
pub async fn define(client: &Client, specs: &[ServerSpec]) -> anyhow::Result<()> {
    for spec in specs {
        match client.get_server(&spec.name).await {
            Ok(view) if view.spec == *spec => {}
            Ok(_) => {
                client.replace_server(spec).await?;
                println!("server `{}` updated", spec.name);
            }
            Err(e) if is_not_found(&e) => {
                client.create_server(spec).await?;
                println!("server `{}` created", spec.name);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let wanted = ClusterSpec::new(CLUSTER, specs.iter().map(|s| s.name.clone()).collect());
    match client.get_cluster(CLUSTER).await {
        Ok(view) if view.spec == wanted => {}
        Ok(_) => {
            // Members are edited one by one through the API; starting over
            // is simpler and leaves the servers as they are. A routed
            // cluster cannot be deleted: the balancer goes first and is
            // defined again after (`define_lb`).
            match client.delete_lb(LB).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
            client.delete_cluster(CLUSTER).await?;
            client.create_cluster(&wanted).await?;
            println!("cluster `{CLUSTER}` redefined");
        }
        Err(e) if is_not_found(&e) => {
            client.create_cluster(&wanted).await?;
            println!("cluster `{CLUSTER}` created");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Defines balancer `demo`: every request to `listen` goes to the demo
/// cluster. Left alone when it is so already.
pub async fn define_lb(client: &Client, listen: SocketAddr) -> anyhow::Result<()> {
    let wanted = LbSpec {
        name: LB.to_string(),
        listeners: vec![Listener {
            listen: listen.to_string(),
            tls: None,
            routes: vec![Route {
                host: None,
                path: None,
                cluster: CLUSTER.to_string(),
            }],
        }],
    };
    match client.get_lb(LB).await {
        Ok(lb) if lb == wanted => {}
        Ok(_) => {
            client.replace_lb(&wanted).await?;
            println!("balancer `{LB}` updated");
        }
        Err(e) if is_not_found(&e) => {
            client.create_lb(&wanted).await?;
            println!("balancer `{LB}` created");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Starts the demo cluster and follows the operation to its end.
pub async fn start(client: &Client) -> anyhow::Result<Operation> {
    let op = client
        .cluster_operation(CLUSTER, OperationKind::Start, &OperationOptions::default())
        .await?;
    println!("operation {}: start cluster `{CLUSTER}`", op.id);
    if let Some(message) = &op.message {
        println!("{message}");
    }
    let done = follow_operation(client, op, Mode::choose(false)).await?;
    println!("{}", summary(&done));
    if done.status == OperationStatus::Failed {
        let why = done.message.as_deref().unwrap_or("a member failed");
        anyhow::bail!(
            "the demo cluster did not start: {why}; see `dure operation show {}` \
             (--demo-port moves the demo to other ports)",
            done.id
        );
    }
    Ok(done)
}

/// Kills every server of `node` that is not already down and waits, within
/// a bound, until its agent reports them down. Returns the names of those
/// still alive at the end.
pub async fn kill_node_servers(client: &Client, node: &str) -> anyhow::Result<Vec<String>> {
    kill_servers(client, |view| view.spec.node == node).await
}

/// Kills the demo servers of `node` that are not already down, as
/// [`kill_node_servers`] does: what a demo that failed to start had
/// started is not left behind.
pub async fn kill_demo_servers(client: &Client, node: &str) -> anyhow::Result<Vec<String>> {
    let demo = demo_specs("", node, 1);
    kill_servers(client, |view| {
        view.spec.node == node && demo.iter().any(|spec| spec.name == view.spec.name)
    })
    .await
}

/// Kills every server `chosen` picks that is not already down and waits,
/// within a bound, until its agent reports it down. Returns the names of
/// those still alive at the end.
async fn kill_servers(
    client: &Client,
    chosen: impl Fn(&ServerView) -> bool,
) -> anyhow::Result<Vec<String>> {
    let mut waiting: Vec<(String, u64)> = Vec::new();
    for view in client.list_servers().await? {
        if chosen(&view) && !view.observed.state.is_down() {
            let killed = client
                .server_intent(&view.spec.name, dure_core::Intent::Kill)
                .await?;
            waiting.push((view.spec.name, killed.generation));
        }
    }
    let started = Instant::now();
    while !waiting.is_empty() && started.elapsed() < STOP_TIMEOUT {
        tokio::time::sleep(POLL).await;
        let servers = client.list_servers().await?;
        waiting.retain(|(name, generation)| {
            servers
                .iter()
                .find(|s| &s.spec.name == name)
                .is_some_and(|s| s.observed.generation < *generation || !s.observed.state.is_down())
        });
    }
    Ok(waiting.into_iter().map(|(name, _)| name).collect())
}

/// Returns "demo-1 (pid 10)" for each server of `node` that is alive.
pub async fn alive_on_node(client: &Client, node: &str) -> anyhow::Result<Vec<String>> {
    Ok(client
        .list_servers()
        .await?
        .into_iter()
        .filter(|v| v.spec.node == node && v.observed.state.is_alive())
        .map(|v| match v.observed.pid {
            Some(pid) => format!("{} (pid {pid})", v.spec.name),
            None => v.spec.name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_servers_pass_the_core_checks() {
        let specs = demo_specs("/usr/bin/dure", "local", 8081);
        assert_eq!(specs.len(), 3);
        for (i, spec) in specs.iter().enumerate() {
            crate::spec::check_alone(spec).unwrap();
            let port = 8081 + i as u16;
            assert_eq!(spec.name, format!("demo-{}", i + 1));
            assert_eq!(spec.ports.get("http"), Some(&port));
            assert_eq!(
                spec.argv,
                vec![
                    "/usr/bin/dure".to_string(),
                    "demo-app".into(),
                    "--name".into(),
                    spec.name.clone(),
                    "--port".into(),
                    port.to_string()
                ]
            );
            assert_eq!(spec.ready.check.to_string(), "http:/health");
            assert_eq!(spec.stop.timeout.to_string(), "10s");
            assert_eq!(spec.restart.mode, RestartMode::OnFailure);
        }
    }
}
