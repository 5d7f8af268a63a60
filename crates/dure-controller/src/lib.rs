//! The Dure controller: holds the domain configuration in the store, serves
//! the REST API, drives cluster operations and keeps the event log.
//! (Being written; the public surface below is fixed.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Where the API listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Holds the store, the admin token and `controller.addr`.
    pub data_dir: PathBuf,
    /// How often agents must report.
    pub heartbeat_interval: Duration,
}

/// A running controller.
pub struct Controller {
    addr: SocketAddr,
    token: String,
    token_path: PathBuf,
}

impl Controller {
    /// Opens the store, creates the admin token on first start, binds the API
    /// and writes the bound address to `<data>/controller.addr`.
    pub async fn start(config: ControllerConfig) -> anyhow::Result<Controller> {
        let _ = config;
        anyhow::bail!("not yet")
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn token(&self) -> &str {
        &self.token
    }
    pub fn token_path(&self) -> &std::path::Path {
        &self.token_path
    }
    /// Stops serving and waits for in-flight work to end.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        Ok(())
    }
}
