//! Durability under `kill -9`: every write the store acknowledged must be
//! there after the writing process dies without any chance to clean up.
//!
//! The test re-runs its own binary as the writer child (selected with
//! [`WRITER_ENV`]); the child runs many concurrent writer tasks, so the
//! store commits their writes in groups, and prints one line per
//! acknowledged put. The parent, after killing it, checks each acknowledged
//! key and revision, and that the revisions the store kept have no holes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use dure_store::{SqliteStore, Store};

/// Set to a directory to make [`crash_writer_child`] act as the writer.
const WRITER_ENV: &str = "DURE_STORE_CRASH_WRITER";

/// How long, and for how many acknowledgements, the parent lets a child
/// write before killing it.
const WRITE_FOR: Duration = Duration::from_secs(1);
const ACKS_BEFORE_KILL: usize = 3000;

/// Concurrent writer tasks in the child: enough that writes queue up
/// behind each fsync and are committed in groups.
const CHILD_WRITERS: usize = 16;

/// Bounds a child that is never killed (a parent that died): it stops by itself.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

fn db_path(dir: &Path) -> PathBuf {
    dir.join("store.db")
}

/// The writer half; a no-op unless run as the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_writer_child() {
    let Some(dir) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let store =
        Arc::new(SqliteStore::open(&db_path(Path::new(&dir))).expect("child opens the store"));
    let started = Instant::now();
    let writers: Vec<_> = (0..CHILD_WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0u64.. {
                    if started.elapsed() > CHILD_LIFETIME {
                        return;
                    }
                    let key = format!("/crash/{writer:02}/{i:08}");
                    let revision = store.put(&key, key.as_bytes()).await.expect("child put");
                    // Only now is the write acknowledged, so only now may it
                    // be reported; one locked write keeps the line whole.
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "ack {key} {revision}").expect("child stdout");
                    stdout.flush().expect("child stdout");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("child writer task");
    }
}

/// Kills and reaps the child however the test exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_writer(dir: &Path) -> KillOnDrop {
    let exe = std::env::current_exe().expect("test binary path");
    let stderr = std::fs::File::create(dir.join("child.stderr")).expect("child stderr file");
    let child = Command::new(exe)
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn writer child");
    KillOnDrop(child)
}

/// Parses an `ack <key> <revision>` line; other lines are the test harness's.
fn parse_ack(line: &str) -> Option<(String, u64)> {
    let mut words = line.strip_prefix("ack ")?.split(' ');
    let key = words.next()?.to_string();
    let revision = words.next()?.parse().ok()?;
    Some((key, revision))
}

/// Lets a writer run for a bounded time, SIGKILLs it, and returns every
/// write it acknowledged, including acks still in the pipe at the kill.
fn acks_until_killed(dir: &Path) -> Vec<(String, u64)> {
    let mut child = spawn_writer(dir);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // A thread reads, so the parent can stop waiting on a silent child.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ack) = parse_ack(&line) {
                if tx.send(ack).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + WRITE_FOR;
    let mut acks = Vec::new();
    while acks.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ack) => acks.push(ack),
            Err(_) => break,
        }
    }
    drop(child); // SIGKILL and reap; the pipe then reaches end of file.
    reader.join().expect("reader thread");
    acks.extend(rx.try_iter());
    acks
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    if std::env::var_os(WRITER_ENV).is_some() {
        return; // Never recurse from inside a child.
    }
    for round in 0..3 {
        let dir = tempfile::tempdir().expect("temp dir");
        let acks = acks_until_killed(dir.path());
        let child_stderr =
            std::fs::read_to_string(dir.path().join("child.stderr")).unwrap_or_default();
        assert!(
            !acks.is_empty(),
            "round {round}: the writer acknowledged nothing; its stderr:\n{child_stderr}"
        );

        let store = SqliteStore::open(&db_path(dir.path())).expect("reopen after kill -9");
        let last = acks.iter().map(|(_, rev)| *rev).max().unwrap_or(0);
        let current = store.current_revision().await.expect("revision");
        assert!(
            current >= last,
            "round {round}: store at {current}, but {last} was acknowledged"
        );
        for (key, revision) in &acks {
            let kv = store.get(key).await.expect("get").unwrap_or_else(|| {
                panic!("round {round}: acknowledged {key} at {revision} is lost")
            });
            assert_eq!(kv.mod_revision, *revision, "round {round}: {key}");
            assert_eq!(kv.value, key.as_bytes());
        }
        let revisions: Vec<u64> = acks.iter().map(|(_, revision)| *revision).collect();
        let distinct: std::collections::BTreeSet<u64> = revisions.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            revisions.len(),
            "round {round}: two acknowledged writes share a revision"
        );
        // Every put is one revision, so the kept history must hold each
        // revision from 1 to the current one exactly once: a group that
        // was cut short by the kill left nothing half-written.
        let kept: Vec<u64> = store
            .changes_since("/", 0)
            .await
            .expect("history")
            .iter()
            .map(|event| event.kv.mod_revision)
            .collect();
        assert!(
            kept.iter().copied().eq(1..=current),
            "round {round}: the revisions kept are not 1 to {current} without holes"
        );
        eprintln!(
            "round {round}: {} acknowledged writes survived, store at revision {current}",
            acks.len()
        );
    }
}
