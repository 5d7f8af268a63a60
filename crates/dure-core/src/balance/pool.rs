//! One cluster's members as the balancer sees them, and the pick of a
//! member for each request.
//!
//! The pool owns every input of a member's availability (the controller's
//! state, active health, passive ejection, in-flight count) and a selector
//! for its policy, built over the members that take new requests: the
//! available primaries, or the available backups while no primary is
//! available. The selector is rebuilt only when that set changes — a
//! member added, removed or reweighted, a state, health or ejection change,
//! an ejection running out — so a pick costs O(1) (round robin, ip_hash)
//! or O(log n) (random, least_conn) and allocates nothing. A rebuild costs
//! O(n·W) for round robin (W the total weight after dividing by the
//! weights' gcd, at most 1000 per member: a few tens of milliseconds for a
//! hundred members of unrelated large weights) and a
//! fixed table of 16 411 entries for ip_hash.

use super::health::{HealthCheck, HealthConfig, HealthConfigError};
use super::least_conn::{LeastConnHeap, Load};
use super::maglev::MaglevTable;
use super::member::{is_valid_route, Availability, MemberId, MemberSpec, MemberState, MAX_WEIGHT};
use super::outlier::{
    ejection_allowed, Ejection, Outcome, OutlierConfig, OutlierConfigError, OutlierState,
};
use super::policy::Policy;
use super::smooth::SmoothSchedule;
use super::weighted_random::WeightedRandom;
use crate::name::{validate_name, NameError, NameKind};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How a cluster's pool balances and judges its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolConfig {
    /// The balancing policy.
    pub policy: Policy,
    /// Active health checks.
    pub health: HealthConfig,
    /// Passive outlier ejection.
    pub outlier: OutlierConfig,
}

/// Why a pool refused a configuration, a member list or a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// A member name that breaks the naming rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The same member twice in one list.
    #[error("member `{name}` is listed twice")]
    DuplicateMember {
        /// The repeated name.
        name: String,
    },
    /// A weight out of range.
    #[error("member `{name}` has weight {weight}: use 1 to {MAX_WEIGHT}")]
    Weight {
        /// The member.
        name: String,
        /// Its weight.
        weight: u32,
    },
    /// A route a cookie cannot carry.
    #[error("member `{name}` route `{route}` is invalid: routes are 1-63 letters, digits, `-`, `_` and `.`")]
    Route {
        /// The member.
        name: String,
        /// Its route.
        route: String,
    },
    /// Two members with one route.
    #[error("route `{route}` names two members: give each member its own route")]
    DuplicateRoute {
        /// The shared route.
        route: String,
    },
    /// A name that is no member of the pool.
    #[error("`{name}` is not a member of the pool")]
    UnknownMember {
        /// The name asked for.
        name: String,
    },
    /// A health check configuration that cannot work.
    #[error(transparent)]
    Health(#[from] HealthConfigError),
    /// An outlier configuration that cannot work.
    #[error(transparent)]
    Outlier(#[from] OutlierConfigError),
}

/// What a pick is made from, besides the pool.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// The time, on the caller's monotonic clock.
    pub now: Duration,
    /// A uniformly random number, used by the `random` policy.
    pub random: u64,
    /// The client's key (its address' bytes, say), used by `ip_hash`.
    pub client_key: &'a [u8],
    /// Members this request already tried: a retry never picks them again.
    pub tried: &'a [MemberId],
}

impl PickContext<'_> {
    /// Returns the context of a first attempt at `now`, with no random
    /// number and an empty client key.
    pub fn at(now: Duration) -> PickContext<'static> {
        PickContext {
            now,
            random: 0,
            client_key: &[],
            tried: &[],
        }
    }
}

/// A read-only view of one member, for stats and status pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberView<'a> {
    /// Its handle.
    pub id: MemberId,
    /// Its server name.
    pub name: &'a str,
    /// The route sticky sessions name it by.
    pub route: &'a str,
    /// Its weight.
    pub weight: u32,
    /// Whether it is a backup.
    pub backup: bool,
    /// The controller's word on it.
    pub state: MemberState,
    /// Whether active checks count it healthy.
    pub healthy: bool,
    /// When its passive ejection ends, if it is ejected.
    pub ejected_until: Option<Duration>,
    /// Requests begun and not yet ended.
    pub in_flight: u32,
    /// All of that together, at the time asked for.
    pub availability: Availability,
}

#[derive(Debug, Clone)]
struct Member {
    spec: MemberSpec,
    state: MemberState,
    health: HealthCheck,
    outlier: OutlierState,
    in_flight: u32,
    last_pick: u64,
}

impl Member {
    fn availability(&self, now: Duration) -> Availability {
        Availability::of(
            self.state,
            self.health.is_healthy(),
            self.outlier.is_ejected(now),
            now,
        )
    }

    fn load(&self, slot: u32) -> Load {
        Load {
            slot,
            weight: self.spec.weight,
            in_flight: self.in_flight,
            last_pick: self.last_pick,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    generation: u32,
    member: Option<Member>,
}

#[derive(Debug, Clone)]
enum Selector {
    RoundRobin(SmoothSchedule),
    Random(WeightedRandom),
    LeastConn(LeastConnHeap),
    IpHash(MaglevTable),
}

/// One cluster's members and the choice among them.
#[derive(Debug, Clone)]
pub struct Pool {
    config: PoolConfig,
    slots: Vec<Slot>,
    /// Slots of removed members, reused with the next generation.
    free: Vec<u32>,
    by_name: HashMap<String, u32>,
    /// Each member's slot by its route, for sticky sessions.
    by_route: HashMap<String, u32>,
    selector: Selector,
    /// The selector no longer matches the members taking new requests.
    stale: bool,
    /// The earliest time an ejection ends, when the selector goes stale.
    next_change: Option<Duration>,
    /// Picks so far: the turn of least_conn ties.
    picks: u64,
}

impl Pool {
    /// Returns an empty pool, or why `config` cannot work.
    pub fn new(config: PoolConfig) -> Result<Pool, PoolError> {
        config.health.validate()?;
        config.outlier.validate()?;
        let mut pool = Pool {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            by_route: HashMap::new(),
            selector: Selector::RoundRobin(SmoothSchedule::default()),
            stale: true,
            next_change: None,
            picks: 0,
        };
        pool.rebuild(Duration::ZERO);
        Ok(pool)
    }

    /// Returns the pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Returns the number of members.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Returns whether the pool has no member.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Applies a new member list: members that stay keep their state,
    /// health, ejection and in-flight count and take their new weight and
    /// backup flag; new members start [`MemberState::Out`] until
    /// [`Pool::set_state`] says otherwise; members not listed are removed
    /// and never picked again. A list with an invalid name or weight or a
    /// name twice is refused whole and changes nothing.
    pub fn update(&mut self, members: &[MemberSpec]) -> Result<(), PoolError> {
        let mut names = HashSet::with_capacity(members.len());
        let mut routes = HashSet::with_capacity(members.len());
        for spec in members {
            validate_name(NameKind::Server, &spec.name)?;
            if !(1..=MAX_WEIGHT).contains(&spec.weight) {
                return Err(PoolError::Weight {
                    name: spec.name.clone(),
                    weight: spec.weight,
                });
            }
            if !names.insert(spec.name.as_str()) {
                return Err(PoolError::DuplicateMember {
                    name: spec.name.clone(),
                });
            }
            if !is_valid_route(spec.route_name()) {
                return Err(PoolError::Route {
                    name: spec.name.clone(),
                    route: spec.route_name().to_string(),
                });
            }
            if !routes.insert(spec.route_name()) {
                return Err(PoolError::DuplicateRoute {
                    route: spec.route_name().to_string(),
                });
            }
        }
        let gone: Vec<String> = self
            .by_name
            .keys()
            .filter(|name| !names.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(slot) = self.by_name.remove(&name) {
                let entry = &mut self.slots[slot as usize];
                entry.member = None;
                entry.generation = entry.generation.wrapping_add(1);
                self.free.push(slot);
                self.stale = true;
            }
        }
        for spec in members {
            if let Some(&slot) = self.by_name.get(&spec.name) {
                let member = self.slots[slot as usize]
                    .member
                    .as_mut()
                    .expect("a named slot holds its member");
                if member.spec != *spec {
                    member.spec = spec.clone();
                    self.stale = true;
                }
                continue;
            }
            let member = Member {
                spec: spec.clone(),
                state: MemberState::Out,
                health: HealthCheck::default(),
                outlier: OutlierState::default(),
                in_flight: 0,
                last_pick: 0,
            };
            let slot = match self.free.pop() {
                Some(slot) => {
                    self.slots[slot as usize].member = Some(member);
                    slot
                }
                None => {
                    self.slots.push(Slot {
                        generation: 0,
                        member: Some(member),
                    });
                    u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 members")
                }
            };
            self.by_name.insert(spec.name.clone(), slot);
            self.stale = true;
        }
        self.by_route = members
            .iter()
            .map(|spec| (spec.route_name().to_string(), self.by_name[&spec.name]))
            .collect();
        Ok(())
    }

    /// Sets the controller's word on member `name`. A member that comes
    /// back to [`MemberState::Serving`] from [`MemberState::Out`] is a new
    /// process: its health and ejection start afresh.
    pub fn set_state(&mut self, name: &str, state: MemberState) -> Result<(), PoolError> {
        let slot = *self
            .by_name
            .get(name)
            .ok_or_else(|| PoolError::UnknownMember {
                name: name.to_string(),
            })?;
        let member = self.slots[slot as usize]
            .member
            .as_mut()
            .expect("a named slot holds its member");
        if member.state == state {
            return Ok(());
        }
        if member.state == MemberState::Out && state == MemberState::Serving {
            member.health = HealthCheck::default();
            member.outlier = OutlierState::default();
        }
        member.state = state;
        self.stale = true;
        Ok(())
    }

    /// Returns the handle of member `name`.
    pub fn id(&self, name: &str) -> Option<MemberId> {
        let slot = *self.by_name.get(name)?;
        Some(MemberId {
            slot,
            generation: self.slots[slot as usize].generation,
        })
    }

    /// Returns the handle of the member sticky sessions name `route`.
    pub fn id_by_route(&self, route: &str) -> Option<MemberId> {
        let slot = *self.by_route.get(route)?;
        Some(MemberId {
            slot,
            generation: self.slots[slot as usize].generation,
        })
    }

    fn get(&self, id: MemberId) -> Option<&Member> {
        let entry = self.slots.get(id.slot as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        entry.member.as_ref()
    }

    fn get_mut(&mut self, id: MemberId) -> Option<&mut Member> {
        let entry = self.slots.get_mut(id.slot as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        entry.member.as_mut()
    }

    /// Returns the name of member `id`, if it is still in the pool.
    pub fn name(&self, id: MemberId) -> Option<&str> {
        self.get(id).map(|member| member.spec.name.as_str())
    }

    /// Returns a view of member `id` at `now`, if it is still in the pool.
    pub fn member(&self, id: MemberId, now: Duration) -> Option<MemberView<'_>> {
        let member = self.get(id)?;
        Some(MemberView {
            id,
            name: &member.spec.name,
            route: member.spec.route_name(),
            weight: member.spec.weight,
            backup: member.spec.backup,
            state: member.state,
            healthy: member.health.is_healthy(),
            ejected_until: member.outlier.ejected_until(now),
            in_flight: member.in_flight,
            availability: member.availability(now),
        })
    }

    /// Returns views of every member at `now`, in no particular order.
    pub fn members(&self, now: Duration) -> impl Iterator<Item = MemberView<'_>> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(slot, entry)| {
                entry.member.as_ref()?;
                let id = MemberId {
                    slot: slot as u32,
                    generation: entry.generation,
                };
                self.member(id, now)
            })
    }

    /// Returns what member `id` may take at `now` (`Unavailable` once it
    /// is removed).
    pub fn availability(&self, id: MemberId, now: Duration) -> Availability {
        self.get(id)
            .map_or(Availability::Unavailable, |m| m.availability(now))
    }

    /// Records an active check of member `id`; returns its new health when
    /// the check changed it.
    pub fn record_check(&mut self, id: MemberId, passed: bool) -> Option<bool> {
        let config = self.config.health;
        let changed = self.get_mut(id)?.health.record(passed, &config);
        if changed.is_some() {
            self.stale = true;
        }
        changed
    }

    /// Picks the member for a new request, or `None` when no member can
    /// take one. With `ctx.tried` empty this is the policy's pick; a retry
    /// picks by the policy among the untried members (O(n)), and when every
    /// member of the tier in use was tried, the least loaded untried
    /// available member of any tier (a backup after the primaries).
    ///
    /// The caller then calls [`Pool::begin`] under the same lock, so that
    /// concurrent least_conn picks see each other.
    pub fn pick(&mut self, ctx: &PickContext<'_>) -> Option<MemberId> {
        self.refresh(ctx.now);
        let slot = if ctx.tried.is_empty() {
            match &mut self.selector {
                Selector::RoundRobin(schedule) => schedule.pick(),
                Selector::Random(random) => random.pick(ctx.random),
                Selector::LeastConn(heap) => heap.pick(),
                Selector::IpHash(table) => table.pick(ctx.client_key),
            }
        } else {
            self.pick_retry(ctx)
        }?;
        self.picks += 1;
        let picks = self.picks;
        let entry = &mut self.slots[slot as usize];
        let member = entry
            .member
            .as_mut()
            .expect("a selector holds members only");
        member.last_pick = picks;
        let in_flight = member.in_flight;
        let id = MemberId {
            slot,
            generation: entry.generation,
        };
        if let Selector::LeastConn(heap) = &mut self.selector {
            heap.set(slot, in_flight, picks);
        }
        Some(id)
    }

    fn pick_retry(&mut self, ctx: &PickContext<'_>) -> Option<u32> {
        let slots = &self.slots;
        let untried = |slot: u32| {
            let generation = slots[slot as usize].generation;
            !ctx.tried.contains(&MemberId { slot, generation })
        };
        let in_tier = match &mut self.selector {
            Selector::RoundRobin(schedule) => schedule.pick_where(untried),
            Selector::Random(random) => random.pick_where(ctx.random, untried),
            Selector::LeastConn(heap) => heap.pick_where(untried),
            Selector::IpHash(table) => table.pick_where(ctx.client_key, untried),
        };
        in_tier.or_else(|| {
            slots
                .iter()
                .enumerate()
                .filter_map(|(slot, entry)| Some((slot as u32, entry.member.as_ref()?)))
                .filter(|(slot, member)| {
                    member.availability(ctx.now) == Availability::Available && untried(*slot)
                })
                .map(|(slot, member)| member.load(slot))
                .min_by(|a, b| a.cmp_key(b))
                .map(|load| load.slot)
        })
    }

    /// Counts a request begun on member `id` (after a pick, or a sticky
    /// route to it). Every `begin` is matched by one [`Pool::end`].
    pub fn begin(&mut self, id: MemberId) {
        let Some(member) = self.get_mut(id) else {
            return;
        };
        member.in_flight = member.in_flight.saturating_add(1);
        let (in_flight, last_pick) = (member.in_flight, member.last_pick);
        if let Selector::LeastConn(heap) = &mut self.selector {
            heap.set(id.slot, in_flight, last_pick);
        }
    }

    /// Counts a request on member `id` ended with `outcome` at `now`, and
    /// returns the ejection it caused, if any: a failure streak reached its
    /// threshold and the pool had ejected fewer than
    /// [`OutlierConfig::max_ejection_percent`] of its members.
    pub fn end(&mut self, id: MemberId, outcome: Outcome, now: Duration) -> Option<Ejection> {
        let config = self.config.outlier;
        let member = self.get_mut(id)?;
        debug_assert!(member.in_flight > 0, "every end follows a begin");
        member.in_flight = member.in_flight.saturating_sub(1);
        let (in_flight, last_pick) = (member.in_flight, member.last_pick);
        let outlier = !member.outlier.is_ejected(now) && member.outlier.record(outcome, &config);
        if let Selector::LeastConn(heap) = &mut self.selector {
            heap.set(id.slot, in_flight, last_pick);
        }
        if !outlier {
            return None;
        }
        let ejected = self
            .slots
            .iter()
            .filter_map(|entry| entry.member.as_ref())
            .filter(|member| member.outlier.is_ejected(now))
            .count();
        if !ejection_allowed(ejected, self.by_name.len(), config.max_ejection_percent) {
            return None;
        }
        let ejection = self.get_mut(id)?.outlier.eject(now, &config);
        self.stale = true;
        Some(ejection)
    }

    /// Rebuilds the selector if the members taking new requests may have
    /// changed by `now`.
    fn refresh(&mut self, now: Duration) {
        if self.next_change.is_some_and(|at| now >= at) {
            self.stale = true;
        }
        if self.stale {
            self.rebuild(now);
        }
    }

    fn rebuild(&mut self, now: Duration) {
        let available: Vec<(u32, &Member)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, entry)| Some((slot as u32, entry.member.as_ref()?)))
            .filter(|(_, member)| member.availability(now) == Availability::Available)
            .collect();
        let any_primary = available.iter().any(|(_, m)| !m.spec.backup);
        let tier: Vec<(u32, &Member)> = available
            .into_iter()
            .filter(|(_, m)| m.spec.backup != any_primary)
            .collect();
        let weights: Vec<(u32, u32)> = tier.iter().map(|(s, m)| (*s, m.spec.weight)).collect();
        self.selector = match self.config.policy {
            Policy::RoundRobin => Selector::RoundRobin(SmoothSchedule::new(&weights)),
            Policy::Random => Selector::Random(WeightedRandom::new(&weights)),
            Policy::LeastConn => Selector::LeastConn(LeastConnHeap::new(
                tier.iter().map(|(s, m)| m.load(*s)).collect(),
            )),
            Policy::IpHash => {
                let named: Vec<(u32, u32, &str)> = tier
                    .iter()
                    .map(|(s, m)| (*s, m.spec.weight, m.spec.name.as_str()))
                    .collect();
                Selector::IpHash(MaglevTable::new(&named))
            }
        };
        self.next_change = self
            .slots
            .iter()
            .filter_map(|entry| entry.member.as_ref()?.outlier.ejected_until(now))
            .min();
        self.stale = false;
    }
}
