//! One node's membership, transport-free: a foca (SWIM) instance whose
//! notifications drive the core's [`View`] — MemberUp is the signal
//! alive, MemberDown unreachable, and an authenticated leave from the
//! peer's current run is the signal left. The agent drives it from a UDP
//! socket (`membership::run`); `bench/membership` drives a thousand of
//! them over an in-process network. Time comes from the caller.

use super::wire::{Kind, MAX_DATAGRAM, OVERHEAD};
use dure_core::membership::{DetectorTimings, Signal, Transition, View};
use foca::{
    Config, Foca, Identity, Member as FocaMember, NoCustomBroadcast, OwnedNotification,
    PeriodicParams, PostcardCodec, Timer,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// Who a member is: its node, where its membership socket is, its agent's
/// version and which run of it (`run`: ms since the Unix epoch at start,
/// plus one per rejoin), so a restarted or rejoining agent is a new
/// identity that wins over the old one at the same address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeId {
    pub node: String,
    pub addr: SocketAddr,
    pub version: String,
    pub run: u64,
}

impl NodeId {
    /// An identity known only by its address (a configured peer or a
    /// `--join` address): every real identity there wins over it.
    pub fn placeholder(addr: SocketAddr) -> NodeId {
        NodeId {
            node: String::new(),
            addr,
            version: String::new(),
            run: 0,
        }
    }
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    /// Declared down while alive (a cut link healed): rejoin as the next run.
    fn renew(&self) -> Option<Self> {
        Some(NodeId {
            run: self.run.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.run > adversary.run
    }
}

/// A datagram to send, before framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub to: SocketAddr,
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// The foca settings for the core's timings and a cluster of about
/// `cluster_size` nodes.
pub fn foca_config(timings: &DetectorTimings, cluster_size: usize) -> Config {
    let size = u32::try_from(cluster_size.max(1)).unwrap_or(u32::MAX);
    let mut config = Config::new_lan(NonZeroU32::new(size).expect("at least one"));
    config.probe_period = timings.probe_interval;
    config.probe_rtt = timings.probe_timeout;
    config.num_indirect_probes =
        NonZeroUsize::new(timings.indirect_probes.max(1)).expect("at least one");
    config.suspect_to_down_after = timings.suspicion;
    config.max_packet_size =
        NonZeroUsize::new(MAX_DATAGRAM - OVERHEAD).expect("the frame leaves room");
    // Each update rides on at least 6 messages (memberlist: 4 × log10(n)),
    // so a refutation survives 5% loss in small clusters too.
    let transmissions = (4.0 * ((cluster_size + 1) as f64).log10()).ceil().max(6.0);
    config.max_transmissions = NonZeroU8::new(transmissions.min(255.0) as u8).expect("at least 6");
    config.notify_down_members = true;
    config.periodic_gossip = Some(PeriodicParams {
        frequency: timings.gossip_interval,
        num_members: NonZeroUsize::new(timings.gossip_fanout.max(1)).expect("at least one"),
    });
    // Peers declared down are tried again every few intervals, so a healed
    // link or a returning node is RUNNING again within about a second.
    config.periodic_announce_to_down_members = Some(PeriodicParams {
        frequency: timings.probe_interval * 5,
        num_members: NonZeroUsize::new(2).expect("two"),
    });
    config.periodic_announce = Some(PeriodicParams {
        frequency: Duration::from_secs(10),
        num_members: NonZeroUsize::new(1).expect("one"),
    });
    config
}

/// One node's detector and view.
pub struct Member {
    foca: Foca<NodeId, PostcardCodec, StdRng, NoCustomBroadcast>,
    runtime: foca::AccumulatingRuntime<NodeId>,
    view: View,
    /// Node → the run last seen alive: a leave or a down of an older run
    /// says nothing about the current one.
    runs: HashMap<String, u64>,
    transitions: Vec<Transition>,
    /// Datagrams of our own (leaves) waiting beside foca's.
    outbox: Vec<Packet>,
    /// Whether foca is connected: it probes, gossips and tries down
    /// members only while it is (its timers stop when its last member goes
    /// down or it renews its identity), so the driver announces to every
    /// address it knows until it is again.
    connected: bool,
}

impl Member {
    pub fn new(identity: NodeId, config: Config, seed: u64) -> Member {
        Member {
            foca: Foca::new(identity, config, StdRng::seed_from_u64(seed), PostcardCodec),
            runtime: foca::AccumulatingRuntime::new(),
            view: View::default(),
            runs: HashMap::new(),
            transitions: Vec::new(),
            outbox: Vec::new(),
            connected: false,
        }
    }

    /// Whether foca is connected to at least one member and running its
    /// probe and gossip timers.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Every address foca knows a member at, down ones included: where a
    /// node that is not connected announces itself.
    pub fn known_addrs(&self) -> Vec<SocketAddr> {
        let own = self.identity().addr;
        let mut addrs: Vec<SocketAddr> = self
            .foca
            .iter_membership_state()
            .map(|m| m.id().addr)
            .filter(|a| *a != own)
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    /// Members foca counts as active (not the node itself).
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }

    /// Makes configured peers known: INACTIVE in the view until they
    /// answer, and tried by foca as down members, plus one announce now.
    pub fn know_peers(&mut self, peers: &[(String, SocketAddr)], now_ms: u64) {
        let own = self.identity().clone();
        let mut placeholders = Vec::new();
        for (node, addr) in peers {
            if *node == own.node || *addr == own.addr {
                continue;
            }
            self.view.know(node, Some(addr.to_string()), now_ms);
            if !self
                .foca
                .iter_membership_state()
                .any(|m| m.id().addr == *addr)
            {
                placeholders.push(FocaMember::down(NodeId::placeholder(*addr)));
            }
        }
        let addrs: Vec<SocketAddr> = placeholders.iter().map(|m| m.id().addr).collect();
        if let Err(error) = self
            .foca
            .apply_many(placeholders.into_iter(), true, &mut self.runtime)
        {
            tracing::debug!(%error, "configured peers not applied");
        }
        for addr in addrs {
            self.announce(addr, now_ms);
        }
    }

    /// Starts from a converged cluster, as a simulation does: `ids` are
    /// alive members now.
    pub fn assume_members(&mut self, ids: impl IntoIterator<Item = NodeId>, now_ms: u64) {
        let members = ids.into_iter().map(FocaMember::alive);
        if let Err(error) = self.foca.apply_many(members, true, &mut self.runtime) {
            tracing::debug!(%error, "members not applied");
        }
        self.notifications(now_ms);
    }

    /// Asks the member at `addr` for the cluster (a dynamic join).
    pub fn announce(&mut self, addr: SocketAddr, now_ms: u64) {
        if let Err(error) = self
            .foca
            .announce(NodeId::placeholder(addr), &mut self.runtime)
        {
            tracing::debug!(%error, %addr, "announce failed");
        }
        self.notifications(now_ms);
    }

    /// Handles an authenticated datagram.
    pub fn handle(&mut self, kind: Kind, payload: &[u8], now_ms: u64) {
        match kind {
            Kind::Swim => {
                if let Err(error) = self.foca.handle_data(payload, &mut self.runtime) {
                    tracing::debug!(%error, "membership message ignored");
                }
            }
            Kind::Leave => match postcard::from_bytes::<NodeId>(payload) {
                // A leave of the run seen alive, or of a newer one (a node
                // that renewed its identity after a healed partition, which
                // this node may not have heard of yet); an older run's leave
                // says nothing about the current one.
                Ok(leaver)
                    if self
                        .runs
                        .get(&leaver.node)
                        .is_some_and(|run| *run <= leaver.run) =>
                {
                    self.runs.insert(leaver.node.clone(), leaver.run);
                    self.observe(&leaver, Signal::Left, now_ms);
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "leave message ignored"),
            },
        }
        self.notifications(now_ms);
    }

    pub fn handle_timer(&mut self, timer: Timer<NodeId>, now_ms: u64) {
        if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
            tracing::debug!(%error, "membership timer ignored");
        }
        self.notifications(now_ms);
    }

    /// Leaves gracefully: tells every active member directly (`copies`
    /// times each, against loss) and then foca's way, by gossip.
    pub fn leave(&mut self, copies: usize, now_ms: u64) {
        let payload =
            postcard::to_allocvec(self.identity()).expect("an identity always serializes");
        let peers: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for to in peers {
            for _ in 0..copies {
                self.outbox.push(Packet {
                    to,
                    kind: Kind::Leave,
                    payload: payload.clone(),
                });
            }
        }
        if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(%error, "leave gossip failed");
        }
        self.notifications(now_ms);
    }

    /// Datagrams to send, oldest first.
    pub fn take_packets(&mut self) -> Vec<Packet> {
        let mut packets = std::mem::take(&mut self.outbox);
        while let Some((to, data)) = self.runtime.to_send() {
            packets.push(Packet {
                to: to.addr,
                kind: Kind::Swim,
                payload: data.to_vec(),
            });
        }
        packets
    }

    /// Timers to arm: deliver each to [`Member::handle_timer`] after its delay.
    pub fn take_timers(&mut self) -> Vec<(Duration, Timer<NodeId>)> {
        let mut timers = Vec::new();
        while let Some(timer) = self.runtime.to_schedule() {
            timers.push(timer);
        }
        timers
    }

    /// Transitions of the view since the last call.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    fn notifications(&mut self, now_ms: u64) {
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => {
                    self.runs.insert(id.node.clone(), id.run);
                    self.observe(&id, Signal::Alive, now_ms);
                }
                // A newer run of the node already up makes a down old news.
                OwnedNotification::MemberDown(id)
                    if self.runs.get(&id.node).is_none_or(|run| *run <= id.run) =>
                {
                    self.observe(&id, Signal::Unreachable, now_ms);
                }
                OwnedNotification::Rename(_, new) => {
                    // A new run replacing one foca still counted as active
                    // comes without MemberUp: it answered, so it is alive.
                    let active = self.foca.iter_members().any(|m| m.id() == &new);
                    self.runs.insert(new.node.clone(), new.run);
                    if active {
                        self.observe(&new, Signal::Alive, now_ms);
                    }
                }
                OwnedNotification::Rejoin(id) => {
                    // The new identity starts disconnected, its timers gone.
                    self.connected = false;
                    tracing::info!(run = id.run, "declared down by peers while alive; rejoined");
                }
                OwnedNotification::Active => self.connected = true,
                OwnedNotification::Idle | OwnedNotification::Defunct => self.connected = false,
                _ => {}
            }
        }
    }

    fn observe(&mut self, id: &NodeId, signal: Signal, now_ms: u64) {
        if id.node.is_empty() || id.node == self.identity().node {
            return;
        }
        let version = (!id.version.is_empty()).then(|| id.version.clone());
        if let Some(t) =
            self.view
                .observe(&id.node, signal, Some(id.addr.to_string()), version, now_ms)
        {
            self.transitions.push(t);
        }
    }
}
