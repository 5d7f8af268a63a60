//! The balancer's own settings, the same for every listener and cluster:
//! timeouts, retry and replay bounds, the header limit, the admin address
//! and how many worker threads serve connections.

use crate::upstream::UpstreamSettings;
use crate::workers::{self, MAX_WORKERS};
use crate::LbError;
use std::net::SocketAddr;
use std::time::Duration;

/// The smallest header limit hyper's HTTP/1 parser works with.
pub const MIN_HEADER_BYTES: usize = 8192;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where `/stats`, `/metrics` and `/health` are served; none if `None`.
    pub admin: Option<SocketAddr>,
    pub connect_timeout: Duration,
    /// How long an idempotent request waits for response headers before it
    /// is retried elsewhere and the member reported.
    pub first_byte_timeout: Duration,
    /// How long any other request waits for response headers (504 after).
    pub response_timeout: Duration,
    /// Request bodies up to this size (by Content-Length) are held so that
    /// they can be sent again; larger ones stream and are retried only when
    /// no byte of them was read.
    pub replay_limit: usize,
    /// The largest request head; a larger one is answered 431.
    pub max_header_bytes: usize,
    /// How long a client may take to send its request head.
    pub header_read_timeout: Duration,
    /// How long a client of a TLS listener may take to finish its
    /// handshake.
    pub tls_handshake_timeout: Duration,
    /// How often the certificate and key files of TLS listeners are
    /// looked at, to serve rotated ones.
    pub tls_reload_interval: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_member: usize,
    /// How many threads serve connections (see `workers`): by default one
    /// per core the process may run on.
    pub workers: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            admin: None,
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            replay_limit: 64 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            tls_reload_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_member: 64,
            workers: workers::default_count(),
        }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), LbError> {
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(LbError::HeaderLimit {
                bytes: self.max_header_bytes,
                min: MIN_HEADER_BYTES,
            });
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(LbError::WorkerCount {
                count: self.workers,
                max: MAX_WORKERS,
            });
        }
        Ok(())
    }

    pub fn upstream(&self) -> UpstreamSettings {
        UpstreamSettings {
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            max_idle_per_member: self.max_idle_per_member,
        }
    }
}
