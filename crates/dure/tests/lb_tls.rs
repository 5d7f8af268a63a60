//! A TLS balancer end to end: `dure lb create --tls-cert/--tls-key`
//! defines it, `dure lb run` serves the cluster's members over HTTPS —
//! HTTP/2 or HTTP/1.1 as ALPN agrees — and serves rotated files to new
//! connections, and it refuses to start on files it cannot serve, naming
//! the listener and the file. Real controller, agent, demo apps and
//! balancer processes on loopback.

mod common;

use common::*;
use dure_testkit::tls::{HttpsClient, TestCert};
use dure_testkit::{eventually, free_port};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";

/// How many requests a check sends on one connection.
const REQUESTS: usize = 10;

/// Starts cluster `shop` of `web1` and `web2` and waits until it is green.
async fn shop(sandbox: &Sandbox) {
    let client = sandbox.client();
    for name in ["web1", "web2"] {
        client
            .create_server(&demo_server(name, "n1"))
            .await
            .expect("server created");
    }
    create_cluster(&client, "shop", &["web1", "web2"]).await;
    start_green(&client, "shop").await;
}

/// Defines balancer `name` on `listen` over TLS with `cert` and `key`.
fn create_tls_lb(sandbox: &Sandbox, name: &str, listen: &str, (cert, key): (&Path, &Path)) {
    let (code, out, err) = cli(
        sandbox,
        &[
            "lb",
            "create",
            name,
            "--listen",
            listen,
            "--tls-cert",
            cert.to_str().expect("utf-8 path"),
            "--tls-key",
            key.to_str().expect("utf-8 path"),
            "--route",
            "shop",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("balancer `{name}` created")), "{out}");
}

/// The members answering `/` over one connection with `client`, when every
/// request of it is answered, with the protocol ALPN agreed.
async fn answering(
    client: &HttpsClient,
    addr: SocketAddr,
) -> Option<(BTreeSet<String>, Option<Vec<u8>>)> {
    let mut connection = client.connect(addr).await.ok()?;
    let mut names = BTreeSet::new();
    for _ in 0..REQUESTS {
        let answer = connection.get("shop.example", "/").await.ok()?;
        if answer.status != 200 {
            return None;
        }
        names.insert(answer.body.trim().to_string());
    }
    Some((names, connection.alpn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_balancer_serves_https_by_alpn_and_rotated_certificates() {
    let sandbox = sandbox(&["n1"]).await;
    shop(&sandbox).await;
    let (first, second) = (TestCert::generate(), TestCert::generate());
    let files = first.write(sandbox.dir(), "front");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    create_tls_lb(&sandbox, "front", &listen, (&files.0, &files.1));
    let (code, out, err) = cli(&sandbox, &["lb", "show", "front"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{listen}  yes")), "{out}");

    let mut lb = spawn_lb(&sandbox, "front", "lb-front.log");
    let log = || std::fs::read_to_string(sandbox.dir().join("lb-front.log")).unwrap_or_default();
    let addr: SocketAddr = listen.parse().expect("a socket address");
    let both = BTreeSet::from(["web1".to_string(), "web2".to_string()]);
    for (alpn, agreed) in [(&[H2, HTTP1][..], H2), (&[HTTP1][..], HTTP1)] {
        let client = HttpsClient::new(&[&first], alpn);
        eventually(
            "the balancer serves both members over HTTPS",
            SETTLE,
            || async {
                let (names, alpn) = answering(&client, addr).await?;
                (names == both && alpn.as_deref() == Some(agreed)).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; balancer log:\n{}", log()));
    }

    // Rotated in place by rename, as certificate tools do: new connections
    // get the new certificate without a new table.
    let client = HttpsClient::new(&[&first, &second], &[H2]);
    let mut open = client.connect(addr).await.expect("a TLS connection");
    let staged = second.write(sandbox.dir(), "staged");
    std::fs::rename(&staged.0, &files.0).expect("rename the certificate");
    std::fs::rename(&staged.1, &files.1).expect("rename the key");
    eventually(
        "new connections get the rotated certificate",
        SETTLE,
        || async {
            let connection = client.connect(addr).await.ok()?;
            (connection.peer_cert == second.der).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; balancer log:\n{}", log()));
    assert_eq!(open.peer_cert, first.der);
    let answer = open
        .get("shop.example", "/")
        .await
        .expect("the open connection keeps working");
    assert_eq!(answer.status, 200);
    lb.terminate(Duration::from_secs(10))
        .await
        .expect("balancer stops on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dure_lb_run_refuses_tls_files_it_cannot_serve_naming_the_listener_and_the_file() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&demo_server("web1", "n1"))
        .await
        .expect("server created");
    create_cluster(&client, "shop", &["web1"]).await;
    let (cert, _) = TestCert::generate().write(sandbox.dir(), "a");
    let (_, other_key) = TestCert::generate().write(sandbox.dir(), "b");
    let listen = format!("127.0.0.1:{}", free_port());
    // A certificate without its key is no TLS listener: refused before
    // anything is sent.
    let (code, _, err) = cli(
        &sandbox,
        &[
            "lb",
            "create",
            "front",
            "--listen",
            &listen,
            "--tls-cert",
            cert.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls-key"), "{err}");
    create_tls_lb(&sandbox, "front", &listen, (&cert, &other_key));

    let mut lb = spawn_lb(&sandbox, "front", "lb-front.log");
    let status = lb
        .wait_exit(SETTLE)
        .await
        .expect("the balancer ends by itself");
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(sandbox.dir().join("lb-front.log")).expect("the log");
    let expected = format!(
        "listener {listen}: the TLS key file `{}` does not match the certificate in `{}`",
        other_key.display(),
        cert.display()
    );
    assert!(log.contains(&expected), "{log}");
}
