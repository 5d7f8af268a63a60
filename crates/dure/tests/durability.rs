//! Durability and bad input: acknowledged saves survive kill -9 of the
//! controller at random moments, and damaged or altered domain packs are
//! refused naming the problem without touching the target directory.

mod common;

use common::*;
use dure_api::{Client, ClientError};
use dure_core::{NodeSpec, ServerSpec};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Rounds of writes, each ended by kill -9 of the controller.
const ROUNDS: usize = 5;
/// Each round writes for a random time up to this long.
const MAX_WRITE_TIME: Duration = Duration::from_secs(2);

/// A small deterministic generator; the seed is printed so a failing run
/// can be repeated with `DURE_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Rng {
        let seed = std::env::var("DURE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
            });
        eprintln!("durability seed: {seed} (set DURE_TEST_SEED to repeat)");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one server should look like after a crash: its last acknowledged
/// spec (`None`: not created yet) and a write sent but not acknowledged,
/// which may or may not have landed.
#[derive(Default, Clone)]
struct Expected {
    acked: Option<ServerSpec>,
    in_flight: Option<ServerSpec>,
}

fn spec(name: &str, port: u16, generation: u64) -> ServerSpec {
    let mut spec = command_server(name, "n1", port, vec!["/bin/true".into()]);
    spec.env.insert("GENERATION".into(), generation.to_string());
    spec
}

/// Creates and updates servers with `?save=true` until a request fails
/// (the controller was killed) or `until` passes. Returns the updated
/// expectations and how many writes were acknowledged.
async fn write_until_killed(
    client: Client,
    mut expected: BTreeMap<String, Expected>,
    round: usize,
    seed: u64,
    until: Instant,
) -> (BTreeMap<String, Expected>, usize) {
    let mut rng = Rng(seed | 1);
    let mut generation = 0u64;
    let mut acks = 0;
    while Instant::now() < until {
        generation += 1;
        let existing: Vec<String> = expected
            .iter()
            .filter(|(_, e)| e.acked.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        let update = !existing.is_empty() && rng.below(3) == 0;
        let (name, next) = if update {
            let name = existing[rng.below(existing.len() as u64) as usize].clone();
            let port = expected[&name]
                .acked
                .as_ref()
                .map_or(0, |s| s.ports["http"]);
            (name.clone(), spec(&name, port, generation))
        } else {
            let name = format!("r{round}-s{generation}");
            // Every create adds a name to `expected` for good, so its size
            // is a port no other server of any round has.
            let port = u16::try_from(10_000 + expected.len()).expect("a free port number left");
            (name.clone(), spec(&name, port, generation))
        };
        expected.entry(name.clone()).or_default().in_flight = Some(next.clone());
        let sent = if update {
            client.replace_server(&next).await.map(|_| ())
        } else {
            client.create_server(&next).await.map(|_| ())
        };
        let entry = expected.entry(name).or_default();
        match sent {
            Ok(()) => {
                entry.acked = entry.in_flight.take();
                acks += 1;
            }
            // An answer means the controller was up: a refusal is a broken
            // test, which would otherwise end the round early unnoticed.
            Err(error @ ClientError::Api { .. }) => {
                panic!("round {round}: the controller refused a save: {error}")
            }
            // The controller is gone: this write may or may not have landed.
            Err(_) => break,
        }
    }
    (expected, acks)
}

/// Checks every server against its expectation and returns the state
/// actually found, which the next round builds on.
async fn check_and_settle(
    client: &Client,
    expected: BTreeMap<String, Expected>,
    round: usize,
) -> BTreeMap<String, Expected> {
    let mut settled = BTreeMap::new();
    for (name, want) in expected {
        let found = match client.get_server(&name).await {
            Ok(view) => Some(view.spec),
            Err(e) if e.status() == Some(404) => None,
            Err(e) => panic!("round {round}: reading `{name}` failed: {e}"),
        };
        let allowed = found == want.acked || (want.in_flight.is_some() && found == want.in_flight);
        assert!(
            allowed,
            "round {round}: server `{name}` is {found:?} after kill -9, but the last acknowledged save was {:?} (in flight: {:?})",
            want.acked, want.in_flight
        );
        settled.insert(
            name,
            Expected {
                acked: found,
                in_flight: None,
            },
        );
    }
    settled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_saves_survive_kill_9_during_save_loops() {
    let mut sandbox = sandbox(&[]).await;
    let node: NodeSpec =
        serde_json::from_value(serde_json::json!({"name": "n1", "address": "127.0.0.1"}))
            .expect("node spec");
    sandbox
        .client()
        .with_save(Some(true))
        .put_node(&node)
        .await
        .expect("node defined");
    let mut rng = Rng::from_env_or_clock();
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let mut acknowledged = 0;
    for round in 0..ROUNDS {
        let client = sandbox.client().with_save(Some(true));
        let write_time =
            Duration::from_millis(100 + rng.below(MAX_WRITE_TIME.as_millis() as u64 - 100));
        // The writer stops by itself shortly after the kill at the latest.
        let until = Instant::now() + write_time + Duration::from_secs(2);
        let writer = tokio::spawn(write_until_killed(
            client,
            expected.clone(),
            round,
            rng.next(),
            until,
        ));
        tokio::time::sleep(write_time).await;
        sandbox.kill_controller().await.expect("kill -9");
        let (written, acks) = writer.await.expect("writer finished");
        eprintln!("round {round}: wrote for {write_time:?}, {acks} saves acknowledged");
        acknowledged += acks;
        sandbox.restart_controller().await.unwrap_or_else(|e| {
            panic!(
                "round {round}: the store must open cleanly after kill -9: {e:#}\n{}",
                sandbox.log("controller")
            )
        });
        expected = check_and_settle(&sandbox.client(), written, round).await;
    }
    assert!(
        acknowledged > ROUNDS,
        "the loop acknowledged too few saves ({acknowledged}) to show anything"
    );
    let log = sandbox.log("controller");
    assert!(
        !log.contains("corrupt"),
        "the store never reported damage:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// Damaged and altered archives.

/// The entries of a tar.gz, in order.
fn entries_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        out.push((path, data));
    }
    out
}

fn tar_gz(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, path, data.as_slice())
            .expect("append");
    }
    builder
        .into_inner()
        .and_then(|e| e.finish())
        .expect("finish")
}

/// The archive with its manifest's checksum of `entry` replaced.
fn with_wrong_checksum(bytes: &[u8], entry: &str) -> Vec<u8> {
    let mut entries = entries_of(bytes);
    let manifest = entries
        .iter_mut()
        .find(|(p, _)| p == "manifest.json")
        .expect("manifest entry");
    let mut value: serde_json::Value = serde_json::from_slice(&manifest.1).expect("manifest json");
    value["entries"][entry]["sha256"] = serde_json::json!("0".repeat(64));
    manifest.1 = serde_json::to_vec_pretty(&value).expect("manifest");
    tar_gz(&entries)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_archives_are_refused_and_nothing_is_written() {
    let sandbox = sandbox(&[]).await;
    let client = sandbox.client().with_save(Some(true));
    let node: NodeSpec =
        serde_json::from_value(serde_json::json!({"name": "n1", "address": "127.0.0.1"}))
            .expect("node spec");
    client.put_node(&node).await.expect("node");
    client
        .create_server(&spec("web1", 20_001, 1))
        .await
        .expect("server");
    let work = sandbox.dir().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let good = work.join("good.tar.gz");
    let (code, _, err) = cli(&sandbox, &["domain", "pack", &good.to_string_lossy()]);
    assert_eq!(code, 0, "pack: {err}");
    let bytes = std::fs::read(&good).expect("pack written");

    let server_entry = "config/nodes/n1/servers/web1/server.json";
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let without_entry: Vec<_> = entries_of(&bytes)
        .into_iter()
        .filter(|(p, _)| p != server_entry)
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a flipped byte", flipped, "damaged"),
        (
            "truncated",
            bytes[..bytes.len() * 3 / 5].to_vec(),
            "truncated",
        ),
        ("an entry removed", tar_gz(&without_entry), server_entry),
        (
            "a wrong manifest checksum",
            with_wrong_checksum(&bytes, server_entry),
            server_entry,
        ),
    ];
    for (what, archive, expected) in cases {
        let file = work.join("bad.tar.gz");
        std::fs::write(&file, &archive).expect("write bad archive");
        // A target that exists and is not empty, with --force: a refused
        // archive must leave it exactly as it was.
        let target = work.join("target");
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::write(target.join("keep.txt"), b"mine").expect("marker");
        let before = listing(&work);
        let (code, out, err) = cli(
            &sandbox,
            &[
                "domain",
                "unpack",
                &file.to_string_lossy(),
                "--data",
                &target.to_string_lossy(),
                "--force",
            ],
        );
        assert_ne!(code, 0, "{what}: unpack must fail\n{out}");
        assert!(
            err.contains(expected),
            "{what}: the message names the problem: {err}"
        );
        assert!(
            err.contains("bad.tar.gz"),
            "{what}: the message names the file: {err}"
        );
        assert_eq!(listing(&target), ["keep.txt"], "{what}: target untouched");
        assert_eq!(listing(&work), before, "{what}: nothing written beside it");
        let (code, _, err) = cli(&sandbox, &["domain", "verify", &file.to_string_lossy()]);
        assert_ne!(code, 0, "{what}: verify fails too");
        assert!(
            err.contains(expected),
            "{what}: verify names the problem: {err}"
        );
    }
}
