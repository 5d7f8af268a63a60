//! A supervisor driven directly with desired states, against real processes.

use crate::support::*;
use dure_agent::process::{Liveness, PidFile, ProcessId};
use dure_agent::supervisor::Supervisor;
use dure_core::{DurationSpec, Intent, RestartMode, ServerState};
use std::os::unix::process::CommandExt;
use std::time::Duration;

fn http_server(sandbox: &Sandbox, name: &str, check: &str) -> dure_core::ServerSpec {
    let port = free_port();
    let port_text = port.to_string();
    let mut spec = sandbox.spec(
        name,
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port_text,
        ],
    );
    spec.ports.insert("http".into(), port);
    spec.ready.check = check.parse().expect("check");
    spec
}

const TERM_IGNORING: &[&str] = &["/bin/sh", "-c", "trap '' TERM; sleep 60"];

#[tokio::test]
async fn spawns_and_becomes_ready_with_a_tcp_check() {
    let sandbox = Sandbox::new();
    let spec = http_server(&sandbox, "web1", "tcp:http");
    let supervisor = Supervisor::start(&sandbox.layout, "web1");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));

    let ready = wait_for(&supervisor, LONG, "ready", |o| {
        o.state == ServerState::Ready
    })
    .await;
    let pid = ready.pid.expect("a ready server has a pid");
    assert_eq!(ready.generation, 1);
    assert_eq!(ready.restarts, 0);
    assert!(sandbox.layout.work_dir("web1").is_dir());
    let file = PidFile::read(&sandbox.layout.pid_path("web1"))
        .unwrap()
        .unwrap();
    assert_eq!((file.pid, file.generation), (pid, 1));
    let log = std::fs::read_to_string(sandbox.layout.log_path("web1")).unwrap();
    assert!(
        log.contains(&format!("started `python3` as pid {pid}")),
        "{log}"
    );

    supervisor.set_desired(desired(&spec, Intent::Stop, 2));
    let stopped = wait_for(&supervisor, LONG, "stopped", |o| {
        o.state == ServerState::Stopped
    })
    .await;
    assert_eq!(
        (stopped.pid, stopped.generation, stopped.last_error),
        (None, 2, None)
    );
    assert!(group_gone(pid));
    assert!(!sandbox.layout.pid_path("web1").exists());
}

#[tokio::test]
async fn becomes_ready_with_an_http_check() {
    let sandbox = Sandbox::new();
    let spec = http_server(&sandbox, "web2", "http:/");
    let supervisor = Supervisor::start(&sandbox.layout, "web2");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));
    let ready = wait_for(&supervisor, LONG, "ready", |o| {
        o.state == ServerState::Ready
    })
    .await;
    let pid = ready.pid.unwrap();

    supervisor.set_desired(desired(&spec, Intent::Kill, 2));
    wait_for(&supervisor, LONG, "stopped", |o| {
        o.state == ServerState::Stopped
    })
    .await;
    assert!(group_gone(pid));
}

#[tokio::test]
async fn a_missing_command_fails_with_a_clear_error_and_no_restarts() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec("ghost", &["/no/such/cmd", "--flag"]);
    spec.restart.mode = RestartMode::OnFailure;
    let supervisor = Supervisor::start(&sandbox.layout, "ghost");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));

    let failed = wait_for(&supervisor, LONG, "failed", |o| {
        o.state == ServerState::Failed
    })
    .await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some("cannot start `/no/such/cmd`: No such file or directory (os error 2)")
    );
    assert_eq!(
        (failed.pid, failed.exit_code, failed.restarts),
        (None, None, 0)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        supervisor.observed(),
        failed,
        "a spawn failure is not retried"
    );
}

#[tokio::test]
async fn a_missing_working_directory_is_named() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec("nodir", &["/bin/sleep", "60"]);
    spec.dir = Some("/no/such/dir".into());
    let supervisor = Supervisor::start(&sandbox.layout, "nodir");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));
    let failed = wait_for(&supervisor, LONG, "failed", |o| {
        o.state == ServerState::Failed
    })
    .await;
    let error = failed.last_error.unwrap();
    assert!(
        error.starts_with("working directory `/no/such/dir` cannot be used"),
        "{error}"
    );
}

#[tokio::test]
async fn crashes_are_restarted_with_backoff_until_max_restarts() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec("crashy", &["/bin/sh", "-c", "exit 3"]);
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.max_restarts = 3;
    spec.restart.backoff = DurationSpec::from_millis(100);
    spec.restart.max_backoff = DurationSpec::from_millis(200);
    let supervisor = Supervisor::start(&sandbox.layout, "crashy");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));

    let backing_off = wait_for(&supervisor, LONG, "a restart pending", |o| {
        o.state == ServerState::Starting && o.restarts >= 1
    })
    .await;
    let error = backing_off.last_error.unwrap();
    assert!(
        error.starts_with("exited with code 3; restarting in "),
        "{error}"
    );
    assert_eq!(backing_off.exit_code, Some(3));

    let failed = wait_for(&supervisor, LONG, "failed", |o| {
        o.state == ServerState::Failed
    })
    .await;
    assert_eq!(failed.restarts, 3);
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(
        failed.last_error.as_deref(),
        Some("exited with code 3; gave up after 3 restarts")
    );
    let log = std::fs::read_to_string(sandbox.layout.log_path("crashy")).unwrap();
    assert_eq!(log.matches("started `/bin/sh`").count(), 4, "{log}");
}

#[tokio::test]
async fn never_policy_fails_with_the_exit_code_until_started_again() {
    let sandbox = Sandbox::new();
    let spec = sandbox.spec("once", &["/bin/sh", "-c", "exit 7"]);
    let supervisor = Supervisor::start(&sandbox.layout, "once");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));

    let failed = wait_for(&supervisor, LONG, "failed", |o| {
        o.state == ServerState::Failed
    })
    .await;
    assert_eq!(failed.exit_code, Some(7));
    assert_eq!(failed.restarts, 0);
    assert_eq!(failed.last_error.as_deref(), Some("exited with code 7"));

    // The same generation again does not restart a failed server…
    supervisor.set_desired(desired(&spec, Intent::Run, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let starts = || {
        std::fs::read_to_string(sandbox.layout.log_path("once"))
            .unwrap()
            .matches("started `/bin/sh`")
            .count()
    };
    assert_eq!(starts(), 1);
    // …a new one does.
    supervisor.set_desired(desired(&spec, Intent::Run, 2));
    wait_for(&supervisor, LONG, "failed again", |o| {
        o.state == ServerState::Failed && o.generation == 2
    })
    .await;
    assert_eq!(starts(), 2);
}

#[tokio::test]
async fn a_server_ignoring_sigterm_is_killed_after_the_stop_timeout() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec("stubborn", TERM_IGNORING);
    spec.stop.timeout = DurationSpec::from_millis(500);
    let supervisor = Supervisor::start(&sandbox.layout, "stubborn");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));
    let ready = wait_for(&supervisor, LONG, "ready", |o| {
        o.state == ServerState::Ready
    })
    .await;
    let pid = ready.pid.unwrap();
    // The shell's `sleep` child is in the same group.
    eventually(LONG, "sleep to start", || {
        dure_agent::process::group_members(pid).len() >= 2
    })
    .await;

    supervisor.set_desired(desired(&spec, Intent::Stop, 2));
    wait_for(&supervisor, LONG, "stopping", |o| {
        o.state != ServerState::Ready
    })
    .await;
    let stopped = wait_for(&supervisor, LONG, "stopped", |o| {
        o.state == ServerState::Stopped
    })
    .await;
    assert_eq!(
        stopped.last_error.as_deref(),
        Some("killed after stop timeout 500ms")
    );
    assert_eq!(stopped.exit_code, None);
    assert!(
        group_gone(pid),
        "members left: {:?}",
        dure_agent::process::group_members(pid)
    );
}

#[tokio::test]
async fn the_stop_command_is_used_when_set() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec(
        "polite",
        &[
            "/bin/sh",
            "-c",
            "trap '' TERM; while [ ! -e stop-now ]; do sleep 0.05; done; exit 0",
        ],
    );
    spec.stop.command = Some(vec!["/bin/sh".into(), "-c".into(), "touch stop-now".into()]);
    spec.stop.timeout = DurationSpec::from_secs(15);
    let supervisor = Supervisor::start(&sandbox.layout, "polite");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));
    let pid = wait_for(&supervisor, LONG, "ready", |o| {
        o.state == ServerState::Ready
    })
    .await
    .pid
    .unwrap();

    supervisor.set_desired(desired(&spec, Intent::Stop, 2));
    let stopped = wait_for(&supervisor, LONG, "stopped", |o| {
        o.state == ServerState::Stopped
    })
    .await;
    assert_eq!(stopped.exit_code, Some(0), "{stopped:?}");
    assert_eq!(stopped.last_error, None);
    assert!(sandbox.layout.work_dir("polite").join("stop-now").exists());
    assert!(group_gone(pid));
    let log = std::fs::read_to_string(sandbox.layout.log_path("polite")).unwrap();
    assert!(
        log.contains("running stop command `/bin/sh -c touch stop-now`"),
        "{log}"
    );
}

#[tokio::test]
async fn kill_stops_at_once() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec("victim", TERM_IGNORING);
    spec.stop.timeout = DurationSpec::from_secs(60);
    let supervisor = Supervisor::start(&sandbox.layout, "victim");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));
    let pid = wait_for(&supervisor, LONG, "ready", |o| {
        o.state == ServerState::Ready
    })
    .await
    .pid
    .unwrap();

    supervisor.set_desired(desired(&spec, Intent::Kill, 2));
    // Far below the 60 s stop timeout: it was not a graceful stop.
    let stopped = wait_for(&supervisor, Duration::from_secs(10), "stopped", |o| {
        o.state == ServerState::Stopped
    })
    .await;
    assert_eq!(stopped.exit_code, None);
    assert_eq!(stopped.last_error, None);
    assert!(group_gone(pid));
}

#[tokio::test]
async fn a_server_not_ready_by_its_start_timeout_fails_and_is_killed() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec("slow", &["/bin/sleep", "60"]);
    spec.ports.insert("http".into(), free_port());
    spec.ready.check = "tcp:http".parse().unwrap();
    spec.ready.start_timeout = DurationSpec::from_millis(600);
    spec.restart.mode = RestartMode::OnFailure;
    let supervisor = Supervisor::start(&sandbox.layout, "slow");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));
    let pid = wait_for(&supervisor, LONG, "starting", |o| o.pid.is_some())
        .await
        .pid
        .unwrap();

    let failed = wait_for(&supervisor, LONG, "failed", |o| {
        o.state == ServerState::Failed
    })
    .await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some("not ready after 600ms: connection refused")
    );
    assert_eq!(failed.restarts, 0, "a start timeout is not restarted");
    assert!(group_gone(pid));
}

/// A server that listens on its port except while `down` exists in its
/// working directory.
const TOGGLING_LISTENER: &str = r#"
import os, socket, sys, time
port, sock = int(sys.argv[1]), None
while True:
    down = os.path.exists("down")
    if down and sock:
        sock.close()
        sock = None
    if not down and not sock:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    time.sleep(0.02)
"#;

#[tokio::test]
async fn a_failing_probe_makes_a_ready_server_running_until_it_passes_again() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let port_text = port.to_string();
    let mut spec = sandbox.spec("flappy", &["python3", "-c", TOGGLING_LISTENER, &port_text]);
    spec.ports.insert("http".into(), port);
    spec.ready.check = "tcp:http".parse().unwrap();
    let supervisor = Supervisor::start(&sandbox.layout, "flappy");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));
    wait_for(&supervisor, LONG, "ready", |o| {
        o.state == ServerState::Ready
    })
    .await;

    let down = sandbox.layout.work_dir("flappy").join("down");
    std::fs::write(&down, b"").unwrap();
    let running = wait_for(&supervisor, LONG, "running", |o| {
        o.state == ServerState::Running
    })
    .await;
    assert_eq!(
        running.last_error.as_deref(),
        Some("readiness check failed: connection refused")
    );
    assert!(running.pid.is_some());

    std::fs::remove_file(&down).unwrap();
    let ready = wait_for(&supervisor, LONG, "ready again", |o| {
        o.state == ServerState::Ready
    })
    .await;
    assert_eq!(ready.last_error, None);
    assert_eq!(ready.pid, running.pid);
}

#[tokio::test]
async fn a_new_supervisor_adopts_a_running_server_and_can_stop_it() {
    let sandbox = Sandbox::new();
    let spec = sandbox.spec("keeper", &["/bin/sleep", "60"]);
    let first = Supervisor::start(&sandbox.layout, "keeper");
    first.set_desired(desired(&spec, Intent::Run, 4));
    let pid = wait_for(&first, LONG, "ready", |o| o.state == ServerState::Ready)
        .await
        .pid
        .unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = ProcessId::of(pid)
        .unwrap()
        .expect("still running after the supervisor is gone");
    assert_eq!(id.liveness(), Liveness::Alive);

    let second = Supervisor::start(&sandbox.layout, "keeper");
    let adopted = second.observed();
    assert_eq!(adopted.state, ServerState::Ready, "as the first one saw it");
    assert_eq!((adopted.pid, adopted.generation), (Some(pid), 4));

    second.set_desired(desired(&spec, Intent::Run, 4));
    let ready = wait_for(&second, LONG, "ready", |o| o.state == ServerState::Ready).await;
    assert_eq!(ready.pid, Some(pid), "adopted, not started again");

    second.set_desired(desired(&spec, Intent::Stop, 5));
    let stopped = wait_for(&second, LONG, "stopped", |o| {
        o.state == ServerState::Stopped
    })
    .await;
    assert_eq!(stopped.generation, 5);
    assert_ne!(id.liveness(), Liveness::Alive);
    assert!(!sandbox.layout.pid_path("keeper").exists());
}

#[tokio::test]
async fn a_pid_file_with_another_start_time_is_neither_adopted_nor_signalled() {
    let sandbox = Sandbox::new();
    let mut bystander = sandbox
        .command("/bin/sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    let real = ProcessId::of(bystander.id()).unwrap().unwrap();
    std::fs::create_dir_all(sandbox.layout.server_dir("reused")).unwrap();
    PidFile {
        pid: real.pid,
        start_time: real.start_time + 1,
        generation: 1,
        ..PidFile::default()
    }
    .write(&sandbox.layout.pid_path("reused"))
    .unwrap();

    let supervisor = Supervisor::start(&sandbox.layout, "reused");
    let observed = supervisor.observed();
    assert_eq!((observed.state, observed.pid), (ServerState::Stopped, None));
    assert!(
        !sandbox.layout.pid_path("reused").exists(),
        "stale pid file removed"
    );

    let spec = sandbox.spec("reused", &["/bin/true"]);
    supervisor.set_desired(desired(&spec, Intent::Kill, 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(supervisor.observed().state, ServerState::Stopped);
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was signalled"
    );
    assert_eq!(real.liveness(), Liveness::Alive);
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[tokio::test]
async fn an_adopted_server_is_restarted_by_the_policy_of_the_desired_state_handed_over() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec("phoenix", &["/bin/sleep", "60"]);
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.backoff = DurationSpec::from_millis(100);
    let first = Supervisor::start(&sandbox.layout, "phoenix");
    first.set_desired(desired(&spec, Intent::Run, 2));
    let pid = wait_for(&first, LONG, "ready", |o| o.state == ServerState::Ready)
        .await
        .pid
        .unwrap();
    drop(first);

    // The same generation as the pid file's: adopted, not started again.
    let second = Supervisor::start(&sandbox.layout, "phoenix");
    second.set_desired(desired(&spec, Intent::Run, 2));
    wait_for(&second, LONG, "ready", |o| o.state == ServerState::Ready).await;
    let id = ProcessId::of(pid).unwrap().unwrap();
    assert!(id.signal_group(libc::SIGKILL).unwrap());

    let restarting = wait_for(&second, LONG, "a restart", |o| o.restarts == 1).await;
    let error = restarting.last_error.unwrap();
    assert!(
        error.starts_with(
            "exited (exit status unknown: the process was adopted); restarting in 100ms"
        ),
        "{error}"
    );
    let again = wait_for(&second, LONG, "ready again", |o| {
        o.state == ServerState::Ready && o.pid.is_some()
    })
    .await;
    assert_ne!(again.pid, Some(pid));
    assert_eq!(again.generation, 2);
}

#[tokio::test]
async fn a_zero_backoff_still_waits_before_restarting() {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.spec("hasty", &["/bin/sh", "-c", "exit 3"]);
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.max_restarts = 2;
    spec.restart.backoff = DurationSpec::from_millis(0);
    spec.restart.max_backoff = DurationSpec::from_millis(0);
    let supervisor = Supervisor::start(&sandbox.layout, "hasty");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));

    let backing_off = wait_for(&supervisor, LONG, "a restart pending", |o| {
        o.state == ServerState::Starting && o.restarts >= 1
    })
    .await;
    assert_eq!(
        backing_off.last_error.as_deref(),
        Some("exited with code 3; restarting in 100ms")
    );
    let failed = wait_for(&supervisor, LONG, "failed", |o| {
        o.state == ServerState::Failed
    })
    .await;
    assert_eq!(failed.restarts, 2);
}

#[tokio::test]
async fn a_pid_file_naming_a_process_the_agent_cannot_have_started_is_not_adopted() {
    let sandbox = Sandbox::new();
    // The agent itself, and a live process that leads no group of its own.
    let mut member = sandbox.command("/bin/sleep").arg("60").spawn().unwrap();
    let names = [
        (
            "itself",
            ProcessId::of(std::process::id()).unwrap().unwrap(),
        ),
        ("member", ProcessId::of(member.id()).unwrap().unwrap()),
    ];
    for (name, id) in names {
        std::fs::create_dir_all(sandbox.layout.server_dir(name)).unwrap();
        PidFile {
            pid: id.pid,
            start_time: id.start_time,
            generation: 1,
            ..PidFile::default()
        }
        .write(&sandbox.layout.pid_path(name))
        .unwrap();

        let supervisor = Supervisor::start(&sandbox.layout, name);
        let observed = supervisor.observed();
        assert_eq!(
            (observed.state, observed.pid),
            (ServerState::Stopped, None),
            "{name}"
        );
        assert!(!sandbox.layout.pid_path(name).exists(), "{name}");
        let spec = sandbox.spec(name, &["/bin/true"]);
        supervisor.set_desired(desired(&spec, Intent::Kill, 2));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(supervisor.observed().state, ServerState::Stopped, "{name}");
        assert_eq!(id.liveness(), Liveness::Alive, "{name} was signalled");
    }
    assert!(
        member.try_wait().unwrap().is_none(),
        "the member was signalled"
    );
    member.kill().unwrap();
    member.wait().unwrap();
}

/// The name the kernel shows for this test process, as a holder is named.
fn own_command() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .expect("own comm")
        .trim_end()
        .to_string()
}

#[tokio::test]
async fn a_taken_port_fails_the_start_naming_the_port_and_its_holder_and_spawns_nothing() {
    let sandbox = Sandbox::new();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let port_text = port.to_string();
    let mut spec = sandbox.spec(
        "squatted",
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port_text,
        ],
    );
    spec.ports.insert("admin".into(), free_port());
    spec.ports.insert("http".into(), port);
    spec.ready.check = "tcp:http".parse().unwrap();
    spec.restart.mode = RestartMode::OnFailure;
    let supervisor = Supervisor::start(&sandbox.layout, "squatted");
    supervisor.set_desired(desired(&spec, Intent::Run, 1));

    let failed = wait_for(&supervisor, LONG, "failed", |o| {
        o.state == ServerState::Failed
    })
    .await;
    let expected = format!(
        "port {port} (http) is already in use by pid {} ({})",
        std::process::id(),
        own_command()
    );
    assert_eq!(failed.last_error.as_deref(), Some(expected.as_str()));
    assert_eq!(
        (
            failed.pid,
            failed.exit_code,
            failed.restarts,
            failed.generation
        ),
        (None, None, 0, 1)
    );
    let log = std::fs::read_to_string(sandbox.layout.log_path("squatted")).unwrap();
    assert!(!log.contains("started `"), "nothing was spawned: {log}");
    assert!(log.contains(&format!("not started: {expected}")), "{log}");
    assert!(!sandbox.layout.pid_path("squatted").exists());

    // Once the port is free, the next start runs it.
    drop(holder);
    supervisor.set_desired(desired(&spec, Intent::Run, 2));
    let ready = wait_for(&supervisor, LONG, "ready", |o| {
        o.state == ServerState::Ready
    })
    .await;
    assert!(ready.pid.is_some());
    assert_eq!(ready.last_error, None);
}

#[tokio::test]
async fn a_restarted_run_carries_no_exit_code_of_the_run_before() {
    let sandbox = Sandbox::new();
    // Crashes on its first run only.
    let mut spec = sandbox.spec(
        "second-try",
        &[
            "/bin/sh",
            "-c",
            "if [ -e crashed ]; then exec sleep 60; fi; touch crashed; exit 1",
        ],
    );
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.backoff = DurationSpec::from_millis(100);
    let supervisor = Supervisor::start(&sandbox.layout, "second-try");
    let mut seen = supervisor.subscribe();
    supervisor.set_desired(desired(&spec, Intent::Run, 1));

    let ready = wait_for(&supervisor, LONG, "ready after a restart", |o| {
        o.state == ServerState::Ready && o.restarts == 1
    })
    .await;
    assert_eq!(ready.exit_code, None, "{ready:?}");
    // Every observation of a live process names no exit code.
    let last = seen.borrow_and_update().clone();
    assert!(last.pid.is_none() || last.exit_code.is_none(), "{last:?}");
}

/// Records every state a supervisor publishes from now on.
fn record_states(supervisor: &Supervisor) -> std::sync::Arc<std::sync::Mutex<Vec<ServerState>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut rx = supervisor.subscribe();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let state = rx.borrow_and_update().state;
            log.lock().unwrap().push(state);
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
    seen
}

#[tokio::test]
async fn an_adopted_server_keeps_its_restart_count_and_stays_ready_without_a_flap() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let port_text = port.to_string();
    let script = format!(
        "if [ ! -e crashed ]; then touch crashed; exit 1; fi; exec python3 -c '{}' {port_text}",
        TOGGLING_LISTENER.replace('\'', "\"")
    );
    let mut spec = sandbox.spec("steady", &["/bin/sh", "-c", &script]);
    spec.ports.insert("http".into(), port);
    spec.ready.check = "tcp:http".parse().unwrap();
    spec.restart.mode = RestartMode::OnFailure;
    spec.restart.backoff = DurationSpec::from_millis(100);
    let first = Supervisor::start(&sandbox.layout, "steady");
    first.set_desired(desired(&spec, Intent::Run, 3));
    let before = wait_for(&first, LONG, "ready after one restart", |o| {
        o.state == ServerState::Ready && o.restarts == 1
    })
    .await;
    drop(first);

    let second = Supervisor::start(&sandbox.layout, "steady");
    let seen = record_states(&second);
    let adopted = second.observed();
    assert_eq!(adopted, before, "reported exactly as before the restart");
    second.set_desired(desired(&spec, Intent::Run, 3));
    // Probes pass many times over (every 50 ms) without a change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(second.observed(), before);
    assert_eq!(*seen.lock().unwrap(), [ServerState::Ready], "no flap");

    // A probe that really fails still shows.
    std::fs::write(sandbox.layout.work_dir("steady").join("down"), b"").unwrap();
    let running = wait_for(&second, LONG, "running", |o| {
        o.state == ServerState::Running
    })
    .await;
    assert_eq!(running.restarts, 1);
    assert_eq!(running.pid, before.pid);
}
