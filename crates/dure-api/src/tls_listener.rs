//! A TLS listener for axum (the controller's API, an agent's endpoint),
//! and the server configuration both use: one task accepts connections and
//! starts each handshake in a task of its own, bounded in time, so a
//! client that never finishes its handshake holds up no one; finished
//! connections are handed to axum with the caller's address and the
//! certificate it showed, if any. A client that speaks plain HTTP to it
//! (an `http://` address from before HTTPS was the default) is answered
//! a plain 400 saying to use `https://`, not a dropped connection.
//! Client certificates are asked for and verified under the domain CA but
//! not required: operators come with tokens, agents and the controller
//! with their certificates.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::CertificateDer;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many finished handshakes may wait for axum to take them.
const QUEUE: usize = 64;

/// A server configuration showing `cert`'s certificate and verifying
/// client certificates, when one is shown, under `roots`.
pub fn server_config(
    roots: Arc<RootCertStore>,
    cert: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(format!("cannot verify client certificates: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed session carries the client
    // certificate of its first handshake, so a renewed (or replaced)
    // certificate would not be seen until the old one expired.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Who is calling: the connection's address and, over TLS, the client
/// certificate it showed (already verified under the domain CA).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub client_cert: Option<CertificateDer<'static>>,
}

/// A TLS listener that axum serves.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(QUEUE);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            local,
            ready,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or the like: the next accept may work.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let mut stream = stream;
            if speaks_plain_http(&stream).await {
                refuse_plain_http(&mut stream).await;
                return;
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let client_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .map(|cert| cert.clone().into_owned());
                    let _ = ready.send((tls, Peer { addr, client_cert })).await;
                }
                Ok(Err(error)) => tracing::debug!(%addr, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

/// The first byte of a TLS connection is a handshake record's type (22);
/// an HTTP request begins with a method's capital letter.
const TLS_HANDSHAKE: u8 = 22;

/// What a plain HTTP request to the TLS port is told.
const USE_HTTPS: &str = "this port speaks HTTPS: use https:// in the address, with the domain's CA (ca.pem in the controller's data directory; --ca FILE or DURE_CA)\n";

/// Whether the client's first byte, once it sends one, begins an HTTP
/// request rather than a TLS handshake.
async fn speaks_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] != TLS_HANDSHAKE && first[0].is_ascii_uppercase(),
        _ => false,
    }
}

/// Answers a plain HTTP request with a 400 saying to use HTTPS. What the
/// client sent is read first and the connection is closed only after the
/// client has had the answer, so it sees the answer, not a reset.
async fn refuse_plain_http(stream: &mut TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LINGER: Duration = Duration::from_secs(1);
    let mut sent = [0u8; 8192];
    let _ = tokio::time::timeout(LINGER, stream.read(&mut sent)).await;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{USE_HTTPS}",
        USE_HTTPS.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Until the client closes (bounded): closing with its bytes unread
    // would reset the connection under the answer.
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(stream.read(&mut sent).await, Ok(n) if n > 0) {}
    })
    .await;
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            client_cert: None,
        })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        stream.remote_addr().clone()
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer {
            addr: *stream.remote_addr(),
            client_cert: None,
        }
    }
}
