//! Accept loops: one per listener (and one for the admin port), each
//! connection served by hyper's HTTP/1 server with upgrades on and the
//! header limit of the settings. Hyper answers a request it cannot parse
//! itself — 431 for a head over the limit, 400 for garbage — before it
//! closes the connection. Stopping a loop closes its socket; connections
//! already accepted carry on to their end.

use crate::body::ProxyBody;
use crate::settings::Settings;
use crate::LbError;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running accept loop; dropping it stops the loop.
#[derive(Debug)]
pub struct AcceptLoop {
    pub local_addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Binds `addr`, saying which address could not be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, LbError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| LbError::Bind { addr, source })
}

/// Serves every connection to `listener` with `handler`, given the
/// client's address and the request.
pub fn serve<H, F>(listener: TcpListener, settings: &Settings, handler: H) -> AcceptLoop
where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let local_addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (stop, mut stopped) = oneshot::channel();
    let handler = Arc::new(handler);
    let (max_buf, header_timeout) = (settings.max_header_bytes, settings.header_read_timeout);
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
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| handler(client, request));
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_buf_size(max_buf)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(e) = connection.await {
                    tracing::debug!(client = %client, error = %e, "client connection ended with an error");
                }
            });
        }
    });
    AcceptLoop {
        local_addr,
        _stop: stop,
    }
}
