//! `dure-bench-store`: the group commit benchmark of the SQLite store (run
//! it through `bench/store/run.sh`; see `bench/README.md`). For each number
//! of concurrent writers it runs the same workload, small event-like
//! records, against the store as a controller opens it (group commit), the
//! same store with groups of one (one fsync per write), and plain rusqlite
//! with one transaction per insert (WAL, `synchronous=FULL`), alternating
//! the three over several rounds, and prints writes/s, p50 and p99 write
//! latency and the ratios of the grouped store to the two peers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use dure_bench::stats::{ms, percentile};
use dure_store::{SqliteStore, Store};

#[derive(Parser, Debug)]
#[command(about = "Group commit benchmark of the SQLite store")]
struct Args {
    /// Numbers of concurrent writers to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    writers: Vec<usize>,
    /// Rounds per number of writers; each round runs every variant once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// How long each variant writes in each round.
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    /// Bound on the writes of one writer in one run.
    #[arg(long, default_value_t = 20_000)]
    max_writes: usize,
    /// Directory for the databases (one fresh file per run, removed after).
    #[arg(long)]
    work: PathBuf,
}

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `SqliteStore::open`: queued writes share a commit.
    Grouped,
    /// The store with groups of one: one commit and fsync per write.
    StorePerWrite,
    /// Plain rusqlite, one transaction per insert, WAL + `synchronous=FULL`.
    RusqlitePerWrite,
}

const VARIANTS: [Variant; 3] = [
    Variant::Grouped,
    Variant::StorePerWrite,
    Variant::RusqlitePerWrite,
];

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Grouped => "store, group commit",
            Variant::StorePerWrite => "store, groups of 1",
            Variant::RusqlitePerWrite => "rusqlite, txn per insert",
        }
    }
}

/// The outcome of one run of one variant.
#[derive(Default)]
struct Run {
    writes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Every run of one variant at one number of writers.
#[derive(Default)]
struct Figures {
    rates: Vec<f64>,
    latencies: Vec<Duration>,
}

impl Figures {
    fn add(&mut self, run: Run) {
        self.rates
            .push(run.writes as f64 / run.elapsed.as_secs_f64().max(1e-9));
        self.latencies.extend(run.latencies);
    }

    /// The median rate over the rounds.
    fn rate(&self) -> f64 {
        let mut rates = self.rates.clone();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    }

    fn latency(&self, p: f64) -> f64 {
        percentile(&self.latencies, p).map_or(f64::NAN, ms)
    }
}

/// A value shaped like one event record (about 300 bytes of JSON).
fn event_value(writer: usize, seq: usize) -> Vec<u8> {
    let value = serde_json::json!({
        "seq": seq,
        "at_ms": 1_764_000_000_000u64 + seq as u64,
        "actor": format!("writer-{writer:03}"),
        "kind": "server",
        "subject": format!("web-{writer:03}"),
        "message": "server `web` on node `n1` is running (pid 4242, ready after 35 ms); intent start by `admin`, probe http:/health",
        "fields": {"node": "n1", "cluster": "web", "previous": "starting", "next": "running"},
    });
    serde_json::to_vec(&value).expect("a json value serializes")
}

fn event_key(writer: usize, seq: usize) -> String {
    format!("/events/{writer:03}/{seq:010}")
}

/// `writers` tasks each putting events into `store` until `duration` or
/// `max_writes` is reached.
async fn run_store(
    store: Arc<SqliteStore>,
    writers: usize,
    duration: Duration,
    max_writes: usize,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for seq in 0..max_writes {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let value = event_value(writer, seq);
                    let sent = Instant::now();
                    store.put(&event_key(writer, seq), &value).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut run = Run::default();
    for task in tasks {
        let latencies = task.await.context("a writer task failed")??;
        run.writes += latencies.len();
        run.latencies.extend(latencies);
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

/// The peer: `writers` threads sharing one rusqlite connection, each insert
/// its own transaction, as an application without group commit writes.
fn run_rusqlite(
    path: &Path,
    writers: usize,
    duration: Duration,
    max_writes: usize,
) -> anyhow::Result<Run> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
        row.get::<_, String>(0)
    })?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE events (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    )?;
    let conn = Arc::new(Mutex::new(conn));
    let started = Instant::now();
    let deadline = started + duration;
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut latencies = Vec::new();
                for seq in 0..max_writes {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let value = event_value(writer, seq);
                    let sent = Instant::now();
                    {
                        let mut conn = conn
                            .lock()
                            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))?;
                        let tx = conn.transaction()?;
                        tx.execute(
                            "INSERT INTO events (key, value) VALUES (?1, ?2)",
                            rusqlite::params![event_key(writer, seq), value],
                        )?;
                        tx.commit()?;
                    }
                    latencies.push(sent.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut run = Run::default();
    for thread in threads {
        let latencies = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        run.writes += latencies.len();
        run.latencies.extend(latencies);
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

async fn run_variant(
    variant: Variant,
    work: &Path,
    writers: usize,
    args: &Args,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir_in(work).context("cannot create a run directory")?;
    let path = dir.path().join("store.db");
    let duration = Duration::from_millis(args.duration_ms);
    let run = match variant {
        Variant::Grouped => {
            let store = Arc::new(SqliteStore::open_async(&path).await?);
            run_store(store, writers, duration, args.max_writes).await?
        }
        Variant::StorePerWrite => {
            let store = Arc::new(
                tokio::task::spawn_blocking(move || SqliteStore::open_with_group_limit(&path, 1))
                    .await??,
            );
            run_store(store, writers, duration, args.max_writes).await?
        }
        Variant::RusqlitePerWrite => {
            let writes = args.max_writes;
            tokio::task::spawn_blocking(move || run_rusqlite(&path, writers, duration, writes))
                .await??
        }
    };
    // The store (closed by now) and its directory go with `dir`.
    drop(dir);
    Ok(run)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        !args.writers.is_empty() && args.writers.iter().all(|w| *w > 0),
        "--writers must be numbers above 0"
    );
    std::fs::create_dir_all(&args.work)
        .with_context(|| format!("cannot create {}", args.work.display()))?;
    println!(
        "{} rounds of {} ms per variant, event values of {} bytes",
        args.rounds,
        args.duration_ms,
        event_value(0, 0).len()
    );
    println!(
        "{:>7}  {:<26} {:>10} {:>9} {:>9}",
        "writers", "variant", "writes/s", "p50 ms", "p99 ms"
    );
    for &writers in &args.writers {
        let mut figures: Vec<Figures> = VARIANTS.iter().map(|_| Figures::default()).collect();
        for round in 0..args.rounds {
            // Each round starts with the next variant, so none always runs
            // first (on a cold cache) or last.
            for i in 0..VARIANTS.len() {
                let which = (round + i) % VARIANTS.len();
                let run = run_variant(VARIANTS[which], &args.work, writers, &args).await?;
                figures[which].add(run);
            }
        }
        for (variant, figures) in VARIANTS.iter().zip(&figures) {
            println!(
                "{writers:>7}  {:<26} {:>10.0} {:>9.2} {:>9.2}",
                variant.label(),
                figures.rate(),
                figures.latency(50.0),
                figures.latency(99.0)
            );
        }
        let grouped = &figures[0];
        for (variant, peer) in VARIANTS.iter().zip(&figures).skip(1) {
            println!(
                "{writers:>7}  grouped / {}: writes/s {:.1}x, p50 {:.2}x, p99 {:.2}x",
                variant.label(),
                grouped.rate() / peer.rate(),
                grouped.latency(50.0) / peer.latency(50.0),
                grouped.latency(99.0) / peer.latency(99.0)
            );
        }
    }
    Ok(())
}
