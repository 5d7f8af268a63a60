//! Keep-alive membership among agents, peer to peer: SWIM (foca) over UDP
//! with every datagram authenticated by the domain key (`wire`), so it
//! goes on while the controller is down. `member` is the transport-free
//! detector and view; this module runs it on a socket and a timer queue,
//! keeps its view for the reports and the status endpoint, and leaves
//! gracefully on shutdown so peers see INACTIVE, not FAILED.
//!
//! What it needs to start — the domain key, the domain's membership
//! settings and every node's membership address — the controller gives
//! in its answer to the registration; the agent keeps it in
//! `<data>/membership.json` (mode 0600, like the key it holds), so an
//! agent started while the controller is away joins from it. Until it has
//! one, datagrams are not read. Settings apply from the next start; keys
//! at once, from every answer to the desired-state poll (a rotation of
//! the domain key: the old and the new key both open during it).

pub mod member;
pub mod wire;

use crate::layout::{self, Layout};
use anyhow::Context;
use dure_api::{MembershipKeys, MembershipSetup, PeerView};
use dure_core::membership::View;
use member::{foca_config, Member, NodeId, Packet};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wire::{KeyRing, MAX_DATAGRAM};

/// How often a detector that is not connected announces itself (to the
/// `--join` addresses and every member it knows) until a member answers.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// Copies of the leave sent to each peer: with 5% loss, all three are lost
/// once in 8000 leaves.
const LEAVE_COPIES: usize = 3;
/// How long shutdown waits for the leave to be sent.
const LEAVE_GRACE: Duration = Duration::from_millis(500);

/// What starting membership needs from the agent.
#[derive(Debug, Clone)]
pub struct Options {
    pub node: String,
    /// Where the membership socket binds; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The address peers reach this node at: the advertised address.
    pub advertise: std::net::IpAddr,
    /// Members to announce to (`--join`), beside the configured peers.
    pub join: Vec<SocketAddr>,
}

enum Command {
    Setup(MembershipSetup),
    Keys(MembershipKeys),
    Leave(oneshot::Sender<()>),
}

/// What the reports and the status endpoint read.
#[derive(Default)]
struct Shared {
    view: Mutex<View>,
    /// Datagrams refused: not authentic under the domain key, or malformed.
    refused: AtomicU64,
}

/// The running membership of this agent.
pub struct Membership {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    changed: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Membership {
    /// Binds the socket and starts; with a setup kept from an earlier
    /// registration it joins at once, else when [`Membership::setup`] is
    /// called.
    pub async fn start(options: Options, layout: &Layout) -> anyhow::Result<Membership> {
        let socket = UdpSocket::bind(options.bind)
            .await
            .with_context(|| format!("cannot bind the membership socket on {}", options.bind))?;
        let local = socket
            .local_addr()
            .context("cannot read the membership socket's address")?;
        let local_addr = SocketAddr::new(options.advertise, local.port());
        // A damaged file costs only the wait for the next registration.
        let kept = load_setup(layout).unwrap_or_else(|error| {
            tracing::error!(error = %format!("{error:#}"), "membership setup not read");
            None
        });
        let shared = Arc::new(Shared::default());
        let (commands, receiver) = mpsc::unbounded_channel();
        let (changes, changed) = watch::channel(0);
        let identity = NodeId {
            node: options.node.clone(),
            addr: local_addr,
            version: env!("CARGO_PKG_VERSION").to_string(),
            run: crate::supervisor::now_ms(),
        };
        let driver = Driver {
            socket,
            shared: shared.clone(),
            changes,
            identity,
            join: options.join,
            layout: layout.clone(),
            member: None,
            keys: None,
            timers: BinaryHeap::new(),
        };
        let task = tokio::spawn(driver.run(receiver, kept));
        tracing::info!(addr = %local_addr, "membership listening");
        Ok(Membership {
            local_addr,
            shared,
            commands,
            changed,
            task,
        })
    }

    /// Where peers reach this node's membership socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Hands over (again) what the controller gave at registration.
    pub fn setup(&self, setup: MembershipSetup) {
        let _ = self.commands.send(Command::Setup(setup));
    }

    /// Takes the keys the controller hands out now (with every desired
    /// state it answers); the same keys again change nothing.
    pub fn set_keys(&self, keys: MembershipKeys) {
        let _ = self.commands.send(Command::Keys(keys));
    }

    /// This node's view of its peers.
    pub fn peers(&self) -> Vec<PeerView> {
        let view = self.shared.view.lock().unwrap_or_else(|p| p.into_inner());
        view.peers()
            .iter()
            .map(|(node, peer)| PeerView {
                node: node.clone(),
                state: peer.state,
                since_ms: peer.since_ms,
                address: peer.address.clone(),
                version: peer.version.clone(),
            })
            .collect()
    }

    /// Datagrams refused so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Changes whenever a peer's state does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Leaves gracefully (peers mark this node INACTIVE) and stops.
    pub async fn leave(&self) {
        let (done, left) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(LEAVE_GRACE, left).await;
        }
        self.task.abort();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The membership task's state.
struct Driver {
    socket: UdpSocket,
    shared: Arc<Shared>,
    changes: watch::Sender<u64>,
    identity: NodeId,
    join: Vec<SocketAddr>,
    layout: Layout,
    /// The detector and the keys, once a setup is known.
    member: Option<(Member, KeyRing)>,
    /// The keys `member`'s ring was made of.
    keys: Option<MembershipKeys>,
    timers: BinaryHeap<Reverse<(Instant, foca::Timer<NodeId>)>>,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        kept: Option<MembershipSetup>,
    ) {
        if let Some(setup) = kept {
            self.apply_setup(setup, false);
        }
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut join_retry = tokio::time::interval(JOIN_RETRY);
        join_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.receive(&buf[..len], from),
                    Err(error) => tracing::debug!(%error, "membership receive failed"),
                },
                () = sleep_until(next_timer) => self.fire_timers(),
                command = commands.recv() => match command {
                    Some(Command::Setup(setup)) => self.apply_setup(setup, true),
                    Some(Command::Keys(keys)) => self.apply_keys(keys),
                    Some(Command::Leave(done)) => {
                        if let Some((member, _)) = &mut self.member {
                            member.leave(LEAVE_COPIES, crate::supervisor::now_ms());
                        }
                        self.flush().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                _ = join_retry.tick() => self.retry_join(),
            }
            self.flush().await;
        }
    }

    fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some((member, key)) = &mut self.member else {
            return;
        };
        match key.open(datagram) {
            Some((kind, payload)) => member.handle(kind, payload, crate::supervisor::now_ms()),
            None => {
                let refused = self.shared.refused.fetch_add(1, Ordering::Relaxed) + 1;
                // One line per doubling: a flood cannot flood the log.
                if refused.is_power_of_two() {
                    tracing::warn!(%from, refused, "membership datagram refused: not authentic under any domain key this node accepts");
                }
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            if let Some((member, _)) = &mut self.member {
                member.handle_timer(timer, crate::supervisor::now_ms());
            }
        }
    }

    /// While the detector is not connected — it has no live member, or it
    /// was declared down and took a new identity — nothing of foca's runs
    /// (no probes, no announces to down members), so it announces itself
    /// to the `--join` addresses and to every member it knows, down ones
    /// included. That is how both sides of a healed partition, which
    /// declared each other down, find each other again.
    fn retry_join(&mut self) {
        if let Some((member, _)) = &mut self.member {
            if !member.connected() || member.active_members() == 0 {
                let mut addrs = member.known_addrs();
                addrs.extend(self.join.iter().copied());
                addrs.sort();
                addrs.dedup();
                let now = crate::supervisor::now_ms();
                for addr in addrs {
                    member.announce(addr, now);
                }
            }
        }
    }

    /// Starts the detector with `setup`, or takes a new key and new peers.
    fn apply_setup(&mut self, setup: MembershipSetup, from_controller: bool) {
        let key = match KeyRing::of(&setup.keys) {
            Ok(key) => key,
            Err(error) => {
                tracing::error!(%error, "membership setup refused; membership stays off");
                return;
            }
        };
        if from_controller {
            if let Err(error) = save_setup(&self.layout, &setup) {
                tracing::warn!(error = %format!("{error:#}"), "membership setup not kept");
            }
        }
        let peers: Vec<(String, SocketAddr)> = setup
            .peers
            .iter()
            .filter_map(|p| match p.address.parse::<SocketAddr>() {
                Ok(addr) => Some((p.node.clone(), addr)),
                Err(_) => {
                    tracing::warn!(node = %p.node, address = %p.address, "peer address is not IP:PORT; skipped");
                    None
                }
            })
            .collect();
        let now = crate::supervisor::now_ms();
        self.keys = Some(setup.keys.clone());
        match &mut self.member {
            Some((member, current)) => {
                *current = key;
                member.know_peers(&peers, now);
            }
            None => {
                let timings = setup.settings.timings();
                let config = foca_config(&timings, peers.len() + 1);
                let mut member = Member::new(self.identity.clone(), config, seed());
                member.know_peers(&peers, now);
                for addr in &self.join {
                    member.announce(*addr, now);
                }
                tracing::info!(
                    peers = peers.len(),
                    probe_interval = %setup.settings.probe_interval,
                    failure_threshold = %setup.settings.failure_threshold,
                    "membership started"
                );
                self.member = Some((member, key));
            }
        }
    }

    /// Takes new keys (a rotation's step) and keeps them with the setup
    /// for the next start. Before any setup there is nothing to key: the
    /// registration brings one.
    fn apply_keys(&mut self, keys: MembershipKeys) {
        let Some((_, ring)) = &mut self.member else {
            return;
        };
        if self.keys.as_ref() == Some(&keys) {
            return;
        }
        match KeyRing::of(&keys) {
            Ok(new) => *ring = new,
            Err(error) => {
                tracing::error!(%error, "membership keys refused; the current ones stay");
                return;
            }
        }
        match load_setup(&self.layout) {
            Ok(Some(mut setup)) => {
                setup.keys = keys.clone();
                if let Err(error) = save_setup(&self.layout, &setup) {
                    tracing::warn!(error = %format!("{error:#}"), "membership keys not kept");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "membership keys not kept");
            }
        }
        tracing::info!(also_accepted = keys.accept.len(), "membership keys changed");
        self.keys = Some(keys);
    }

    /// Sends what the detector wants sent, arms its timers and publishes
    /// its view's transitions.
    async fn flush(&mut self) {
        let Some((member, key)) = &mut self.member else {
            return;
        };
        let packets: Vec<Packet> = member.take_packets();
        let now = Instant::now();
        for (delay, timer) in member.take_timers() {
            self.timers.push(Reverse((now + delay, timer)));
        }
        let transitions = member.take_transitions();
        if !transitions.is_empty() {
            for t in &transitions {
                tracing::info!(peer = %t.peer, from = %t.from, to = %t.to, "peer membership changed");
            }
            *self.shared.view.lock().unwrap_or_else(|p| p.into_inner()) = member.view().clone();
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        for packet in packets {
            let datagram = key.seal(packet.kind, &packet.payload);
            if let Err(error) = self.socket.send_to(&datagram, packet.to).await {
                tracing::debug!(%error, to = %packet.to, "membership send failed");
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A seed for the detector's random choices (which peer to probe next).
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Only the order of probes depends on it; the time will do.
        return crate::supervisor::now_ms();
    }
    u64::from_le_bytes(bytes)
}

/// The setup kept from the last registration, if any.
fn load_setup(layout: &Layout) -> anyhow::Result<Option<MembershipSetup>> {
    let path = layout.membership();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "membership setup {} is not valid: delete it, the controller gives it again at the next registration",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_setup(layout: &Layout, setup: &MembershipSetup) -> anyhow::Result<()> {
    let path = layout.membership();
    let bytes = serde_json::to_vec_pretty(setup).context("membership setup does not serialize")?;
    layout::write_atomic_private(&path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
