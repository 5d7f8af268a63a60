//! A templated server's instance on disk: its private instance directory
//! (Tomcat's CATALINA_BASE, Liberty's user directory) at
//! `<data>/servers/<name>/instance`, created at its first start — for the
//! Debian Tomcat with `tomcat10-instance-create` when that is installed,
//! otherwise by copying the installation's configuration — and the files
//! the controller sends, written at every start. What those files hold is
//! decided by `dure_core::template`; this module only writes them, tells
//! whether the files on disk are other than the ones the configuration now
//! generates (the server then needs a restart), asks Tomcat to stop through
//! its shutdown port, and says where a server's applications go.

use crate::layout::{write_atomic, Layout};
use dure_core::template::{self, tomcat, TemplateKind, DEFAULT_CATALINA_HOME};
use dure_core::ServerSpec;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Debian's tool that creates a Tomcat instance (package `tomcat10-user`).
pub const INSTANCE_CREATE: &str = "tomcat10-instance-create";

/// How long the shutdown word may take to be delivered.
const SHUTDOWN_SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a templated server's instance could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("{kind} is not installed at `{home}` (no `{program}`): install it (for Tomcat, the Debian package tomcat10-user) or set the server's {setting}")]
    NotInstalled {
        kind: TemplateKind,
        home: String,
        program: String,
        setting: &'static str,
    },
    #[error("cannot create instance directory `{dir}`: {source}")]
    Create { dir: PathBuf, source: io::Error },
    #[error("{INSTANCE_CREATE} failed ({status}): {output}")]
    InstanceCreate { status: String, output: String },
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The spec the agent runs for `spec`: for a templated server, the
/// template's command on its instance directory (see
/// [`template::launch_spec`]); any other server as it is.
pub fn launch_spec(layout: &Layout, spec: &ServerSpec) -> ServerSpec {
    if spec.template.is_none() {
        return spec.clone();
    }
    let dir = layout.instance_dir(&spec.name);
    template::launch_spec(spec, &dir.to_string_lossy())
}

/// Where a server's applications are installed: its `app_dir` if set, else
/// for a Tomcat server `<CATALINA_BASE>/webapps`, else nowhere known.
pub fn app_dir(layout: &Layout, spec: &ServerSpec) -> Option<PathBuf> {
    if let Some(dir) = &spec.app_dir {
        return Some(dir.clone());
    }
    match spec.template.as_ref()?.kind {
        TemplateKind::Tomcat => Some(layout.instance_dir(&spec.name).join("webapps")),
        TemplateKind::Liberty => None,
    }
}

/// Makes the instance of templated server `spec` ready to start: checks
/// the installation, creates the instance directory when it has none yet,
/// then writes every generated file. Blocking; a server without a template
/// needs nothing.
pub fn prepare(
    layout: &Layout,
    spec: &ServerSpec,
    files: &BTreeMap<String, String>,
) -> Result<(), InstanceError> {
    let Some(template) = &spec.template else {
        return Ok(());
    };
    let dir = layout.instance_dir(&spec.name);
    match template.kind {
        TemplateKind::Tomcat => {
            let home = Path::new(template.catalina_home());
            installed(template.kind, home, "bin/catalina.sh", "catalina_home")?;
            if !dir.join("conf").is_dir() {
                create_tomcat_instance(&dir, home, spec)?;
            }
        }
        TemplateKind::Liberty => {
            let home = Path::new(template.wlp_home());
            installed(template.kind, home, "bin/server", "wlp_home")?;
            let servers = dir.join("servers").join(&spec.name);
            std::fs::create_dir_all(&servers).map_err(|source| InstanceError::Create {
                dir: servers.clone(),
                source,
            })?;
        }
    }
    for (relative, content) in files {
        let path = dir.join(relative);
        let write = || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_atomic(&path, content.as_bytes())
        };
        write().map_err(|source| InstanceError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

fn installed(
    kind: TemplateKind,
    home: &Path,
    program: &str,
    setting: &'static str,
) -> Result<(), InstanceError> {
    if home.join(program).is_file() {
        return Ok(());
    }
    Err(InstanceError::NotInstalled {
        kind,
        home: home.display().to_string(),
        program: program.to_string(),
        setting,
    })
}

/// Creates a Tomcat instance at `dir`, built beside it and renamed into
/// place, so a failed creation leaves no half instance for the next start.
fn create_tomcat_instance(dir: &Path, home: &Path, spec: &ServerSpec) -> Result<(), InstanceError> {
    let staging = dir.with_file_name("instance.new");
    let create_err = |source| InstanceError::Create {
        dir: dir.to_path_buf(),
        source,
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(create_err)?;
    }
    let tool = (home == Path::new(DEFAULT_CATALINA_HOME))
        .then(|| find_on_path(INSTANCE_CREATE))
        .flatten();
    match tool {
        Some(tool) => run_instance_create(&tool, &staging, spec)?,
        None => copy_instance(home, &staging).map_err(create_err)?,
    }
    std::fs::rename(&staging, dir).map_err(create_err)
}

/// Runs Debian's tool; the ports it writes are replaced by the generated
/// `server.xml` right after.
fn run_instance_create(
    tool: &Path,
    staging: &Path,
    spec: &ServerSpec,
) -> Result<(), InstanceError> {
    let mut command = Command::new(tool);
    if let Some(http) = spec.ports.get(tomcat::HTTP_PORT) {
        command.args(["-p", &http.to_string()]);
    }
    if let Some(shutdown) = spec.ports.get(tomcat::SHUTDOWN_PORT) {
        command.args(["-c", &shutdown.to_string()]);
    }
    // The tool asks for <ENTER> when it warns (a port seems used): with no
    // stdin its `read` returns at once.
    let output = command
        .arg(staging)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| InstanceError::Create {
            dir: staging.to_path_buf(),
            source,
        })?;
    if output.status.success() && staging.join("conf").is_dir() {
        return Ok(());
    }
    Err(InstanceError::InstanceCreate {
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .trim()
        .to_string(),
    })
}

/// What `tomcat10-instance-create` does, from any installation: the
/// instance's directories and a copy of the installation's configuration
/// (its `skel/conf` where it has one, as Debian's does, else `conf`).
fn copy_instance(home: &Path, staging: &Path) -> io::Result<()> {
    for sub in ["conf", "bin", "logs", "webapps", "work", "temp"] {
        std::fs::create_dir_all(staging.join(sub))?;
    }
    let skel = home.join("skel/conf");
    let source = if skel.is_dir() {
        skel
    } else {
        home.join("conf")
    };
    for entry in std::fs::read_dir(&source)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), staging.join("conf").join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// The full path of `program` if it is a file on `PATH`.
fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether the files of server `name` on disk are other than `files`: one
/// missing or with other contents. What a running server started with is
/// what is on disk, since the files are only written at a start.
pub fn files_differ(layout: &Layout, name: &str, files: &BTreeMap<String, String>) -> bool {
    let dir = layout.instance_dir(name);
    files.iter().any(|(relative, content)| {
        std::fs::read(dir.join(relative)).map_or(true, |on_disk| on_disk != content.as_bytes())
    })
}

/// The port a graceful stop of `spec` sends Tomcat's shutdown word to,
/// when it is a Tomcat server with one.
pub fn shutdown_port(spec: &ServerSpec) -> Option<u16> {
    let template = spec.template.as_ref()?;
    (template.kind == TemplateKind::Tomcat)
        .then(|| spec.ports.get(tomcat::SHUTDOWN_PORT).copied())
        .flatten()
}

/// Sends Tomcat's shutdown word to its shutdown port on loopback, where
/// Tomcat listens for it.
pub async fn send_shutdown(port: u16) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let send = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(tomcat::SHUTDOWN_WORD.as_bytes()).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(SHUTDOWN_SEND_TIMEOUT, send)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_core::template::ServerTemplate;

    fn tomcat_spec(home: &Path) -> ServerSpec {
        let mut spec = ServerSpec::new("t1", "n1", Vec::new());
        let mut template = ServerTemplate::new(TemplateKind::Tomcat);
        template.catalina_home = Some(home.display().to_string());
        spec.template = Some(template);
        spec.ports.insert("http".into(), 8080);
        spec
    }

    #[test]
    fn a_missing_installation_is_named_with_the_setting_that_fixes_it() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        let spec = tomcat_spec(Path::new("/nonexistent/tomcat"));
        let err = prepare(&layout, &spec, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tomcat is not installed at `/nonexistent/tomcat` (no `bin/catalina.sh`): install it (for Tomcat, the Debian package tomcat10-user) or set the server's catalina_home"
        );
        assert!(!layout.instance_dir("t1").exists(), "nothing was created");
    }

    #[test]
    fn an_instance_is_copied_from_any_installation_and_its_files_written() {
        let data = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("bin")).unwrap();
        std::fs::write(home.path().join("bin/catalina.sh"), "#!/bin/sh\n").unwrap();
        std::fs::create_dir_all(home.path().join("conf")).unwrap();
        std::fs::write(home.path().join("conf/web.xml"), "<web-app/>").unwrap();
        let layout = Layout::new(data.path());
        let spec = tomcat_spec(home.path());
        let files = BTreeMap::from([("conf/server.xml".to_string(), "<Server/>".to_string())]);
        assert!(files_differ(&layout, "t1", &files));
        prepare(&layout, &spec, &files).unwrap();
        let dir = layout.instance_dir("t1");
        assert_eq!(
            std::fs::read_to_string(dir.join("conf/web.xml")).unwrap(),
            "<web-app/>"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("conf/server.xml")).unwrap(),
            "<Server/>"
        );
        assert!(dir.join("webapps").is_dir() && dir.join("logs").is_dir());
        assert!(!files_differ(&layout, "t1", &files));
        let changed = BTreeMap::from([(
            "conf/server.xml".to_string(),
            "<Server port=\"1\"/>".to_string(),
        )]);
        assert!(files_differ(&layout, "t1", &changed));
        assert_eq!(app_dir(&layout, &spec), Some(dir.join("webapps")));
        let mut placed = spec.clone();
        placed.app_dir = Some("/srv/apps".into());
        assert_eq!(app_dir(&layout, &placed), Some(PathBuf::from("/srv/apps")));
        let plain = ServerSpec::new("p", "n1", vec!["/bin/true".into()]);
        assert_eq!(app_dir(&layout, &plain), None);
    }
}
