//! One cluster's live state: the core's [`Pool`] (policy, member states,
//! health and ejection: every decision) behind one lock, and beside it what
//! the data path needs of each member — its address and its figures. The
//! pool is kept across table replacements, so members that stay keep their
//! health, ejection and in-flight counts; this module only feeds it.

use crate::stats::{MemberSnapshot, MemberStats};
use crate::table::{ClusterSpec, MemberSpec, MemberState};
use crate::LbError;
use dure_core::balance::{self, Availability, MemberId, Outcome, PickContext, Pool, RetryConfig};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// A member as the data path sees it.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    /// `addr` as a Host header, for requests that came without one;
    /// written once.
    pub host: http::HeaderValue,
    pub stats: Arc<MemberStats>,
}

/// One attempt on a picked member, counted in flight until it ends: by
/// [`Attempt::end`] with its outcome, or, when the request is dropped
/// first (the client went away), as aborted.
#[derive(Debug)]
pub struct Attempt {
    cluster: Arc<Cluster>,
    id: MemberId,
    pub member: Arc<Member>,
    /// The route a sticky cluster's response binds the client to, if it
    /// must set its route cookie.
    pub set_cookie: Option<String>,
    ended: bool,
}

impl Attempt {
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// Ends the attempt with `outcome`.
    pub fn end(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.member.stats.finish();
        let ejection = self
            .cluster
            .lock()
            .pool
            .end(self.id, outcome, self.cluster.now());
        if let Some(ejection) = ejection {
            tracing::warn!(
                cluster = %self.cluster.name,
                member = %self.member.name,
                ?outcome,
                ejections = ejection.count,
                "member ejected after failed requests"
            );
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.finish(Outcome::Aborted);
    }
}

#[derive(Debug)]
struct Inner {
    spec: ClusterSpec,
    pool: Pool,
    members: HashMap<String, Arc<Member>>,
}

#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    /// The origin of the monotonic clock the pool is given.
    origin: Instant,
    random: AtomicU64,
    inner: Mutex<Inner>,
}

impl Cluster {
    /// Returns the cluster of `spec`, or why the core refuses its members.
    pub fn new(name: &str, spec: &ClusterSpec, origin: Instant) -> Result<Cluster, LbError> {
        let pool = Pool::new(spec.pool).map_err(|source| LbError::Pool {
            cluster: name.to_string(),
            source,
        })?;
        let inner = Inner {
            spec: ClusterSpec::default(),
            pool,
            members: HashMap::new(),
        };
        let cluster = Cluster {
            name: name.to_string(),
            origin,
            random: AtomicU64::new(seed()),
            inner: Mutex::new(inner),
        };
        let next = cluster.plan(spec)?;
        *cluster.lock() = next;
        Ok(cluster)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("the pool lock is never poisoned: the pool does not panic")
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Returns the state `spec` gives, worked out on a copy so that a
    /// refused spec changes nothing.
    fn plan(&self, spec: &ClusterSpec) -> Result<Inner, LbError> {
        let refused = |source| LbError::Pool {
            cluster: self.name.clone(),
            source,
        };
        let inner = self.lock();
        let mut pool = if inner.spec.pool == spec.pool {
            inner.pool.clone()
        } else {
            Pool::new(spec.pool).map_err(refused)?
        };
        let specs: Vec<balance::MemberSpec> = spec
            .members
            .iter()
            .map(|m| {
                let mut spec = balance::MemberSpec::new(m.name.clone()).weight(m.weight);
                if m.backup {
                    spec = spec.backup();
                }
                match &m.route {
                    Some(route) => spec.route(route.clone()),
                    None => spec,
                }
            })
            .collect();
        pool.update(&specs).map_err(refused)?;
        let now = self.now();
        let mut members = HashMap::with_capacity(spec.members.len());
        for m in &spec.members {
            let previous = pool
                .id(&m.name)
                .and_then(|id| pool.member(id, now))
                .map(|v| v.state);
            let state = match (m.state, previous) {
                (MemberState::Active, _) => balance::MemberState::Serving,
                (MemberState::Draining, Some(kept @ balance::MemberState::Draining { .. })) => kept,
                (MemberState::Draining, _) => balance::MemberState::Draining {
                    deadline: now + spec.drain_timeout,
                },
                (MemberState::Down, _) => balance::MemberState::Out,
            };
            pool.set_state(&m.name, state).map_err(refused)?;
            members.insert(
                m.name.clone(),
                Arc::new(member_of(m, inner.members.get(&m.name))),
            );
        }
        Ok(Inner {
            spec: spec.clone(),
            pool,
            members,
        })
    }

    /// Applies a new spec, keeping the state of members that stay; a spec
    /// the core refuses changes nothing.
    pub fn apply(&self, spec: &ClusterSpec) -> Result<(), LbError> {
        let next = self.plan(spec)?;
        *self.lock() = next;
        Ok(())
    }

    /// Checks `spec` without applying it.
    pub fn check(&self, spec: &ClusterSpec) -> Result<(), LbError> {
        self.plan(spec).map(drop)
    }

    /// Returns the cluster's retry rules.
    pub fn retry(&self) -> RetryConfig {
        self.lock().spec.retry
    }

    /// Picks a member for an attempt of a request from `client` that
    /// carries `cookies` and asks for `path`, never one in `tried`: the
    /// member its sticky route (a cookie, or a `;jsessionid=` path
    /// parameter) names when that one can take it, else by the policy. A
    /// route cookie set for a client that came over TLS (`secure`) is
    /// marked `Secure`.
    pub fn pick<'a>(
        self: &Arc<Self>,
        tried: &[MemberId],
        client: IpAddr,
        cookies: impl IntoIterator<Item = &'a str>,
        path: &str,
        secure: bool,
    ) -> Option<Attempt> {
        let (v4, v6);
        let key: &[u8] = match client.to_canonical() {
            IpAddr::V4(ip) => {
                v4 = ip.octets();
                &v4
            }
            IpAddr::V6(ip) => {
                v6 = ip.octets();
                &v6
            }
        };
        let ctx = PickContext {
            now: self.now(),
            random: self.next_random(),
            client_key: key,
            tried,
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        let (id, set_cookie) = match &inner.spec.sticky {
            Some(sticky) => {
                let route = sticky
                    .route_in(cookies)
                    .or_else(|| sticky.route_in_path(path));
                let pick = inner.pool.pick_sticky(sticky, route, &ctx)?;
                let route = inner.pool.member(pick.member, ctx.now)?.route;
                (
                    pick.member,
                    pick.set_cookie
                        .then(|| sticky.set_cookie(route, secure))
                        .flatten(),
                )
            }
            None => (inner.pool.pick(&ctx)?, None),
        };
        let name = inner.pool.name(id)?;
        let member = inner.members.get(name)?.clone();
        inner.pool.begin(id);
        member.stats.start();
        Some(Attempt {
            cluster: self.clone(),
            id,
            member,
            set_cookie,
            ended: false,
        })
    }

    /// Feeds an active check's result to the member's health.
    pub fn record_check(&self, name: &str, passed: bool, error: Option<String>) {
        let mut inner = self.lock();
        if let Some(member) = inner.members.get(name) {
            member.stats.checked(SystemTime::now(), error);
        }
        let Some(id) = inner.pool.id(name) else {
            return;
        };
        if let Some(healthy) = inner.pool.record_check(id, passed) {
            tracing::info!(cluster = %self.name, member = %name, healthy, "member health changed");
        }
    }

    /// Returns the members and how their checks run, for the health runner.
    pub fn check_targets(
        &self,
    ) -> (
        Option<crate::table::HealthCheckSpec>,
        Duration,
        Vec<Arc<Member>>,
    ) {
        let inner = self.lock();
        let mut members: Vec<Arc<Member>> = inner.members.values().cloned().collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        (
            inner.spec.health_check.clone(),
            inner.spec.pool.health.interval.0,
            members,
        )
    }

    /// Returns each member's figures and state, ordered by name.
    pub fn snapshots(&self) -> Vec<MemberSnapshot> {
        let now = self.now();
        let inner = self.lock();
        let mut out: Vec<MemberSnapshot> = inner
            .pool
            .members(now)
            .filter_map(|view| {
                let member = inner.members.get(view.name)?;
                let state = match (view.availability, view.state) {
                    (_, balance::MemberState::Out) => "down",
                    (_, balance::MemberState::Draining { .. }) => "draining",
                    _ if view.ejected_until.is_some() => "ejected",
                    _ if !view.healthy => "unhealthy",
                    (Availability::Available, _) => "up",
                    _ => "down",
                };
                Some(member.stats.snapshot(
                    &self.name,
                    &member.name,
                    &member.addr.to_string(),
                    state,
                ))
            })
            .collect();
        out.sort_by(|a, b| a.member.cmp(&b.member));
        out
    }

    fn next_random(&self) -> u64 {
        // splitmix64: uniform enough for the random policy, no lock.
        let mut z = self
            .random
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The member of `spec`, keeping the figures of the member of that name.
fn member_of(spec: &MemberSpec, previous: Option<&Arc<Member>>) -> Member {
    Member {
        name: spec.name.clone(),
        addr: spec.addr,
        host: http::HeaderValue::from_str(&spec.addr.to_string())
            .expect("a socket address is a valid header value"),
        stats: previous.map(|p| p.stats.clone()).unwrap_or_default(),
    }
}

/// A seed that differs between runs.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}
