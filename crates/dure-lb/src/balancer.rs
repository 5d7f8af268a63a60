//! The entry point: [`Balancer::start`] binds the listeners and the admin
//! port of a table and serves it; [`Balancer::replace`] swaps in a new
//! table live. A replacement is checked whole (routes, members as the core
//! pool takes them, new listener addresses bound) before anything changes,
//! so a refused one leaves the running table as it was. The certificate
//! and key files of TLS listeners are read anew by every replacement, and
//! between replacements as soon as one of them is rewritten or replaced
//! (checked every `tls_reload_interval`): new connections get the new
//! files, open ones keep theirs, and rotated files that cannot be served
//! leave the ones read before in place. Requests in flight finish on the table they started
//! with; removed listeners stop accepting, their open connections carry
//! on.

use crate::admin;
use crate::cluster::Cluster;
use crate::health::HealthRunner;
use crate::proxy::{self, Routing, Shared};
use crate::server::{self, AcceptLoop, Connections};
use crate::settings::Settings;
use crate::stats::MemberSnapshot;
use crate::table::Table;
use crate::tls::{self, FileStamp, TlsFiles};
use crate::workers::Workers;
use crate::LbError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// A running balancer; dropping it stops accepting on every port.
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    origin: Instant,
    running: Arc<Mutex<Running>>,
    admin: Option<AcceptLoop>,
    /// The connections of every listener (not the admin port's).
    connections: Connections,
    /// The threads that serve them.
    workers: Arc<Workers>,
    /// The loop that reloads rotated TLS files; dropped with the balancer.
    _tls_reload: JoinSet<()>,
}

#[derive(Debug)]
struct Running {
    /// By the listener's address as the table writes it.
    listeners: HashMap<SocketAddr, AcceptLoop>,
    _health: HealthRunner,
    /// The TLS listeners of the table served.
    tls: Vec<ServedTls>,
}

/// A TLS listener's files, and what they looked like when last read.
#[derive(Debug)]
struct ServedTls {
    addr: SocketAddr,
    files: TlsFiles,
    stamps: Vec<FileStamp>,
}

impl ServedTls {
    fn changed(&self) -> bool {
        self.stamps.iter().any(FileStamp::changed)
    }
}

impl Balancer {
    /// Checks `settings` and `table`, binds every listener and the admin
    /// port, and starts serving.
    pub async fn start(table: Table, settings: Settings) -> Result<Balancer, LbError> {
        settings.check()?;
        let workers = Arc::new(
            Workers::start(settings.workers).map_err(|source| LbError::Workers { source })?,
        );
        let shared = Arc::new(Shared::new(Routing::default(), settings));
        // Each worker closes its own idle member connections.
        for index in 0..workers.count() {
            let upstream = shared.upstream(index).clone();
            workers.spawn_on(index, move |_| upstream.sweep_forever());
        }
        let admin = match shared.settings.admin {
            Some(addr) => {
                let listener = server::bind(addr).await?;
                let for_admin = shared.clone();
                Some(server::serve(
                    listener,
                    &shared.settings,
                    None,
                    Connections::default(),
                    workers.clone(),
                    move |_, request| {
                        let response = admin::answer(&for_admin, &request);
                        async move { Ok(response) }
                    },
                ))
            }
            None => None,
        };
        let running = Arc::new(Mutex::new(Running {
            listeners: HashMap::new(),
            _health: HealthRunner::default(),
            tls: Vec::new(),
        }));
        let mut tls_reload = JoinSet::new();
        tls_reload.spawn(reload_rotated(
            running.clone(),
            shared.settings.tls_reload_interval,
        ));
        let balancer = Balancer {
            shared,
            origin: Instant::now(),
            running,
            admin,
            connections: Connections::default(),
            workers,
            _tls_reload: tls_reload,
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
        let mut served_tls = Vec::new();
        for listener in &table.listeners {
            if let Some(files) = &listener.tls {
                let loaded = tls::load(files).map_err(|source| LbError::Tls {
                    listener: listener.addr,
                    source,
                })?;
                tls.insert(listener.addr, loaded.config);
                served_tls.push(ServedTls {
                    addr: listener.addr,
                    files: files.clone(),
                    stamps: loaded.stamps,
                });
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
                self.connections.clone(),
                self.workers.clone(),
                move |peer, request| proxy::handle(shared.clone(), addr, peer, request),
            );
            running.listeners.insert(addr, accept);
        }
        running._health = HealthRunner::start(clusters.values());
        running.tls = served_tls;
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

    /// Returns where the admin port listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr)
    }

    /// Stops gracefully: no listener accepts any more, and every open
    /// connection finishes the request it serves and closes; waits up to
    /// `grace` for that and returns how many connections were still open
    /// then (0: none was cut). The admin port stays until the balancer is
    /// dropped.
    pub async fn stop_gracefully(&self, grace: Duration) -> usize {
        self.running.lock().await.listeners.clear();
        self.connections.close(grace).await
    }

    /// Returns every member's figures, ordered by cluster and member.
    pub fn stats(&self) -> Vec<MemberSnapshot> {
        admin::snapshots(&self.shared)
    }
}

/// Every `interval`, reads again the files of each TLS listener whose
/// certificate or key file was rewritten or replaced, and serves new
/// connections with them; files that cannot be served are reported once
/// and the ones read before stay, until the files change again.
async fn reload_rotated(running: Arc<Mutex<Running>>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut guard = running.lock().await;
        let running = &mut *guard;
        for served in running.tls.iter_mut().filter(|t| t.changed()) {
            let seen = tls::stamps(&served.files);
            match tls::load(&served.files) {
                Ok(loaded) => {
                    if let Some(accept) = running.listeners.get(&served.addr) {
                        accept.set_tls(Some(loaded.config));
                    }
                    served.stamps = loaded.stamps;
                    tracing::info!(listener = %served.addr, "serving rotated TLS files");
                }
                Err(error) => {
                    // Stamped as they were just before this read, so a
                    // file half-way through its rotation is read again
                    // once it is rewritten.
                    served.stamps = seen;
                    tracing::warn!(listener = %served.addr, error = %error, "rotated TLS files cannot be served; keeping the ones read before");
                }
            }
        }
    }
}
