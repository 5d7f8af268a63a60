//! The Dure node agent (being written; the public surface below is fixed).

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    /// Base URL of the controller, such as `http://127.0.0.1:7070`.
    pub controller: String,
    pub token: String,
    pub data_dir: PathBuf,
    /// Where the agent's own HTTP endpoint listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Address the controller should use to reach this node.
    pub advertise_address: String,
}

pub struct Agent {
    addr: SocketAddr,
}

impl Agent {
    pub async fn start(config: AgentConfig) -> anyhow::Result<Agent> {
        let _ = config;
        anyhow::bail!("not yet")
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Stops the agent; its servers keep running.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        Ok(())
    }
}
