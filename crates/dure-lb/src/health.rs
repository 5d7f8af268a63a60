//! The active health checks' I/O: per member of a cluster with a check, a
//! loop that connects (TCP) or sends `GET path` expecting 2xx (HTTP) every
//! interval, within the check's timeout, and feeds the result to the
//! cluster's pool, where the rise/fall rules decide the member's health.

use crate::cluster::{Cluster, Member};
use crate::table::{HealthCheckKind, HealthCheckSpec};
use crate::upstream::error_chain;
use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The running checks; dropping it stops them all.
#[derive(Debug, Default)]
pub struct HealthRunner {
    _tasks: JoinSet<()>,
}

impl HealthRunner {
    /// Starts the checks of every member of `clusters`.
    pub fn start<'a>(clusters: impl Iterator<Item = &'a Arc<Cluster>>) -> HealthRunner {
        let mut tasks = JoinSet::new();
        for cluster in clusters {
            let (check, interval, members) = cluster.check_targets();
            let Some(check) = check else { continue };
            for member in members {
                tasks.spawn(run(cluster.clone(), member, check.clone(), interval));
            }
        }
        HealthRunner { _tasks: tasks }
    }
}

async fn run(
    cluster: Arc<Cluster>,
    member: Arc<Member>,
    check: HealthCheckSpec,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result =
            match tokio::time::timeout(check.timeout, probe(member.addr, &check.kind)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} ms", check.timeout.as_millis())),
            };
        if let Err(e) = &result {
            tracing::debug!(cluster = %cluster.name, member = %member.name, error = %e, "health check failed");
        }
        cluster.record_check(&member.name, result.is_ok(), result.err());
    }
}

/// Runs one check against `addr`.
async fn probe(addr: SocketAddr, kind: &HealthCheckKind) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let HealthCheckKind::Http { path } = kind else {
        return Ok(());
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| error_chain(&e))?;
    tokio::spawn(connection);
    let request = Request::get(path.as_str())
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "dure-lb-health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("health check path `{path}`: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| error_chain(&e))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", response.status()))
    }
}
