//! The Dure controller: holds the domain configuration in the store, serves
//! the REST API, drives cluster operations and keeps the event log.
//!
//! Architecture invariant: configuration and intents live in the store (and
//! survive restarts); observed state lives in memory and is rebuilt from the
//! agents' next reports. Servers never depend on the controller being up.

mod access;
mod api;
mod app;
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
mod lb_runtime;
mod membership_key;
mod numbered;
mod operations;
mod runtime;
pub mod settings;
#[cfg(test)]
mod testing;
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
    /// How often housekeeping trims the store (it also runs at start).
    pub housekeeping_interval: Duration,
}

/// A running controller.
pub struct Controller {
    addr: SocketAddr,
    token: String,
    token_path: PathBuf,
    stop: oneshot::Sender<()>,
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
        let listener = bind(config.listen).await?;
        let addr = listener.local_addr()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let (token, token_path) = token::load_or_create(&config.data_dir)?;
        let membership_key = membership_key::load_or_create(&config.data_dir)?;
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
        )
        .await?;
        app.membership_key = membership_key;
        let app = Arc::new(app);
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
        let router = console::mount(api::router(app.clone()));
        let server = tokio::spawn(async move {
            // The caller's address is for the audit log.
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
        });
        let housekeeper = housekeeping::spawn(
            app.clone(),
            housekeeping::Housekeeping {
                event_retention: config.event_retention,
                operation_retention: config.operation_retention,
                interval: config.housekeeping_interval,
            },
        );
        let sweeper = tokio::spawn(sweep_nodes(app));
        tracing::info!(%addr, "controller listening");
        Ok(Controller {
            addr,
            token,
            token_path,
            stop,
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

    pub fn token_path(&self) -> &Path {
        &self.token_path
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
