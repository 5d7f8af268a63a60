//! `dure-bench-scale`: the controller scale benchmark (run it through
//! `bench/scale/run.sh`; see `bench/README.md`). Starts a real `dure
//! controller`, grows a fleet of simulated agents to each size asked for,
//! and measures at each size the controller's CPU and memory, the latency
//! of a report next to a `GET /v1/health` round trip in the same run, and
//! the time from a save that changes every node to every agent having it.

mod controller;
mod fleet;
mod tree;

use anyhow::Context;
use clap::Parser;
use controller::{cpu_ticks_of, ticks_per_second, Controller};
use dure_api::{ApplyQuery, Client, EventQuery};
use dure_bench::stats::{median, ms, percentile};
use fleet::Fleet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Targets for 1000 nodes × 20 servers on a 2-core machine.
const CPU_TARGET_PCT: f64 = 25.0;
const REPORT_P99_TARGET: Duration = Duration::from_millis(50);
const PROPAGATION_TARGET: Duration = Duration::from_secs(1);
const RSS_TARGET_MIB: f64 = 200.0;

/// Bounds of the waits, so a stuck run ends with an error.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// The event log is settled when its newest number held this long.
const SETTLED_FOR: Duration = Duration::from_secs(2);
/// How often the peer measures a health round trip.
const PEER_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Parser)]
#[command(about = "Controller scale benchmark: simulated agents against a real controller")]
struct Args {
    /// The `dure` binary to run as the controller (a release build).
    #[arg(long)]
    dure: PathBuf,
    /// Fleet sizes, measured in this order (the fleet only grows).
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    nodes: Vec<usize>,
    /// Servers per node.
    #[arg(long, default_value_t = 20)]
    servers: usize,
    /// Seconds of steady state measured at each size.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Saves measured (save → all agents) at each size.
    #[arg(long, default_value_t = 3)]
    saves: usize,
    /// Directory for the controller's data [default: a new one under the temp dir].
    #[arg(long)]
    work: Option<PathBuf>,
}

/// The figures of one fleet size.
struct Figures {
    nodes: usize,
    ramp: Duration,
    settle: Duration,
    cpu_pct: f64,
    simulator_cpu_pct: f64,
    rss_mib: f64,
    reports: Vec<Duration>,
    health: Vec<Duration>,
    propagation: Vec<Duration>,
    save_requests: Vec<Duration>,
    /// From the save's answer to the last agent having it (negative: every
    /// agent had it before the answer arrived), in ms.
    after_answer_ms: Vec<f64>,
    errors: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                eprintln!("error: cannot watch for SIGTERM: {error}");
                return std::process::ExitCode::FAILURE;
            }
        };
    // Dropping the run (on a signal) drops the controller, which kills it.
    let outcome = tokio::select! {
        outcome = run(args) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.nodes.windows(2).all(|w| w[0] < w[1]),
        "--nodes must grow: the fleet only gets bigger"
    );
    let work = match &args.work {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("dure-scale-{}", std::process::id())),
    };
    let controller = Controller::start(&args.dure, &work.join("controller"))?;
    println!(
        "controller pid {} at {} (log {}); load average {}",
        controller.pid(),
        controller.url,
        controller.log.display(),
        load_average()
    );
    let admin = Client::new(&controller.url, &controller.token).with_save(Some(true));
    let peer = Client::new(&controller.url, &controller.token);
    let mut fleet = Fleet::new(&controller.url, &controller.token, args.servers);
    let mut round = 0;
    let mut all = Vec::new();
    for &nodes in &args.nodes {
        round += 1;
        let figures = measure_size(
            &args,
            &controller,
            &admin,
            &peer,
            &mut fleet,
            nodes,
            &mut round,
        )
        .await
        .with_context(|| format!("at {nodes} nodes"))?;
        print_figures(&figures);
        all.push(figures);
    }
    println!();
    print_table(&args, &all);
    println!("load average at the end: {}", load_average());
    drop(controller);
    if args.work.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// Grows the fleet to `nodes` and measures it.
async fn measure_size(
    args: &Args,
    controller: &Controller,
    admin: &Client,
    peer: &Client,
    fleet: &mut Fleet,
    nodes: usize,
    round: &mut u64,
) -> anyhow::Result<Figures> {
    println!("\n{nodes} nodes × {} servers:", args.servers);
    let started = Instant::now();
    let tree = tree::tree(nodes, args.servers, *round)?;
    admin
        .apply(&tree, &ApplyQuery::default())
        .await
        .context("cannot save the configuration")?;
    println!(
        "  configuration saved in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    fleet.grow_to(nodes)?;
    wait_until(
        "every agent registered, polled and reported",
        READY_TIMEOUT,
        || fleet.ready() == nodes,
    )
    .await?;
    let ramp = started.elapsed();
    let settle_started = Instant::now();
    settle(admin).await?;
    let settle = settle_started.elapsed();
    println!(
        "  fleet ready in {:.1} s, event log settled in {:.1} s",
        ramp.as_secs_f64(),
        settle.as_secs_f64()
    );

    // Steady state: CPU, memory, report and health latencies.
    let errors_before = fleet.errors().0;
    let window = Duration::from_secs(args.window);
    let (health, stop_peer) = spawn_peer(peer.clone());
    let ticks = ticks_per_second() as f64;
    let cpu_before = controller.cpu_ticks()?;
    let own_before = cpu_ticks_of("/proc/self/stat")?;
    let window_started = Instant::now();
    fleet.record();
    tokio::time::sleep(window).await;
    let reports = fleet.recorded();
    let elapsed = window_started.elapsed().as_secs_f64();
    let cpu_pct = (controller.cpu_ticks()? - cpu_before) as f64 / ticks / elapsed * 100.0;
    let simulator_cpu_pct =
        (cpu_ticks_of("/proc/self/stat")? - own_before) as f64 / ticks / elapsed * 100.0;
    stop_peer.store(true, Ordering::SeqCst);
    let health = std::mem::take(&mut *health.lock().unwrap_or_else(|p| p.into_inner()));
    let rss_mib = controller.rss_kib()? as f64 / 1024.0;

    // Saves that change one server on every node: time until every agent has it.
    let mut propagation = Vec::new();
    let mut save_requests = Vec::new();
    let mut after_answer_ms = Vec::new();
    for _ in 0..args.saves {
        *round += 1;
        let tree = tree::tree(nodes, args.servers, *round)?;
        let sent = Instant::now();
        admin
            .apply(&tree, &ApplyQuery::default())
            .await
            .context("cannot save the next round")?;
        let answered = Instant::now();
        save_requests.push(answered - sent);
        let this_round = *round;
        wait_until("every agent has the new round", ROUND_TIMEOUT, || {
            fleet.seen(this_round) == nodes
        })
        .await?;
        let last = fleet
            .all_seen_at(this_round)
            .context("an agent lost the round")?;
        propagation.push(last.saturating_duration_since(sent));
        after_answer_ms.push(if last >= answered {
            ms(last - answered)
        } else {
            -ms(answered - last)
        });
    }
    let (errors, last_error) = fleet.errors();
    if errors > errors_before {
        if let Some(error) = last_error {
            println!(
                "  {} failed calls; the last: {error}",
                errors - errors_before
            );
        }
    }
    Ok(Figures {
        nodes,
        ramp,
        settle,
        cpu_pct,
        simulator_cpu_pct,
        rss_mib,
        reports,
        health,
        propagation,
        save_requests,
        after_answer_ms,
        errors: errors - errors_before,
    })
}

/// Measures `GET /v1/health` round trips until told to stop.
fn spawn_peer(peer: Client) -> (Arc<Mutex<Vec<Duration>>>, Arc<AtomicBool>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (out, done) = (samples.clone(), stop.clone());
    tokio::spawn(async move {
        while !done.load(Ordering::SeqCst) {
            let started = Instant::now();
            if peer.health().await.is_ok() {
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(started.elapsed());
            }
            tokio::time::sleep(PEER_EVERY).await;
        }
    });
    (samples, stop)
}

/// Waits until the event log's newest number held for [`SETTLED_FOR`]: the
/// events of the new agents' first reports are written.
async fn settle(admin: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let newest = || async {
        let query = EventQuery {
            last: Some(1),
            ..EventQuery::default()
        };
        admin
            .events(&query)
            .await
            .map(|events| events.last().map_or(0, |e| e.seq))
    };
    let mut seen = newest().await?;
    let mut since = Instant::now();
    while since.elapsed() < SETTLED_FOR {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the event log kept growing for {SETTLE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = newest().await?;
        if now != seen {
            seen = now;
            since = Instant::now();
        }
    }
    Ok(())
}

async fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "not {what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn print_figures(f: &Figures) {
    println!(
        "  {} reports, {} health round trips, {} saves measured; {} failed calls",
        f.reports.len(),
        f.health.len(),
        f.propagation.len(),
        f.errors
    );
}

fn median_signed_ms(samples: &[f64]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.get(sorted.len().saturating_sub(1) / 2) {
        Some(m) => format!("{m:+.1} ms"),
        None => "-".into(),
    }
}

/// The first three fields of `/proc/loadavg`: other work on the machine
/// skews every figure, so the run says how busy it was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn fmt_ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} ms", ms(d)))
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.1}×", ms(a) / ms(b)),
        _ => "-".into(),
    }
}

/// The summary: every figure with its target, PASS or MISS, and its peer.
fn print_table(args: &Args, all: &[Figures]) {
    println!(
        "controller scale: {} servers per node, heartbeat {:?}, {} s window, {} saves per size",
        args.servers,
        fleet::HEARTBEAT,
        args.window,
        args.saves
    );
    println!(
        "{:>5}  {:<24} {:>10}  {:>9}  {:<6} peer / note",
        "nodes", "figure", "value", "target", "result"
    );
    for f in all {
        let row = |figure: &str, value: String, target: &str, result: &str, note: String| {
            println!(
                "{:>5}  {:<24} {:>10}  {:>9}  {:<6} {note}",
                f.nodes, figure, value, target, result
            );
        };
        row(
            "controller CPU",
            format!("{:.1} %", f.cpu_pct),
            "< 25 %",
            verdict(f.cpu_pct < CPU_TARGET_PCT),
            format!(
                "of one core; the simulated agents used {:.1} %",
                f.simulator_cpu_pct
            ),
        );
        row(
            "controller RSS",
            format!("{:.1} MB", f.rss_mib),
            "< 200 MB",
            verdict(f.rss_mib < RSS_TARGET_MIB),
            String::new(),
        );
        let (r50, r99) = (median(&f.reports), percentile(&f.reports, 99.0));
        let (h50, h99) = (median(&f.health), percentile(&f.health, 99.0));
        row(
            "report p50",
            fmt_ms(r50),
            "-",
            "",
            format!("health p50 {} (ratio {})", fmt_ms(h50), ratio(r50, h50)),
        );
        row(
            "report p99",
            fmt_ms(r99),
            "< 50 ms",
            verdict(r99.is_some_and(|p| p < REPORT_P99_TARGET)),
            format!(
                "health p99 {} (ratio {}); {} reports",
                fmt_ms(h99),
                ratio(r99, h99),
                f.reports.len()
            ),
        );
        let (p50, pmax) = (median(&f.propagation), f.propagation.iter().max().copied());
        row(
            "save → all agents",
            fmt_ms(p50),
            "< 1 s",
            verdict(pmax.is_some_and(|p| p < PROPAGATION_TARGET)),
            format!(
                "median of {}, max {}; the save request itself {}, the last agent {} after its answer",
                f.propagation.len(),
                fmt_ms(pmax),
                fmt_ms(median(&f.save_requests)),
                median_signed_ms(&f.after_answer_ms)
            ),
        );
        println!(
            "{:>5}  (fleet ready in {:.1} s, events settled in {:.1} s, {} failed calls)",
            "",
            f.ramp.as_secs_f64(),
            f.settle.as_secs_f64(),
            f.errors
        );
    }
}
