//! End to end with Dure's Tomcat template and Debian's Tomcat 10: Dure
//! creates each instance, writes its `server.xml`, runs it in the
//! foreground and stops it through its shutdown port; a change of the
//! generated files marks the running server `restart needed`. Then the
//! session replication test of the Tomcat clustering article, automated:
//! three members behind `dure lb run` with `jvmRoute` stickiness, a client
//! counts to 5 on one member, that member is killed with `kill -9`, and the
//! next request lands on another member and answers 6; the dead member is
//! restarted by its policy, rejoins, and a session made after that survives
//! the death of a second member — with `delta` and with `backup`.
//!
//! The tests that start Tomcats run one at a time (a JVM start on two busy
//! cores is slow) and are skipped, saying why, where `tomcat10-user` is not
//! installed; CI installs it.

mod common;

use common::tomcat::{catalina_logs, comm, small_tomcat_args, tail, tomcat_installed, FAST_JVM};
use common::*;
use dure_api::{Client, OperationKind, OperationStatus, ServerView};
use dure_core::{Intent, ServerSpec, ServerState};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bound of anything that waits for a JVM: starts take seconds here, and
/// much more on a loaded machine.
const JVM_BOUND: Duration = Duration::from_secs(180);
/// What Tomcat logs when a cluster member sees another one.
const MEMBER_ADDED: &str = "Replication member added";
/// What Tomcat logs when a cluster member drops another one.
const MEMBER_DISAPPEARED: &str = "Received member disappeared";

/// One JVM-heavy test at a time in this binary.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fixture_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/session-app")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("app dir");
    for entry in std::fs::read_dir(from).expect("fixture") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

/// The instance directory (CATALINA_BASE) the agent made for `server`.
fn instance(sandbox: &Sandbox, server: &str) -> PathBuf {
    sandbox
        .agent_data("n1")
        .join("servers")
        .join(server)
        .join("instance")
}

/// The server's console output as the agent keeps it, every run.
fn server_log(sandbox: &Sandbox, server: &str) -> String {
    std::fs::read_to_string(
        sandbox
            .agent_data("n1")
            .join("servers")
            .join(server)
            .join("server.log"),
    )
    .unwrap_or_default()
}

fn diagnostics(sandbox: &Sandbox, servers: &[&str]) -> String {
    let mut text = format!("--- agent ---\n{}\n", tail(&sandbox.log("agent-n1"), 3000));
    for server in servers {
        text.push_str(&format!(
            "--- {server} console ---\n{}\n--- {server} catalina ---\n{}\n",
            tail(&server_log(sandbox, server), 60000),
            tail(&catalina_logs(&instance(sandbox, server)), 3000)
        ));
    }
    text
}

async fn wait_state(
    client: &Client,
    sandbox: &Sandbox,
    name: &str,
    state: ServerState,
) -> ServerView {
    eventually(&format!("server `{name}` {state}"), JVM_BOUND, || async {
        client
            .get_server(name)
            .await
            .ok()
            .filter(|v| v.observed.state == state)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", diagnostics(sandbox, &[name])))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tomcat_template_server_runs_its_generated_instance_and_stops_through_its_shutdown_port()
{
    if !tomcat_installed() {
        return;
    }
    let _heavy = HEAVY.lock().await;
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let (http, shutdown) = (free_port(), free_port());
    let args = small_tomcat_args("t1", http, shutdown, &["--restart", "never"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = cli(&sandbox, &args);
    assert_eq!(code, 0, "{err}");
    let (code, config, err) = cli(&sandbox, &["server", "config", "t1"]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "--- conf/server.xml".to_string(),
        "--- bin/setenv.sh".to_string(),
        r#"jvmRoute="t1""#.to_string(),
        format!(r#"<Server port="{shutdown}" shutdown="SHUTDOWN">"#),
        format!(r#"<Connector port="{http}""#),
        "-Xmx128m".to_string(),
    ] {
        assert!(config.contains(&needle), "no {needle} in:\n{config}");
    }

    client
        .server_intent("t1", Intent::Run)
        .await
        .expect("start");
    let view = wait_state(&client, &sandbox, "t1", ServerState::Ready).await;
    let pid = view.observed.pid.expect("a ready server has a pid");
    assert_eq!(comm(pid), "java", "catalina.sh execs the JVM");
    assert!(
        http_get(http, "/").await.is_some(),
        "tomcat answers on its http port"
    );
    // What is on disk is what `server config` shows.
    let config = client.server_config("t1").await.expect("config");
    assert!(!config.restart_needed);
    for (path, content) in &config.files {
        let on_disk = std::fs::read_to_string(instance(&sandbox, "t1").join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(&on_disk, content, "{path}");
    }

    // A change of the generated files marks the running server.
    let (code, _, err) = cli(&sandbox, &["server", "update", "t1", "--heap", "160m"]);
    assert_eq!(code, 0, "{err}");
    eventually("restart needed", SETTLE, || async {
        client
            .get_server("t1")
            .await
            .ok()
            .filter(|v| v.observed.restart_needed)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, show, _) = cli(&sandbox, &["server", "show", "t1"]);
    assert!(show.contains("restart needed"), "{show}");
    assert!(client.server_config("t1").await.unwrap().restart_needed);

    // A graceful stop goes through the shutdown port.
    client
        .server_intent("t1", Intent::Stop)
        .await
        .expect("stop");
    let view = wait_state(&client, &sandbox, "t1", ServerState::Stopped).await;
    assert!(!view.observed.restart_needed, "{view:?}");
    let log = server_log(&sandbox, "t1");
    assert!(
        log.contains(&format!("sending the shutdown word to port {shutdown}")),
        "{log}"
    );
    assert!(
        !log.contains("SIGTERM") && !log.contains("killing"),
        "{log}"
    );
    assert!(
        catalina_logs(&instance(&sandbox, "t1")).contains("Stopping service [Catalina]"),
        "{}",
        diagnostics(&sandbox, &["t1"])
    );

    // The next start writes the new files.
    client
        .server_intent("t1", Intent::Run)
        .await
        .expect("start");
    let view = wait_state(&client, &sandbox, "t1", ServerState::Ready).await;
    assert!(!view.observed.restart_needed);
    let setenv = std::fs::read_to_string(instance(&sandbox, "t1").join("bin/setenv.sh")).unwrap();
    assert!(setenv.contains("-Xmx160m"), "{setenv}");
    client
        .server_intent("t1", Intent::Kill)
        .await
        .expect("kill");
    wait_state(&client, &sandbox, "t1", ServerState::Stopped).await;
    drop(sandbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tomcat_settings_are_refused_and_a_start_that_cannot_run_says_why() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let tomcat = |name: &str, ports: serde_json::Value| -> ServerSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "node": "n1",
            "template": {"kind": "tomcat"},
            "ports": ports,
            "restart": {"mode": "never"},
        }))
        .expect("spec")
    };
    // Refused by the API with the reason; nothing saved.
    let err = client
        .create_server(&tomcat("t0", serde_json::json!({"shutdown": free_port()})))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("needs port `http`"), "{err}");
    let port = free_port();
    let err = client
        .create_server(&tomcat(
            "t0",
            serde_json::json!({"http": port, "shutdown": port}),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("uses port"), "{err}");
    let mut with_command = tomcat("t0", serde_json::json!({"http": free_port()}));
    with_command.argv = vec!["/bin/true".into()];
    let err = client.create_server(&with_command).await.unwrap_err();
    assert!(err.to_string().contains("decides the command"), "{err}");
    let (code, _, err) = cli(
        &sandbox,
        &[
            "server",
            "create",
            "t0",
            "--template",
            "tomcat",
            "--node",
            "n1",
            "--port",
            "http=8080",
            "--heap",
            "lots",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("heap size `lots` is invalid"), "{err}");
    assert!(client.list_servers().await.unwrap().is_empty());

    // Session replication needs a replication port on every member.
    client
        .create_server(&tomcat("t1", serde_json::json!({"http": free_port()})))
        .await
        .expect("created");
    create_cluster(&client, "shop", &["t1"]).await;
    let (code, _, err) = cli(
        &sandbox,
        &[
            "cluster",
            "update",
            "shop",
            "--session-replication",
            "delta",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("member `t1` has no `replication` port"),
        "{err}"
    );

    // A taken port: nothing spawned, the port named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().unwrap().port();
    client
        .create_server(&tomcat("t2", serde_json::json!({"http": taken_port})))
        .await
        .expect("created");
    client
        .server_intent("t2", Intent::Run)
        .await
        .expect("start");
    let view = wait_state(&client, &sandbox, "t2", ServerState::Failed).await;
    let error = view.observed.last_error.unwrap_or_default();
    assert!(error.contains(&taken_port.to_string()), "{error}");
    assert!(
        !instance(&sandbox, "t2").exists(),
        "no instance for a server that cannot start"
    );

    // No Tomcat where the server says: the installation named.
    let mut missing = tomcat("t3", serde_json::json!({"http": free_port()}));
    missing.template.as_mut().unwrap().catalina_home = Some("/nonexistent/tomcat10".into());
    client.create_server(&missing).await.expect("created");
    client
        .server_intent("t3", Intent::Run)
        .await
        .expect("start");
    let view = wait_state(&client, &sandbox, "t3", ServerState::Failed).await;
    let error = view.observed.last_error.unwrap_or_default();
    assert!(
        error.contains("tomcat is not installed at `/nonexistent/tomcat10`"),
        "{error}"
    );
    drop(taken);
    drop(sandbox);
}

/// A browser of the session application: keeps the session cookie Tomcat
/// sets (a member taking a session over gives it its own route).
#[derive(Default)]
struct Visitor {
    session: Option<String>,
}

impl Visitor {
    /// One visit of the counting page at `port`: the count it answered,
    /// `None` when the request failed or was not a 200.
    async fn visit(&mut self, port: u16) -> Option<u32> {
        let mut request = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/session/count.jsp"))
            .timeout(Duration::from_secs(30));
        if let Some(session) = &self.session {
            request = request.header("cookie", format!("JSESSIONID={session}"));
        }
        let response = request.send().await.ok()?;
        if let Some(set) = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("JSESSIONID="))
        {
            self.session = Some(set.split(';').next().unwrap_or_default().to_string());
        }
        if response.status() != 200 {
            return None;
        }
        response.text().await.ok()?.trim().parse().ok()
    }

    /// The member the session is bound to: its id's `jvmRoute` suffix.
    fn route(&self) -> String {
        let session = self.session.as_deref().expect("a session");
        session
            .rsplit_once('.')
            .map(|(_, route)| route.to_string())
            .expect("the session id carries a jvmRoute")
    }
}

fn kill_9(pid: u32) {
    // SAFETY: a plain kill(2) of a pid the controller reported for a server
    // this test started; the sandbox marks and reaps every process.
    let killed = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(killed, 0, "kill -9 {pid}");
}

async fn pid_of(client: &Client, server: &str) -> u32 {
    client
        .get_server(server)
        .await
        .expect("server")
        .observed
        .pid
        .expect("a running member has a pid")
}

/// How often `server`'s console says it saw another member.
fn members_added(sandbox: &Sandbox, server: &str) -> usize {
    server_log(sandbox, server).matches(MEMBER_ADDED).count()
}

/// Waits until `server` has seen `count` members join, over all its runs.
async fn wait_members_added(sandbox: &Sandbox, server: &str, count: usize) {
    eventually(
        &format!("`{server}` sees {count} members"),
        JVM_BOUND,
        || async { (members_added(sandbox, server) >= count).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", diagnostics(sandbox, &[server])));
}

/// Kills `victim` with `kill -9`. With `backup`, also waits until the
/// other members dropped it from their group: until then a backup
/// manager cannot move a session it held a copy of (see
/// `dure_core::template::tomcat::EXPIRATION_MS`), while with `delta` the
/// very next request finds the session.
async fn kill_member(
    client: &Client,
    sandbox: &Sandbox,
    victim: &str,
    members: &[&str],
    replication: &str,
) {
    let others: Vec<&str> = members.iter().copied().filter(|m| *m != victim).collect();
    let dropped = |m: &str| server_log(sandbox, m).matches(MEMBER_DISAPPEARED).count();
    let before: Vec<usize> = others.iter().map(|m| dropped(m)).collect();
    kill_9(pid_of(client, victim).await);
    if replication != "backup" {
        return;
    }
    for (other, before) in others.iter().zip(before) {
        eventually(
            &format!("`{other}` drops `{victim}`"),
            JVM_BOUND,
            || async { (dropped(other) > before).then_some(()) },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", diagnostics(sandbox, members)));
    }
}

/// Waits until a session made on the member at `from` (directly, not
/// through the balancer) is known to the member at `to`.
async fn wait_replicates(sandbox: &Sandbox, from: u16, to: u16, members: &[&str]) {
    eventually(
        &format!("sessions of :{from} reach :{to}"),
        JVM_BOUND,
        || async {
            let mut probe = Visitor::default();
            (probe.visit(from).await == Some(1) && probe.visit(to).await == Some(2)).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", diagnostics(sandbox, members)));
}

/// The article's test with `replication` (`delta` or `backup`).
async fn a_session_survives_the_death_of_its_member(replication: &str) {
    if !tomcat_installed() {
        return;
    }
    let _heavy = HEAVY.lock().await;
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let members = ["t1", "t2", "t3"];
    let mut http_ports = std::collections::BTreeMap::new();
    // With `backup` a killed member must stay away until the others have
    // dropped it (see `kill_member`); one back sooner, under the same id,
    // is taken for the member it was, holding copies it lost.
    let backoff = if replication == "backup" {
        "6s"
    } else {
        "500ms"
    };
    for name in members {
        let apps = sandbox.dir().join("apps").join(name);
        copy_dir(&fixture_app(), &apps.join("session"));
        let http = free_port();
        http_ports.insert(name, http);
        let spec: ServerSpec = serde_json::from_value(serde_json::json!({
            "name": name,
            "node": "n1",
            "template": {"kind": "tomcat", "heap": "128m"},
            "env": {"JAVA_OPTS": FAST_JVM},
            "ports": {"http": http, "shutdown": free_port(), "replication": free_port()},
            "app_dir": apps,
            "ready": {"check": "tcp:http", "start_timeout": "150s"},
            "restart": {"mode": "on-failure", "backoff": backoff},
        }))
        .expect("spec");
        client.create_server(&spec).await.expect("server created");
    }
    create_cluster(&client, "shop", &members).await;
    for args in [
        &[
            "cluster",
            "update",
            "shop",
            "--session-replication",
            replication,
        ][..],
        &["cluster", "balance", "shop", "--sticky", "session"][..],
    ] {
        let (code, _, err) = cli(&sandbox, args);
        assert_eq!(code, 0, "{err}");
    }
    let op = client
        .cluster_operation("shop", OperationKind::Start, &Default::default())
        .await
        .expect("start accepted");
    let op = eventually("the cluster start ends", JVM_BOUND * 2, || async {
        client
            .get_operation(&op.id)
            .await
            .ok()
            .filter(|op| op.status != OperationStatus::Running)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        op.status,
        OperationStatus::Succeeded,
        "{op:?}\n{}",
        diagnostics(&sandbox, &members)
    );
    let lb_port = create_lb_for(&sandbox, "front", "shop");
    let _lb = spawn_lb(&sandbox, "front", "lb.log");
    // Every member sees the two others before any session is made.
    for name in members {
        wait_members_added(&sandbox, name, 2).await;
    }

    // The client counts to 5 on one member.
    let mut visitor = Visitor::default();
    let first = eventually("a first visit through the balancer", JVM_BOUND, || async {
        let mut fresh = Visitor::default();
        (fresh.visit(lb_port).await == Some(1)).then_some(fresh)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", diagnostics(&sandbox, &members)));
    visitor.session = first.session;
    let victim = visitor.route();
    for count in 2..=5 {
        assert_eq!(visitor.visit(lb_port).await, Some(count), "visit {count}");
        assert_eq!(visitor.route(), victim, "the session stays on its member");
    }

    // kill -9 of its member: the next request lands on another member,
    // which has the session and answers 6.
    let victim_added = members_added(&sandbox, &victim);
    kill_member(&client, &sandbox, &victim, &members, replication).await;
    assert_eq!(
        visitor.visit(lb_port).await,
        Some(6),
        "{}",
        diagnostics(&sandbox, &members)
    );
    let survivor = visitor.route();
    assert_ne!(survivor, victim, "the session moved to a live member");
    assert_eq!(visitor.visit(lb_port).await, Some(7));

    // Its restart policy brings the dead member back; it rejoins.
    eventually("the killed member restarts", JVM_BOUND, || async {
        client
            .get_server(&victim)
            .await
            .ok()
            .filter(|v| v.observed.state == ServerState::Ready && v.observed.restarts >= 1)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", diagnostics(&sandbox, &members)));
    wait_members_added(&sandbox, &victim, victim_added + 2).await;
    // It receives the sessions the others make, and they its.
    for other in members.iter().filter(|m| **m != victim) {
        let (from, to) = (http_ports[*other], http_ports[victim.as_str()]);
        wait_replicates(&sandbox, from, to, &members).await;
        wait_replicates(&sandbox, to, from, &members).await;
    }

    // A session made after that, on a member other than the rejoined one,
    // survives that member's death: the rejoined member has it.
    let mut second = Visitor::default();
    for _ in 0..12 {
        let mut fresh = Visitor::default();
        if fresh.visit(lb_port).await == Some(1) && fresh.route() != victim {
            second = fresh;
            break;
        }
    }
    let owner = second.route();
    for count in 2..=5 {
        assert_eq!(second.visit(lb_port).await, Some(count), "visit {count}");
    }
    kill_member(&client, &sandbox, &owner, &members, replication).await;
    assert_eq!(
        second.visit(http_ports[victim.as_str()]).await,
        Some(6),
        "the rejoined member holds the session\n{}",
        diagnostics(&sandbox, &members)
    );
    assert_eq!(second.route(), victim);
    assert_eq!(second.visit(lb_port).await, Some(7));
    drop(sandbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_replicated_session_survives_kill_9_of_its_member() {
    a_session_survives_the_death_of_its_member("delta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_replicated_session_survives_kill_9_of_its_member() {
    a_session_survives_the_death_of_its_member("backup").await;
}
