//! End to end with a real application server: a Tomcat 10 instance from
//! Debian's `tomcat10-user` package, run in the foreground as the only member
//! of a cluster. Cluster start waits for Tomcat to answer `/`, a graceful
//! stop lets Tomcat's own shutdown hook run (no kill after the stop timeout),
//! and a cluster kill ends the JVM at once. Two Tomcats with `jvmRoute`
//! behind `dure lb run`: a session stays on the member its id names and
//! moves to the other when that member stops.
//!
//! Skipped (with a message on stderr) where `tomcat10-user` (or, for the
//! balancer test, `tomcat10-examples`, whose session servlet it deploys) is
//! not installed; CI installs both.

mod common;

use common::tomcat::{catalina_logs, comm, find_on_path, tail};
use common::*;
use dure_api::{Client, LogQuery, Operation, OperationKind, OperationStatus};
use dure_core::operation::OperationOptions;
use dure_core::{ServerSpec, ServerState};
use dure_testkit::{eventually, free_port};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INSTANCE_CREATE: &str = "tomcat10-instance-create";
use common::tomcat::CATALINA_HOME;
/// What Tomcat logs when its shutdown hook runs: the mark of a graceful stop.
const GRACEFUL_LINE: &str = "Stopping service [Catalina]";
/// What the agent notes when it had to SIGKILL after the stop timeout.
const KILLED_NOTE: &str = "killed after stop timeout";
/// A JVM start on two busy cores can be slow; the operation must outlast it.
const OPERATION_BOUND: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tomcat_member_starts_stops_gracefully_and_is_killed_at_once() {
    let Some(instance_create) = find_on_path(INSTANCE_CREATE) else {
        eprintln!("skipping: {INSTANCE_CREATE} not found; install tomcat10-user");
        return;
    };
    let catalina = Path::new(CATALINA_HOME).join("bin/catalina.sh");
    if !catalina.is_file() {
        eprintln!(
            "skipping: {} not found; install tomcat10-user",
            catalina.display()
        );
        return;
    }

    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();

    // A private CATALINA_BASE inside the sandbox's temp dir, so it goes away
    // with the sandbox and never touches a system Tomcat.
    let base = sandbox.dir().join("tomcat");
    let http_port = free_port();
    let shutdown_port = free_port();
    create_instance(&instance_create, &base, http_port, shutdown_port);
    let marker = format!("dure tomcat test on port {http_port}");
    let root = base.join("webapps/ROOT");
    std::fs::create_dir_all(&root).expect("webapps/ROOT");
    std::fs::write(
        root.join("index.html"),
        format!("<html><body>{marker}</body></html>\n"),
    )
    .expect("index.html");

    let spec = tomcat_server("tomcat1", "n1", &base, &catalina, http_port, shutdown_port);
    client.create_server(&spec).await.expect("server created");
    create_cluster(&client, "tomcat", &["tomcat1"]).await;

    // Start: the operation succeeds once Tomcat answers `/`.
    let (op, took) = run_operation(&client, "tomcat", OperationKind::Start).await;
    assert_eq!(
        op.status,
        OperationStatus::Succeeded,
        "{op:?}\n{}",
        diagnostics(&sandbox, &base)
    );
    eprintln!("tomcat: cluster start took {took:?} ({})", server_time(&op));
    let (status, body) = http_get(http_port, "/").await.expect("tomcat answers /");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&marker), "{body}");
    let view = client.get_server("tomcat1").await.expect("tomcat1");
    assert_eq!(view.observed.state, ServerState::Ready, "{view:?}");
    let pid = view.observed.pid.expect("a ready server has a pid");
    // `catalina.sh run` execs java, so the stop signal reaches the JVM itself
    // and its shutdown hook runs; had it not, the group signal would still
    // reach it, which the checks on the whole group below cover.
    eprintln!("tomcat: pid {pid} is `{}`", comm(pid));
    let group = group_members(pid);
    assert!(!group.is_empty(), "no process in group {pid}");

    // Graceful stop: Tomcat shuts down by itself within the stop timeout.
    let (op, took) = run_operation(&client, "tomcat", OperationKind::Stop).await;
    assert_eq!(
        op.status,
        OperationStatus::Succeeded,
        "{op:?}\n{}",
        diagnostics(&sandbox, &base)
    );
    eprintln!(
        "tomcat: graceful cluster stop took {took:?} ({})",
        server_time(&op)
    );
    let view = client.get_server("tomcat1").await.expect("tomcat1");
    assert_eq!(view.observed.state, ServerState::Stopped, "{view:?}");
    let note = view.observed.last_error.clone().unwrap_or_default();
    eprintln!(
        "tomcat: stopped with exit code {:?}, note {note:?}",
        view.observed.exit_code
    );
    assert!(
        !note.contains(KILLED_NOTE),
        "tomcat did not stop gracefully: {note}"
    );
    assert_group_gone(pid, &group);
    // Tomcat's shutdown hook logged its orderly stop, both in its own log
    // file and on its console, which the agent keeps as the server's log.
    assert_eq!(
        count_in_catalina_logs(&base, GRACEFUL_LINE),
        1,
        "{}",
        diagnostics(&sandbox, &base)
    );
    let console = client
        .server_logs("tomcat1", &LogQuery::default())
        .await
        .expect("server log");
    assert!(console.data.contains(GRACEFUL_LINE), "{}", console.data);
    assert!(
        http_get(http_port, "/").await.is_none(),
        "tomcat still answers after stop"
    );

    // Start again, then kill: an immediate stop, no shutdown hook.
    let (op, took) = run_operation(&client, "tomcat", OperationKind::Start).await;
    assert_eq!(
        op.status,
        OperationStatus::Succeeded,
        "{op:?}\n{}",
        diagnostics(&sandbox, &base)
    );
    eprintln!(
        "tomcat: second cluster start took {took:?} ({})",
        server_time(&op)
    );
    assert_eq!(http_get(http_port, "/").await.map(|r| r.0), Some(200));
    let pid = client
        .get_server("tomcat1")
        .await
        .expect("tomcat1")
        .observed
        .pid
        .expect("pid");
    let group = group_members(pid);

    let (op, took) = run_operation(&client, "tomcat", OperationKind::Kill).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    eprintln!("tomcat: cluster kill took {took:?} ({})", server_time(&op));
    let view = client.get_server("tomcat1").await.expect("tomcat1");
    assert_eq!(view.observed.state, ServerState::Stopped, "{view:?}");
    assert_group_gone(pid, &group);
    // SIGKILL gives the JVM no chance to run its shutdown hook: still only
    // the one graceful stop in the logs. This shows "at once" without timing.
    assert_eq!(
        count_in_catalina_logs(&base, GRACEFUL_LINE),
        1,
        "{}",
        diagnostics(&sandbox, &base)
    );

    drop(sandbox);
}

/// Where Debian's `tomcat10-examples` keeps the compiled example servlets.
const EXAMPLES_CLASSES: &str = "/usr/share/tomcat10-examples/examples/WEB-INF/classes";

/// A web application at `/` of `base` whose `/session` (Tomcat's own
/// session example servlet) creates a session, so Tomcat answers with
/// `JSESSIONID=<id>.<jvmRoute>`; `/` is a page for the readiness probe.
fn session_webapp(base: &Path) {
    let root = base.join("webapps/ROOT");
    let classes = root.join("WEB-INF/classes");
    std::fs::create_dir_all(classes.join("util")).expect("WEB-INF/classes");
    std::fs::write(root.join("index.html"), "<html><body>up</body></html>\n").expect("index");
    for file in [
        "SessionExample.class",
        "LocalStrings.properties",
        "util/HTMLFilter.class",
    ] {
        std::fs::copy(Path::new(EXAMPLES_CLASSES).join(file), classes.join(file))
            .unwrap_or_else(|e| panic!("cannot copy {file}: {e}"));
    }
    std::fs::write(
        root.join("WEB-INF/web.xml"),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">
  <servlet><servlet-name>session</servlet-name><servlet-class>SessionExample</servlet-class></servlet>
  <servlet-mapping><servlet-name>session</servlet-name><url-pattern>/session</url-pattern></servlet-mapping>
</web-app>
"#,
    )
    .expect("web.xml");
}

/// Gives the instance's engine `jvmRoute="<route>"`: the suffix Tomcat
/// appends to every session id it issues.
fn set_jvm_route(base: &Path, route: &str) {
    let path = base.join("conf/server.xml");
    let xml = std::fs::read_to_string(&path).expect("server.xml");
    let engine = r#"<Engine name="Catalina" defaultHost="localhost">"#;
    assert!(xml.contains(engine), "no engine to set jvmRoute on:\n{xml}");
    let routed = xml.replace(
        engine,
        &format!(r#"<Engine name="Catalina" defaultHost="localhost" jvmRoute="{route}">"#),
    );
    std::fs::write(&path, routed).expect("server.xml written");
}

/// A GET of `/session` through the balancer at `port`, with the session
/// cookie if given: the status and the session cookie Tomcat set, if it
/// set one; `None` when the balancer cannot be reached.
async fn session_get(port: u16, cookie: Option<&str>) -> Option<(u16, Option<String>)> {
    let mut request = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/session"))
        .timeout(Duration::from_secs(10));
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("JSESSIONID={cookie}"));
    }
    let response = request.send().await.ok()?;
    let set = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("JSESSIONID="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string());
    Some((response.status().as_u16(), set))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_keeps_a_tomcat_session_on_its_jvm_route_and_fails_it_over() {
    let Some(instance_create) = find_on_path(INSTANCE_CREATE) else {
        eprintln!("skipping: {INSTANCE_CREATE} not found; install tomcat10-user");
        return;
    };
    let catalina = Path::new(CATALINA_HOME).join("bin/catalina.sh");
    if !catalina.is_file() || !Path::new(EXAMPLES_CLASSES).is_dir() {
        eprintln!("skipping: Tomcat or its examples not found; install tomcat10-user and tomcat10-examples");
        return;
    }
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let members = ["tomcat1", "tomcat2"];
    let mut bases = Vec::new();
    for name in members {
        let base = sandbox.dir().join(name);
        let (http_port, shutdown_port) = (free_port(), free_port());
        create_instance(&instance_create, &base, http_port, shutdown_port);
        set_jvm_route(&base, name);
        session_webapp(&base);
        let spec = tomcat_server(name, "n1", &base, &catalina, http_port, shutdown_port);
        client.create_server(&spec).await.expect("server created");
        bases.push(base);
    }
    create_cluster(&client, "tomcat", &members).await;
    let (code, _, err) = cli(
        &sandbox,
        &["cluster", "balance", "tomcat", "--sticky", "session"],
    );
    assert_eq!(code, 0, "{err}");
    let (op, _) = run_operation(&client, "tomcat", OperationKind::Start).await;
    assert_eq!(
        op.status,
        OperationStatus::Succeeded,
        "{op:?}\n{}",
        diagnostics(&sandbox, &bases[0])
    );
    let lb_port = create_lb_for(&sandbox, "front", "tomcat");
    let _lb = spawn_lb(&sandbox, "front", "lb.log");

    // The first request gets a session on one member, named by its route.
    let session = eventually(
        "a session through the balancer",
        OPERATION_BOUND,
        || async {
            match session_get(lb_port, None).await {
                Some((200, Some(session))) => Some(session),
                _ => None,
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, route) = session
        .rsplit_once('.')
        .expect("the session id carries a jvmRoute");
    assert!(members.contains(&route), "{session}");
    let other = members
        .iter()
        .find(|m| **m != route)
        .expect("another member");

    // Every request of that session stays on its member: the member knows
    // the session, so it never issues a new one. On the other member half
    // of these would get a new session.
    for _ in 0..10 {
        assert_eq!(
            session_get(lb_port, Some(&session)).await,
            Some((200, None)),
            "{session}"
        );
    }

    // Its member stops: the session's next request goes to the other one,
    // which starts a new session there.
    client
        .server_intent(route, dure_core::Intent::Stop)
        .await
        .expect("stop the session's member");
    wait_server_state(&client, route, ServerState::Stopped).await;
    let (status, moved) = session_get(lb_port, Some(&session))
        .await
        .expect("the balancer answers");
    assert_eq!(status, 200);
    let moved = moved.expect("a new session on the other member");
    assert!(moved.ends_with(&format!(".{other}")), "{moved}");
    drop(sandbox);
}

/// Creates a Tomcat instance (CATALINA_BASE) at `base` with the given HTTP
/// and shutdown ports.
fn create_instance(tool: &Path, base: &Path, http_port: u16, shutdown_port: u16) {
    let output = Command::new(tool)
        .args([
            "-p",
            &http_port.to_string(),
            "-c",
            &shutdown_port.to_string(),
        ])
        .arg(base)
        // The tool asks for <ENTER> when it warns (a port seems used): with no
        // stdin its `read` returns at once instead of hanging the test.
        .stdin(Stdio::null())
        .output()
        .expect("tomcat10-instance-create runs");
    assert!(
        output.status.success() && base.join("conf/server.xml").is_file(),
        "{INSTANCE_CREATE} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Tomcat in the foreground (`catalina.sh run`) with a small JVM.
fn tomcat_server(
    name: &str,
    node: &str,
    base: &Path,
    catalina: &Path,
    http_port: u16,
    shutdown_port: u16,
) -> ServerSpec {
    let base = base.to_string_lossy();
    serde_json::from_value(serde_json::json!({
        "name": name,
        "node": node,
        "argv": [catalina.to_string_lossy(), "run"],
        "env": {
            "CATALINA_BASE": base,
            "CATALINA_HOME": CATALINA_HOME,
            "CATALINA_TMPDIR": format!("{base}/temp"),
            // Small heap and C1 only: starts faster on a busy machine.
            // No perf data file in /tmp that would outlive the sandbox.
            "JAVA_OPTS": "-Xmx128m -Xss512k -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
                          -XX:-UsePerfData -Djava.awt.headless=true",
        },
        "dir": base,
        // The shutdown port is named too, so the domain rules keep it unique.
        "ports": {"http": http_port, "shutdown": shutdown_port},
        "ready": {"check": "http:/", "interval": "250ms", "timeout": "2s", "start_timeout": "90s"},
        "stop": {"signal": "TERM", "timeout": "30s"},
        // A Tomcat that dies on its own should fail the test, not be revived.
        "restart": {"mode": "never"}
    }))
    .expect("valid tomcat server spec")
}

/// Runs a cluster operation and waits for it to end; returns it with the
/// time the test saw it take.
async fn run_operation(
    client: &Client,
    cluster: &str,
    kind: OperationKind,
) -> (Operation, Duration) {
    let started = Instant::now();
    let op = client
        .cluster_operation(cluster, kind, &OperationOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{kind} of `{cluster}` refused: {e}"));
    let op = eventually(
        &format!("{kind} operation `{}` ends", op.id),
        OPERATION_BOUND,
        || async {
            client
                .get_operation(&op.id)
                .await
                .ok()
                .filter(|op| op.status != OperationStatus::Running)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (op, started.elapsed())
}

/// The operation's duration as the controller recorded it.
fn server_time(op: &Operation) -> String {
    match op.finished_ms {
        Some(end) => format!("controller: {} ms", end.saturating_sub(op.created_ms)),
        None => "controller: unfinished".into(),
    }
}

/// The pids of every live process in process group `pgid` (the agent puts
/// each server in a group of its own, led by the server's pid).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // Field 5 of /proc/PID/stat is the process group; the command
            // name before it may contain spaces, so split after its `)`.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(") ")?;
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// Asserts that the server's process and every process of its group ended.
fn assert_group_gone(pid: u32, group: &[u32]) {
    assert!(!alive(pid), "tomcat pid {pid} still alive");
    for member in group {
        assert!(
            !alive(*member),
            "pid {member} of tomcat's group {pid} still alive"
        );
    }
    // SAFETY: signal 0 only checks whether the group has members.
    let group_alive = unsafe { libc::killpg(pid as i32, 0) } == 0;
    assert!(!group_alive, "process group {pid} still has members");
}

/// How often `needle` occurs in Tomcat's own log files (`catalina.DATE.log`;
/// a run across midnight writes two of them).
fn count_in_catalina_logs(base: &Path, needle: &str) -> usize {
    catalina_logs(base).matches(needle).count()
}

/// What to look at when a step fails: the agent's log, Tomcat's console
/// (the server log kept by the agent) and Tomcat's own log.
fn diagnostics(sandbox: &dure_testkit::Sandbox, base: &Path) -> String {
    let console =
        std::fs::read_to_string(sandbox.agent_data("n1").join("servers/tomcat1/server.log"))
            .unwrap_or_else(|e| format!("(no server log: {e})"));
    format!(
        "--- agent log ---\n{}\n--- tomcat console ---\n{}\n--- catalina log ---\n{}",
        tail(&sandbox.log("agent-n1"), 4000),
        tail(&console, 4000),
        tail(&catalina_logs(base), 4000)
    )
}
