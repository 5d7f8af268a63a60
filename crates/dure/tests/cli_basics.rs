//! Runs the built `dure` binary for what needs no controller: help,
//! completions, usage errors (exit 2), an unreachable controller (exit 3)
//! and the demo app's HTTP answers and graceful stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dure() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dure"));
    // The caller's environment must not steer the tests.
    for var in [
        "DURE_ADDR",
        "DURE_TOKEN",
        "DURE_DATA",
        "DURE_HOME",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(args: &[&str]) -> Output {
    dure().args(args).output().expect("run dure")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn help_lists_roles_and_verbs() {
    let output = run(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for word in [
        "controller",
        "agent",
        "up",
        "demo-app",
        "node",
        "server",
        "cluster",
        "operation",
        "events",
        "completions",
    ] {
        assert!(text.contains(word), "`{word}` missing from help:\n{text}");
    }
    let output = run(&["server", "create", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("--ready"));
}

#[test]
fn completions_print_a_script() {
    let output = run(&["completions", "bash"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("_dure()"), "{text}");
    assert!(text.contains("complete -F"), "{text}");
    assert!(text.contains("cluster"), "{text}");
}

fn assert_usage_error(args: &[&str], expected: &str) {
    let output = run(args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(expected),
        "{args:?}: expected `{expected}` in:\n{err}"
    );
}

#[test]
fn bad_values_are_usage_errors() {
    let create = ["server", "create", "web1", "--node", "n1"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args: Vec<&str> = create.to_vec();
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "/bin/true"]);
        args
    };
    assert_usage_error(
        &with(&["--port", "http=notaport"]),
        "port `http=notaport` is invalid",
    );
    assert_usage_error(&with(&["--port", "9080"]), "write NAME=PORT");
    assert_usage_error(
        &with(&["--ready", "https:/x"]),
        "readiness check `https:/x` is invalid",
    );
    assert_usage_error(
        &with(&["--stop-timeout", "10sec"]),
        "duration `10sec` is invalid",
    );
    assert_usage_error(
        &with(&["--restart", "always"]),
        "restart policy `always` is invalid",
    );
    // A rule across flags, checked by the core before any request.
    assert_usage_error(&with(&["--ready", "http:/health"]), "does not define");
    // `-o` takes a path only where a verb writes files.
    assert_usage_error(
        &["node", "list", "-o", "yaml"],
        "output format `yaml` is invalid",
    );
    assert_usage_error(
        &["export", "-o", "a.toml", "b.toml"],
        "the output path is given twice",
    );
    for workers in ["0", "257", "two"] {
        assert_usage_error(
            &["lb", "run", "--name", "front", "--workers", workers],
            &format!("worker count `{workers}` is invalid: write a whole number from 1 to 256"),
        );
    }
    // clap's own: an unknown subcommand.
    assert_usage_error(&["frobnicate"], "unrecognized subcommand");
}

#[test]
fn agent_without_certificate_or_join_token_is_a_usage_error() {
    let output = dure()
        .args([
            "agent",
            "--node",
            "n1",
            "--controller",
            "http://127.0.0.1:9",
        ])
        .output()
        .expect("run dure");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("dure token create --join --node n1"),
        "{}",
        stderr(&output)
    );
}

/// Returns a loopback port that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[test]
fn unreachable_controller_exits_3() {
    let addr = format!("http://127.0.0.1:{}", closed_port());
    for args in [
        vec!["node", "list"],
        vec!["cluster", "start", "demo"],
        vec!["server", "-o", "json", "list"],
    ] {
        // The connection flags go after the verb group, at any level below it.
        let mut all = args.clone();
        all.extend(["--addr", addr.as_str(), "--token", "t"]);
        let output = run(&all);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains(&format!("cannot reach the controller at {addr}")),
            "{err}"
        );
        assert!(err.contains("DURE_ADDR"), "{err}");
    }
    // Without a token as well: an absent controller is the news, not the token.
    let home = tempfile::tempdir().expect("tempdir");
    let output = dure()
        .args(["node", "--addr", &addr, "list"])
        .env("DURE_HOME", home.path())
        .output()
        .expect("run dure");
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot reach"),
        "{}",
        stderr(&output)
    );
}

/// A spawned demo app, killed on drop if a test fails before it exits.
struct DemoApp {
    child: Child,
    port: u16,
}

impl DemoApp {
    fn spawn(name: &str) -> DemoApp {
        let mut child = dure()
            .args(["demo-app", "--name", name, "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn demo-app");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read banner");
        // "demo-x listening on http://127.0.0.1:PORT (pid N)"
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in banner `{line}`"));
        DemoApp { child, port }
    }

    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    }

    /// Sends SIGTERM to this child only and waits (bounded) for its exit.
    fn terminate(&mut self) -> Option<i32> {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of our own child, which has not been
        // reaped yet, so the pid cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("demo-app did not exit within 10s of SIGTERM");
    }
}

impl Drop for DemoApp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn demo_app_serves_and_stops_on_sigterm() {
    let mut app = DemoApp::spawn("demo-x");
    let root = app.get("/");
    assert!(root.starts_with("HTTP/1.1 200 OK\r\n"), "{root}");
    assert!(root.ends_with("\r\n\r\ndemo-x\n"), "{root}");
    let health = app.get("/health");
    assert!(
        health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("ok\n"),
        "{health}"
    );
    assert!(app.get("/other").starts_with("HTTP/1.1 404 "));
    assert_eq!(app.terminate(), Some(0));
}

#[test]
fn demo_app_refuses_a_taken_port() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let output = run(&["demo-app", "--name", "d", "--port", &port]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("port {port} on 127.0.0.1 is already in use")),
        "{}",
        stderr(&output)
    );
}

/// Runs a role that must exit on its own, killing it if it has not within
/// 20 s; returns its exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = dure()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dure");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err)
                .expect("read stderr");
            return (status.code(), err);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("`dure {}` did not exit within 20s", args.join(" "));
}

#[test]
fn a_controller_that_cannot_bind_creates_nothing() {
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("existing");
    std::fs::create_dir(&empty).expect("mkdir");
    for role in ["controller", "up"] {
        for data in [dir.path().join(format!("new-{role}")), empty.clone()] {
            let data_arg = data.to_str().expect("utf-8 path");
            let (code, err) = run_to_exit(&[role, "--listen", &addr, "--data", data_arg]);
            assert_eq!(code, Some(1), "{role}: {err}");
            assert!(
                err.contains(&format!("cannot listen on {addr}")) && err.contains("already in use"),
                "{role}: {err}"
            );
            if data == empty {
                let left: Vec<_> = std::fs::read_dir(&data).expect("read").collect();
                assert!(left.is_empty(), "{role} wrote into {data:?}: {left:?}");
            } else {
                assert!(!data.exists(), "{role} created {data:?}");
            }
        }
    }
    drop(held);
}

#[test]
fn a_data_directory_that_is_a_file_is_refused_before_binding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    for data in [file.clone(), file.join("below")] {
        let data_arg = data.to_str().expect("utf-8 path");
        let (code, err) =
            run_to_exit(&["controller", "--listen", "127.0.0.1:0", "--data", data_arg]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("is not a directory"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "x");
}
