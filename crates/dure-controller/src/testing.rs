//! Fixtures for unit tests: a controller's shared state on a store in a
//! temporary directory, and small specs to fill it with.

use crate::app::App;
use crate::config_repo::Author;
use crate::settings::ControllerFile;
use dure_core::{ClusterSpec, NodeSpec, ServerSpec};
use dure_store::{SqliteStore, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn node(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        address: "127.0.0.1".into(),
        agent_port: None,
        backup_of: None,
        shared_dirs: Vec::new(),
    }
}

pub fn server(name: &str, node: &str, port: u16) -> ServerSpec {
    serde_json::from_value(serde_json::json!({
        "name": name, "node": node, "argv": ["/bin/sleep", "60"], "ports": {"http": port}
    }))
    .expect("valid server")
}

/// The shared state of a controller on the store in `dir`.
pub async fn app_in(dir: &Path) -> Arc<App> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("store.db")).expect("open store"));
    app_on(store, dir).await
}

/// The shared state of a controller on `store`, its audit log in `dir`.
pub async fn app_on(store: Arc<dyn Store>, dir: &Path) -> Arc<App> {
    let settings = ControllerFile {
        auto_save: Some(true),
        ..ControllerFile::default()
    };
    Arc::new(
        App::open(
            store,
            TOKEN.into(),
            Duration::from_secs(1),
            settings,
            crate::audit::AuditLog::in_data_dir(dir),
            crate::artifacts::Artifacts::new(dir, crate::artifacts::DEFAULT_MAX_BYTES),
        )
        .await
        .expect("app"),
    )
}

/// Saves node `n1`, servers `web1` and `web2` on it, and cluster `shop`
/// with `web1`.
pub async fn populate(app: &App) {
    app.config
        .edit(Author::new("admin", "populate"), |d| {
            d.put_node(node("n1"))?;
            d.create_server(server("web1", "n1", 9001))?;
            d.create_server(server("web2", "n1", 9002))?;
            d.create_cluster(ClusterSpec::new("shop", vec!["web1".into()]))
        })
        .await
        .expect("populated");
}

/// A whole controller (store, API, background tasks) on loopback with its
/// data in `dir`, saving changes at once.
pub async fn start_controller(dir: &Path) -> crate::Controller {
    crate::Controller::start(crate::ControllerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        heartbeat_interval: Duration::from_secs(1),
        auto_save: true,
        backup_on_boot: 0,
        event_retention: crate::settings::DEFAULT_EVENT_RETENTION,
        operation_retention: crate::settings::DEFAULT_OPERATION_RETENTION,
        app_versions_kept: crate::settings::DEFAULT_APP_VERSIONS_KEPT,
        housekeeping_interval: crate::settings::DEFAULT_HOUSEKEEPING_INTERVAL,
        artifact_max_bytes: crate::artifacts::DEFAULT_MAX_BYTES,
        // In-process tests speak plain HTTP on loopback; TLS is tested
        // end to end through the binary.
        tls: crate::tls::TlsSettings {
            insecure_http: true,
            ..Default::default()
        },
    })
    .await
    .expect("controller starts")
}
