//! The Dure controller: holds the domain configuration in the store, serves
//! the REST API, drives cluster operations and keeps the event log.
//!
//! Architecture invariant: configuration and intents live in the store (and
//! survive restarts); observed state lives in memory and is rebuilt from the
//! agents' next reports. Servers never depend on the controller being up.

mod access;
mod api;
mod app;
mod apps;
pub mod artifacts;
mod audit;
pub mod backup;
mod changes;
mod changesets;
mod clock;
mod config_repo;
mod console;
mod desired;
mod drain;
mod error;
mod events;
mod fsutil;
mod history;
mod housekeeping;
mod intents;
mod key_rollout;
mod lb_runtime;
mod membership_key;
mod numbered;
mod operations;
mod runtime;
pub mod settings;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod token;
mod views;
mod watch;

use anyhow::Context;
use app::App;
use dure_store::{SqliteStore, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// File in the data directory holding the address the API is bound to.
pub const ADDR_FILE: &str = "controller.addr";
/// File name of the embedded store in the data directory.
pub const STORE_FILE: &str = "store.db";

/// Settings of one controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Where the API listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Holds the store, the admin token and `controller.addr`.
    pub data_dir: PathBuf,
    /// How often agents must report.
    pub heartbeat_interval: Duration,
    /// Whether a configuration change that does not say `?save=` is saved
    /// at once (`true`) or staged in the caller's change set (`false`).
    pub auto_save: bool,
    /// How many automatic domain packs to keep in `<data>/backups/`; one is
    /// written at every start before serving. 0 turns them off.
    pub backup_on_boot: u32,
    /// How many of the newest events the event log keeps; 0 keeps all.
    pub event_retention: u64,
    /// How many of the newest operation records are kept; 0 keeps all.
    pub operation_retention: u64,
    /// How many application versions of each cluster are kept; 0 keeps all.
    pub app_versions_kept: u64,
    /// How often housekeeping trims the store (it also runs at start).
    pub housekeeping_interval: Duration,
    /// The largest artifact an upload may store, in bytes.
    pub artifact_max_bytes: u64,
    /// HTTPS with the domain CA, or plain HTTP on loopback.
    pub tls: tls::TlsSettings,
}

/// A running controller.
pub struct Controller {
    addr: SocketAddr,
    /// The CA certificate clients verify the API with; `None`: plain HTTP.
    ca_file: Option<PathBuf>,
    token: String,
    token_path: PathBuf,
    stop: oneshot::Sender<()>,
    app: Arc<App>,
    server: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
    housekeeper: JoinHandle<()>,
}

impl Controller {
    /// Checks the data directory, binds the API, then opens the store,
    /// creates the admin token on first start and writes the bound address
    /// to `<data>/controller.addr`.
    pub async fn start(config: ControllerConfig) -> anyhow::Result<Controller> {
        anyhow::ensure!(
            !config.housekeeping_interval.is_zero(),
            "the housekeeping interval must be greater than 0, such as 5m"
        );
        // Everything that can fail without writing is checked before the
        // first write: a controller that cannot start leaves no token and
        // no store behind. The port is bound before the automatic backup
        // too, so the pack records the real address (not port 0); nothing
        // is served until `axum::serve`.
        check_data_dir(&config.data_dir)?;
        config.tls.check(config.listen)?;
        let listener = bind(config.listen).await?;
        let addr = listener.local_addr()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let server_tls = config.tls.prepare(&config.data_dir, addr)?;
        let (token, token_path) = token::load_or_create(&config.data_dir)?;
        let membership_keys = membership_key::DomainKeys::open(&config.data_dir)?;
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open_async(&config.data_dir.join(STORE_FILE))
                .await
                .context("cannot open the controller store")?,
        );
        let settings = settings::ControllerFile {
            listen: Some(addr),
            ..settings::ControllerFile::from(&config)
        };
        let boot_backup = backup::rotation::on_boot(&store, &settings, &config.data_dir).await;
        let audit = audit::AuditLog::in_data_dir(&config.data_dir);
        let mut app = App::open(
            store,
            token.clone(),
            config.heartbeat_interval,
            settings,
            audit,
            artifacts::Artifacts::new(&config.data_dir, config.artifact_max_bytes),
        )
        .await?;
        app.membership_keys = membership_keys;
        if let tls::ServerTls::Tls {
            ca, agent_client, ..
        } = &server_tls
        {
            app.ca = ca.clone();
            app.agent_tls = agent_client.clone();
        }
        if let Some(lifetime) = config.tls.node_cert_lifetime {
            app.node_cert_lifetime = lifetime;
        }
        let app = Arc::new(app);
        // A rotation under way when the controller stopped goes on.
        key_rollout::spawn_steps(app.clone());
        backup::rotation::record(&app.events, boot_backup).await;
        write_addr_file(&config.data_dir, addr)?;
        app.events
            .record(
                "controller",
                "controller",
                "controller",
                format!("controller started on {addr}"),
            )
            .await;
        let (stop, stopped) = oneshot::channel::<()>();
        let secure = matches!(server_tls, tls::ServerTls::Tls { .. });
        let router = console::mount(api::router(app.clone()), secure);
        // The caller's address is for the audit log, its certificate for
        // node restriction.
        let service = router.into_make_service_with_connect_info::<tls::Peer>();
        let stopped = async {
            let _ = stopped.await;
        };
        let (server, ca_file) = match server_tls {
            tls::ServerTls::Tls {
                config: tls_config,
                ca_file,
                ..
            } => {
                let listener = tls::TlsListener::new(listener, tls_config)?;
                let serving = axum::serve(listener, service).with_graceful_shutdown(stopped);
                (tokio::spawn(async move { serving.await }), Some(ca_file))
            }
            tls::ServerTls::InsecureHttp => {
                let serving = axum::serve(listener, service).with_graceful_shutdown(stopped);
                (tokio::spawn(async move { serving.await }), None)
            }
        };
        let housekeeper = housekeeping::spawn(
            app.clone(),
            housekeeping::Housekeeping {
                event_retention: config.event_retention,
                operation_retention: config.operation_retention,
                app_versions_kept: config.app_versions_kept,
                interval: config.housekeeping_interval,
            },
        );
        let sweeper = tokio::spawn(sweep_nodes(app.clone()));
        tracing::info!(%addr, "controller listening");
        Ok(Controller {
            addr,
            ca_file,
            token,
            token_path,
            stop,
            app,
            server,
            sweeper,
            housekeeper,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA certificate file clients verify the API with (`None`: the
    /// API is plain HTTP).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The API's base URL for a client on this host: `https://`, or
    /// `http://` when plain; a wildcard address is reached through
    /// loopback.
    pub fn url(&self) -> String {
        local_url(self.addr, self.ca_file.is_some())
    }

    pub fn token_path(&self) -> &Path {
        &self.token_path
    }

    /// A one-time join token for the agent of `node`, as `dure token
    /// create --join` makes, created by the bootstrap admin: how an agent
    /// in the same process (`dure up`) gets its node certificate.
    pub async fn join_token(&self, node: &str) -> anyhow::Result<String> {
        let created = self
            .app
            .tokens
            .create(
                dure_api::CreateToken {
                    role: dure_core::access::Role::Viewer,
                    ttl: None,
                    description: String::new(),
                    node: Some(node.to_string()),
                },
                &access::Actor::bootstrap(),
                clock::now_ms(),
                &self.app.events,
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create a join token for node `{node}`: {}",
                    e.message
                )
            })?;
        Ok(created.token)
    }

    /// Stops serving and waits for in-flight requests to end. Long polls are
    /// cut short: agents simply poll again once a controller is back.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.sweeper.abort();
        self.housekeeper.abort();
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(5), self.server).await {
            Ok(joined) => joined??,
            Err(_) => tracing::warn!("controller shutdown timed out waiting for open requests"),
        }
        Ok(())
    }
}

/// The URL a client on this host uses for `addr`: a wildcard listen
/// address is reached through loopback.
pub fn local_url(addr: SocketAddr, tls: bool) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// Binds the API's address, saying what to do when it is taken.
async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "cannot listen on {listen}: the address is already in use; stop what holds it or give another address (--listen)"
            ),
            _ => anyhow::Error::new(error).context(format!("cannot listen on {listen}")),
        })
}

/// Refuses a data directory that cannot be one, before anything is
/// written: the path must be a directory, or not exist yet under a
/// directory it can be created in.
fn check_data_dir(dir: &Path) -> anyhow::Result<()> {
    let existing = dir
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.symlink_metadata().is_ok())
        .unwrap_or(Path::new("."));
    let metadata = std::fs::metadata(existing)
        .with_context(|| format!("cannot read data directory {}", existing.display()))?;
    if !metadata.is_dir() {
        anyhow::bail!(
            "data directory {} cannot be used: {} is not a directory; give another one (--data)",
            dir.display(),
            existing.display()
        );
    }
    if metadata.permissions().readonly() {
        anyhow::bail!(
            "data directory {} cannot be used: {} is read-only; give another one (--data)",
            dir.display(),
            existing.display()
        );
    }
    Ok(())
}

/// Writes `controller.addr` atomically, so a reader never sees half an address.
fn write_addr_file(dir: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let path = dir.join(ADDR_FILE);
    fsutil::write_atomically(&path, format!("{addr}\n").as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Marks nodes unreachable when their heartbeats stop, several times per
/// heartbeat interval so a lost node shows within about a second, and
/// forgets balancer instances that stopped reporting.
async fn sweep_nodes(app: Arc<App>) {
    let period = (app.runtime.heartbeat() / 4).max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        for (lb, instance) in app.lb_runtime.sweep() {
            tracing::info!(lb = %lb, instance = %instance, "balancer instance forgotten: it stopped reporting");
        }
        for node in app.runtime.sweep() {
            app.events.record(
                "controller",
                "node.state",
                &format!("node/{node}"),
                format!(
                    "node `{node}` is unreachable: no report for {} heartbeats; its servers' state is unknown",
                    dure_core::state::MISSED_HEARTBEATS
                ),
            ).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::local_url;

    #[test]
    fn wildcard_addresses_are_reached_through_loopback() {
        let url = |a: &str, tls| local_url(a.parse().unwrap(), tls);
        assert_eq!(url("0.0.0.0:7070", true), "https://127.0.0.1:7070");
        assert_eq!(url("[::]:7070", false), "http://[::1]:7070");
        assert_eq!(url("10.1.2.3:80", true), "https://10.1.2.3:80");
    }
}
