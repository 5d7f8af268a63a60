//! The Dure node agent: runs and watches the server processes of one host.
//!
//! [`Agent::start`] locks the data directory, binds the agent's HTTP
//! endpoint, adopts servers still running from a previous agent, and starts
//! the controller link; it does not wait for the controller. The agent of a
//! data directory is one instance, with a random id kept there and sent
//! with the registration and every report, so the controller can tell a
//! second agent of the node from this one coming back. [`Agent::link_failed`] resolves when the controller
//! gave an answer after which the agent cannot go on ([`LinkError`]).
//!
//! Code map:
//! - [`layout`]: where things live under the data directory.
//! - `apps`: applications staged and installed in servers' application
//!   directories (`dure app deploy`), and what each server has.
//! - [`credentials`]: the node's key and certificate — joining with a
//!   join token, loading them from the data directory, renewal.
//! - `data_lock`: one agent per data directory.
//! - `instance`: the instance id of the data directory's agent.
//! - [`local_copy`]: the checksummed local copy of the node's desired state.
//! - [`process`]: spawning, recognising (pid + start time) and signalling
//!   a server's process group; the pid file.
//! - `restart_state`: the restart counts and pending restart (or failure)
//!   of a server with no process, for the next agent.
//! - [`logs`]: log rotation (copytruncate) and reading log chunks.
//! - `ports`: the check that a server's declared ports are free before it
//!   is spawned, naming the holder.
//! - [`probe`]: readiness checks (`http`, `tcp`, `none`).
//! - [`supervisor`]: one task per server applying its desired state.
//! - `registry`: the supervised servers by name.
//! - `sync`: register, desired-state long poll, reports; detects the
//!   controller's absence and return.
//! - `node_state`: the desired state applied (saved as the local copy) and
//!   entering or leaving INDEPENDENT mode.
//! - `mode`: MANAGED or INDEPENDENT, and the local copy's state.
//! - `drift`: what changed while independent, as report lines.
//! - `http`: `/v1/status` and `/v1/logs/{server}`, over HTTPS with the
//!   node certificate, for the controller's certificate or an operator.
//! - [`membership`]: keep-alive membership among agents (SWIM over
//!   authenticated UDP), this node's view of its peers, leave on shutdown.
//!
//! Architecture invariant: servers outlive the agent. Nothing here kills a
//! server because the agent starts, stops, restarts or loses the
//! controller; only a desired stop or kill, or the server's own contract
//! (start timeout), does. A local copy that fails any check is refused
//! whole: nothing is ever started from part of one.
//!
//! API boundary: [`AgentConfig`] and [`Agent`] are what the `dure` binary
//! uses; the public modules are for tests and tooling that drive single
//! pieces (a [`supervisor::Supervisor`] without a controller, for example).
#![deny(unsafe_code)]

pub mod app_server;
mod apps;
pub mod credentials;
mod data_lock;
mod drift;
mod http;
mod instance;
pub mod layout;
pub mod local_copy;
pub mod logs;
pub mod membership;
mod mode;
mod node_state;
mod ports;
pub mod probe;
pub mod process;
mod registry;
mod restart_state;
pub mod supervisor;
mod sync;

pub use sync::LinkError;

use anyhow::Context;
use data_lock::DataLock;
use dure_api::tls_listener::Peer;
use layout::Layout;
use mode::Mode;
use node_state::NodeState;
use registry::Registry;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often server logs are checked for rotation.
const ROTATION_INTERVAL: Duration = Duration::from_secs(10);
/// How long shutdown waits for open HTTP requests to finish.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    /// Base URL of the controller, such as `http://127.0.0.1:7070`.
    pub controller: String,
    /// A bearer token instead of a node certificate (tools and tests; `""`:
    /// none, the agent is known by its node certificate).
    pub token: String,
    /// What the operator can do when the controller refuses the agent's
    /// credentials (give another token, join again …).
    pub token_source: String,
    /// A one-time join token, used when the data directory holds no valid
    /// node certificate.
    pub join_token: Option<String>,
    pub data_dir: PathBuf,
    /// Where the agent's own HTTP endpoint listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Address the controller should use to reach this node.
    pub advertise_address: String,
    /// Where the membership UDP socket binds; `None`: the listen address's
    /// IP with a free port.
    pub membership_listen: Option<SocketAddr>,
    /// Members to join through (`--join`), beside the configured peers.
    pub join: Vec<SocketAddr>,
    /// What an `https://` controller's certificate is verified with.
    pub tls: Option<dure_api::ClientTls>,
}

impl AgentConfig {
    /// A configuration listening on `127.0.0.1:0` and advertising `127.0.0.1`.
    pub fn new(
        node: impl Into<String>,
        controller: impl Into<String>,
        token: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> AgentConfig {
        AgentConfig {
            node: node.into(),
            controller: controller.into(),
            token: token.into(),
            token_source: "give the agent the controller's admin token in its configuration"
                .to_string(),
            join_token: None,
            data_dir: data_dir.into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertise_address: "127.0.0.1".to_string(),
            membership_listen: None,
            join: Vec::new(),
            tls: None,
        }
    }
}

pub struct Agent {
    addr: SocketAddr,
    /// Whether the endpoint serves HTTPS with the node certificate.
    tls: bool,
    registry: Arc<Registry>,
    http: Option<JoinHandle<()>>,
    http_stop: Option<oneshot::Sender<()>>,
    /// Controller link and log rotation: stopped by aborting.
    background: Vec<JoinHandle<()>>,
    /// Why the controller link ended; never sent while it runs.
    link_failed: Option<oneshot::Receiver<LinkError>>,
    /// Left on shutdown, so peers see this node INACTIVE.
    membership: Option<Arc<membership::Membership>>,
    /// Released last, once nothing of this agent touches the data directory.
    _lock: DataLock,
}

impl Agent {
    /// Starts the agent; returns once its endpoint listens.
    pub async fn start(config: AgentConfig) -> anyhow::Result<Agent> {
        let layout = Layout::new(&config.data_dir);
        std::fs::create_dir_all(layout.servers_dir()).with_context(|| {
            format!(
                "cannot create data directory `{}`",
                layout.servers_dir().display()
            )
        })?;
        let lock = DataLock::acquire(&layout)?;
        let instance_id = instance::load_or_create(&layout)?;
        // Without a token the agent is known by its node certificate,
        // joining for one first if it has none.
        let credentials = match (&config.tls, config.token.is_empty()) {
            (_, false) => None,
            (Some(ca), true) => Some(
                credentials::Credentials::obtain(
                    &layout,
                    &config.node,
                    &config.controller,
                    ca,
                    config.join_token.as_deref(),
                )
                .await?,
            ),
            (None, true) => anyhow::bail!(
                "the agent of node `{}` has neither a token nor the domain's CA: an agent joins an https:// controller with a join token, verifying it with --ca FILE",
                config.node
            ),
        };
        let tls = match (&config.tls, &credentials) {
            (Some(ca), Some(credentials)) => Some(ca.with_shared_identity(credentials.identity())),
            _ => config.tls.clone(),
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener
            .local_addr()
            .context("cannot read the agent's bound address")?;
        layout::write_atomic(&layout.agent_addr(), format!("{addr}\n").as_bytes())
            .with_context(|| format!("cannot write `{}`", layout.agent_addr().display()))?;

        let membership = Arc::new(
            membership::Membership::start(
                membership::Options {
                    node: config.node.clone(),
                    bind: config
                        .membership_listen
                        .unwrap_or(SocketAddr::new(config.listen.ip(), 0)),
                    advertise: advertise_ip(&config.advertise_address, config.listen)?,
                    join: config.join.clone(),
                },
                &layout,
            )
            .await?,
        );
        let recovered = local_copy::recover(&layout.local_copy(), &config.node, &config.controller);
        let local = recovered.copy.map(|copy| copy.desired);
        let registry = Arc::new(Registry::new(layout.clone()));
        registry.adopt_existing(local.as_ref());
        let link = Arc::new(sync::Link::new(
            &config.node,
            &config.controller,
            &config.token_source,
        ));
        let mode = Arc::new(Mode::new(
            local.as_ref().map(|desired| desired.index),
            recovered.error,
        ));

        let client = dure_api::Client::with_tls(&config.controller, &config.token, tls.as_ref());
        let auth = match &credentials {
            Some(_) => http::EndpointAuth::Certificates {
                controller: client.clone(),
            },
            None => http::EndpointAuth::Token(config.token.clone()),
        };
        let router = http::router(Arc::new(http::HttpState {
            node: config.node.clone(),
            auth,
            layout: layout.clone(),
            registry: registry.clone(),
            link: link.clone(),
            mode: mode.clone(),
            membership: membership.clone(),
        }));
        let (http_stop, stopped) = oneshot::channel::<()>();
        let service = router.into_make_service_with_connect_info::<Peer>();
        let stopped = async {
            let _ = stopped.await;
        };
        let http = match (&tls, &credentials) {
            (Some(trust), Some(credentials)) => {
                let server =
                    dure_api::tls_listener::server_config(trust.roots(), credentials.identity())
                        .context("cannot serve the agent's endpoint with the node certificate")?;
                let listener =
                    dure_api::tls_listener::TlsListener::new(listener, Arc::new(server))?;
                let serve = axum::serve(listener, service).with_graceful_shutdown(stopped);
                tokio::spawn(async move {
                    if let Err(error) = serve.await {
                        tracing::error!(%error, "agent https endpoint failed");
                    }
                })
            }
            _ => {
                let serve = axum::serve(listener, service).with_graceful_shutdown(stopped);
                tokio::spawn(async move {
                    if let Err(error) = serve.await {
                        tracing::error!(%error, "agent http endpoint failed");
                    }
                })
            }
        };

        let deployer = apps::Deployer::new(layout.clone(), client.clone());
        let renewal_client = client.clone();
        let state = Arc::new(NodeState::new(
            config.node.clone(),
            client.base_url().to_string(),
            layout.local_copy(),
            registry.clone(),
            mode,
            local,
            deployer.clone(),
        ));
        let controller_sync = sync::ControllerSync {
            client,
            hello: dure_api::AgentHello {
                node: config.node.clone(),
                address: config.advertise_address.clone(),
                agent_port: addr.port(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                instance_id: Some(instance_id),
                membership_port: Some(membership.local_addr().port()),
            },
            state,
            link,
            membership: membership.clone(),
        };
        let (link_ended, link_failed) = oneshot::channel();
        let rotation_layout = layout.clone();
        let renewal = credentials
            .clone()
            .map(|credentials| tokio::spawn(credentials.renew_forever(renewal_client)));
        let mut background = vec![
            tokio::spawn(async move {
                let _ = link_ended.send(controller_sync.run().await);
            }),
            tokio::spawn(deployer.run()),
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(ROTATION_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let layout = rotation_layout.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        logs::rotate_all(&layout, logs::Rotation::default())
                    })
                    .await;
                }
            }),
        ];
        background.extend(renewal);
        tracing::info!(
            node = %config.node,
            %addr,
            controller = %config.controller,
            data_dir = %layout.data_dir().display(),
            "agent started"
        );
        Ok(Agent {
            addr,
            tls: credentials.is_some(),
            registry,
            http: Some(http),
            http_stop: Some(http_stop),
            background,
            link_failed: Some(link_failed),
            membership: Some(membership),
            _lock: lock,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the endpoint serves HTTPS (with the node certificate).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Where peers reach this agent's membership socket.
    pub fn membership_addr(&self) -> Option<SocketAddr> {
        self.membership.as_ref().map(|m| m.local_addr())
    }

    /// Resolves when the controller link ended for good; pending while it
    /// runs (and after it was waited for once). The servers are untouched
    /// either way; the owner decides whether to shut the agent down.
    pub async fn link_failed(&mut self) -> LinkError {
        match self.link_failed.as_mut() {
            Some(receiver) => match receiver.await {
                Ok(error) => {
                    self.link_failed = None;
                    error
                }
                // The link was stopped by shutdown: nothing failed.
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Stops the agent; its servers keep running.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for task in self.background.drain(..) {
            task.abort();
        }
        if let Some(membership) = self.membership.take() {
            membership.leave().await;
        }
        self.link_failed = None;
        self.registry.clear();
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut http) = self.http.take() {
            if tokio::time::timeout(HTTP_DRAIN, &mut http).await.is_err() {
                tracing::warn!(
                    "http requests still open after shutdown grace period; closing them"
                );
                http.abort();
            }
        }
        tracing::info!(addr = %self.addr, "agent stopped; servers keep running");
        Ok(())
    }
}

impl Drop for Agent {
    /// Dropping without [`Agent::shutdown`] stops the agent's tasks at once;
    /// like shutdown, it leaves the servers running.
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
        if let Some(http) = &self.http {
            http.abort();
        }
        self.registry.clear();
    }
}

/// The IP peers reach this node at: the advertised address when it is one
/// (or resolves to one), else the listen address's.
fn advertise_ip(advertise: &str, listen: SocketAddr) -> anyhow::Result<std::net::IpAddr> {
    if let Ok(ip) = advertise.parse() {
        return Ok(ip);
    }
    use std::net::ToSocketAddrs;
    let resolved = (advertise, 0)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the advertised address `{advertise}`"))?
        .next();
    Ok(resolved.map_or(listen.ip(), |a| a.ip()))
}
