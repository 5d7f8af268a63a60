//! Helpers of the tests that run real Tomcats: finding the installation,
//! reading Tomcat's own logs and what the processes are.

use std::path::{Path, PathBuf};

/// Where Debian's `tomcat10` keeps Tomcat.
pub const CATALINA_HOME: &str = "/usr/share/tomcat10";

/// A small JVM that starts fast: C1 only, serial GC, no perf data file in
/// /tmp that would outlive the sandbox.
pub const FAST_JVM: &str =
    "-Xss512k -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData -Djava.awt.headless=true";

/// `dure server create NAME` of a small Tomcat on node `n1` with `http`
/// and `shutdown` ports, a 128 MiB heap and [`FAST_JVM`]; `more` are
/// further flags.
pub fn small_tomcat_args(name: &str, http: u16, shutdown: u16, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "server",
        "create",
        name,
        "--template",
        "tomcat",
        "--node",
        "n1",
        "--port",
        &format!("http={http}"),
        "--port",
        &format!("shutdown={shutdown}"),
        "--heap",
        "128m",
        "--env",
        &format!("JAVA_OPTS={FAST_JVM}"),
        "--ready-timeout",
        "150s",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(more.iter().map(|a| a.to_string()));
    args
}

/// Whether Debian's Tomcat is installed here; says on stderr why a test
/// skips when not.
pub fn tomcat_installed() -> bool {
    let catalina = Path::new(CATALINA_HOME).join("bin/catalina.sh");
    if catalina.is_file() && find_on_path("tomcat10-instance-create").is_some() {
        return true;
    }
    eprintln!(
        "skipping: {} or tomcat10-instance-create not found; install tomcat10-user",
        catalina.display()
    );
    false
}

/// The full path of `program` if it is an executable file on `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The command name of a process.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Tomcat's own log files of the instance at `base` (`catalina.DATE.log`;
/// a run across midnight writes two of them), in order.
pub fn catalina_logs(base: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(base.join("logs")) else {
        return String::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("catalina.") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// The last `max` bytes of `text` (on a character boundary).
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
