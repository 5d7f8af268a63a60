//! Application deploy end to end: three members that serve their
//! application directory over HTTP (`python3 -m http.server`) behind
//! `dure lb run`. `dure app deploy` uploads a directory, every member
//! serves the new content, a rolling deploy and a rollback under a bounded
//! load through the balancer fail no request, and history lists every
//! version; housekeeping keeps the newest `--app-versions-kept` and
//! deletes the artifacts of the others. An artifact whose stored copy was
//! corrupted fails its checksum on the first member's agent: the rollout
//! stops there, says which member and why (operation, event, exit code 1),
//! and every member keeps serving the version it had. A member that does
//! not come back ready on the new version puts its whole batch back on the
//! old version, started, each step saying where its member is. Bad input
//! is refused with nothing changed. Last, a WAR deployed into a real
//! Tomcat 10 (Dure's template, Debian's `tomcat10-user`) is served, and a
//! second one replaces it.
//!
//! Skipped (with a message on stderr) where `python3` (or, for the last,
//! Tomcat) is not installed.

mod common;

use common::load::Load;
use common::tomcat::{find_on_path, small_tomcat_args, tomcat_installed};
use common::*;
use dure_api::{AppVersionView, Client, EventQuery, OperationStatus, StepStatus};
use dure_core::{DurationSpec, ServerSpec, ServerState};
use dure_testkit::SandboxOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MEMBERS: [&str; 3] = ["web1", "web2", "web3"];
const PAGE: &str = "/shop/index.html";

/// A member serving `<sandbox>/apps/<name>` on a free port, its
/// application directory.
fn file_server(sandbox: &Sandbox, python: &Path, name: &str) -> (ServerSpec, u16) {
    let app_dir = sandbox.dir().join("apps").join(name);
    std::fs::create_dir_all(&app_dir).expect("application directory");
    let port = free_port();
    let argv = vec![
        python.display().to_string(),
        "-m".into(),
        "http.server".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--directory".into(),
        app_dir.display().to_string(),
    ];
    let mut spec = command_server(name, "n1", port, argv).with_ready("http:/");
    spec.app_dir = Some(app_dir);
    spec.stop.timeout = DurationSpec::from_millis(2000);
    (spec, port)
}

/// An application directory whose page says `text`.
fn site(sandbox: &Sandbox, name: &str, text: &str) -> PathBuf {
    let dir = sandbox.dir().join("sites").join(name);
    std::fs::create_dir_all(dir.join("img")).expect("site");
    std::fs::write(dir.join("index.html"), text).expect("page");
    std::fs::write(dir.join("img/logo.txt"), "logo").expect("nested file");
    dir
}

/// The page each member serves itself.
async fn pages(ports: &[u16]) -> Vec<Option<String>> {
    let mut pages = Vec::new();
    for port in ports {
        pages.push(
            http_get(*port, PAGE)
                .await
                .filter(|(status, _)| *status == 200)
                .map(|(_, body)| body),
        );
    }
    pages
}

/// Members web1..3 in cluster `shop`, green.
async fn shop(sandbox: &Sandbox, python: &Path) -> Vec<u16> {
    let client = sandbox.client();
    let mut ports = Vec::new();
    for name in MEMBERS {
        let (spec, port) = file_server(sandbox, python, name);
        client.create_server(&spec).await.expect("server created");
        ports.push(port);
    }
    create_cluster(&client, "shop", &MEMBERS).await;
    start_green(&client, "shop").await;
    ports
}

fn history(sandbox: &Sandbox) -> Vec<AppVersionView> {
    let (code, out, err) = cli(sandbox, &["app", "history", "shop", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("history json")
}

fn deploy_args<'a>(site: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["app", "deploy", "shop", "--war", site, "--context", "/shop"];
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_and_a_rollback_under_load_fail_no_request() {
    let Some(python) = find_on_path("python3") else {
        eprintln!("skipping: python3 not found");
        return;
    };
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let ports = shop(&sandbox, &python).await;
    let (code, _, err) = cli(
        &sandbox,
        &[
            "cluster",
            "balance",
            "shop",
            "--check",
            "http:/",
            "--interval",
            "250ms",
            "--rise",
            "1",
            "--fall",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");

    // Every member at once.
    let v1 = site(&sandbox, "v1", "version 1");
    let v1 = v1.to_str().expect("utf-8");
    let (code, out, err) = cli(&sandbox, &deploy_args(v1, &[]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deploying `/shop` version 1"), "{out}");
    let all = |text: &str| vec![Some(text.to_string()); MEMBERS.len()];
    assert_eq!(pages(&ports).await, all("version 1"));
    let logo = http_get(ports[0], "/shop/img/logo.txt").await;
    assert_eq!(logo, Some((200, "logo".to_string())), "nested files too");

    let lb_port = create_lb_for(&sandbox, "front", "shop");
    let _lb = spawn_lb(&sandbox, "front", "lb.log");
    eventually("the balancer serves every member", SETTLE, || async {
        let stats = client.lb_stats("front").await.ok()?;
        let page = http_get(lb_port, PAGE).await?;
        (stats.members.len() == MEMBERS.len() && page.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Rolling, under load: no request fails, each sees one version or the
    // other.
    let v2 = site(&sandbox, "v2", "version 2");
    let v2 = v2.to_str().expect("utf-8");
    for (label, args, expect) in [
        ("deploy", deploy_args(v2, &["--rolling"]), "version 2"),
        (
            "rollback",
            vec!["app", "rollback", "shop", "--to", "1", "--rolling"],
            "version 1",
        ),
    ] {
        let load = Load::start(lb_port, PAGE, 4, false);
        let url = sandbox.url();
        let token = sandbox.token().to_string();
        let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = owned.iter().map(String::as_str).collect();
            cli_at(&url, &token, &args)
        })
        .await
        .expect("cli");
        let sent = load.finish().await;
        assert_eq!(code, 0, "{label}: {out}{err}");
        let failed: Vec<_> = sent.iter().filter(|s| s.status != Some(200)).collect();
        if !failed.is_empty() {
            let lb_log = std::fs::read_to_string(sandbox.dir().join("lb.log")).unwrap_or_default();
            let start = lb_log.char_indices().rev().nth(4000).map_or(0, |(i, _)| i);
            let tail = &lb_log[start..];
            panic!(
                "{label}: {} of {} requests failed, the first: {:?}; the balancer's log ends:\n{tail}",
                failed.len(),
                sent.len(),
                failed.first()
            );
        }
        assert!(
            sent.len() >= 20,
            "{label}: the load ran: {} requests",
            sent.len()
        );
        let seen: std::collections::BTreeSet<_> =
            sent.iter().filter_map(|s| s.body.as_deref()).collect();
        assert!(
            seen.iter().all(|b| *b == "version 1" || *b == "version 2"),
            "{label}: {seen:?}"
        );
        assert_eq!(pages(&ports).await, all(expect), "{label}");
    }

    let history = history(&sandbox);
    let versions: Vec<(u64, Option<u64>, Option<OperationStatus>)> = history
        .iter()
        .map(|v| (v.record.version, v.record.rollback_of, v.status))
        .collect();
    let ok = Some(OperationStatus::Succeeded);
    assert_eq!(versions, [(3, Some(1), ok), (2, None, ok), (1, None, ok)]);
    assert_eq!(history[0].record.digest, history[2].record.digest);
    let (code, out, err) = cli(&sandbox, &["app", "list", "shop"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/shop") && out.contains("3/3"), "{out}");
    // The version before is kept beside the application for the rollback.
    let previous = sandbox
        .dir()
        .join("apps/web1/.dure/previous/shop/shop/index.html");
    assert_eq!(
        std::fs::read_to_string(previous).expect("previous copy"),
        "version 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_failing_its_checksum_stops_the_rollout_at_its_member() {
    let Some(python) = find_on_path("python3") else {
        eprintln!("skipping: python3 not found");
        return;
    };
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let ports = shop(&sandbox, &python).await;
    let v1 = site(&sandbox, "v1", "version 1");
    let (code, out, err) = cli(&sandbox, &deploy_args(v1.to_str().expect("utf-8"), &[]));
    assert_eq!(code, 0, "{out}{err}");

    // The stored copy of version 2 is damaged after it was uploaded; the
    // deploy uploads the same bytes, which the store already has.
    let v2 = sandbox.dir().join("v2.war");
    std::fs::write(&v2, b"PK\x03\x04 a war of version 2").expect("war");
    let stored = client.upload_artifact(&v2).await.expect("uploaded");
    let stored_path = sandbox
        .controller_data()
        .join("artifacts/sha256")
        .join(&stored.digest);
    let mut bytes = std::fs::read(&stored_path).expect("stored");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored_path, bytes).expect("damaged");

    let v2 = v2.to_str().expect("utf-8");
    let (code, out, err) = cli(&sandbox, &deploy_args(v2, &["--rolling"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("member `web1` failed") && err.contains("failed its checksum"),
        "{err}"
    );
    let op = client
        .list_operations(&Default::default())
        .await
        .expect("operations")
        .into_iter()
        .next()
        .expect("the deploy");
    assert_eq!(op.status, OperationStatus::Failed);
    let steps: Vec<(&str, StepStatus)> = op
        .steps
        .iter()
        .map(|s| (s.server.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [
            ("web1", StepStatus::Failed),
            ("web2", StepStatus::Skipped),
            ("web3", StepStatus::Skipped)
        ]
    );
    let events = client
        .events(&EventQuery {
            subject: Some("server/web1".into()),
            ..EventQuery::default()
        })
        .await
        .expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "app" && e.message.contains("failed its checksum")),
        "{events:?}"
    );
    // Nothing was taken out: every member serves version 1, none has a
    // WAR, and web1 says why it has no version 2.
    assert_eq!(pages(&ports).await, vec![Some("version 1".to_string()); 3]);
    for member in MEMBERS {
        assert!(!sandbox
            .dir()
            .join(format!("apps/{member}/shop.war"))
            .exists());
    }
    let (code, out, err) = cli(&sandbox, &["app", "show", "shop"]);
    assert_eq!(code, 0, "{err}");
    // The version is failed and every member, web1 too (its install put
    // back on version 1), has version 1 and nothing staged.
    assert!(
        out.contains("version 2 (") && out.contains("failed)"),
        "{out}"
    );
    for member in MEMBERS {
        assert!(
            out.contains(&format!("{member}    n1    1          -       -")),
            "{out}"
        );
    }
    let history = history(&sandbox);
    assert_eq!(history[0].status, Some(OperationStatus::Failed));
}

/// The steps of the newest operation: member, status, message.
async fn newest_steps(client: &Client) -> (OperationStatus, Vec<(String, StepStatus, String)>) {
    let op = client
        .list_operations(&Default::default())
        .await
        .expect("operations")
        .into_iter()
        .next()
        .expect("an operation");
    let steps = op
        .steps
        .iter()
        .map(|s| {
            (
                s.server.clone(),
                s.status,
                s.message.clone().unwrap_or_default(),
            )
        })
        .collect();
    (op.status, steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_failing_in_its_batch_puts_the_batch_back_on_the_old_version_started() {
    let Some(python) = find_on_path("python3") else {
        eprintln!("skipping: python3 not found");
        return;
    };
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    // web2 is ready only while its application has `ready.txt`: version 2
    // has none, so web2 does not come back ready on it.
    let mut ports = Vec::new();
    for name in MEMBERS {
        let (mut spec, port) = file_server(&sandbox, &python, name);
        if name == "web2" {
            spec = spec.with_ready("http:/shop/ready.txt");
            spec.ready.start_timeout = DurationSpec::from_millis(3000);
            let app = sandbox.dir().join("apps/web2/shop");
            std::fs::create_dir_all(&app).expect("app");
            std::fs::write(app.join("ready.txt"), "ok").expect("ready file");
        }
        client.create_server(&spec).await.expect("server created");
        ports.push(port);
    }
    create_cluster(&client, "shop", &MEMBERS).await;
    start_green(&client, "shop").await;
    let v1 = site(&sandbox, "v1", "version 1");
    std::fs::write(v1.join("ready.txt"), "ok").expect("ready file");
    let (code, out, err) = cli(&sandbox, &deploy_args(v1.to_str().expect("utf-8"), &[]));
    assert_eq!(code, 0, "{out}{err}");

    let v2 = site(&sandbox, "v2", "version 2");
    let v2 = v2.to_str().expect("utf-8");
    let (code, out, err) = cli(&sandbox, &deploy_args(v2, &["--rolling", "--batch", "2"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("member `web2` failed"), "{err}");
    let (status, steps) = newest_steps(&client).await;
    assert_eq!(status, OperationStatus::Failed);
    let states: Vec<(&str, StepStatus)> = steps
        .iter()
        .map(|(server, status, _)| (server.as_str(), *status))
        .collect();
    assert_eq!(
        states,
        [
            ("web1", StepStatus::Skipped),
            ("web2", StepStatus::Failed),
            ("web3", StepStatus::Skipped)
        ],
        "{steps:?}"
    );
    // The batch (web1, web2) was put back on version 1 and started; each
    // step says so, and web3 was never touched.
    for (server, _, message) in &steps[..2] {
        assert!(
            message.ends_with("now on version 1, ready"),
            "{server}: {message}"
        );
    }
    assert!(
        steps[0].2.contains("member `web2` of its batch failed"),
        "{steps:?}"
    );
    assert!(steps[1].2.contains("not ready"), "{steps:?}");
    assert!(
        steps[2].2.contains("left on the version it had"),
        "{steps:?}"
    );
    assert_eq!(pages(&ports).await, vec![Some("version 1".to_string()); 3]);
    for member in MEMBERS {
        assert_eq!(
            client
                .get_server(member)
                .await
                .expect("server")
                .observed
                .state,
            ServerState::Ready,
            "{member}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_keeps_the_newest_versions_and_deletes_the_artifacts_of_the_others() {
    let Some(python) = find_on_path("python3") else {
        eprintln!("skipping: python3 not found");
        return;
    };
    let options = SandboxOptions {
        controller_args: vec![
            "--app-versions-kept".into(),
            "1".into(),
            "--housekeeping-interval".into(),
            "200ms".into(),
        ],
        ..SandboxOptions::default()
    };
    let mut sandbox = Sandbox::start_with(BIN, options).await.expect("controller");
    sandbox.add_agent("n1").await.expect("agent");
    let client = sandbox.client();
    let (spec, port) = file_server(&sandbox, &python, "web1");
    client.create_server(&spec).await.expect("web1");
    create_cluster(&client, "shop", &["web1"]).await;
    start_green(&client, "shop").await;
    for version in 1..=3 {
        let text = format!("version {version}");
        let dir = site(&sandbox, &format!("v{version}"), &text);
        let (code, out, err) = cli(&sandbox, &deploy_args(dir.to_str().expect("utf-8"), &[]));
        assert_eq!(code, 0, "{out}{err}");
    }
    let stored = || {
        std::fs::read_dir(sandbox.controller_data().join("artifacts/sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    eventually("versions 1 and 2 are trimmed", SETTLE, || async {
        let versions: Vec<u64> = history(&sandbox).iter().map(|v| v.record.version).collect();
        (versions == [3] && stored() == 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}, {} artifacts", history(&sandbox), stored()));
    // The current version is served and kept; a trimmed one is gone.
    assert_eq!(pages(&[port]).await, vec![Some("version 3".to_string())]);
    let (code, _, err) = cli(&sandbox, &["app", "rollback", "shop", "--to", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no application version 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_refused_and_change_nothing() {
    let Some(python) = find_on_path("python3") else {
        eprintln!("skipping: python3 not found");
        return;
    };
    let options = SandboxOptions {
        controller_args: vec!["--artifact-max-bytes".into(), "65536".into()],
        ..SandboxOptions::default()
    };
    let mut sandbox = Sandbox::start_with(BIN, options).await.expect("controller");
    sandbox.add_agent("n1").await.expect("agent");
    let client = sandbox.client();
    let (spec, _) = file_server(&sandbox, &python, "web1");
    client.create_server(&spec).await.expect("web1");
    let mut bare = spec.clone();
    bare.name = "web2".into();
    bare.app_dir = None;
    bare.ports.insert("http".into(), free_port());
    client.create_server(&bare).await.expect("web2");
    create_cluster(&client, "shop", &["web1"]).await;
    create_cluster(&client, "bare", &["web2"]).await;
    let small = site(&sandbox, "small", "hello");
    let small = small.to_str().expect("utf-8");
    let big = sandbox.dir().join("big.war");
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.resize(100_000, b'x');
    std::fs::write(&big, bytes).expect("big");
    let not_war = sandbox.dir().join("page.war");
    std::fs::write(&not_war, "<html>").expect("not a war");
    let missing = sandbox.dir().join("missing.war");

    for (args, exit, says) in [
        (
            vec![
                "app",
                "deploy",
                "shop",
                "--war",
                missing.to_str().expect("utf-8"),
            ],
            2,
            "cannot read",
        ),
        (
            vec![
                "app",
                "deploy",
                "shop",
                "--war",
                not_war.to_str().expect("utf-8"),
            ],
            2,
            "is not a WAR file",
        ),
        (
            vec!["app", "deploy", "shop", "--war", small, "--context", "shop"],
            2,
            "must start with `/`",
        ),
        (
            vec!["app", "deploy", "ghost", "--war", small, "--context", "/a"],
            1,
            "cluster `ghost` does not exist",
        ),
        (
            vec!["app", "deploy", "bare", "--war", small, "--context", "/a"],
            2,
            "server `web2` of cluster `bare` has no application directory",
        ),
        (
            vec![
                "app",
                "deploy",
                "shop",
                "--war",
                big.to_str().expect("utf-8"),
                "--context",
                "/a",
            ],
            2,
            "larger than 65536 bytes",
        ),
        (
            vec!["app", "rollback", "shop", "--to", "7"],
            1,
            "no application version 7",
        ),
    ] {
        let (code, out, err) = cli(&sandbox, &args);
        assert_eq!(code, exit, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    client
        .delete_server("web2", false)
        .await
        .expect_err("still a member: the cluster is untouched");
    let (code, out, err) = cli(&sandbox, &["app", "history", "shop", "-o", "json"]);
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");
    assert!(client
        .list_operations(&Default::default())
        .await
        .expect("operations")
        .is_empty());
    // The oversized upload left nothing; the small one was refused after
    // its upload (no application directory) and stays stored,
    // content-addressed, for the next try.
    let stored: Vec<_> = std::fs::read_dir(sandbox.controller_data().join("artifacts/sha256"))
        .expect("artifact store")
        .flatten()
        .map(|e| std::fs::metadata(e.path()).expect("meta").len())
        .collect();
    assert!(stored.iter().all(|len| *len < 65536), "{stored:?}");
    let tmp = sandbox.controller_data().join("artifacts/tmp");
    assert_eq!(std::fs::read_dir(tmp).expect("tmp").count(), 0);
}

/// A WAR of one page saying `text`, written with Python's zipfile.
fn war(python: &Path, path: &Path, text: &str) {
    let script = "import sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1], 'w') as war:\n    \
                  war.writestr('index.html', sys.argv[2])\n    \
                  war.writestr('WEB-INF/web.xml', '<web-app xmlns=\"https://jakarta.ee/xml/ns/jakartaee\" version=\"5.0\"/>')\n";
    let status = std::process::Command::new(python)
        .args(["-c", script, path.to_str().expect("utf-8"), text])
        .status()
        .expect("python runs");
    assert!(status.success(), "the WAR is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_war_deploys_into_a_real_tomcat_and_replaces_the_version_before() {
    let Some(python) = find_on_path("python3") else {
        eprintln!("skipping: python3 not found");
        return;
    };
    if !tomcat_installed() {
        return;
    }
    // A JVM start on two busy cores can be slow.
    let jvm = Duration::from_secs(180);
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let (http, shutdown) = (free_port(), free_port());
    let args = small_tomcat_args("t1", http, shutdown, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = cli(&sandbox, &args);
    assert_eq!(code, 0, "{err}");
    create_cluster(&client, "shop", &["t1"]).await;
    let page = |text: &'static str| async move {
        eventually(&format!("tomcat serves `{text}`"), jvm, || async {
            http_get(http, PAGE)
                .await
                .filter(|(status, body)| *status == 200 && body == text)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };

    // The cluster is stopped: the deploy installs, then starts it.
    let v1 = sandbox.dir().join("shop.war");
    war(&python, &v1, "tomcat version 1");
    let (code, out, err) = cli(
        &sandbox,
        &[
            "app",
            "deploy",
            "shop",
            "--war",
            v1.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deploying `/shop` version 1"), "{out}");
    page("tomcat version 1").await;

    let v2 = sandbox.dir().join("v2").join("shop.war");
    std::fs::create_dir_all(v2.parent().expect("dir")).expect("dir");
    war(&python, &v2, "tomcat version 2");
    let (code, out, err) = cli(
        &sandbox,
        &[
            "app",
            "deploy",
            "shop",
            "--war",
            v2.to_str().expect("utf-8"),
            "--rolling",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    page("tomcat version 2").await;
    let webapps = sandbox.agent_data("n1").join("servers/t1/instance/webapps");
    assert!(webapps.join("shop.war").is_file());
    assert!(webapps.join(".dure/previous/shop/shop.war").is_file());
    // Tomcat leaves the agent's own directory alone.
    assert_eq!(http_get(http, "/.dure/").await.map(|(s, _)| s), Some(404));
    let op = client
        .cluster_operation("shop", dure_api::OperationKind::Kill, &Default::default())
        .await
        .expect("kill");
    wait_operation(&client, &op.id).await;
}
