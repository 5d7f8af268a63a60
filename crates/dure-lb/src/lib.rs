//! The balancer's data path: HTTP and HTTPS listeners that route each request by Host
//! and path prefix to a cluster, pick a member with the core's pool
//! (`dure_core::balance`), stream the request and its response through
//! pooled upstream connections, retry failed attempts on other members
//! when that is safe, run the active health checks and keep per-member
//! figures for the admin port.
//!
//! A caller builds a [`Table`] (listeners, routes, clusters, members),
//! starts a [`Balancer`] with it and [`Settings`], and hands it a new table
//! with [`Balancer::replace`] whenever the configuration or a member's
//! state changes. Where tables come from (the controller) is not this
//! crate's business.

mod admin;
mod balancer;
mod body;
mod cluster;
mod error;
mod headers;
mod health;
mod histogram;
mod metrics;
mod pages;
mod proxy;
mod routing;
mod server;
mod settings;
mod stats;
mod table;
mod tls;
mod upgrade;
mod upstream;
mod workers;

pub use balancer::Balancer;
pub use dure_core::balance::{Policy, PoolConfig, RetryConfig, Sticky};
pub use error::LbError;
pub use settings::{Settings, MIN_HEADER_BYTES};
pub use stats::{HealthRecord, MemberSnapshot, Percentiles, ResponseClasses};
pub use table::{
    ClusterSpec, HealthCheckKind, HealthCheckSpec, ListenerSpec, MemberSpec, MemberState,
    RouteSpec, Table,
};
pub use tls::{read_pair as read_tls_pair, TlsError, TlsFiles};
pub use workers::MAX_WORKERS;
