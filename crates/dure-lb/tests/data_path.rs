//! The data path through real sockets: routing, forwarding headers,
//! streaming, upgrades, request limits and live table replacement.

mod common;

use bytes::Bytes;
use common::*;
use dure_lb::{ClusterSpec, ListenerSpec, RouteSpec};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[tokio::test]
async fn one_member_connection_carries_a_client_connection_s_requests() {
    let web = Backend::start("web").await;
    let (_balancer, url) = start(one_cluster(vec![web.member()]), settings()).await;
    let client = client();
    for _ in 0..20 {
        let response = client.get(format!("{url}/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "web");
    }
    assert_eq!(web.served(), 20);
    assert_eq!(
        web.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a response read whole gives its connection back for the next request"
    );
}

#[tokio::test]
async fn requests_are_routed_by_host_and_longest_path_prefix() {
    let (shop, api, other) = (
        Backend::start("shop").await,
        Backend::start("api").await,
        Backend::start("other").await,
    );
    let mut table = one_cluster(vec![other.member()]);
    table.clusters.insert(
        "shop".into(),
        ClusterSpec {
            members: vec![shop.member()],
            ..Default::default()
        },
    );
    table.clusters.insert(
        "api".into(),
        ClusterSpec {
            members: vec![api.member()],
            ..Default::default()
        },
    );
    table.listeners[0].routes = vec![
        RouteSpec {
            host: Some("shop.example".into()),
            path_prefix: "/".into(),
            cluster: "shop".into(),
        },
        RouteSpec {
            host: Some("shop.example".into()),
            path_prefix: "/api".into(),
            cluster: "api".into(),
        },
        RouteSpec {
            host: Some("only.example".into()),
            path_prefix: "/app".into(),
            cluster: "shop".into(),
        },
        RouteSpec::to_cluster("web"),
    ];
    let (_balancer, url) = start(table, settings()).await;
    let client = client();
    let get = |host: &'static str, path: &'static str| {
        let request = client.get(format!("{url}{path}")).header("host", host);
        async move {
            let response = request.send().await.expect("the balancer answers");
            (
                response.status().as_u16(),
                response.text().await.expect("a body"),
            )
        }
    };
    assert_eq!(
        get("SHOP.example:80", "/cart").await,
        (200, "shop".to_string())
    );
    assert_eq!(
        get("shop.example", "/api/users").await,
        (200, "api".to_string())
    );
    assert_eq!(
        get("shop.example", "/apiary").await,
        (200, "shop".to_string())
    );
    assert_eq!(
        get("elsewhere.example", "/api").await,
        (200, "other".to_string())
    );
    let (status, page) = get("only.example", "/").await;
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("no route for host `only.example`"), "{page}");
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_stripped() {
    let backend = Backend::start("a").await;
    let (_balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let seen = client()
        .get(format!("{url}/headers"))
        .header("host", "shop.example")
        .header("x-forwarded-for", "10.1.2.3")
        .header("connection", "x-secret")
        .header("x-secret", "1")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .expect("the balancer answers")
        .text()
        .await
        .expect("a body");
    assert!(
        seen.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: shop.example\n"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=http;host=\"shop.example\"\n"),
        "{seen}"
    );
    assert!(seen.contains("host: shop.example\n"), "{seen}");
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(!seen.contains("proxy-authorization"), "{seen}");
}

/// 50 MB go up and come back through the balancer in 64 KiB chunks; the
/// first chunk's echo arrives while the client still holds the rest, so
/// neither direction waits for the end of its body.
#[tokio::test]
async fn a_large_body_streams_both_ways_without_waiting_for_its_end() {
    let backend = Backend::start("a").await;
    let (_balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let addr = url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect to the balancer");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("a handshake");
    tokio::spawn(connection);
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let request = http::Request::post("/echo")
        .header("host", "x")
        .body(ChannelBody(rx))
        .expect("a request");
    let chunk = Bytes::from(vec![b'y'; 64 * 1024]);
    tx.send(chunk.clone())
        .await
        .expect("the first chunk is taken");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("response headers before the request body ended")
        .expect("a response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first chunk's echo before the request body ended")
        .expect("a frame")
        .expect("no error");
    let mut received = first.into_data().map(|d| d.len()).unwrap_or(0);
    const TOTAL: usize = 50 * 1024 * 1024;
    let feeder = tokio::spawn(async move {
        for _ in 1..(TOTAL / chunk.len()) {
            if tx.send(chunk.clone()).await.is_err() {
                break;
            }
        }
    });
    let reading = async {
        while let Some(frame) = body.frame().await {
            received += frame
                .expect("no error mid-body")
                .into_data()
                .map(|d| d.len())
                .unwrap_or(0);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the echo ends");
    feeder.await.expect("the feeder ends");
    assert_eq!(received, TOTAL);
}

#[tokio::test]
async fn a_large_response_streams_to_the_client() {
    let backend = Backend::start("a").await;
    let (_balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let response = client()
        .get(format!("{url}/big?bytes=20000000"))
        .send()
        .await
        .expect("an answer");
    let mut total = 0;
    let mut response = response;
    while let Some(chunk) = response.chunk().await.expect("no error mid-body") {
        total += chunk.len();
    }
    assert_eq!(total, 20_000_000);
}

#[tokio::test]
async fn an_upgraded_connection_is_tunnelled_both_ways() {
    let backend = Backend::start("a").await;
    let (_balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the balancer");
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
    assert!(head.contains("upgrade: echo"), "{head}");
    for message in [&b"ping"[..], &b"second message"[..]] {
        stream
            .write_all(message)
            .await
            .expect("send through the tunnel");
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
            .await
            .expect("the echo arrives")
            .expect("read the echo");
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn oversized_heads_get_431_and_garbage_gets_400() {
    let backend = Backend::start("a").await;
    let (_balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let answer = raw_exchange(&url, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    let answer = raw_exchange(&url, b"\x01\x02 not http at all\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(backend.served(), 0);
}

/// A table replaced while a long response streams: the response ends
/// whole from the member the new table removed, and new requests go to
/// the member it added.
#[tokio::test]
async fn a_replaced_table_lets_the_request_in_flight_finish() {
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let (balancer, url) = start(one_cluster(vec![old.member()]), settings()).await;
    let client = client();
    let mut long = client
        .get(format!("{url}/slow?chunks=10"))
        .send()
        .await
        .expect("response headers");
    let first = long
        .chunk()
        .await
        .expect("no error")
        .expect("a first chunk");
    assert_eq!(&first[..], b"tick\n");

    balancer
        .replace(one_cluster(vec![new.member()]))
        .await
        .expect("the new table is taken");
    let answer = client
        .get(format!("{url}/"))
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("a body");
    assert_eq!(answer, "new");

    let mut rest = first.len();
    while let Some(chunk) = long.chunk().await.expect("the long response is not cut") {
        rest += chunk.len();
    }
    assert_eq!(rest, 10 * "tick\n".len());
}

#[tokio::test]
async fn a_refused_table_changes_nothing() {
    let backend = Backend::start("a").await;
    let (balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let mut bad = one_cluster(vec![backend.member()]);
    bad.listeners.push(ListenerSpec {
        addr: "127.0.0.1:1".parse().unwrap(),
        routes: vec![RouteSpec::to_cluster("nowhere")],
        tls: None,
    });
    let error = balancer
        .replace(bad)
        .await
        .expect_err("a route to an unknown cluster is refused");
    assert!(error.to_string().contains("cluster `nowhere`"), "{error}");
    let answer = client()
        .get(format!("{url}/"))
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("a body");
    assert_eq!(answer, "a");
}
