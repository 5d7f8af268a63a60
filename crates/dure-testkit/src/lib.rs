//! A sandbox for integration tests: starts real `dure` processes (a
//! controller and node agents) on loopback with ephemeral ports and temp
//! dirs, waits until they are ready, and hands out API clients. Everything it
//! started — including the servers the agents spawned — is killed by process
//! group when the sandbox is dropped, also when a test fails.

mod process;
mod wait;

pub use process::{free_port, kill_group, ChildProcess};
pub use wait::{eventually, Deadline};

use anyhow::{bail, Context};
use dure_api::{Client, NodeStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a role may take to come up.
const STARTUP: Duration = Duration::from_secs(20);

pub struct Sandbox {
    dir: tempfile::TempDir,
    bin: PathBuf,
    controller: Option<ChildProcess>,
    controller_addr: Option<String>,
    agents: BTreeMap<String, ChildProcess>,
    token: String,
    heartbeat: String,
}

impl Sandbox {
    /// Starts a controller. `bin` is the `dure` binary under test
    /// (`env!("CARGO_BIN_EXE_dure")` in the binary crate's tests).
    pub async fn start(bin: &str) -> anyhow::Result<Sandbox> {
        let dir = tempfile::Builder::new().prefix("dure-sandbox-").tempdir()?;
        let mut sandbox = Sandbox {
            dir,
            bin: PathBuf::from(bin),
            controller: None,
            controller_addr: None,
            agents: BTreeMap::new(),
            token: String::new(),
            heartbeat: "1s".into(),
        };
        sandbox.start_controller("127.0.0.1:0").await?;
        Ok(sandbox)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn controller_data(&self) -> PathBuf {
        self.dir.path().join("controller")
    }

    pub fn agent_data(&self, node: &str) -> PathBuf {
        self.dir.path().join("agents").join(node)
    }

    /// The controller's base URL.
    pub fn url(&self) -> String {
        format!(
            "http://{}",
            self.controller_addr.as_deref().unwrap_or("127.0.0.1:1")
        )
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url(), &self.token)
    }

    async fn start_controller(&mut self, listen: &str) -> anyhow::Result<()> {
        let data = self.controller_data();
        std::fs::create_dir_all(&data)?;
        let _ = std::fs::remove_file(data.join("controller.addr"));
        let log = self.dir.path().join("controller.log");
        let child = ChildProcess::spawn(
            &self.bin,
            &[
                "controller",
                "--listen",
                listen,
                "--data",
                &data.to_string_lossy(),
            ],
            &[("DURE_HEARTBEAT", self.heartbeat.as_str())],
            &log,
        )?;
        self.controller = Some(child);
        let addr_file = data.join("controller.addr");
        let addr = Deadline::after(STARTUP)
            .until(|| async {
                std::fs::read_to_string(&addr_file)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
            .await
            .with_context(|| format!("controller did not start; its log:\n{}", read_log(&log)))?;
        self.token = std::fs::read_to_string(data.join("admin.token"))?
            .trim()
            .to_string();
        self.controller_addr = Some(addr);
        let client = self.client();
        Deadline::after(STARTUP)
            .until(|| async { client.health().await.ok() })
            .await
            .context("controller did not answer /v1/health")?;
        Ok(())
    }

    /// Starts an agent for `node` and waits until the controller sees it online.
    pub async fn add_agent(&mut self, node: &str) -> anyhow::Result<()> {
        let data = self.agent_data(node);
        std::fs::create_dir_all(&data)?;
        let log = self.dir.path().join(format!("agent-{node}.log"));
        let url = self.url();
        let child = ChildProcess::spawn(
            &self.bin,
            &[
                "agent",
                "--controller",
                &url,
                "--node",
                node,
                "--data",
                &data.to_string_lossy(),
            ],
            &[("DURE_TOKEN", self.token.as_str())],
            &log,
        )?;
        self.agents.insert(node.to_string(), child);
        self.wait_node_status(node, NodeStatus::Online, STARTUP)
            .await
            .with_context(|| {
                format!(
                    "agent `{node}` did not come online; its log:\n{}",
                    read_log(&log)
                )
            })
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

    /// Starts the controller again on the same address and data directory.
    pub async fn restart_controller(&mut self) -> anyhow::Result<()> {
        self.kill_controller().await?;
        let listen = self
            .controller_addr
            .clone()
            .unwrap_or_else(|| "127.0.0.1:0".into());
        // The old socket may linger briefly; retry the bind for a while.
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            match self.start_controller(&listen).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    if let Some(mut c) = self.controller.take() {
                        c.kill().await;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The pids of server processes the agents have spawned (from their pid files).
    pub fn server_pids(&self) -> Vec<(String, i32)> {
        let mut pids = Vec::new();
        let Ok(nodes) = std::fs::read_dir(self.dir.path().join("agents")) else {
            return pids;
        };
        for node in nodes.flatten() {
            let Ok(servers) = std::fs::read_dir(node.path().join("servers")) else {
                continue;
            };
            for server in servers.flatten() {
                let pid = std::fs::read_to_string(server.path().join("server.pid"))
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .and_then(|v| v.get("pid").and_then(|p| p.as_i64()))
                    .and_then(|p| i32::try_from(p).ok());
                if let Some(pid) = pid {
                    pids.push((server.file_name().to_string_lossy().into_owned(), pid));
                }
            }
        }
        pids
    }

    /// The text of a role's log in the sandbox (`controller` or `agent-<node>`).
    pub fn log(&self, role: &str) -> String {
        read_log(&self.dir.path().join(format!("{role}.log")))
    }

    fn cleanup(&mut self) {
        for (_, agent) in std::mem::take(&mut self.agents) {
            drop(agent);
        }
        self.controller.take();
        // Servers run in their own process groups and outlive agents by
        // design; a test must not leave them behind.
        for (_, pid) in self.server_pids() {
            kill_group(pid);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}
