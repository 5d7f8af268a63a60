//! Backends for the balancer's tests, each a small real server on an
//! ephemeral loopback port that ends with the test's runtime, and helpers
//! to build tables and start a balancer in front of them.

#![allow(dead_code)]

use bytes::Bytes;
use dure_lb::{
    Balancer, ClusterSpec, ListenerSpec, MemberSpec, MemberState, RouteSpec, Settings, Table,
};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub type TestBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The listener address every test table uses: loopback, a port picked by
/// the kernel and kept across replacements.
pub const LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A backend that answers like an application server:
/// `/headers` → the request's headers, one `name: value` a line;
/// `/echo` → the request body, streamed back as it arrives;
/// `/big?bytes=N` → N bytes in 64 KiB chunks;
/// `/slow?chunks=N` → N chunks, 100 ms apart;
/// `/health` → 200 unless made to fail; an `Upgrade:` request → 101, then
/// an echo of the raw connection; anything else → the backend's name.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    /// How many connections it accepted.
    pub accepted: Arc<AtomicUsize>,
    pub health_status: Arc<Mutex<StatusCode>>,
    frozen: Arc<AtomicBool>,
    serving: tokio::task::AbortHandle,
}

/// Kills a backend as `kill -9` would: its port and every connection close.
pub struct Killer(tokio::task::AbortHandle);

impl Killer {
    pub fn kill(&self) {
        self.0.abort();
    }
}

/// Freezes a backend as SIGSTOP would: connections are still accepted, no
/// request is answered any more.
pub struct Freezer(Arc<AtomicBool>);

impl Freezer {
    pub fn freeze(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let requests = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let accepted_c = accepted.clone();
        let health_status = Arc::new(Mutex::new(StatusCode::OK));
        let frozen = Arc::new(AtomicBool::new(false));
        let (name_c, requests_c, health_c, frozen_c) = (
            name.to_string(),
            requests.clone(),
            health_status.clone(),
            frozen.clone(),
        );
        let serving = tokio::spawn(async move {
            // Owned by this task, so aborting it closes every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                accepted_c.fetch_add(1, Ordering::SeqCst);
                let (name, requests, health, frozen) = (
                    name_c.clone(),
                    requests_c.clone(),
                    health_c.clone(),
                    frozen_c.clone(),
                );
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let (name, requests, health, frozen) = (
                            name.clone(),
                            requests.clone(),
                            health.clone(),
                            frozen.clone(),
                        );
                        async move {
                            if frozen.load(Ordering::SeqCst) {
                                std::future::pending::<()>().await;
                            }
                            answer(name, requests, health, request).await
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            requests,
            accepted,
            health_status,
            frozen,
            serving: serving.abort_handle(),
        }
    }

    pub fn killer(&self) -> Killer {
        Killer(self.serving.clone())
    }

    pub fn freezer(&self) -> Freezer {
        Freezer(self.frozen.clone())
    }

    pub fn member(&self) -> MemberSpec {
        MemberSpec::new(&self.name, self.addr)
    }

    pub fn served(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn boxed<B>(body: B) -> TestBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.map_err(Into::into).boxed_unsync()
}

fn text(body: impl Into<Bytes>) -> TestBody {
    boxed(Full::new(body.into()))
}

fn query_number(request: &Request<Incoming>, key: &str) -> usize {
    request
        .uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// A body of frames sent through a channel.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

async fn answer(
    name: String,
    requests: Arc<AtomicUsize>,
    health: Arc<Mutex<StatusCode>>,
    mut request: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    if request.uri().path() == "/health" {
        let status = *health.lock().unwrap();
        let mut response = Response::new(text("health"));
        *response.status_mut() = status;
        return Ok(response);
    }
    requests.fetch_add(1, Ordering::SeqCst);
    if request.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(text(""))
            .unwrap();
        return Ok(response);
    }
    let response = match request.uri().path() {
        "/headers" => {
            let lines: String = request
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("?")))
                .collect();
            Response::new(text(lines))
        }
        "/echo" => Response::new(boxed(request.into_body())),
        "/big" => {
            let total = query_number(&request, "bytes");
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if tx.send(chunk.slice(..n)).await.is_err() {
                        break;
                    }
                    left -= n;
                }
            });
            Response::new(boxed(ChannelBody(rx)))
        }
        "/slow" => {
            let chunks = query_number(&request, "chunks");
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                for _ in 0..chunks {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if tx.send(Bytes::from_static(b"tick\n")).await.is_err() {
                        break;
                    }
                }
            });
            Response::new(boxed(ChannelBody(rx)))
        }
        _ => Response::new(text(name)),
    };
    Ok(response)
}

/// A port that refuses connections: bound once, then closed.
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// A member that accepts connections and never answers, as a frozen
/// process does; it counts what it accepted.
pub async fn frozen_addr() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted)
}

/// A member that reads a request head and closes the connection without
/// an answer; it counts the requests it read.
pub async fn closing_addr() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            });
        }
    });
    (addr, requests)
}

/// Returns a table with one listener routing everything to cluster `web`
/// of `members`.
pub fn one_cluster(members: Vec<MemberSpec>) -> Table {
    let mut table = Table::default();
    table.clusters.insert(
        "web".to_string(),
        ClusterSpec {
            members,
            ..ClusterSpec::default()
        },
    );
    table.listeners.push(ListenerSpec {
        addr: LISTEN,
        routes: vec![RouteSpec::to_cluster("web")],
        tls: None,
    });
    table
}

pub fn member(name: &str, addr: SocketAddr) -> MemberSpec {
    MemberSpec {
        state: MemberState::Active,
        ..MemberSpec::new(name, addr)
    }
}

/// Settings for tests: an admin port and short timeouts.
pub fn settings() -> Settings {
    Settings {
        admin: Some(LISTEN),
        connect_timeout: Duration::from_secs(1),
        first_byte_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

/// Starts a balancer and returns it with the URL of its listener.
pub async fn start(table: Table, settings: Settings) -> (Balancer, String) {
    let balancer = Balancer::start(table, settings)
        .await
        .expect("the balancer starts");
    let addr = balancer
        .local_addr(LISTEN)
        .await
        .expect("the listener is bound");
    (balancer, format!("http://{addr}"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("a client builds")
}

/// Sends raw bytes and returns everything the server answered until it
/// closed the connection (bounded).
pub async fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    let addr = addr.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the balancer");
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}
