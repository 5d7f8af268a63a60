//! `dure-bench-membership` (run by `bench/membership/run.sh`): the agents'
//! membership at scale, in virtual time. Each simulated node is the
//! agent's own detector (`dure_agent::membership::member::Member`, foca
//! with the domain's default settings); the network is in-process, drops
//! each datagram with the given probability and delays it by 0.1-0.5 ms.
//! For each cluster size it prints the messages per node per second, false
//! FAILED per simulated hour at the given loss, and the time until a
//! killed node is FAILED on every live peer (p50 / p99 over kills, and
//! p99 over every observer of every kill).

use clap::Parser;
use dure_agent::membership::member::{foca_config, Member, NodeId};
use dure_agent::membership::wire::Kind;
use dure_core::membership::{MembershipSettings, PeerState};
use foca::Timer;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

#[derive(Parser, Debug)]
struct Args {
    /// Cluster sizes to simulate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    nodes: Vec<usize>,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.05)]
    loss: f64,
    /// Simulated seconds with every node alive, counting false FAILED.
    #[arg(long, default_value_t = 300)]
    steady_secs: u64,
    /// Nodes killed one after another (kill -9: silent at once).
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Seed of the network's and the detectors' randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probe interval to simulate [default: the domain default].
    #[arg(long)]
    probe_interval: Option<dure_core::DurationSpec>,
    /// Failure threshold to simulate [default: the domain default].
    #[arg(long)]
    failure_threshold: Option<dure_core::DurationSpec>,
}

/// A small xorshift generator: the network's loss and delay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

enum Event {
    Deliver {
        to: usize,
        kind: Kind,
        payload: Vec<u8>,
    },
    Timer {
        node: usize,
        timer: Timer<NodeId>,
    },
}

struct Sim {
    now_us: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    members: Vec<Member>,
    alive: Vec<bool>,
    by_addr: HashMap<SocketAddr, usize>,
    rng: Rng,
    loss: f64,
    /// Datagrams sent by live nodes.
    sent: u64,
    /// (observer, peer, state, when in µs) of every transition.
    transitions: Vec<(usize, usize, PeerState, u64)>,
    index_of: HashMap<String, usize>,
}

fn addr_of(i: usize) -> SocketAddr {
    let i = u32::try_from(i).expect("cluster sizes fit in u32");
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 7946))
}

impl Sim {
    fn new(n: usize, loss: f64, seed: u64, settings: &MembershipSettings) -> Sim {
        let ids: Vec<NodeId> = (0..n)
            .map(|i| NodeId {
                node: format!("n{i}"),
                addr: addr_of(i),
                version: "bench".into(),
                run: 1,
            })
            .collect();
        let mut sim = Sim {
            now_us: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            members: Vec::with_capacity(n),
            alive: vec![true; n],
            by_addr: ids.iter().enumerate().map(|(i, id)| (id.addr, i)).collect(),
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            loss,
            sent: 0,
            transitions: Vec::new(),
            index_of: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.node.clone(), i))
                .collect(),
        };
        for (i, id) in ids.iter().enumerate() {
            let config = foca_config(&settings.timings(), n);
            let mut member = Member::new(id.clone(), config, seed.wrapping_add(i as u64));
            member.assume_members(ids.iter().filter(|o| o.addr != id.addr).cloned(), 0);
            sim.members.push(member);
            sim.drain(i);
        }
        // The view's start (every peer joined) is not a measurement.
        sim.transitions.clear();
        sim
    }

    fn schedule(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at_us, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Takes what node `i` wants sent and armed, and its transitions.
    fn drain(&mut self, i: usize) {
        let now = self.now_us;
        let packets = self.members[i].take_packets();
        for packet in packets {
            self.sent += 1;
            let Some(&to) = self.by_addr.get(&packet.to) else {
                continue;
            };
            if self.rng.chance(self.loss) {
                continue;
            }
            let delay = 100 + self.rng.next() % 400;
            self.schedule(
                now + delay,
                Event::Deliver {
                    to,
                    kind: packet.kind,
                    payload: packet.payload,
                },
            );
        }
        for (delay, timer) in self.members[i].take_timers() {
            let at = now + u64::try_from(delay.as_micros()).unwrap_or(u64::MAX / 2);
            self.schedule(at, Event::Timer { node: i, timer });
        }
        for t in self.members[i].take_transitions() {
            if let Some(&peer) = self.index_of.get(&t.peer) {
                self.transitions.push((i, peer, t.to, now));
            }
        }
    }

    /// Runs until `until_us`.
    fn run_until(&mut self, until_us: u64) {
        while let Some(&Reverse((at, seq))) = self.queue.peek() {
            if at > until_us {
                break;
            }
            self.queue.pop();
            let event = self
                .events
                .remove(&seq)
                .expect("every queued event is kept");
            self.now_us = at;
            let now_ms = at / 1000;
            let node = match event {
                Event::Deliver { to, kind, payload } => {
                    if !self.alive[to] {
                        continue;
                    }
                    self.members[to].handle(kind, &payload, now_ms);
                    to
                }
                Event::Timer { node, timer } => {
                    if !self.alive[node] {
                        continue;
                    }
                    self.members[node].handle_timer(timer, now_ms);
                    node
                }
            };
            self.drain(node);
        }
        self.now_us = until_us;
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut settings = MembershipSettings::default();
    if let Some(interval) = args.probe_interval {
        settings.probe_interval = interval;
    }
    if let Some(threshold) = args.failure_threshold {
        settings.failure_threshold = threshold;
    }
    settings.check()?;
    println!(
        "membership simulation: probe_interval {}, failure_threshold {}, loss {:.1}%, {} s steady, {} kills",
        settings.probe_interval,
        settings.failure_threshold,
        args.loss * 100.0,
        args.steady_secs,
        args.kills
    );
    println!(
        "{:>6}  {:>12}  {:>14}  {:>10}  {:>10}  {:>14}  {:>7}",
        "nodes",
        "msgs/node/s",
        "false FAILED/h",
        "detect p50",
        "detect p99",
        "p99 per peer",
        "missed"
    );
    for &n in &args.nodes {
        let started = std::time::Instant::now();
        let mut sim = Sim::new(n, args.loss, args.seed, &settings);
        // Warm-up: a few probe rounds before anything is counted.
        sim.run_until(5_000_000);
        sim.transitions.clear();
        let sent_before = sim.sent;
        let steady_end = sim.now_us + args.steady_secs * 1_000_000;
        sim.run_until(steady_end);
        let per_node_second =
            (sim.sent - sent_before) as f64 / n as f64 / args.steady_secs.max(1) as f64;
        // One false failure is seen by every observer it reaches: counted
        // once per peer, however many observers marked it within 10 s.
        let mut last_failed: HashMap<usize, u64> = HashMap::new();
        let mut false_failed = 0usize;
        for (_, peer, state, at) in &sim.transitions {
            if *state != PeerState::Failed {
                continue;
            }
            let fresh = last_failed
                .get(peer)
                .is_none_or(|last| at.saturating_sub(*last) > 10_000_000);
            if fresh {
                false_failed += 1;
                last_failed.insert(*peer, *at);
            }
        }
        let per_hour = false_failed as f64 * 3600.0 / args.steady_secs.max(1) as f64;

        // Kills: one node every 6 s; each stays dead.
        let mut everywhere = Vec::new();
        let mut per_peer = Vec::new();
        let mut missed = 0usize;
        for k in 0..args.kills.min(n / 2) {
            let victim = (k * 7919 + 13) % n;
            if !sim.alive[victim] {
                continue;
            }
            sim.transitions.clear();
            let killed_at = sim.now_us;
            sim.alive[victim] = false;
            sim.run_until(killed_at + 6_000_000);
            let mut seen: HashMap<usize, u64> = HashMap::new();
            for (observer, peer, state, at) in &sim.transitions {
                if *peer == victim && *state == PeerState::Failed {
                    seen.entry(*observer).or_insert(*at - killed_at);
                }
            }
            let observers = (0..n).filter(|o| sim.alive[*o] && *o != victim).count();
            if seen.len() < observers {
                missed += 1;
            } else if let Some(last) = seen.values().max() {
                everywhere.push(*last);
            }
            per_peer.extend(seen.values().copied());
        }
        everywhere.sort_unstable();
        per_peer.sort_unstable();
        println!(
            "{:>6}  {:>12.1}  {:>14.1}  {:>8}ms  {:>8}ms  {:>12}ms  {:>7}   ({} s)",
            n,
            per_node_second,
            per_hour,
            percentile(&everywhere, 50.0) / 1000,
            percentile(&everywhere, 99.0) / 1000,
            percentile(&per_peer, 99.0) / 1000,
            missed,
            started.elapsed().as_secs()
        );
    }
    Ok(())
}
