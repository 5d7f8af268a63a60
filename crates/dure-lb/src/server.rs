//! Accept loops: one per listener (and one for the admin port). A plain
//! connection is served by hyper's HTTP/1 server with upgrades on and the
//! header limit of the settings; on a TLS listener the handshake comes
//! first, in the connection's own task and within the handshake timeout,
//! so a client that never finishes it holds nothing but its socket, and
//! the protocol agreed by ALPN decides between HTTP/2 and HTTP/1.1. Hyper
//! answers a request it cannot parse itself — 431 for a head over the
//! limit, 400 for garbage — before it closes the connection. Stopping a
//! loop closes its socket; connections already accepted carry on to their
//! end, on the TLS configuration they were accepted with. Every connection
//! is counted in its listeners' [`Connections`], which closes them
//! gracefully: each finishes the request it is serving and closes instead
//! of waiting for the next one.

use crate::body::ProxyBody;
use crate::headers::ClientOrigin;
use crate::settings::Settings;
use crate::tls::ALPN_H2;
use crate::workers::Workers;
use crate::LbError;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

/// The connections accepted by a set of accept loops, and the way to close
/// them all gracefully.
#[derive(Debug, Clone)]
pub struct Connections {
    /// Turns true once: every connection finishes its request and closes.
    closing: Arc<watch::Sender<bool>>,
    /// How many are open.
    open: Arc<watch::Sender<usize>>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            closing: Arc::new(watch::Sender::new(false)),
            open: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// Counts one open connection until dropped.
struct Counted(Arc<watch::Sender<usize>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open -= 1);
    }
}

impl Connections {
    fn count(&self) -> Counted {
        self.open.send_modify(|open| *open += 1);
        Counted(self.open.clone())
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        *self.open.borrow()
    }

    /// Asks every connection to finish the request it serves and close,
    /// and waits up to `grace` for them to; returns how many were still
    /// open then (0: all closed in time).
    pub async fn close(&self, grace: Duration) -> usize {
        self.closing.send_replace(true);
        let mut open = self.open.subscribe();
        let _ = tokio::time::timeout(grace, open.wait_for(|n| *n == 0)).await;
        self.open()
    }
}

/// Who a request came from, and how.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub secure: bool,
    /// What the forwarding headers say of the client.
    pub origin: ClientOrigin,
    /// The worker serving the connection.
    pub worker: usize,
}

impl Peer {
    fn new(addr: SocketAddr, secure: bool, worker: usize) -> Peer {
        let proto = if secure { "https" } else { "http" };
        Peer {
            addr,
            secure,
            origin: ClientOrigin::new(addr, proto),
            worker,
        }
    }
}

/// The TLS configuration new connections of a listener get; `None` serves
/// them plain. Swapped by a table replacement, read once per connection.
pub type TlsSlot = Arc<RwLock<Option<Arc<ServerConfig>>>>;

/// A running accept loop; dropping it stops the loop.
#[derive(Debug)]
pub struct AcceptLoop {
    pub local_addr: SocketAddr,
    tls: TlsSlot,
    _stop: oneshot::Sender<()>,
}

impl AcceptLoop {
    /// Serves the connections accepted from now on with `tls` (plain when
    /// `None`); open connections keep what they were accepted with.
    pub fn set_tls(&self, tls: Option<Arc<ServerConfig>>) {
        *self
            .tls
            .write()
            .expect("the TLS slot is never poisoned: nothing panics under it") = tls;
    }
}

/// Binds `addr`, saying which address could not be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, LbError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| LbError::Bind { addr, source })
}

/// The limits every connection is served with.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_header_bytes: usize,
    header_read_timeout: Duration,
    handshake_timeout: Duration,
}

/// Serves every connection to `listener` with `handler`, given the
/// client and the request; over TLS with `tls` when set; each one counted
/// in `connections`.
pub fn serve<H, F>(
    listener: TcpListener,
    settings: &Settings,
    tls: Option<Arc<ServerConfig>>,
    connections: Connections,
    workers: Arc<Workers>,
    handler: H,
) -> AcceptLoop
where
    H: Fn(Peer, Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let local_addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (stop, mut stopped) = oneshot::channel();
    let handler = Arc::new(handler);
    let slot: TlsSlot = Arc::new(RwLock::new(tls));
    let limits = Limits {
        max_header_bytes: settings.max_header_bytes,
        header_read_timeout: settings.header_read_timeout,
        handshake_timeout: settings.tls_handshake_timeout,
    };
    let tls = slot.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, client) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead
                    // of spinning on the same error.
                    tracing::warn!(addr = %local_addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            // Handed over as a plain socket: the worker registers it with
            // its own runtime.
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(client = %client, error = %e, "cannot hand over a connection");
                    continue;
                }
            };
            let config = tls
                .read()
                .expect("the TLS slot is never poisoned: nothing panics under it")
                .clone();
            let counted = connections.count();
            let closing = connections.closing.subscribe();
            let handler = handler.clone();
            workers.spawn(move |worker| async move {
                let _counted = counted;
                match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        let to = Client {
                            addr: client,
                            worker,
                        };
                        connection(stream, to, config, limits, closing, handler).await;
                    }
                    Err(e) => {
                        tracing::debug!(client = %client, error = %e, "cannot serve a connection")
                    }
                }
            });
        }
    });
    AcceptLoop {
        local_addr,
        tls: slot,
        _stop: stop,
    }
}

/// Where an accepted connection comes from, and which worker serves it.
#[derive(Debug, Clone, Copy)]
struct Client {
    addr: SocketAddr,
    worker: usize,
}

/// Serves one accepted connection to its end.
async fn connection<H, F>(
    stream: TcpStream,
    Client {
        addr: client,
        worker,
    }: Client,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    closing: watch::Receiver<bool>,
    handler: Arc<H>,
) where
    H: Fn(Peer, Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let Some(config) = tls else {
        let peer = Peer::new(client, false, worker);
        return http1_connection(TokioIo::new(stream), peer, limits, closing, handler).await;
    };
    let handshake = TlsAcceptor::from(config).accept(stream);
    let stream = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(client = %client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %client, "TLS handshake timed out");
            return;
        }
    };
    let peer = Peer::new(client, true, worker);
    if stream.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
        let service = service_fn(move |request| handler(peer.clone(), request));
        let serving = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(serving);
        let result = tokio::select! {
            result = serving.as_mut() => result,
            _ = closed(closing) => {
                serving.as_mut().graceful_shutdown();
                serving.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(client = %client, error = %e, "client connection ended with an error");
        }
    } else {
        http1_connection(TokioIo::new(stream), peer, limits, closing, handler).await;
    }
}

/// Resolves once the connections are asked to close.
async fn closed(mut closing: watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        // The balancer is gone without closing: nothing will ask any more.
        std::future::pending::<()>().await;
    }
}

/// Serves HTTP/1 on `io`, upgrades included, until the client closes or,
/// once `closing`, until the request in progress is answered.
async fn http1_connection<I, H, F>(
    io: I,
    peer: Peer,
    limits: Limits,
    closing: watch::Receiver<bool>,
    handler: Arc<H>,
) where
    I: Read + Write + Unpin + Send + 'static,
    H: Fn(Peer, Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let client = peer.addr;
    let service = service_fn(move |request| handler(peer.clone(), request));
    // One flattened buffer per write rather than a vector of them: a
    // response head and a small body go out as one copy, about 5% more
    // requests per second in bench/lb; large bodies still stream.
    let serving = http1::Builder::new()
        .writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(serving);
    let result = tokio::select! {
        result = serving.as_mut() => result,
        _ = closed(closing) => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %client, error = %e, "client connection ended with an error");
    }
}
