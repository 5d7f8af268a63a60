//! `dure lb run`: one balancer instance. It follows its table on the
//! controller with blocking reads, turns each new one into the data path's
//! routing table (`table`) and swaps it in live. With the controller away
//! it keeps serving the last table it had, retrying with backoff and
//! saying so once per outage. Instances share nothing but the definition,
//! so several can serve one behind DNS or a floating address. Each reports
//! its members' figures to the controller (`report`).

mod report;
mod standby;
mod table;

pub use standby::StandbyLb;

use dure_api::{Client, LbTable};
use dure_lb::{Balancer, Settings, Table};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long one blocking read waits for a change.
const WATCH_WAIT: Duration = Duration::from_secs(30);
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// A running balancer instance following the controller.
pub struct LbInstance {
    balancer: Arc<Balancer>,
    follow: tokio::task::JoinHandle<()>,
    report: tokio::task::JoinHandle<()>,
    instance_id: String,
    /// The listener addresses of the first table, as written there.
    first_listeners: Vec<SocketAddr>,
}

impl LbInstance {
    /// Reads balancer `name`'s table once (its first answer decides whether
    /// the instance can start at all: an unknown balancer, a refused token
    /// or a port in use end it here), starts serving it and follows the
    /// controller from then on.
    pub async fn start(
        client: Client,
        name: &str,
        settings: Settings,
    ) -> anyhow::Result<LbInstance> {
        let first = client
            .watch_lb_table(name, 0, WATCH_WAIT)
            .await
            .map_err(|e| {
                anyhow::Error::new(e).context(format!("cannot read the table of balancer `{name}`"))
            })?;
        let (served, skipped) = routing_of(name, &first.value).await;
        report(name, &skipped);
        let balancer = Arc::new(
            Balancer::start(served.clone(), settings)
                .await
                .map_err(|e| anyhow::anyhow!("cannot start balancer `{name}`: {e}"))?,
        );
        let first_listeners = served.listeners.iter().map(|l| l.addr).collect();
        let instance_id = report::instance_id()?;
        let reporter = report::Reporter {
            client: client.clone(),
            name: name.to_string(),
            instance_id: instance_id.clone(),
            admin: balancer.admin_addr(),
            balancer: balancer.clone(),
        };
        let report = tokio::spawn(reporter.run());
        let follower = Follower {
            client,
            name: name.to_string(),
            index: first.index,
            served,
            balancer: balancer.clone(),
        };
        let follow = tokio::spawn(follower.run());
        Ok(LbInstance {
            balancer,
            follow,
            report,
            instance_id,
            first_listeners,
        })
    }

    /// Where the listeners of the first table listen (the bound port
    /// when the table said 0).
    pub async fn listening(&self) -> Vec<SocketAddr> {
        let mut bound = Vec::new();
        for addr in &self.first_listeners {
            bound.extend(self.balancer.local_addr(*addr).await);
        }
        bound
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// This run's id in its reports to the controller.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Stops following and serving: no new connections, and the requests
    /// in flight may finish for up to `grace` (still reported meanwhile);
    /// returns how many connections were still busy then and so cut.
    pub async fn shutdown(self, grace: Duration) -> usize {
        // No new table while stopping; the reporter goes on meanwhile, so
        // the controller sees the requests in flight finish.
        self.follow.abort();
        let _ = self.follow.await;
        let cut = self.balancer.stop_gracefully(grace).await;
        self.report.abort();
        let _ = self.report.await;
        cut
    }
}

struct Follower {
    client: Client,
    name: String,
    index: u64,
    /// The routing table being served, to skip answers that change
    /// nothing the data path sees (most are other servers' states).
    served: Table,
    balancer: Arc<Balancer>,
}

impl Follower {
    async fn run(mut self) {
        let mut retry = FIRST_RETRY;
        let mut away = false;
        loop {
            let answer = self
                .client
                .watch_lb_table(&self.name, self.index, WATCH_WAIT)
                .await;
            let watched = match answer {
                Ok(watched) => watched,
                Err(error) => {
                    if !away {
                        tracing::warn!(lb = %self.name, error = %error, "cannot read the balancer's table; serving the last one and retrying");
                        away = true;
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            };
            if away {
                tracing::info!(lb = %self.name, "the balancer's table can be read again");
                away = false;
            }
            retry = FIRST_RETRY;
            // A lower index means the controller restarted: the next read
            // starts from it, as every blocking read does.
            self.index = watched.index;
            let (routing, skipped) = routing_of(&self.name, &watched.value).await;
            if routing == self.served {
                continue;
            }
            report(&self.name, &skipped);
            match self.balancer.replace(routing.clone()).await {
                Ok(()) => {
                    tracing::info!(lb = %self.name, "serving a new table");
                    self.served = routing;
                }
                Err(error) => {
                    tracing::error!(lb = %self.name, error = %error, "the new table cannot be served; serving the last one");
                }
            }
        }
    }
}

/// The routing table of `table`, with host names resolved now, and what
/// of it cannot be served.
async fn routing_of(name: &str, table: &LbTable) -> (Table, Vec<table::Skipped>) {
    let mut resolved = BTreeMap::new();
    for host in table::host_names(table) {
        let found = tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map(|mut addrs| addrs.next());
        match found {
            Ok(Some(addr)) => {
                resolved.insert(host, addr.ip());
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(lb = name, host = %host, error = %error, "host name does not resolve");
            }
        }
    }
    table::routing_table(table, &resolved)
}

/// Logs what a table about to be served leaves out.
fn report(name: &str, skipped: &[table::Skipped]) {
    for skipped in skipped {
        tracing::warn!(lb = name, "{skipped}");
    }
}
