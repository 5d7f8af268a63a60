//! `dure cluster export` end to end: a real controller and agent run a
//! cluster of demo apps; its HAProxy backend and nginx upstream are checked
//! by the real tools (`haproxy -c`, `nginx -t`) and then served by them,
//! answering through the exported members; its plugin-cfg.xml is parsed.
//! Bad input exits 2 (format) or 1 (cluster), writing nothing.
//!
//! Needs Debian's `haproxy` and `nginx`: without them the test fails when
//! run as root (CI installs them) and is skipped with a message otherwise.

mod common;

use common::*;
use dure_core::ServerState;
use dure_testkit::ChildProcess;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const HAPROXY: &str = "/usr/sbin/haproxy";
const NGINX: &str = "/usr/sbin/nginx";

/// The tools, or `None` (after saying why) when the test must be skipped.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let missing: Vec<&str> = [HAPROXY, NGINX]
        .into_iter()
        .filter(|tool| !Path::new(tool).exists())
        .collect();
    if missing.is_empty() {
        return Some((HAPROXY.into(), NGINX.into()));
    }
    // /proc/self belongs to the effective user.
    let root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc")) == 0;
    assert!(
        !root,
        "{} not found: install the haproxy and nginx packages (scripts/test.sh does as root)",
        missing.join(", ")
    );
    eprintln!(
        "skipping: {} not found; install the haproxy and nginx packages",
        missing.join(", ")
    );
    None
}

/// Runs a checking tool; panics with its output unless it exits 0.
fn check(tool: &Path, args: &[&str]) {
    let output = std::process::Command::new(tool)
        .args(args)
        .output()
        .expect("the tool runs");
    assert!(
        output.status.success(),
        "`{} {}` refused the exported configuration:\n{}{}",
        tool.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The demo apps answering through a proxy on `port`, over a bounded
/// number of requests (waiting for the proxy to listen first).
async fn answering_through(port: u16) -> BTreeSet<String> {
    eventually("the proxy answers", SETTLE, || async move {
        http_get(port, "/")
            .await
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut names = BTreeSet::new();
    for _ in 0..20 {
        let (status, body) = http_get(port, "/").await.expect("answer");
        assert_eq!(status, 200, "{body}");
        names.insert(body.trim().to_string());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_configurations_pass_the_real_tools_and_serve_the_members() {
    let Some((haproxy, nginx)) = tools() else {
        return;
    };
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let mut ports = Vec::new();
    for name in ["web1", "web2", "web3"] {
        let spec = demo_server(name, "n1");
        ports.push(spec.ports["http"]);
        client.create_server(&spec).await.expect("server created");
    }
    create_cluster(&client, "shop", &["web1", "web2", "web3"]).await;
    let (code, _, err) = cli(
        &sandbox,
        &[
            "cluster",
            "balance",
            "shop",
            "--check",
            "http:/health",
            "--sticky",
            "session",
            "--backup",
            "web3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    create_lb_for(&sandbox, "front", "shop");
    start_green(&client, "shop").await;
    wait_server_state(&client, "web3", ServerState::Ready).await;

    let dir = sandbox.dir().join("export");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = |name: &str| dir.join(name).display().to_string();

    // Bad input: exit 2 for the format, 1 for the cluster; nothing written.
    let (code, _, err) = cli(
        &sandbox,
        &[
            "cluster",
            "export",
            "shop",
            "--format",
            "apache",
            &path("x"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`apache` is not an export format"), "{err}");
    let (code, _, err) = cli(
        &sandbox,
        &[
            "cluster",
            "export",
            "ghost",
            "--format",
            "nginx",
            &path("x"),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cluster `ghost` does not exist"), "{err}");
    assert!(!dir.join("x").exists());

    // HAProxy: the backend in a whole configuration, checked, then served.
    let (code, _, err) = cli(
        &sandbox,
        &[
            "cluster",
            "export",
            "shop",
            "--format",
            "haproxy",
            &path("backend.cfg"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("written to"), "{err}");
    let backend = std::fs::read_to_string(dir.join("backend.cfg")).expect("backend");
    for (name, port) in ["web1", "web2", "web3"].iter().zip(&ports) {
        assert!(
            backend.contains(&format!("server {name} 127.0.0.1:{port} weight 1")),
            "{backend}"
        );
    }
    assert!(backend.contains("backup") && backend.contains("option httpchk GET /health"));
    let haproxy_port = free_port();
    let config = format!(
        "global\n    maxconn 100\n\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\nfrontend front\n    bind 127.0.0.1:{haproxy_port}\n    default_backend shop\n\n{backend}"
    );
    std::fs::write(dir.join("haproxy.cfg"), config).expect("write");
    check(&haproxy, &["-c", "-f", &path("haproxy.cfg")]);
    let mark = sandbox.mark_env();
    let proxy = ChildProcess::spawn(
        &haproxy,
        &["-db", "-f", &path("haproxy.cfg")],
        &[mark],
        &dir.join("haproxy.log"),
    )
    .expect("haproxy starts");
    let names = answering_through(haproxy_port).await;
    assert_eq!(
        names,
        BTreeSet::from(["web1".to_string(), "web2".to_string()]),
        "the primaries answer through HAProxy, the backup does not"
    );
    drop(proxy);

    // nginx: the upstream in a whole nginx.conf, checked, then served.
    let (code, out, err) = cli(
        &sandbox,
        &["cluster", "export", "shop", "--format", "nginx"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("note: active check `http:/health` is not exported"),
        "{err}"
    );
    assert!(out.contains("upstream shop {"), "{out}");
    assert!(
        out.contains(&format!("server 127.0.0.1:{} weight=1", ports[2])) && out.contains("backup;")
    );
    let nginx_port = free_port();
    let prefix = path("nginx");
    std::fs::create_dir_all(&prefix).expect("nginx dir");
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {prefix}/body;\n    proxy_temp_path {prefix}/proxy;\n    fastcgi_temp_path {prefix}/fastcgi;\n    uwsgi_temp_path {prefix}/uwsgi;\n    scgi_temp_path {prefix}/scgi;\n{out}\n    server {{\n        listen 127.0.0.1:{nginx_port};\n        location / {{\n            proxy_pass http://shop;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        }}\n    }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write");
    let nginx_args = [
        "-p",
        prefix.as_str(),
        "-e",
        &format!("{prefix}/error.log"),
        "-c",
        &path("nginx.conf"),
    ];
    check(&nginx, &[&["-t"], &nginx_args[..]].concat());
    let proxy = ChildProcess::spawn(&nginx, &nginx_args, &[mark], &dir.join("nginx.log"))
        .expect("nginx starts");
    let names = answering_through(nginx_port).await;
    assert_eq!(
        names,
        BTreeSet::from(["web1".to_string(), "web2".to_string()]),
        "the primaries answer through nginx, the backup does not"
    );
    drop(proxy);

    // plugin-cfg.xml: well-formed, the members at their ports.
    let (code, _, err) = cli(
        &sandbox,
        &[
            "cluster",
            "export",
            "shop",
            "--format",
            "plugin-cfg",
            &path("plugin-cfg.xml"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let xml = std::fs::read_to_string(dir.join("plugin-cfg.xml")).expect("xml");
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let transports: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Transport"))
        .map(|t| {
            (
                t.attribute("Hostname").unwrap_or_default().to_string(),
                t.attribute("Port").unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ports
        .iter()
        .map(|p| ("127.0.0.1".to_string(), p.to_string()))
        .collect();
    assert_eq!(transports, expected);
    let backups: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("BackupServers"))
        .flat_map(|n| n.children().filter_map(|s| s.attribute("Name")))
        .collect();
    assert_eq!(backups, ["web3"]);
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("Route") && n.attribute("ServerCluster") == Some("shop")),
        "{xml}"
    );
}
