//! A sandbox for integration tests: starts real `dure` processes (a
//! controller and node agents) on loopback with ephemeral ports and temp
//! dirs, waits until they are ready, and hands out API clients. Everything it
//! started — the roles, and whatever they started in turn: servers, stop
//! commands, their children — is killed when the sandbox is dropped, also
//! when a test fails: the roles by process group, the rest by the
//! [`ProcessMark`] all of them carry in their environment.
//!
//! For tests across hosts, [`netns`] builds network namespaces joined by
//! veth links that can be cut; the controller then listens on the net's
//! hub address ([`SandboxOptions::listen`]) and each agent runs in a
//! namespace of its own ([`Sandbox::add_agent_in`]).
//!
//! The controller serves its API over HTTPS with its built-in domain CA,
//! as in production: the sandbox's clients trust that CA (`ca.pem` in the
//! controller's data directory, [`Sandbox::ca_file`]) and its agents are
//! given it, so every test runs over TLS without saying so. Agents join as
//! in production: each new one gets a one-time join token (in its
//! environment, never the admin token) and from then on talks mutual TLS
//! with its node certificate; [`Sandbox::agent_client`] reaches an agent's
//! HTTPS endpoint with a client certificate of the domain CA naming the
//! controller, as the controller does.
//!
//! For HTTPS elsewhere, [`tls`] makes self-signed certificates and a
//! client that trusts them.

mod mark;
pub mod netns;
mod process;
pub mod tls;
mod wait;

pub use mark::{MarkProbe, ProcessMark};
pub use process::{free_port, free_ports_in_a_row, kill_group, ChildProcess};
pub use wait::{eventually, Deadline};

use anyhow::{bail, Context};
use dure_api::{AgentStatus, Client, ClientTls, NodeStatus};
use netns::Namespace;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The CA file of every controller running in this test process, by its
/// URL, so that a `dure` client verb a test runs against a URL finds it
/// ([`ca_for`]).
static CAS: std::sync::Mutex<BTreeMap<String, PathBuf>> = std::sync::Mutex::new(BTreeMap::new());

/// Notes that the controller at `url` is verified with `ca`.
pub fn register_ca(url: &str, ca: &Path) {
    let mut cas = CAS.lock().unwrap_or_else(|e| e.into_inner());
    cas.insert(url.trim_end_matches('/').to_string(), ca.to_path_buf());
}

/// The CA file of the controller at `url`, if one was started here.
pub fn ca_for(url: &str) -> Option<PathBuf> {
    let cas = CAS.lock().unwrap_or_else(|e| e.into_inner());
    cas.get(url.trim_end_matches('/')).cloned()
}

/// A plain `reqwest` client trusting the CA of the controller at `url`
/// (see [`ca_for`]); any other client when none is known.
pub fn http_client_for(url: &str) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = ca_for(url) {
        let tls = ClientTls::from_ca_file(&ca).expect("the controller's CA is readable");
        builder = builder.use_preconfigured_tls((*tls.config()).clone());
    }
    builder.build().expect("a reqwest client builds")
}

fn forget_ca(url: &str) {
    let mut cas = CAS.lock().unwrap_or_else(|e| e.into_inner());
    cas.remove(url);
}

/// How long a role may take to come up.
const STARTUP: Duration = Duration::from_secs(20);

/// How a sandbox's controller runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Configuration changes that do not say `?save=` are saved at once
    /// (`--auto-save`), as most tests expect; `false` stages them in the
    /// caller's change set, as a plain `dure controller` does.
    pub auto_save: bool,
    /// The address the controller listens on (on a port it picks):
    /// loopback, or a [`netns::TestNet`]'s hub address for agents in its
    /// namespaces.
    pub listen: IpAddr,
    /// More flags for `dure controller` (such as `--artifact-max-bytes`).
    pub controller_args: Vec<String>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            auto_save: true,
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            controller_args: Vec::new(),
        }
    }
}

pub struct Sandbox {
    /// Carried by every process started here and inherited by theirs.
    /// Declared first so that it is dropped, killing them all, before the
    /// temporary directory they run in is removed.
    mark: ProcessMark,
    options: SandboxOptions,
    dir: tempfile::TempDir,
    bin: PathBuf,
    controller: Option<ChildProcess>,
    controller_addr: Option<String>,
    /// The controller's data directory: `<sandbox>/controller` unless the
    /// controller was moved (see [`Sandbox::move_controller`]).
    controller_dir: PathBuf,
    agents: BTreeMap<String, ChildProcess>,
    token: String,
    /// The controller's CA, read when it started.
    tls: Option<ClientTls>,
    /// The same CA with a client certificate naming the controller, for
    /// agents' endpoints.
    agent_tls: Option<ClientTls>,
    heartbeat: String,
}

impl Sandbox {
    /// Starts a controller. `bin` is the `dure` binary under test
    /// (`env!("CARGO_BIN_EXE_dure")` in the binary crate's tests).
    pub async fn start(bin: &str) -> anyhow::Result<Sandbox> {
        Sandbox::start_with(bin, SandboxOptions::default()).await
    }

    /// Starts a controller run as `options` say.
    pub async fn start_with(bin: &str, options: SandboxOptions) -> anyhow::Result<Sandbox> {
        let dir = tempfile::Builder::new().prefix("dure-sandbox-").tempdir()?;
        let listen = SocketAddr::new(options.listen, 0).to_string();
        let mut sandbox = Sandbox {
            options,
            controller_dir: dir.path().join("controller"),
            dir,
            bin: PathBuf::from(bin),
            controller: None,
            controller_addr: None,
            agents: BTreeMap::new(),
            token: String::new(),
            tls: None,
            agent_tls: None,
            heartbeat: "1s".into(),
            mark: ProcessMark::new(),
        };
        sandbox.start_controller(Some(&listen)).await?;
        Ok(sandbox)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn controller_data(&self) -> PathBuf {
        self.controller_dir.clone()
    }

    pub fn agent_data(&self, node: &str) -> PathBuf {
        self.dir.path().join("agents").join(node)
    }

    /// The controller's base URL (HTTPS).
    pub fn url(&self) -> String {
        format!(
            "https://{}",
            self.controller_addr.as_deref().unwrap_or("127.0.0.1:1")
        )
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The controller's CA certificate: what its clients verify it with
    /// (`--ca`, `DURE_CA`).
    pub fn ca_file(&self) -> PathBuf {
        self.controller_data().join(dure_api::CA_FILE)
    }

    /// What a client of this controller trusts, for clients a test builds
    /// itself ([`Client::with_tls`]).
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// A client of the controller with the admin token.
    pub fn client(&self) -> Client {
        self.client_with_token(&self.token)
    }

    /// A client of the controller with another token (or none: `""`).
    pub fn client_with_token(&self, token: &str) -> Client {
        Client::with_tls(&self.url(), token, self.tls.as_ref())
    }

    /// A plain `reqwest` client trusting the controller's CA, for requests
    /// the typed client cannot make (raw bodies, odd headers).
    pub fn http_client(&self) -> reqwest::Client {
        http_client_for(&self.url())
    }

    /// The environment a `dure` client verb run by a test needs to reach
    /// this controller: its address, its CA and the admin token.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DURE_ADDR", self.url()),
            ("DURE_CA", self.ca_file().display().to_string()),
            ("DURE_TOKEN", self.token.clone()),
        ]
    }

    /// Starts the controller on its data directory; without `listen` it
    /// listens where the directory's `controller.toml` says.
    async fn start_controller(&mut self, listen: Option<&str>) -> anyhow::Result<()> {
        let data = self.controller_data();
        std::fs::create_dir_all(&data)?;
        let _ = std::fs::remove_file(data.join("controller.addr"));
        let log = self.dir.path().join("controller.log");
        let data_arg = data.to_string_lossy();
        let mut args = vec!["controller", "--data", &data_arg];
        if let Some(listen) = listen {
            args.extend(["--listen", listen]);
        }
        if self.options.auto_save {
            args.push("--auto-save");
        }
        args.extend(self.options.controller_args.iter().map(String::as_str));
        let child = ChildProcess::spawn(
            &self.bin,
            &args,
            &[("DURE_HEARTBEAT", self.heartbeat.as_str()), self.mark.env()],
            &log,
        )?;
        self.controller = Some(child);
        let addr = wait_for_addr_file(&data.join("controller.addr"), STARTUP)
            .await
            .with_context(|| format!("controller did not start; its log:\n{}", read_log(&log)))?;
        self.token = std::fs::read_to_string(data.join("admin.token"))?
            .trim()
            .to_string();
        let tls = ClientTls::from_ca_file(&data.join(dure_api::CA_FILE))?;
        let ca = tls::TestCa::from_pem(
            &std::fs::read_to_string(data.join(dure_api::CA_FILE))?,
            &std::fs::read_to_string(data.join("ca.key"))?,
        )?;
        let controller = ca.issue_client(dure_api::identity::CONTROLLER_NAME);
        self.agent_tls = Some(tls.with_identity(
            controller.cert_pem.as_bytes(),
            controller.key_pem.as_bytes(),
        )?);
        self.tls = Some(tls);
        self.controller_addr = Some(addr);
        register_ca(&self.url(), &self.ca_file());
        let client = self.client();
        Deadline::after(STARTUP)
            .until(|| async { client.health().await.ok() })
            .await
            .context("controller did not answer /v1/health")?;
        Ok(())
    }

    /// Starts an agent for `node` and waits until the controller sees it online.
    pub async fn add_agent(&mut self, node: &str) -> anyhow::Result<()> {
        self.spawn_agent(node, None, &[]).await?;
        self.wait_online(node).await
    }

    /// [`Sandbox::add_agent`] or [`Sandbox::add_agent_in`] (with `ns`),
    /// with more flags for the agent (such as `--join ADDR`).
    pub async fn add_agent_with(
        &mut self,
        node: &str,
        ns: Option<&Namespace>,
        extra: &[String],
    ) -> anyhow::Result<()> {
        self.spawn_agent(node, ns, extra).await?;
        self.wait_online(node).await
    }

    /// Starts an agent for `node` inside a namespace of a
    /// [`netns::TestNet`] (`ip netns exec`, marked like every process here)
    /// and waits until the controller sees it online. The agent listens on
    /// the namespace's address and advertises it, so the controller reaches
    /// it (for server logs) over the namespace's link; the controller must
    /// listen where the namespace reaches it, the net's hub address.
    pub async fn add_agent_in(&mut self, node: &str, ns: &Namespace) -> anyhow::Result<()> {
        self.spawn_agent(node, Some(ns), &[]).await?;
        self.wait_online(node).await
    }

    async fn wait_online(&self, node: &str) -> anyhow::Result<()> {
        self.wait_node_status(node, NodeStatus::Online, STARTUP)
            .await
            .with_context(|| {
                format!(
                    "agent `{node}` did not come online; its log:\n{}",
                    self.log(&format!("agent-{node}"))
                )
            })
    }

    /// Starts an agent for `node` and waits only for its own endpoint, so
    /// it works with the controller down (the agent then runs from its
    /// local copy).
    pub async fn start_agent(&mut self, node: &str) -> anyhow::Result<()> {
        self.start_agent_in(node, None).await
    }

    /// [`Sandbox::start_agent`] in `ns` when given.
    pub async fn start_agent_in(
        &mut self,
        node: &str,
        ns: Option<&Namespace>,
    ) -> anyhow::Result<()> {
        self.spawn_agent(node, ns, &[]).await?;
        Deadline::after(STARTUP)
            .until(|| async { self.agent_status(node).await.ok() })
            .await
            .with_context(|| {
                format!(
                    "agent `{node}` did not answer on its endpoint; its log:\n{}",
                    self.log(&format!("agent-{node}"))
                )
            })?;
        Ok(())
    }

    /// A one-time join token for `node`'s agent, made with the admin
    /// token (`dure token create --join --node NODE`).
    pub async fn join_token(&self, node: &str) -> anyhow::Result<String> {
        let created = self
            .client()
            .create_token(&dure_api::CreateToken {
                role: dure_core::access::Role::Viewer,
                ttl: None,
                description: format!("sandbox agent {node}"),
                node: Some(node.to_string()),
            })
            .await
            .with_context(|| format!("cannot create a join token for node `{node}`"))?;
        Ok(created.token)
    }

    /// Spawns an agent for `node`, in `ns` when given, with `extra` flags;
    /// one without a node certificate in its data directory gets a join
    /// token in its environment (`DURE_JOIN_TOKEN`).
    async fn spawn_agent(
        &mut self,
        node: &str,
        ns: Option<&Namespace>,
        extra: &[String],
    ) -> anyhow::Result<()> {
        if self.agents.contains_key(node) {
            bail!("agent `{node}` is already running in this sandbox");
        }
        let data = self.agent_data(node);
        std::fs::create_dir_all(&data)?;
        // A previous agent's address must not be mistaken for this one's.
        let _ = std::fs::remove_file(data.join("agent.addr"));
        let log = self.dir.path().join(format!("agent-{node}.log"));
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--controller".into(),
            self.url(),
            "--node".into(),
            node.into(),
            "--data".into(),
            data.to_string_lossy().into_owned(),
            "--ca".into(),
            self.ca_file().to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().cloned());
        let program = match ns {
            None => self.bin.clone(),
            Some(ns) => {
                args.extend([
                    "--listen".into(),
                    SocketAddr::from((ns.addr(), 0)).to_string(),
                    "--advertise".into(),
                    ns.addr().to_string(),
                ]);
                let (program, wrapped) = ns.command(&self.bin, &args);
                args = wrapped;
                program
            }
        };
        let given_token = extra
            .iter()
            .any(|a| a.starts_with("--token") || a.starts_with("--join-token"));
        // A node certificate there: the agent needs no token (it joins
        // again by itself only with one).
        let join_token = if !given_token && !data.join("node.crt").exists() {
            Some(self.join_token(node).await?)
        } else {
            None
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut env = vec![self.mark.env()];
        if let Some(token) = &join_token {
            env.push(("DURE_JOIN_TOKEN", token.as_str()));
        }
        let child = ChildProcess::spawn(&program, &args, &env, &log)?;
        self.agents.insert(node.to_string(), child);
        Ok(())
    }

    /// A client for the agent's own endpoint (`/v1/status`, logs), found
    /// through `<agent data>/agent.addr`: HTTPS, verifying the agent's
    /// node certificate and showing one naming the controller.
    pub fn agent_client(&self, node: &str) -> anyhow::Result<Client> {
        let addr = self.agent_addr(node)?;
        let tls = self.agent_tls.as_ref().context("no controller started")?;
        Ok(Client::with_tls(
            &format!("https://{addr}"),
            "",
            Some(&tls.for_node(node)),
        ))
    }

    /// The controller's CA with the node certificate and key the agent of
    /// `node` keeps in its data directory: what someone who stole them
    /// from that host would present.
    pub fn node_tls(&self, node: &str) -> anyhow::Result<ClientTls> {
        let data = self.agent_data(node);
        let cert = std::fs::read(data.join("node.crt"))
            .with_context(|| format!("agent `{node}` has no node certificate"))?;
        let key = std::fs::read(data.join("node.key"))?;
        let tls = self.tls.as_ref().context("no controller started")?;
        Ok(tls.with_identity(&cert, &key)?)
    }

    /// A client of the controller showing node `node`'s certificate and no
    /// token, as that node's agent calls it.
    pub fn node_client(&self, node: &str) -> anyhow::Result<Client> {
        Ok(Client::with_tls(
            &self.url(),
            "",
            Some(&self.node_tls(node)?),
        ))
    }

    /// A plain `reqwest` client showing node `node`'s certificate.
    pub fn node_http_client(&self, node: &str) -> anyhow::Result<reqwest::Client> {
        let tls = self.node_tls(node)?;
        Ok(reqwest::Client::builder()
            .use_preconfigured_tls((*tls.config()).clone())
            .build()?)
    }

    /// Where the agent of `node` serves its endpoint, as it wrote it to
    /// `<agent data>/agent.addr`.
    pub fn agent_addr(&self, node: &str) -> anyhow::Result<String> {
        let path = self.agent_data(node).join("agent.addr");
        let addr = std::fs::read_to_string(&path)
            .with_context(|| format!("agent `{node}` has not written {}", path.display()))?;
        Ok(addr.trim().to_string())
    }

    /// The agent's own status: its mode, local copy and servers.
    pub async fn agent_status(&self, node: &str) -> anyhow::Result<AgentStatus> {
        Ok(self.agent_client(node)?.agent_status().await?)
    }

    /// Waits until the controller reports `node` in `status`.
    pub async fn wait_node_status(
        &self,
        node: &str,
        status: NodeStatus,
        within: Duration,
    ) -> anyhow::Result<()> {
        let client = self.client();
        Deadline::after(within)
            .until(|| async {
                let nodes = client.list_nodes().await.ok()?;
                nodes
                    .iter()
                    .any(|n| n.spec.name == node && n.status == status)
                    .then_some(())
            })
            .await
            .with_context(|| format!("node `{node}` did not become {status}"))
    }

    /// Stops an agent gracefully (SIGTERM); its servers keep running.
    pub async fn stop_agent(&mut self, node: &str) -> anyhow::Result<()> {
        let Some(mut agent) = self.agents.remove(node) else {
            bail!("no agent `{node}` in this sandbox");
        };
        agent.terminate(Duration::from_secs(10)).await
    }

    /// Kills an agent with SIGKILL; its servers keep running.
    pub async fn kill_agent(&mut self, node: &str) -> anyhow::Result<()> {
        let Some(mut agent) = self.agents.remove(node) else {
            bail!("no agent `{node}` in this sandbox");
        };
        agent.kill().await;
        Ok(())
    }

    /// Kills the controller with SIGKILL.
    pub async fn kill_controller(&mut self) -> anyhow::Result<()> {
        if let Some(mut controller) = self.controller.take() {
            controller.kill().await;
        }
        Ok(())
    }

    /// Kills the controller and starts one on another data directory, such
    /// as one `dure domain unpack` prepared, listening where its
    /// `controller.toml` says. Later restarts use that directory; agents
    /// keep the old address until they are started again.
    pub async fn move_controller(&mut self, data: &Path) -> anyhow::Result<()> {
        self.kill_controller().await?;
        self.controller_dir = data.to_path_buf();
        self.start_controller_retrying(None).await
    }

    /// Starts the controller again on the same address and data directory.
    pub async fn restart_controller(&mut self) -> anyhow::Result<()> {
        self.kill_controller().await?;
        let listen = self
            .controller_addr
            .clone()
            .unwrap_or_else(|| "127.0.0.1:0".into());
        self.start_controller_retrying(Some(&listen)).await
    }

    /// Starts the controller, retrying for a while: the socket of the one
    /// just killed may linger briefly on the same address.
    async fn start_controller_retrying(&mut self, listen: Option<&str>) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            match self.start_controller(listen).await {
                Ok(()) => return Ok(()),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    if let Some(mut c) = self.controller.take() {
                        c.kill().await;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The mark to put in the environment of a process a test starts
    /// itself, so that it and its children end with the sandbox.
    pub fn mark_env(&self) -> (&'static str, &str) {
        self.mark.env()
    }

    /// Finds the live processes this sandbox started, directly or not;
    /// it outlives the sandbox, to check that dropping it left none.
    pub fn mark_probe(&self) -> MarkProbe {
        self.mark.probe()
    }

    /// The text of a role's log in the sandbox (`controller` or `agent-<node>`).
    pub fn log(&self, role: &str) -> String {
        read_log(&self.dir.path().join(format!("{role}.log")))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Agents first, so none restarts a server while it is killed.
        self.agents.clear();
        self.controller.take();
        forget_ca(&self.url());
        // Servers run in their own process groups and outlive agents by
        // design; dropping the mark next kills them and anything else the
        // roles started.
    }
}

/// Waits until a role has written its bound address to `path` (such as
/// `<data>/controller.addr`) and returns it.
pub async fn wait_for_addr_file(path: &Path, within: Duration) -> anyhow::Result<String> {
    Deadline::after(within)
        .until(|| async {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .await
        .with_context(|| format!("no address in {}", path.display()))
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}
