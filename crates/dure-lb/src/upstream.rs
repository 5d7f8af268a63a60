//! The connections to members: one pool per worker of keep-alive HTTP/1.1
//! connections per member address, each connection hyper's client
//! connection in a task of the worker's own. An attempt takes the most
//! recently used idle connection that is ready (or connects, within the
//! connect timeout) and holds it in a [`Lease`] until the response body
//! has been read whole, when it goes back idle; a response cut short, an
//! upgrade or an error closes it instead. Idle connections close after the
//! idle timeout, found by a sweep, and beyond `max_idle_per_member`.
//!
//! A request sent on a pooled connection that turns out to have closed
//! meanwhile (the member timed out its keep-alive) comes back unsent and
//! goes on a new connection to the same member, so a member's keep-alive
//! timeout is never counted against it. How an attempt failed otherwise is
//! classified for the retry rules.

use crate::body::ProxyBody;
use dure_core::balance::AttemptFailure;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How the client connects and how long it keeps idle connections.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_member: usize,
}

/// One worker's connections to members.
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    settings: UpstreamSettings,
    /// Idle connections by member address, the most recently used last.
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

impl Idle {
    fn expired(&self, now: Instant, idle_timeout: Duration) -> bool {
        self.sender.is_closed() || now.saturating_duration_since(self.since) >= idle_timeout
    }
}

/// A connection taken for one request; [`Lease::release`] gives it back
/// idle, dropping it closes it once its response is done.
#[derive(Debug)]
pub struct Lease {
    sender: SendRequest<ProxyBody>,
    addr: SocketAddr,
    pool: Upstream,
}

impl Lease {
    /// Gives the connection back to its pool: its response was read whole.
    pub fn release(self) {
        self.pool.put(self.addr, self.sender);
    }
}

/// Why an attempt failed, with what the retry rules need to know.
#[derive(Debug)]
pub struct AttemptError {
    pub failure: AttemptFailure,
    pub detail: String,
}

impl AttemptError {
    fn connect(detail: String) -> AttemptError {
        AttemptError {
            failure: AttemptFailure::ConnectFailed,
            detail,
        }
    }
}

impl Upstream {
    pub fn new(settings: UpstreamSettings) -> Upstream {
        Upstream {
            inner: Arc::new(Pool {
                settings,
                idle: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn idle(&self) -> MutexGuard<'_, HashMap<SocketAddr, Vec<Idle>>> {
        self.inner
            .idle
            .lock()
            .expect("the pool lock is never poisoned: nothing panics under it")
    }

    /// Sends `request` to the member at `addr` and waits for its response
    /// headers, at most `first_byte` when given (connecting included);
    /// returns them with the connection they came on.
    pub async fn send(
        &self,
        addr: SocketAddr,
        request: Request<ProxyBody>,
        first_byte: Option<Duration>,
    ) -> Result<(Response<Incoming>, Lease), AttemptError> {
        let attempt = self.send_on_some_connection(addr, request);
        match first_byte {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(AttemptError {
                        failure: AttemptFailure::FirstByteTimeout,
                        detail: format!("no response within {} ms", limit.as_millis()),
                    })
                }),
            None => attempt.await,
        }
    }

    async fn send_on_some_connection(
        &self,
        addr: SocketAddr,
        mut request: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), AttemptError> {
        loop {
            let (mut sender, pooled) = match self.checkout(addr) {
                Some(sender) => (sender, true),
                None => (self.connect(addr).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        addr,
                        pool: self.clone(),
                    };
                    return Ok((response, lease));
                }
                Err(mut error) => match error.take_message() {
                    // Not sent: a pooled connection closed meanwhile, so a
                    // new one is tried; a new one that closed at once is
                    // the member's failure, but nothing was sent.
                    Some(unsent) if pooled => request = unsent,
                    Some(_) => return Err(AttemptError::connect(error_chain(&error.into_error()))),
                    None => {
                        return Err(AttemptError {
                            failure: AttemptFailure::ResetBeforeResponse,
                            detail: error_chain(&error.into_error()),
                        })
                    }
                },
            }
        }
    }

    /// Takes the most recently used ready connection to `addr`, closing
    /// those that closed or expired on the way; one still finishing its
    /// last response stays.
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        let idle_timeout = self.inner.settings.idle_timeout;
        let now = Instant::now();
        let mut idle = self.idle();
        let list = idle.get_mut(&addr)?;
        list.retain(|c| !c.expired(now, idle_timeout));
        let ready = list.iter().rposition(|c| c.sender.is_ready())?;
        Some(list.remove(ready).sender)
    }

    /// Puts a connection whose response is done back idle, unless it
    /// closed or the member has as many idle connections as allowed.
    fn put(&self, addr: SocketAddr, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        let list = idle.entry(addr).or_default();
        if list.len() < self.inner.settings.max_idle_per_member {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle for the idle timeout or closed by their
    /// member, and forgets members without any.
    pub fn sweep(&self) {
        let idle_timeout = self.inner.settings.idle_timeout;
        let now = Instant::now();
        let mut idle = self.idle();
        for list in idle.values_mut() {
            list.retain(|c| !c.expired(now, idle_timeout));
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// Sweeps every so often (a tenth of the idle timeout, at least a
    /// second), for as long as the worker runs.
    pub async fn sweep_forever(self) {
        let every = (self.inner.settings.idle_timeout / 10).max(Duration::from_secs(1));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.sweep();
        }
    }

    /// Opens a connection to `addr` and starts serving it in a task of
    /// the current worker.
    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<ProxyBody>, AttemptError> {
        let limit = self.inner.settings.connect_timeout;
        let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(AttemptError::connect(format!("cannot connect: {e}"))),
            Err(_) => {
                return Err(AttemptError::connect(format!(
                    "cannot connect: no answer within {} ms",
                    limit.as_millis()
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        // Flattened writes, as toward clients (see `server`).
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| AttemptError::connect(error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(member = %addr, error = %e, "member connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// How many idle connections there are to `addr`.
    #[cfg(test)]
    fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle().get(&addr).map_or(0, Vec::len)
    }
}

/// Returns an error with its sources, `a: b: c`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn settings(idle_timeout: Duration) -> UpstreamSettings {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(2),
            idle_timeout,
            max_idle_per_member: 4,
        }
    }

    /// A member answering `ok` to every request head it reads, keeping the
    /// connection unless `close_after_answer`; counts its connections.
    async fn member(close_after_answer: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            if close_after_answer {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(addr: SocketAddr) -> Request<ProxyBody> {
        Request::builder()
            .uri("/")
            .header(http::header::HOST, addr.to_string())
            .body(body::empty())
            .unwrap()
    }

    /// Sends a GET, reads its body whole and gives the connection back.
    async fn round_trip(upstream: &Upstream, addr: SocketAddr) -> Result<(), AttemptError> {
        use http_body_util::BodyExt;
        let (response, lease) = upstream.send(addr, get(addr), None).await?;
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        lease.release();
        Ok(())
    }

    #[tokio::test]
    async fn a_connection_whose_response_was_read_serves_the_next_request() {
        let (addr, accepted) = member(false).await;
        let upstream = Upstream::new(settings(Duration::from_secs(60)));
        for _ in 0..5 {
            round_trip(&upstream, addr).await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(upstream.idle_count(addr), 1);
    }

    #[tokio::test]
    async fn a_lease_dropped_before_its_response_was_read_is_not_pooled() {
        let (addr, accepted) = member(false).await;
        let upstream = Upstream::new(settings(Duration::from_secs(60)));
        let (_response, lease) = upstream.send(addr, get(addr), None).await.unwrap();
        drop(lease);
        assert_eq!(upstream.idle_count(addr), 0);
        round_trip(&upstream, addr).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_the_member_closed_costs_no_failed_request() {
        let (addr, accepted) = member(true).await;
        let upstream = Upstream::new(settings(Duration::from_secs(60)));
        for _ in 0..5 {
            round_trip(&upstream, addr)
                .await
                .expect("a closed keep-alive connection is replaced, not an error");
            // The member's close has reached the pooled connection, as a
            // keep-alive timeout's has by the time a connection is reused.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_idle_timeout() {
        let (addr, accepted) = member(false).await;
        let upstream = Upstream::new(settings(Duration::from_millis(50)));
        round_trip(&upstream, addr).await.unwrap();
        assert_eq!(upstream.idle_count(addr), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        upstream.sweep();
        assert_eq!(upstream.idle_count(addr), 0);
        round_trip(&upstream, addr).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_member_listening_is_a_connect_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let upstream = Upstream::new(settings(Duration::from_secs(60)));
        let error = upstream.send(addr, get(addr), None).await.unwrap_err();
        assert_eq!(error.failure, AttemptFailure::ConnectFailed);
        assert!(error.detail.contains("cannot connect"), "{}", error.detail);
    }

    #[tokio::test]
    async fn a_member_that_never_answers_is_a_first_byte_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Upstream::new(settings(Duration::from_secs(60)));
        let error = upstream
            .send(addr, get(addr), Some(Duration::from_millis(100)))
            .await
            .unwrap_err();
        assert_eq!(error.failure, AttemptFailure::FirstByteTimeout);
        drop(listener);
    }
}
