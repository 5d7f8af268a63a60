//! The settings `dure controller` runs with: each one from its flag, else
//! its `DURE_` variable (clap reads both), else the configuration file
//! (`--config`, or `<data>/controller.toml` when it exists), else the
//! built-in default.

use crate::cli::ControllerArgs;
use crate::context::data_dir;
use crate::exit::UsageError;
use dure_controller::settings::{ControllerFile, SettingsError};
use dure_controller::ControllerConfig;
use std::path::PathBuf;

/// The configuration of the controller to start, and the file it came
/// from, if any.
pub fn resolve(args: &ControllerArgs) -> anyhow::Result<(ControllerConfig, Option<PathBuf>)> {
    let data_flag = args.data.given();
    let flags = ControllerFile {
        listen: args.listen,
        data: data_flag.clone(),
        heartbeat: args.heartbeat,
        auto_save: args.auto_save,
        backup_on_boot: args.backup_on_boot,
        event_retention: args.event_retention,
        operation_retention: args.operation_retention,
        app_versions_kept: args.app_versions_kept,
        housekeeping_interval: args.housekeeping_interval,
        artifact_max_bytes: args.artifact_max_bytes,
        advertise: (!args.advertise.is_empty()).then(|| args.advertise.clone()),
        insecure_http: args.insecure_http,
        tls_ca_cert: args.tls_ca_cert.clone(),
        tls_ca_key: args.tls_ca_key.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
    };
    let (file, path) = match &args.config {
        Some(path) => (
            Some(ControllerFile::load(path).map_err(usage)?),
            Some(path.clone()),
        ),
        None => {
            let data = data_dir(data_flag.as_deref());
            let file = ControllerFile::load_from_data_dir(&data).map_err(usage)?;
            let path = file
                .is_some()
                .then(|| data.join(dure_controller::settings::CONFIG_FILE));
            (file, path)
        }
    };
    let merged = flags.over(file.unwrap_or_default());
    merged.check().map_err(UsageError)?;
    let config = ControllerConfig {
        listen: merged.listen_or_default(),
        data_dir: merged.data.clone().unwrap_or_else(|| data_dir(None)),
        heartbeat_interval: merged.heartbeat_or_default(),
        auto_save: merged.auto_save.unwrap_or(false),
        backup_on_boot: merged.backup_on_boot.unwrap_or(0),
        event_retention: merged.event_retention_or_default(),
        operation_retention: merged.operation_retention_or_default(),
        app_versions_kept: merged.app_versions_kept_or_default(),
        housekeeping_interval: merged.housekeeping_interval_or_default(),
        artifact_max_bytes: merged.artifact_max_bytes_or_default(),
        tls: dure_controller::tls::TlsSettings {
            node_cert_lifetime: args.node_cert_lifetime.map(|d| d.0),
            ..merged.tls()
        },
    };
    if config
        .tls
        .node_cert_lifetime
        .is_some_and(|d| d < std::time::Duration::from_secs(3))
    {
        return Err(UsageError(
            "--node-cert-lifetime must be at least 3s, such as 720h: agents renew at two thirds of it".into(),
        )
        .into());
    }
    config
        .tls
        .check(config.listen)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok((config, path))
}

/// A configuration file that cannot be used is a usage error (exit 2).
fn usage(error: SettingsError) -> anyhow::Error {
    UsageError(error.to_string()).into()
}
