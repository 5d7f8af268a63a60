//! The entry point: [`Balancer::start`] binds the listeners and the admin
//! port of a table and serves it; [`Balancer::replace`] swaps in a new
//! table live. A replacement is checked whole (routes, members as the core
//! pool takes them, new listener addresses bound) before anything changes,
//! so a refused one leaves the running table as it was. The certificate
//! and key files of TLS listeners are read anew by every replacement,
//! which is how rotated files take effect: new connections get them, open
//! ones keep theirs. Requests in flight finish on the table they started
//! with; removed listeners stop accepting, their open connections carry
//! on.

use crate::admin;
use crate::cluster::Cluster;
use crate::health::HealthRunner;
use crate::proxy::{self, Routing, Shared};
use crate::server::{self, AcceptLoop};
use crate::settings::Settings;
use crate::stats::MemberSnapshot;
use crate::table::Table;
use crate::tls::{self, FileStamp};
use crate::LbError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

/// A running balancer; dropping it stops accepting on every port.
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    origin: Instant,
    running: Mutex<Running>,
    admin: Option<AcceptLoop>,
}

#[derive(Debug)]
struct Running {
    /// By the listener's address as the table writes it.
    listeners: HashMap<SocketAddr, AcceptLoop>,
    _health: HealthRunner,
    /// The TLS files of the table served, as they were when read.
    tls_stamps: Vec<FileStamp>,
}

impl Balancer {
    /// Checks `settings` and `table`, binds every listener and the admin
    /// port, and starts serving.
    pub async fn start(table: Table, settings: Settings) -> Result<Balancer, LbError> {
        settings.check()?;
        let shared = Arc::new(Shared::new(Routing::default(), settings));
        let admin = match shared.settings.admin {
            Some(addr) => {
                let listener = server::bind(addr).await?;
                let for_admin = shared.clone();
                Some(server::serve(
                    listener,
                    &shared.settings,
                    None,
                    move |_, request| {
                        let response = admin::answer(&for_admin, &request);
                        async move { Ok(response) }
                    },
                ))
            }
            None => None,
        };
        let balancer = Balancer {
            shared,
            origin: Instant::now(),
            running: Mutex::new(Running {
                listeners: HashMap::new(),
                _health: HealthRunner::default(),
                tls_stamps: Vec::new(),
            }),
            admin,
        };
        balancer.replace(table).await?;
        Ok(balancer)
    }

    /// Serves `table` from now on, or says why it cannot and changes
    /// nothing.
    pub async fn replace(&self, table: Table) -> Result<(), LbError> {
        table.check()?;
        let mut running = self.running.lock().await;
        let current = self.shared.routing();
        // Plan every cluster before touching any, so a refusal changes nothing.
        let mut clusters = HashMap::with_capacity(table.clusters.len());
        for (name, spec) in &table.clusters {
            let cluster = match current.clusters.get(name) {
                Some(existing) => {
                    existing.check(spec)?;
                    existing.clone()
                }
                None => Arc::new(Cluster::new(name, spec, self.origin)?),
            };
            clusters.insert(name.clone(), cluster);
        }
        let mut tls = HashMap::new();
        let mut tls_stamps = Vec::new();
        for listener in &table.listeners {
            if let Some(files) = &listener.tls {
                let loaded = tls::load(files).map_err(|source| LbError::Tls {
                    listener: listener.addr,
                    source,
                })?;
                tls_stamps.extend(loaded.stamps);
                tls.insert(listener.addr, loaded.config);
            }
        }
        let mut bound = HashMap::new();
        for listener in &table.listeners {
            if !running.listeners.contains_key(&listener.addr) {
                bound.insert(listener.addr, server::bind(listener.addr).await?);
            }
        }
        for (name, spec) in &table.clusters {
            clusters[name].apply(spec)?;
        }
        running
            .listeners
            .retain(|addr, _| table.listener(*addr).is_some());
        for (addr, accept) in &running.listeners {
            accept.set_tls(tls.get(addr).cloned());
        }
        for (addr, listener) in bound {
            let shared = self.shared.clone();
            let accept = server::serve(
                listener,
                &self.shared.settings,
                tls.get(&addr).cloned(),
                move |peer, request| proxy::handle(shared.clone(), addr, peer, request),
            );
            running.listeners.insert(addr, accept);
        }
        running._health = HealthRunner::start(clusters.values());
        running.tls_stamps = tls_stamps;
        self.shared.swap(Routing { table, clusters });
        Ok(())
    }

    /// Returns where the listener written `addr` in the table listens (its
    /// port when the table said 0).
    pub async fn local_addr(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.running
            .lock()
            .await
            .listeners
            .get(&addr)
            .map(|l| l.local_addr)
    }

    /// Returns whether a certificate or key file of the table served was
    /// rewritten or replaced since it was read: applying the table again
    /// reads it anew.
    pub async fn tls_files_changed(&self) -> bool {
        self.running
            .lock()
            .await
            .tls_stamps
            .iter()
            .any(FileStamp::changed)
    }

    /// Returns where the admin port listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr)
    }

    /// Returns every member's figures, ordered by cluster and member.
    pub fn stats(&self) -> Vec<MemberSnapshot> {
        admin::snapshots(&self.shared)
    }
}
