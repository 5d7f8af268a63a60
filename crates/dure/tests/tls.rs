//! The API over TLS through the real binary: a client or an agent with
//! the wrong CA, none, or an unusable CA file is refused in one sentence
//! saying what to check; plain HTTP is refused off loopback before
//! anything is written; an operator's own CA, or own server certificate,
//! is served and verified.

mod common;

use common::*;
use dure_testkit::tls::TestCa;
use dure_testkit::ChildProcess;
use std::path::Path;

/// `dure ARGS` with only the `env` given of the `DURE_` variables, in `cwd`.
fn dure(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = dure_isolated(Some(cwd), args, env);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_missing_or_bad_ca_is_refused_saying_what_to_check() {
    let sandbox = sandbox(&[]).await;
    assert!(sandbox.url().starts_with("https://"), "{}", sandbox.url());
    let url = sandbox.url();
    let token = sandbox.token().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let (other, _) = TestCa::generate().write(dir.path(), "other-ca");
    let other = other.to_str().expect("utf-8");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let garbage = garbage.to_str().expect("utf-8");
    let ca = sandbox.ca_file();
    let ca = ca.to_str().expect("utf-8");
    let base = [("DURE_ADDR", url.as_str()), ("DURE_TOKEN", token.as_str())];
    fn with<'a>(base: &[(&'a str, &'a str)], extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
        let mut env = base.to_vec();
        env.push(extra);
        env
    }

    let (code, _, err) = dure(dir.path(), &["node", "list"], &with(&base, ("DURE_CA", ca)));
    assert_eq!(code, 0, "the domain CA verifies the controller: {err}");

    let (code, _, err) = dure(
        dir.path(),
        &["node", "list"],
        &with(&base, ("DURE_CA", other)),
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect securely to the controller at {url}: the server's certificate is not signed by the CA in {other}"
        )),
        "{err}"
    );
    assert!(err.contains("--ca FILE or DURE_CA"), "{err}");
    assert!(
        !err.contains("UnknownIssuer") && !err.contains("error sending request"),
        "no transport dump: {err}"
    );

    // No CA anywhere: not given, and no ca.pem in ./.dure.
    let (code, _, err) = dure(dir.path(), &["node", "list"], &base);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no CA (none was given)"), "{err}");

    let (code, _, err) = dure(dir.path(), &["node", "list", "--ca", garbage], &base);
    assert_eq!(code, 2, "an unusable CA file is a usage error: {err}");
    assert!(
        err.contains(&format!(
            "the CA file {garbage} holds no PEM `CERTIFICATE` block"
        )),
        "{err}"
    );

    // An agent given the wrong CA says so in its log and never registers.
    let data = sandbox.dir().join("untrusting-agent");
    let data = data.to_str().expect("utf-8");
    let log = sandbox.dir().join("untrusting-agent.log");
    let _agent = ChildProcess::spawn(
        sandbox.bin(),
        &[
            "agent",
            "--node",
            "n9",
            "--controller",
            &url,
            "--ca",
            other,
            "--data",
            data,
        ],
        &[("DURE_TOKEN", sandbox.token()), sandbox.mark_env()],
        &log,
    )
    .expect("agent spawns");
    eventually(
        "the agent says it cannot trust the controller",
        SETTLE,
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            (text.contains("cannot trust the controller")
                && text.contains(&format!("is not signed by the CA in {other}")))
            .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    let nodes = sandbox.client().list_nodes().await.expect("nodes");
    assert!(nodes.iter().all(|n| n.spec.name != "n9"), "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_only_served_on_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("exposed");
    let data_text = data.to_str().expect("utf-8");
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (code, _, err) = dure(
            dir.path(),
            &[
                "controller",
                "--insecure-http",
                "--listen",
                listen,
                "--data",
                data_text,
            ],
            &[],
        );
        assert_eq!(code, 2, "{listen}: {err}");
        assert!(
            err.contains("plain HTTP (--insecure-http) is only allowed on a loopback address"),
            "{listen}: {err}"
        );
        assert!(!data.exists(), "nothing is written: {}", data.display());
    }

    let data = dir.path().join("local");
    let data_text = data.to_str().expect("utf-8");
    let (_controller, addr) = start_controller_process(
        dir.path(),
        &data,
        &[
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data_text,
        ],
        &[],
    )
    .await;
    assert!(
        !data.join(dure_api::CA_FILE).exists(),
        "no CA for a plain controller"
    );
    let token = std::fs::read_to_string(data.join("admin.token")).expect("token");
    let (code, out, err) = cli_at(&format!("http://{addr}"), token.trim(), &["node", "list"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Starts a controller on `data` (in `dir`) with the TLS flags `tls`
/// and checks that a verb trusting `ca` reaches it.
async fn serve_and_reach(dir: &Path, data: &Path, tls: &[&str], ca: &str) -> ChildProcess {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(tls);
    let (controller, addr) = start_controller_process(dir, data, &args, &[]).await;
    let token = std::fs::read_to_string(data.join("admin.token")).expect("token");
    let url = format!("https://{addr}");
    let env = [
        ("DURE_ADDR", url.as_str()),
        ("DURE_TOKEN", token.trim()),
        ("DURE_CA", ca),
    ];
    let (code, _, err) = dure(dir, &["node", "list"], &env);
    assert_eq!(code, 0, "{tls:?}: {err}");
    controller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_own_ca_or_server_certificate_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::generate();
    let (ca_cert, ca_key) = ca.write(dir.path(), "corp-ca");
    let (ca_cert, ca_key) = (
        ca_cert.to_str().expect("utf-8"),
        ca_key.to_str().expect("utf-8"),
    );

    // The operator's CA issues the controller's certificate.
    let data = dir.path().join("own-ca");
    let _first = serve_and_reach(
        dir.path(),
        &data,
        &["--tls-ca-cert", ca_cert, "--tls-ca-key", ca_key],
        ca_cert,
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(data.join(dure_api::CA_FILE)).expect("ca.pem"),
        ca.cert_pem,
        "the data directory's ca.pem is the operator's CA"
    );

    // The operator's own server certificate, under the operator's CA.
    let (cert, key) = ca
        .issue(&["127.0.0.1", "localhost"])
        .write(dir.path(), "server");
    let cert = cert.to_str().expect("utf-8");
    let key = key.to_str().expect("utf-8");
    let _second = serve_and_reach(
        dir.path(),
        &dir.path().join("own-cert"),
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--tls-ca-cert",
            ca_cert,
        ],
        ca_cert,
    )
    .await;

    // A server certificate without saying which CA clients trust.
    let (code, _, err) = dure(
        dir.path(),
        &[
            "controller",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().join("unsure").to_str().expect("utf-8"),
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls-ca-cert FILE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_https_port_is_told_to_use_https() {
    use std::io::{Read, Write};
    let sandbox = sandbox(&[]).await;
    let url = sandbox.url();
    let authority = url.trim_start_matches("https://").trim_end_matches('/');

    // A raw HTTP request gets a plain answer, not a dropped connection.
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nhost: controller\r\n\r\n")
        .expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("use https://"), "{answer}");

    // The CLI given an http:// address says the same.
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = format!("http://{authority}");
    let (code, _, err) = dure(
        dir.path(),
        &["node", "list"],
        &[
            ("DURE_ADDR", plain.as_str()),
            ("DURE_TOKEN", sandbox.token()),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("use https://"), "{err}");

    // HTTPS on the same port is served as before.
    sandbox
        .client()
        .list_nodes()
        .await
        .expect("served over TLS");
}
