//! Simulated agents, all in this process: each registers its node with an
//! instance id of its own, long-polls the node's desired state and reports
//! its 20 servers every heartbeat (1 s), over real HTTP on loopback with a
//! client (and so connections) of its own, as real agents do. Reports are
//! spread over the second so the load is steady, not one burst.
//!
//! The fleet records the round number each agent last saw in its desired
//! state and when, and, while recording, how long every report took.

use crate::tree::{node_name, server_name, ROUND_VAR};
use dure_api::{AgentHello, AgentMode, AgentReport, Client};
use dure_core::ObservedServer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The heartbeat the controller is started with.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long one long poll blocks, as real agents ask.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// Registrations in flight at once while the fleet grows.
const REGISTER_TURNS: usize = 32;
/// Pause before trying a failed call again.
const RETRY: Duration = Duration::from_millis(200);
/// Agent endpoint ports the agents say they listen on (nothing does: the
/// benchmark never asks the controller to reach an agent).
const AGENT_PORT_BASE: u16 = 30000;

/// What one agent has done so far.
#[derive(Default)]
struct Slot {
    polled: AtomicBool,
    reported: AtomicBool,
    /// The highest round seen in the desired state, and when (µs since the
    /// fleet's epoch).
    seen_round: AtomicU64,
    seen_at_us: AtomicU64,
}

/// What all agents share: report latencies while recording, and errors.
#[derive(Default)]
struct Shared {
    recording: AtomicBool,
    latencies: Mutex<Vec<Duration>>,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn failed(&self, what: &str, error: &dure_api::ClientError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(format!("{what}: {error}"));
    }
}

pub struct Fleet {
    url: String,
    token: String,
    servers: usize,
    epoch: Instant,
    slots: Vec<Arc<Slot>>,
    shared: Arc<Shared>,
    turns: Arc<Semaphore>,
    tasks: JoinSet<()>,
}

impl Fleet {
    pub fn new(url: &str, token: &str, servers: usize) -> Fleet {
        Fleet {
            url: url.to_string(),
            token: token.to_string(),
            servers,
            epoch: Instant::now(),
            slots: Vec::new(),
            shared: Arc::default(),
            turns: Arc::new(Semaphore::new(REGISTER_TURNS)),
            tasks: JoinSet::new(),
        }
    }

    /// Starts agents until there are `n`.
    pub fn grow_to(&mut self, n: usize) -> anyhow::Result<()> {
        for i in self.slots.len()..n {
            let slot = Arc::new(Slot::default());
            let agent = Agent {
                i,
                node: node_name(i),
                client: Client::new(&self.url, &self.token),
                hello: AgentHello {
                    node: node_name(i),
                    address: "127.0.0.1".into(),
                    agent_port: agent_port(i)?,
                    version: env!("CARGO_PKG_VERSION").into(),
                    instance_id: Some(format!("bench-{}-{i}", std::process::id())),
                    membership_port: None,
                },
                servers: self.servers,
                slot: slot.clone(),
                shared: self.shared.clone(),
                epoch: self.epoch,
            };
            let turns = self.turns.clone();
            self.tasks.spawn(agent.run(turns));
            self.slots.push(slot);
        }
        Ok(())
    }

    /// How many agents have had a desired state and sent a report.
    pub fn ready(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.polled.load(Ordering::SeqCst) && s.reported.load(Ordering::SeqCst))
            .count()
    }

    /// How many agents have seen `round` (or a later one).
    pub fn seen(&self, round: u64) -> usize {
        self.slots
            .iter()
            .filter(|s| s.seen_round.load(Ordering::SeqCst) >= round)
            .count()
    }

    /// When the last agent to see `round` saw it, if all did.
    pub fn all_seen_at(&self, round: u64) -> Option<Instant> {
        let mut last = Duration::ZERO;
        for slot in &self.slots {
            if slot.seen_round.load(Ordering::SeqCst) < round {
                return None;
            }
            last = last.max(Duration::from_micros(
                slot.seen_at_us.load(Ordering::SeqCst),
            ));
        }
        Some(self.epoch + last)
    }

    /// Starts recording report latencies, dropping what was recorded.
    pub fn record(&self) {
        self.shared
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.shared.recording.store(true, Ordering::SeqCst);
    }

    /// Stops recording; returns the latencies recorded since [`Fleet::record`].
    pub fn recorded(&self) -> Vec<Duration> {
        self.shared.recording.store(false, Ordering::SeqCst);
        std::mem::take(
            &mut *self
                .shared
                .latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Failed calls so far, and the last one's message.
    pub fn errors(&self) -> (u64, Option<String>) {
        (
            self.shared.errors.load(Ordering::SeqCst),
            self.shared
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn agent_port(i: usize) -> anyhow::Result<u16> {
    u16::try_from(i)
        .ok()
        .and_then(|i| AGENT_PORT_BASE.checked_add(i))
        .ok_or_else(|| anyhow::anyhow!("too many agents: {i}"))
}

/// One simulated agent.
struct Agent {
    i: usize,
    node: String,
    client: Client,
    hello: AgentHello,
    servers: usize,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    epoch: Instant,
}

impl Agent {
    async fn run(self, turns: Arc<Semaphore>) {
        loop {
            let registered = {
                let _turn = turns.acquire().await;
                self.client.register(&self.hello).await
            };
            match registered {
                Ok(_) => break,
                Err(error) => {
                    self.shared.failed("register", &error);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        tokio::join!(self.long_poll(), self.report_every_heartbeat());
    }

    /// Follows the desired state and notes each new round.
    async fn long_poll(&self) {
        let first = server_name(self.i, 0);
        let mut index = 0;
        loop {
            match self.client.desired(&self.node, index, POLL_WAIT).await {
                Ok(desired) => {
                    index = desired.index;
                    let round = desired
                        .servers
                        .iter()
                        .find(|s| s.spec.name == first)
                        .and_then(|s| s.spec.env.get(ROUND_VAR))
                        .and_then(|r| r.parse::<u64>().ok());
                    if let Some(round) = round {
                        if round > self.slot.seen_round.load(Ordering::SeqCst) {
                            let at =
                                u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                            self.slot.seen_at_us.store(at, Ordering::SeqCst);
                            self.slot.seen_round.store(round, Ordering::SeqCst);
                        }
                    }
                    self.slot.polled.store(true, Ordering::SeqCst);
                }
                Err(error) => {
                    self.shared.failed("long poll", &error);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Reports every server as stopped (as their intents say), once per
    /// heartbeat, at this agent's own phase within the second.
    async fn report_every_heartbeat(&self) {
        let since_ms = 1;
        let report = AgentReport {
            servers: (0..self.servers)
                .map(|j| ObservedServer::stopped(&server_name(self.i, j), since_ms))
                .collect(),
            mode: Some(AgentMode::Managed),
            independent_since_ms: None,
            drift: Vec::new(),
            address: Some(self.hello.address.clone()),
            agent_port: Some(self.hello.agent_port),
            version: Some(self.hello.version.clone()),
            instance_id: self.hello.instance_id.clone(),
            membership_port: None,
            peers: None,
            apps: Vec::new(),
        };
        // A fixed, well-spread phase per agent (golden-ratio steps).
        let phase = HEARTBEAT.mul_f64((self.i as f64 * 0.618_033_988_75).fract());
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, HEARTBEAT);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let started = Instant::now();
            match self.client.report(&self.node, &report).await {
                Ok(()) => {
                    let took = started.elapsed();
                    self.slot.reported.store(true, Ordering::SeqCst);
                    if self.shared.recording.load(Ordering::SeqCst) {
                        self.shared
                            .latencies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(took);
                    }
                }
                Err(error) => self.shared.failed("report", &error),
            }
        }
    }
}
