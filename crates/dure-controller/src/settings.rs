//! The controller's configuration file, `controller.toml`: reading it with
//! errors that name the file, line and field, writing it (unpack writes one
//! into the data directory it prepares), and layering it under command-line
//! flags and environment variables.
//!
//! Every field is optional: a missing field falls through to the next layer
//! (flag > `DURE_` environment variable > file > built-in default), so the
//! same struct carries each layer and [`ControllerFile::over`] merges them.

use dure_core::DurationSpec;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

/// File name of the configuration file the controller reads from its data
/// directory when no `--config` is given.
pub const CONFIG_FILE: &str = "controller.toml";

/// Where the API listens when nothing says otherwise.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7070));

/// How often agents report when nothing says otherwise.
pub const DEFAULT_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// How many of the newest events the event log keeps when nothing says
/// otherwise.
pub const DEFAULT_EVENT_RETENTION: u64 = 100_000;

/// How many of the newest operation records are kept when nothing says
/// otherwise.
pub const DEFAULT_OPERATION_RETENTION: u64 = 10_000;
/// How many application versions of each cluster are kept by default.
pub const DEFAULT_APP_VERSIONS_KEPT: u64 = 20;

/// How often housekeeping runs when nothing says otherwise.
pub const DEFAULT_HOUSEKEEPING_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(5 * 60);

/// The settings of `dure controller`, as written in `controller.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerFile {
    /// Address the API listens on, such as `"0.0.0.0:7070"`; port 0 picks a
    /// free one. Default `"127.0.0.1:7070"`. Env `DURE_LISTEN`, flag `--listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Data directory: the store, the admin token, `backups/`. A relative
    /// path is relative to the directory of the file. Default `$DURE_HOME`,
    /// else `./.dure`. Env `DURE_DATA`, flag `--data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// How often agents must report, such as `"1s"`; a node that misses
    /// three reports is unreachable. Default `"1s"`. Env `DURE_HEARTBEAT`,
    /// flag `--heartbeat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<DurationSpec>,
    /// Whether a configuration change that does not say `save` is saved at
    /// once (`true`) or staged in the caller's change set (`false`). Default
    /// `false`. Env `DURE_AUTO_SAVE`, flag `--auto-save`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_save: Option<bool>,
    /// How many automatic domain packs to keep in `<data>/backups/`: at
    /// every start, before serving, the controller writes one and deletes
    /// the oldest beyond this many. `0` turns it off. Default `0`. Env
    /// `DURE_BACKUP_ON_BOOT`, flag `--backup-on-boot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_on_boot: Option<u32>,
    /// How many of the newest events the event log keeps; older ones are
    /// deleted by housekeeping. `0` keeps every event. Default `100000`.
    /// Env `DURE_EVENT_RETENTION`, flag `--event-retention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_retention: Option<u64>,
    /// How many of the newest cluster operation records are kept; older
    /// ones are deleted by housekeeping (never a running one). `0` keeps
    /// every one. Default `10000`. Env `DURE_OPERATION_RETENTION`, flag
    /// `--operation-retention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_retention: Option<u64>,
    /// How many of the newest application versions of each cluster are
    /// kept; housekeeping deletes older version records, and then the
    /// stored artifacts only they named, but never a context's newest
    /// version nor one a member has or must have. `0` keeps every one.
    /// Default `20`. Env `DURE_APP_VERSIONS_KEPT`, flag
    /// `--app-versions-kept`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_versions_kept: Option<u64>,
    /// How often housekeeping trims the event log and the history of the
    /// controller's own records, such as `"5m"`; it also runs once at
    /// start. Default `"5m"`. Env `DURE_HOUSEKEEPING_INTERVAL`, flag
    /// `--housekeeping-interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub housekeeping_interval: Option<DurationSpec>,
    /// The largest application artifact `dure app deploy` may upload, in
    /// bytes; a larger one is refused (413) and nothing is stored. Default
    /// `536870912` (512 MiB). Env `DURE_ARTIFACT_MAX_BYTES`, flag
    /// `--artifact-max-bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_max_bytes: Option<u64>,
    /// Host names and addresses clients and agents reach the controller
    /// by, written into its certificate beside `localhost`, `127.0.0.1`
    /// and the listen address, such as `["ctl.example.com"]`. Flag
    /// `--advertise` (repeatable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<Vec<String>>,
    /// Serve plain HTTP instead of HTTPS; refused unless `listen` is a
    /// loopback address. Default `false`. Env `DURE_INSECURE_HTTP`, flag
    /// `--insecure-http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_http: Option<bool>,
    /// Your own CA certificate and key (PEM) instead of the built-in CA
    /// the controller creates in its data directory. Flags
    /// `--tls-ca-cert`, `--tls-ca-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_key: Option<PathBuf>,
    /// Your own server certificate (chain) and key (PEM) instead of one
    /// the CA issues at every start; `tls_ca_cert` then names the CA
    /// clients trust. Flags `--tls-cert`, `--tls-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl From<&crate::ControllerConfig> for ControllerFile {
    /// The settings a running controller was started with, without its
    /// data directory (a path that means nothing on another machine).
    fn from(config: &crate::ControllerConfig) -> ControllerFile {
        ControllerFile {
            listen: Some(config.listen),
            data: None,
            heartbeat: Some(DurationSpec(config.heartbeat_interval)),
            auto_save: Some(config.auto_save),
            backup_on_boot: Some(config.backup_on_boot),
            event_retention: Some(config.event_retention),
            operation_retention: Some(config.operation_retention),
            app_versions_kept: Some(config.app_versions_kept),
            housekeeping_interval: Some(DurationSpec(config.housekeeping_interval)),
            artifact_max_bytes: Some(config.artifact_max_bytes),
            advertise: (!config.tls.names.is_empty()).then(|| config.tls.names.clone()),
            insecure_http: config.tls.insecure_http.then_some(true),
            // Paths of this host's files, like the data directory.
            tls_ca_cert: None,
            tls_ca_key: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}{location}: {message}")]
    Invalid {
        path: PathBuf,
        /// `, line N, field `name`` when known.
        location: String,
        message: String,
    },
    #[error("cannot write config file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ControllerFile {
    /// Reads and checks a configuration file. A relative `data` is made
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<ControllerFile, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file = ControllerFile::parse(&text).map_err(|e| e.in_file(path))?;
        if let Some(data) = file.data.take() {
            let base = path.parent().unwrap_or(Path::new(""));
            file.data = Some(if data.is_relative() {
                base.join(data)
            } else {
                data
            });
        }
        Ok(file)
    }

    /// Reads `<data>/controller.toml` when it exists.
    pub fn load_from_data_dir(data: &Path) -> Result<Option<ControllerFile>, SettingsError> {
        let path = data.join(CONFIG_FILE);
        if !path.exists() {
            return Ok(None);
        }
        ControllerFile::load(&path).map(Some)
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<ControllerFile, ParseError> {
        toml::from_str::<ControllerFile>(text).map_err(|error| ParseError::new(text, &error))
    }

    /// The file's text, with a header saying what wrote it.
    pub fn to_toml(&self, header: &str) -> String {
        let body = toml::to_string(self)
            .expect("every field is a plain string, number or bool, which always serializes");
        let mut text = String::new();
        for line in header.lines() {
            text.push_str("# ");
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(
            "# Every field is described under \"Controller configuration file\" in the README.\n",
        );
        text.push_str(&body);
        text
    }

    /// Writes the file atomically (write a temporary file, fsync, rename).
    pub fn write(&self, path: &Path, header: &str) -> Result<(), SettingsError> {
        let failed = |source| SettingsError::Write {
            path: path.to_path_buf(),
            source,
        };
        crate::fsutil::write_atomically(path, self.to_toml(header).as_bytes(), 0o644)
            .map_err(failed)
    }

    /// Field by field, this layer's value, else `lower`'s.
    pub fn over(self, lower: ControllerFile) -> ControllerFile {
        ControllerFile {
            listen: self.listen.or(lower.listen),
            data: self.data.or(lower.data),
            heartbeat: self.heartbeat.or(lower.heartbeat),
            auto_save: self.auto_save.or(lower.auto_save),
            backup_on_boot: self.backup_on_boot.or(lower.backup_on_boot),
            event_retention: self.event_retention.or(lower.event_retention),
            operation_retention: self.operation_retention.or(lower.operation_retention),
            app_versions_kept: self.app_versions_kept.or(lower.app_versions_kept),
            housekeeping_interval: self.housekeeping_interval.or(lower.housekeeping_interval),
            artifact_max_bytes: self.artifact_max_bytes.or(lower.artifact_max_bytes),
            advertise: self.advertise.or(lower.advertise),
            insecure_http: self.insecure_http.or(lower.insecure_http),
            tls_ca_cert: self.tls_ca_cert.or(lower.tls_ca_cert),
            tls_ca_key: self.tls_ca_key.or(lower.tls_ca_key),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
        }
    }

    /// How the API is secured.
    pub fn tls(&self) -> crate::tls::TlsSettings {
        crate::tls::TlsSettings {
            insecure_http: self.insecure_http.unwrap_or(false),
            names: self.advertise.clone().unwrap_or_default(),
            ca_cert: self.tls_ca_cert.clone(),
            ca_key: self.tls_ca_key.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            node_cert_lifetime: None,
        }
    }

    /// The listen address, or the default.
    pub fn listen_or_default(&self) -> SocketAddr {
        self.listen.unwrap_or(DEFAULT_LISTEN)
    }

    /// The heartbeat interval, or the default.
    pub fn heartbeat_or_default(&self) -> std::time::Duration {
        self.heartbeat.map_or(DEFAULT_HEARTBEAT, |h| h.0)
    }

    /// How many events to keep, or the default (0: all).
    pub fn event_retention_or_default(&self) -> u64 {
        self.event_retention.unwrap_or(DEFAULT_EVENT_RETENTION)
    }

    /// The largest artifact accepted, or the default.
    pub fn artifact_max_bytes_or_default(&self) -> u64 {
        self.artifact_max_bytes
            .unwrap_or(crate::artifacts::DEFAULT_MAX_BYTES)
    }

    /// How many operation records to keep, or the default (0: all).
    pub fn operation_retention_or_default(&self) -> u64 {
        self.operation_retention
            .unwrap_or(DEFAULT_OPERATION_RETENTION)
    }

    /// How many application versions of each cluster to keep, or the
    /// default (0: all).
    pub fn app_versions_kept_or_default(&self) -> u64 {
        self.app_versions_kept.unwrap_or(DEFAULT_APP_VERSIONS_KEPT)
    }

    /// The housekeeping interval, or the default.
    pub fn housekeeping_interval_or_default(&self) -> std::time::Duration {
        self.housekeeping_interval
            .map_or(DEFAULT_HOUSEKEEPING_INTERVAL, |i| i.0)
    }

    /// Refuses values every layer accepts as a type but the controller
    /// cannot run with; the message names the setting and a good value.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat_or_default().is_zero() {
            return Err("the heartbeat must be greater than 0, such as 1s".into());
        }
        if self.housekeeping_interval_or_default().is_zero() {
            return Err("the housekeeping interval must be greater than 0, such as 5m".into());
        }
        Ok(())
    }
}

/// Why the text of a configuration file was refused, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// The field the problem is in, when known.
    pub field: Option<String>,
    pub message: String,
}

impl ParseError {
    fn new(text: &str, error: &toml::de::Error) -> ParseError {
        let start = error.span().map(|span| char_start(text, span.start));
        let line = start.map(|at| text[..at].matches('\n').count() + 1);
        let field = start
            .and_then(|at| key_on_line(text, at))
            .or_else(|| quoted_field(error.message()));
        ParseError {
            line,
            field,
            message: error.message().trim().to_string(),
        }
    }

    fn in_file(self, path: &Path) -> SettingsError {
        let mut location = String::new();
        if let Some(line) = self.line {
            location.push_str(&format!(", line {line}"));
        }
        if let Some(field) = &self.field {
            location.push_str(&format!(", field `{field}`"));
        }
        SettingsError::Invalid {
            path: path.to_path_buf(),
            location,
            message: self.message,
        }
    }
}

/// The start of the character at byte offset `at` (clamped to the text), so
/// slicing there cannot split a character.
fn char_start(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The key of a `key = value` line containing byte offset `at`.
fn key_on_line(text: &str, at: usize) -> Option<String> {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    plain.then(|| key.to_string())
}

/// The first back-quoted name in a message such as "unknown field `x`".
fn quoted_field(message: &str) -> Option<String> {
    let rest = message.split_once('`')?.1;
    Some(rest.split_once('`')?.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_reads_and_writes_back() {
        let text = "listen = \"0.0.0.0:7171\"\ndata = \"/var/lib/dure\"\nheartbeat = \"500ms\"\nauto_save = true\nbackup_on_boot = 3\nevent_retention = 500\noperation_retention = 40\nhousekeeping_interval = \"1m\"\nartifact_max_bytes = 1024\n";
        let file = ControllerFile::parse(text).expect("valid file");
        assert_eq!(file.listen, Some("0.0.0.0:7171".parse().expect("addr")));
        assert_eq!(file.heartbeat.map(|h| h.as_millis()), Some(500));
        assert_eq!((file.auto_save, file.backup_on_boot), (Some(true), Some(3)));
        assert_eq!(file.event_retention_or_default(), 500);
        assert_eq!(file.operation_retention_or_default(), 40);
        assert_eq!(file.housekeeping_interval_or_default().as_secs(), 60);
        assert_eq!(file.artifact_max_bytes_or_default(), 1024);
        let again = ControllerFile::parse(&file.to_toml("written by a test")).expect("reads back");
        assert_eq!(again, file);
    }

    #[test]
    fn unknown_fields_name_the_line_and_field() {
        let err = ControllerFile::parse("listen = \"127.0.0.1:1\"\nbackup_on_bot = 2\n")
            .expect_err("unknown field");
        assert_eq!(err.line, Some(2));
        assert_eq!(err.field.as_deref(), Some("backup_on_bot"));
        assert!(err.message.contains("unknown field"), "{}", err.message);
    }

    #[test]
    fn wrong_types_name_the_line_and_field() {
        let err = ControllerFile::parse("\n\nbackup_on_boot = \"three\"\n").expect_err("bad type");
        assert_eq!(
            (err.line, err.field.as_deref()),
            (Some(3), Some("backup_on_boot"))
        );
        let err = ControllerFile::parse("listen = \"nowhere\"\n").expect_err("bad address");
        assert_eq!((err.line, err.field.as_deref()), (Some(1), Some("listen")));
        let err = ControllerFile::parse("heartbeat = \"soon\"\n").expect_err("bad duration");
        assert_eq!(err.field.as_deref(), Some("heartbeat"));
        let err = ControllerFile::parse("\nevent_retention = -1\n").expect_err("negative");
        assert_eq!(
            (err.line, err.field.as_deref()),
            (Some(2), Some("event_retention"))
        );
    }

    #[test]
    fn defaults_and_checks_of_housekeeping() {
        let none = ControllerFile::default();
        assert_eq!(none.event_retention_or_default(), DEFAULT_EVENT_RETENTION);
        assert_eq!(
            none.housekeeping_interval_or_default(),
            DEFAULT_HOUSEKEEPING_INTERVAL
        );
        assert_eq!(none.check(), Ok(()));
        let keep_all = ControllerFile::parse("event_retention = 0\n").expect("valid");
        assert_eq!(keep_all.event_retention_or_default(), 0);
        let never = ControllerFile::parse("housekeeping_interval = \"0s\"\n").expect("parses");
        let refused = never.check().expect_err("a zero interval");
        assert!(refused.contains("housekeeping interval"), "{refused}");
    }

    #[test]
    fn errors_in_non_ascii_text_are_located() {
        let err = ControllerFile::parse("# é\nlisten = \"ü\"\n").expect_err("bad address");
        assert_eq!((err.line, err.field.as_deref()), (Some(2), Some("listen")));
        assert_eq!(char_start("aé", 2), 1);
        assert_eq!(char_start("a", 9), 1);
    }

    #[test]
    fn load_names_the_file_and_resolves_relative_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "data = \"state\"\n").expect("write");
        let file = ControllerFile::load(&path).expect("load");
        assert_eq!(file.data, Some(dir.path().join("state")));
        std::fs::write(&path, "auto_save = 1\n").expect("write");
        let text = ControllerFile::load(&path).expect_err("bad").to_string();
        assert!(
            text.starts_with(&format!(
                "config file {}, line 1, field `auto_save`:",
                path.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn layers_take_the_first_value_given() {
        let flags = ControllerFile {
            listen: Some("127.0.0.1:1".parse().expect("addr")),
            ..ControllerFile::default()
        };
        let file = ControllerFile {
            listen: Some("127.0.0.1:2".parse().expect("addr")),
            backup_on_boot: Some(4),
            ..ControllerFile::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.listen_or_default().port(), 1);
        assert_eq!(merged.backup_on_boot, Some(4));
        assert_eq!(merged.heartbeat_or_default(), DEFAULT_HEARTBEAT);
    }
}
