//! Why the balancer refuses a table or settings, or cannot start.

use dure_core::balance::PoolError;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener {addr} is listed twice")]
    DuplicateListener { addr: SocketAddr },
    #[error("listener {listener} routes to cluster `{cluster}`, which the table does not define")]
    UnknownCluster {
        listener: SocketAddr,
        cluster: String,
    },
    #[error("path prefix `{prefix}` must start with `/`")]
    BadPathPrefix { prefix: String },
    #[error("cluster `{cluster}` lists member `{member}` twice")]
    DuplicateMember { cluster: String, member: String },
    #[error("cluster `{cluster}`: {source}")]
    Pool { cluster: String, source: PoolError },
    #[error("listener {listener}: {source}")]
    Tls {
        listener: SocketAddr,
        source: crate::tls::TlsError,
    },
    #[error("header limit of {bytes} bytes is too small: use at least {min}")]
    HeaderLimit { bytes: usize, min: usize },
    #[error("{count} workers: a balancer runs 1 to {max}")]
    WorkerCount { count: usize, max: usize },
    #[error("cannot start the worker threads: {source}")]
    Workers { source: std::io::Error },
}
