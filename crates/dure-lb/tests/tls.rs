//! TLS listeners through real sockets: HTTP/1.1 and HTTP/2 by ALPN, the
//! forwarding headers of HTTPS, refused certificate and key files at start
//! and at replacement, rotation, upgrades over TLS and clients that never
//! finish their handshake.

mod common;

use common::*;
use dure_lb::{Balancer, Settings, Sticky, Table, TlsFiles};
use dure_testkit::eventually;
use dure_testkit::tls::{HttpsClient, TestCert};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";
/// How long a change may take to show.
const WAIT: Duration = Duration::from_secs(10);

/// Returns `table` with its listener served over TLS from `files`.
fn over_tls(mut table: Table, (cert, key): (&Path, &Path)) -> Table {
    table.listeners[0].tls = Some(TlsFiles {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    });
    table
}

/// Starts a balancer and returns it with its listener's bound address.
async fn start_tls(table: Table, settings: Settings) -> (Balancer, SocketAddr) {
    let balancer = Balancer::start(table, settings)
        .await
        .expect("the balancer starts");
    let addr = balancer
        .local_addr(LISTEN)
        .await
        .expect("the listener is bound");
    (balancer, addr)
}

#[tokio::test]
async fn https_is_served_over_http1_and_http2_as_alpn_agrees() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cert = TestCert::generate();
    let (cert_file, key_file) = cert.write(dir.path(), "front");
    let backend = Backend::start("a").await;
    let table = over_tls(one_cluster(vec![backend.member()]), (&cert_file, &key_file));
    let (_balancer, addr) = start_tls(table, settings()).await;

    for (alpn, expected_alpn, version) in [
        (&[HTTP1][..], Some(HTTP1), http::Version::HTTP_11),
        (&[H2, HTTP1][..], Some(H2), http::Version::HTTP_2),
        (&[][..], None, http::Version::HTTP_11),
    ] {
        let client = HttpsClient::new(&[&cert], alpn);
        let mut connection = client.connect(addr).await.expect("a TLS connection");
        assert_eq!(connection.alpn.as_deref(), expected_alpn);
        let answer = connection
            .get("shop.example", "/headers")
            .await
            .expect("an answer");
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.version, version);
        let seen = answer.body;
        assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
        assert!(
            seen.contains("forwarded: for=127.0.0.1;proto=https;host=\"shop.example\"\n"),
            "{seen}"
        );
        assert!(seen.contains("host: shop.example\n"), "{seen}");
        // A second request on the same connection: kept alive either way.
        let again = connection
            .get("shop.example", "/")
            .await
            .expect("a second answer");
        assert_eq!(again.body, "a");
    }
    assert_eq!(backend.served(), 6);
}

#[tokio::test]
async fn a_route_cookie_set_over_tls_is_secure() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cert = TestCert::generate();
    let files = cert.write(dir.path(), "front");
    let backend = Backend::start("a").await;
    let mut table = over_tls(one_cluster(vec![backend.member()]), (&files.0, &files.1));
    table
        .clusters
        .get_mut("web")
        .expect("the web cluster")
        .sticky = Some(Sticky::route_cookie());
    let (_balancer, addr) = start_tls(table, settings()).await;
    let mut connection = HttpsClient::new(&[&cert], &[HTTP1])
        .connect(addr)
        .await
        .expect("a TLS connection");
    let answer = connection.get("x", "/").await.expect("an answer");
    let cookie = answer
        .headers
        .get(http::header::SET_COOKIE)
        .expect("a route cookie")
        .to_str()
        .expect("a text cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

/// Each way a listener's files can be wrong, with what the refusal must
/// name besides the listener.
fn bad_files(
    dir: &Path,
) -> Vec<(
    &'static str,
    (std::path::PathBuf, std::path::PathBuf),
    String,
)> {
    let (cert_a, key_a) = TestCert::generate().write(dir, "a");
    let (_, key_b) = TestCert::generate().write(dir, "b");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").expect("write a garbage file");
    let broken = dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .expect("write a broken PEM file");
    let missing = dir.join("missing.crt");
    let show = |p: &Path| p.display().to_string();
    vec![
        (
            "a missing certificate",
            (missing.clone(), key_a.clone()),
            format!("cannot read the TLS certificate file `{}`", show(&missing)),
        ),
        (
            "a missing key",
            (cert_a.clone(), missing.clone()),
            format!("cannot read the TLS key file `{}`", show(&missing)),
        ),
        (
            "garbage as the certificate",
            (garbage.clone(), key_a.clone()),
            format!(
                "the TLS certificate file `{}` holds no PEM `CERTIFICATE` block",
                show(&garbage)
            ),
        ),
        (
            "garbage as the key",
            (cert_a.clone(), garbage.clone()),
            format!(
                "the TLS key file `{}` holds no PEM private key block",
                show(&garbage)
            ),
        ),
        (
            "a broken PEM block",
            (broken.clone(), key_a.clone()),
            format!(
                "the TLS certificate file `{}` is not valid PEM",
                show(&broken)
            ),
        ),
        (
            "a key that is not the certificate's",
            (cert_a.clone(), key_b.clone()),
            format!(
                "the TLS key file `{}` does not match the certificate in `{}`",
                show(&key_b),
                show(&cert_a)
            ),
        ),
    ]
}

#[tokio::test]
async fn bad_tls_files_stop_the_start_naming_the_listener_and_the_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let backend = Backend::start("a").await;
    for (case, (cert, key), expected) in bad_files(dir.path()) {
        let table = over_tls(one_cluster(vec![backend.member()]), (&cert, &key));
        let error = Balancer::start(table, settings())
            .await
            .expect_err(case)
            .to_string();
        assert!(
            error.starts_with(&format!("listener {LISTEN}: ")),
            "{case}: {error}"
        );
        assert!(error.contains(&expected), "{case}: {error}");
    }
}

#[tokio::test]
async fn bad_tls_files_are_refused_at_replace_and_the_old_table_keeps_serving() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let good = TestCert::generate();
    let files = good.write(dir.path(), "good");
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let (balancer, addr) = start_tls(
        over_tls(one_cluster(vec![old.member()]), (&files.0, &files.1)),
        settings(),
    )
    .await;
    let client = HttpsClient::new(&[&good], &[H2, HTTP1]);
    for (case, (cert, key), expected) in bad_files(dir.path()) {
        // The refused table would also change the members: nothing of it
        // may show.
        let table = over_tls(one_cluster(vec![new.member()]), (&cert, &key));
        let error = balancer.replace(table).await.expect_err(case).to_string();
        assert!(error.contains(&expected), "{case}: {error}");
        let mut connection = client.connect(addr).await.expect("a TLS connection");
        assert_eq!(connection.peer_cert, good.der, "{case}");
        let answer = connection.get("x", "/").await.expect("an answer");
        assert_eq!(answer.body, "old", "{case}");
    }
    assert_eq!(new.served(), 0);
}

#[tokio::test]
async fn rotated_files_serve_new_connections_while_open_ones_keep_working() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (first, second) = (TestCert::generate(), TestCert::generate());
    let files = first.write(dir.path(), "front");
    let backend = Backend::start("a").await;
    let table = over_tls(one_cluster(vec![backend.member()]), (&files.0, &files.1));
    // No reload between replacements here: the replacement reads them.
    let settings = Settings {
        tls_reload_interval: Duration::from_secs(3600),
        ..settings()
    };
    let (balancer, addr) = start_tls(table.clone(), settings).await;
    let client = HttpsClient::new(&[&first, &second], &[H2, HTTP1]);
    let mut open_h2 = client.connect(addr).await.expect("a TLS connection");
    let mut open_h1 = HttpsClient::new(&[&first, &second], &[HTTP1])
        .connect(addr)
        .await
        .expect("a TLS connection");
    assert_eq!(open_h2.peer_cert, first.der);
    assert_eq!(open_h2.get("x", "/").await.expect("an answer").body, "a");
    assert_eq!(open_h1.get("x", "/").await.expect("an answer").body, "a");

    second.write(dir.path(), "front");
    balancer
        .replace(table)
        .await
        .expect("the same table with the new files");

    let mut fresh = client.connect(addr).await.expect("a TLS connection");
    assert_eq!(
        fresh.peer_cert, second.der,
        "new connections get the new certificate"
    );
    assert_eq!(fresh.get("x", "/").await.expect("an answer").body, "a");
    for open in [&mut open_h2, &mut open_h1] {
        assert_eq!(open.peer_cert, first.der);
        let answer = open
            .get("x", "/")
            .await
            .expect("an open connection keeps working");
        assert_eq!(answer.body, "a");
    }
}

/// Returns the certificate a new connection to `addr` is shown.
async fn shown(
    client: &HttpsClient,
    addr: SocketAddr,
) -> rustls::pki_types::CertificateDer<'static> {
    client
        .connect(addr)
        .await
        .expect("a TLS connection")
        .peer_cert
}

#[tokio::test]
async fn rotated_files_are_read_without_a_new_table_and_bad_ones_are_not_served() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (first, second, third) = (
        TestCert::generate(),
        TestCert::generate(),
        TestCert::generate(),
    );
    let files = first.write(dir.path(), "front");
    let backend = Backend::start("a").await;
    let table = over_tls(one_cluster(vec![backend.member()]), (&files.0, &files.1));
    let settings = Settings {
        tls_reload_interval: Duration::from_millis(100),
        ..settings()
    };
    let (_balancer, addr) = start_tls(table, settings).await;
    let client = HttpsClient::new(&[&first, &second, &third], &[H2, HTTP1]);
    let mut open = client.connect(addr).await.expect("a TLS connection");
    assert_eq!(open.peer_cert, first.der);

    // Renamed into place, as certificate tools do.
    let staged = second.write(dir.path(), "staged");
    std::fs::rename(&staged.0, &files.0).expect("rename the certificate");
    std::fs::rename(&staged.1, &files.1).expect("rename the key");
    eventually(
        "new connections get the rotated certificate",
        WAIT,
        || async { (shown(&client, addr).await == second.der).then_some(()) },
    )
    .await
    .expect("the rotated files are served");

    // A key that is not the certificate's: the last good files stay.
    std::fs::write(&files.1, &third.key_pem).expect("rewrite the key");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shown(&client, addr).await, second.der);
    // The matching certificate follows: served.
    std::fs::write(&files.0, &third.cert_pem).expect("rewrite the certificate");
    eventually("new connections get the repaired pair", WAIT, || async {
        (shown(&client, addr).await == third.der).then_some(())
    })
    .await
    .expect("the repaired files are served");
    let answer = open
        .get("x", "/")
        .await
        .expect("the open connection still works");
    assert_eq!(answer.body, "a");
}

#[tokio::test]
async fn a_plain_listener_turns_to_tls_for_new_connections() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cert = TestCert::generate();
    let files = cert.write(dir.path(), "front");
    let backend = Backend::start("a").await;
    let (balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address");
    let plain = client();
    assert_eq!(
        plain
            .get(format!("{url}/"))
            .send()
            .await
            .expect("an answer")
            .text()
            .await
            .expect("a body"),
        "a"
    );
    balancer
        .replace(over_tls(
            one_cluster(vec![backend.member()]),
            (&files.0, &files.1),
        ))
        .await
        .expect("the listener turns to TLS");
    let mut connection = HttpsClient::new(&[&cert], &[H2])
        .connect(addr)
        .await
        .expect("a TLS connection on the same port");
    assert_eq!(connection.get("x", "/").await.expect("an answer").body, "a");
    let answer = raw_exchange(
        &url,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        !answer.contains("200 OK"),
        "plain HTTP is no longer served: {answer:?}"
    );
}

#[tokio::test]
async fn an_upgraded_connection_is_tunnelled_over_tls() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cert = TestCert::generate();
    let files = cert.write(dir.path(), "front");
    let backend = Backend::start("a").await;
    let table = over_tls(one_cluster(vec![backend.member()]), (&files.0, &files.1));
    let (_balancer, addr) = start_tls(table, settings()).await;
    let mut stream = HttpsClient::new(&[&cert], &[HTTP1])
        .handshake(addr)
        .await
        .expect("a TLS connection");
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("send the handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                stream.read(&mut byte).await.expect("read the answer"),
                1,
                "closed before the head ended"
            );
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_head)
        .await
        .expect("the 101 arrives");
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    stream
        .write_all(b"ping")
        .await
        .expect("send through the tunnel");
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
        .await
        .expect("the echo arrives")
        .expect("read the echo");
    assert_eq!(&echoed, b"ping");
}

#[tokio::test]
async fn clients_that_never_handshake_stall_no_one_and_are_closed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cert = TestCert::generate();
    let files = cert.write(dir.path(), "front");
    let backend = Backend::start("a").await;
    let table = over_tls(one_cluster(vec![backend.member()]), (&files.0, &files.1));
    // Long enough that handshakes awaited one after the other in the
    // accept loop would keep the good clients past their own timeout.
    let settings = Settings {
        tls_handshake_timeout: Duration::from_secs(3),
        ..settings()
    };
    let (_balancer, addr) = start_tls(table, settings).await;
    // Silent ones, and one that stops half way through its hello.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(
            tokio::net::TcpStream::connect(addr)
                .await
                .expect("connect to the balancer"),
        );
    }
    let mut partial = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the balancer");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("send the start of a hello");
    silent.push(partial);

    let client = HttpsClient::new(&[&cert], &[H2, HTTP1]);
    for _ in 0..3 {
        let mut connection = client.connect(addr).await.expect("a TLS connection");
        assert_eq!(connection.get("x", "/").await.expect("an answer").body, "a");
    }
    for mut stream in silent {
        let mut rest = Vec::new();
        // Closed or reset: either way the balancer let go of it.
        let _closed_or_reset =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
                .await
                .expect("a client that does not finish its handshake is closed");
    }
}
