//! Pack, verify and unpack against real SQLite stores in temporary
//! directories: the round trip keeps every revision, and every kind of
//! damaged or altered archive is refused naming the problem, before
//! anything is written.

use super::archive::{self, Entry};
use super::manifest::{sha256_hex, Manifest, MANIFEST};
use super::*;
use crate::config_repo::{Author, ConfigRepo};
use crate::settings::ControllerFile;
use crate::testing::{node, server, TOKEN};
use dure_store::{SqliteStore, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A membership key as the controller writes one.
const MEMBERSHIP_KEY: &str = "7d5f0c8e2b1a49d3c6e8f0a2b4d6e8f013579bdf2468ace0fdb97531eca86420";

/// A store with two nodes, two servers, an edited and a deleted server,
/// history records and one intent.
async fn populated_store(dir: &Path) -> Arc<dyn Store> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("store.db")).expect("open store"));
    let repo = ConfigRepo::open(store.clone()).await.expect("open config");
    let author = |what: &str| Author::new("admin", what);
    for (what, edit) in [
        ("nodes", 0),
        ("web1", 1),
        ("web2", 2),
        ("tmp", 3),
        ("drop tmp", 4),
        ("edit web1", 5),
    ] {
        repo.edit(author(what), |d| match edit {
            0 => d.put_node(node("a")).and_then(|()| d.put_node(node("b"))),
            1 => d.create_server(server("web1", "a", 9001)),
            2 => d.create_server(server("web2", "b", 9002)),
            3 => d.create_server(server("tmp", "a", 9003)),
            4 => d.delete_server("tmp").map(|_| ()),
            _ => d.replace_server(server("web1", "a", 9011)).map(|_| ()),
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: {}", e.message));
    }
    store
        .put("/intents/web1", br#"{"intent":"run","generation":2}"#)
        .await
        .expect("intent");
    store
        .put("/events/00000000000000000001", b"{}")
        .await
        .expect("event");
    store
}

async fn pack_of(store: &dyn Store, secrets: bool) -> Pack {
    pack(
        &PackSource {
            store,
            token: Some(TOKEN),
            membership_key: Some(MEMBERSHIP_KEY.to_string()),
            ca: None,
            controller: ControllerFile {
                listen: Some("127.0.0.1:7070".parse().expect("addr")),
                backup_on_boot: Some(2),
                ..ControllerFile::default()
            },
            now_ms: 1_714_564_800_000,
        },
        secrets,
    )
    .await
    .expect("pack")
}

fn request(bytes: Vec<u8>, data_dir: &Path) -> UnpackRequest {
    UnpackRequest {
        archive: bytes,
        data_dir: data_dir.to_path_buf(),
        listen_ip: None,
        port: Some(7171),
        rename: None,
        force: false,
    }
}

#[tokio::test]
async fn round_trip_keeps_every_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = populated_store(dir.path()).await;
    let pack = pack_of(store.as_ref(), false).await;
    assert_eq!(
        pack.manifest.revision,
        store.current_revision().await.expect("rev")
    );
    assert_eq!(pack.manifest.contents.nodes, ["a", "b"]);
    assert_eq!(pack.manifest.contents.servers, 2);
    assert!(!pack.manifest.entries.contains_key(TOKEN_ENTRY));

    let target = dir.path().join("restored");
    let report = unpack(request(pack.bytes.clone(), &target))
        .await
        .expect("unpack");
    assert_eq!(report.revision, pack.manifest.revision);
    assert!(!report.token_restored);
    assert_eq!(report.listen.to_string(), "127.0.0.1:7171");
    let settings = ControllerFile::load(&target.join("controller.toml")).expect("config file");
    assert_eq!(settings.listen, Some(report.listen));
    assert_eq!(
        settings.backup_on_boot,
        Some(2),
        "settings travel with the pack"
    );
    assert!(!target.join("admin.token").exists());
    assert!(
        !target.join("membership.key").exists(),
        "the membership key is a secret: without secrets it is not packed"
    );

    let restored = SqliteStore::open(&target.join("store.db")).expect("open restored");
    assert_eq!(
        restored.current_revision().await.expect("rev"),
        pack.manifest.revision
    );
    for prefix in ["/config/", "/config-history/"] {
        assert_eq!(
            restored.export(prefix).await.expect("export").events,
            store.export(prefix).await.expect("export").events,
            "{prefix} history is identical"
        );
    }
    assert_eq!(
        restored.get("/intents/web1").await.expect("get"),
        store.get("/intents/web1").await.expect("get")
    );
    assert_eq!(
        restored.list("/events/").await.expect("list"),
        vec![],
        "events stay behind"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("unpacking")),
        "no staging directory is left: {names:?}"
    );
}

#[tokio::test]
async fn a_pack_after_housekeeping_keeps_the_configuration_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = populated_store(dir.path()).await;
    let full = pack_of(store.as_ref(), false).await;
    store
        .put("/intents/web1", br#"{"intent":"stop","generation":3}"#)
        .await
        .expect("intent");
    let now = store.current_revision().await.expect("rev");
    for prefix in crate::housekeeping::FORGET_PREFIXES {
        store.forget_history(prefix, now).await.expect("forget");
    }

    let pack = pack_of(store.as_ref(), false).await;
    assert_eq!(
        pack.manifest.compacted, 0,
        "the configuration history is whole"
    );
    assert_eq!(pack.manifest.contents, full.manifest.contents);
    let target = dir.path().join("restored");
    unpack(request(pack.bytes, &target)).await.expect("unpack");
    let restored = SqliteStore::open(&target.join("store.db")).expect("open restored");
    for prefix in FULL_HISTORY_PREFIXES {
        assert_eq!(
            restored.export(prefix).await.expect("export"),
            store.export(prefix).await.expect("export"),
            "{prefix} history is identical"
        );
    }
    assert_eq!(
        restored.get("/intents/web1").await.expect("get"),
        store.get("/intents/web1").await.expect("get"),
        "the current intent travels"
    );
}

#[tokio::test]
async fn rename_is_one_more_recorded_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = populated_store(dir.path()).await;
    let pack = pack_of(store.as_ref(), true).await;
    let target = dir.path().join("restored");
    let mut req = request(pack.bytes.clone(), &target);
    req.rename = Some("a=c".parse().expect("rename"));
    let report = unpack(req).await.expect("unpack");
    assert_eq!(report.revision, pack.manifest.revision + 1);
    assert_eq!(report.renamed, Some(("a".into(), "c".into())));
    assert!(report.token_restored);
    assert_eq!(
        std::fs::read_to_string(target.join("admin.token"))
            .expect("token")
            .trim(),
        TOKEN
    );
    let key_file = target.join("membership.key");
    assert_eq!(
        std::fs::read_to_string(&key_file)
            .expect("membership key")
            .trim(),
        MEMBERSHIP_KEY,
        "a restored controller keeps the key its agents hold"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let restored: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&target.join("store.db")).expect("open restored"));
    let repo = ConfigRepo::open(restored.clone())
        .await
        .expect("open config");
    repo.read(|d| {
        assert!(d.nodes.contains_key("c") && !d.nodes.contains_key("a"));
        assert_eq!(d.servers()["web1"].node, "c");
        assert_eq!(d.servers()["web2"].node, "b");
    });
    let history = repo.history(1).await.expect("history");
    assert_eq!(history[0].revision, report.revision);
    assert_eq!(history[0].message, "unpack: renamed node a to c");
    assert!(restored
        .get("/config/nodes/c/servers/web1/server.json")
        .await
        .expect("get")
        .is_some());

    let ambiguous = request(pack.bytes.clone(), &dir.path().join("other"));
    let err = unpack(UnpackRequest {
        rename: Some("z".parse().expect("rename")),
        ..ambiguous
    })
    .await
    .expect_err("two nodes");
    assert!(err.to_string().contains("--node OLD=z"), "{err}");
    assert!(
        !dir.path().join("other").exists(),
        "a refused rename writes nothing"
    );
}

#[tokio::test]
async fn a_non_empty_target_needs_force_and_is_kept_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = populated_store(dir.path()).await;
    let pack = pack_of(store.as_ref(), false).await;
    let target = dir.path().join("occupied");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("old.txt"), b"old").expect("write");
    let err = unpack(request(pack.bytes.clone(), &target))
        .await
        .expect_err("not empty");
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(target.join("old.txt").exists());

    let mut forced = request(pack.bytes.clone(), &target);
    forced.force = true;
    let report = unpack(forced).await.expect("forced unpack");
    let aside = report.replaced.expect("old directory kept");
    assert!(aside.join("old.txt").exists());
    assert!(target.join("store.db").exists() && !target.join("old.txt").exists());

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    unpack(request(pack.bytes, &empty))
        .await
        .expect("an empty directory is fine");
}

/// Rebuilds an archive from its entries after `change`, keeping the
/// original manifest unless `change` edits it.
fn altered(bytes: &[u8], change: impl FnOnce(&mut BTreeMap<String, Vec<u8>>)) -> Vec<u8> {
    let mut entries = archive::read(bytes).expect("read");
    change(&mut entries);
    let entries: Vec<Entry> = entries
        .into_iter()
        .map(|(path, bytes)| Entry {
            path,
            bytes,
            mode: 0o644,
        })
        .collect();
    archive::build(&entries, 0).expect("build")
}

fn edit_manifest(entries: &mut BTreeMap<String, Vec<u8>>, edit: impl FnOnce(&mut Manifest)) {
    let mut manifest: Manifest =
        serde_json::from_slice(&entries[MANIFEST]).expect("manifest parses");
    edit(&mut manifest);
    entries.insert(
        MANIFEST.into(),
        serde_json::to_vec(&manifest).expect("manifest serializes"),
    );
}

#[tokio::test]
async fn damaged_and_altered_archives_are_refused_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = populated_store(dir.path()).await;
    let good = pack_of(store.as_ref(), false).await.bytes;
    let node_entry = "config/nodes/a/node.json";
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() * 2 / 3].to_vec(),
            "damaged or truncated",
        ),
        ("flipped byte", flipped, "damaged"),
        (
            "tampered entry",
            altered(&good, |e| {
                e.insert(node_entry.into(), b"{\"name\":\"a\"}\n".to_vec());
            }),
            node_entry,
        ),
        (
            "removed entry",
            altered(&good, |e| {
                e.remove(node_entry);
            }),
            node_entry,
        ),
        (
            "added entry",
            altered(&good, |e| {
                e.insert("config/nodes/x/node.json".into(), b"{}".to_vec());
            }),
            "config/nodes/x/node.json",
        ),
        (
            "wrong manifest checksum",
            altered(&good, |e| {
                edit_manifest(e, |m| {
                    if let Some(d) = m.entries.get_mut(node_entry) {
                        d.sha256 = sha256_hex(b"something else");
                    }
                })
            }),
            node_entry,
        ),
        (
            "no manifest",
            altered(&good, |e| {
                e.remove(MANIFEST);
            }),
            "manifest.json",
        ),
        (
            "future format",
            altered(&good, |e| edit_manifest(e, |m| m.format_version = 99)),
            "format version 99",
        ),
        (
            "tree and history disagree",
            altered(&good, |e| {
                let doc = b"{\"name\":\"a\",\"address\":\"10.0.0.9\"}\n".to_vec();
                let digest = manifest::EntryDigest::of(&doc);
                e.insert(node_entry.into(), doc);
                edit_manifest(e, |m| {
                    m.entries.insert(node_entry.into(), digest);
                });
            }),
            "does not match the configuration history",
        ),
    ];
    for (what, bytes, expected) in cases {
        let target = dir.path().join("target");
        let err = unpack(request(bytes, &target))
            .await
            .expect_err(what)
            .to_string();
        assert!(err.contains(expected), "{what}: {err}");
        assert!(!target.exists(), "{what}: nothing was written");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("unpacking"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: no staging directory");
    }
}

#[tokio::test]
async fn boot_backups_keep_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = populated_store(dir.path()).await;
    let settings = ControllerFile {
        backup_on_boot: Some(2),
        ..ControllerFile::default()
    };
    let repo = ConfigRepo::open(store.clone()).await.expect("open config");
    let mut written = Vec::new();
    for i in 0..4 {
        let name = format!("n{i}");
        repo.edit(Author::new("admin", &name), |d| d.put_node(node(&name)))
            .await
            .expect("a save between boots");
        let backup = rotation::on_boot(&store, &settings, dir.path())
            .await
            .expect("enabled")
            .expect("backup written");
        assert_eq!(backup.version, 7 + i);
        written.push(backup.path);
    }
    let kept: Vec<_> = std::fs::read_dir(dir.path().join(rotation::BACKUP_DIR))
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for path in &written[2..] {
        let bytes = std::fs::read(path).expect("newest kept");
        verify(&bytes).expect("a kept backup verifies");
    }
    let off = ControllerFile::default();
    assert!(rotation::on_boot(&store, &off, dir.path()).await.is_none());
}

#[test]
fn pack_names_carry_the_utc_time() {
    assert_eq!(
        file_name("shop", 42, 1_714_564_800_123),
        "dure-domain-shop-v42-20240501T120000Z.tar.gz"
    );
}

#[tokio::test]
async fn a_pack_is_named_and_described_by_its_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = populated_store(dir.path()).await;
    let pack = pack_of(store.as_ref(), false).await;
    // Six saves; the stray intent and event writes moved the revision on.
    assert_eq!(pack.manifest.version, 6);
    assert!(pack.manifest.revision > 6);
    assert_eq!(
        pack.file_name,
        "dure-domain-default-v6-20240501T120000Z.tar.gz"
    );
    assert_eq!(verify(&pack.bytes).expect("verify").version, 6);
    let report = unpack(request(pack.bytes.clone(), &dir.path().join("restored")))
        .await
        .expect("unpack");
    assert_eq!((report.packed_version, report.version), (6, 6));

    let mut renaming = request(pack.bytes.clone(), &dir.path().join("renamed"));
    renaming.rename = Some("a=c".parse().expect("rename"));
    let renamed = unpack(renaming).await.expect("unpack with a rename");
    assert_eq!((renamed.packed_version, renamed.version), (6, 7));
    let restored: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("renamed/store.db")).expect("open restored"));
    let repo = ConfigRepo::open(restored).await.expect("open config");
    let versions: Vec<u64> = repo
        .history(10)
        .await
        .expect("history")
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(
        versions,
        [7, 6, 5, 4, 3, 2, 1],
        "the restore keeps the numbers"
    );

    let lying = altered(&pack.bytes, |e| edit_manifest(e, |m| m.version = 5));
    let err = verify(&lying).expect_err("a manifest naming another version");
    assert!(
        err.to_string()
            .contains("the manifest says version 5, but the history ends at version 6"),
        "{err}"
    );
}

#[tokio::test]
async fn a_pack_made_before_versions_still_verifies_and_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = populated_store(dir.path()).await;
    let pack = pack_of(store.as_ref(), false).await;
    // Such a pack's manifest has no `version` field.
    let old = altered(&pack.bytes, |entries| {
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&entries[MANIFEST]).expect("manifest parses");
        manifest
            .as_object_mut()
            .expect("an object")
            .remove("version");
        entries.insert(
            MANIFEST.into(),
            serde_json::to_vec(&manifest).expect("manifest serializes"),
        );
    });
    let verified = verify(&old).expect("an old pack verifies");
    assert_eq!(verified.manifest.version, 0);
    assert_eq!(verified.version, 6, "read from the history");
    let target = dir.path().join("restored");
    let report = unpack(request(old, &target)).await.expect("restores");
    assert_eq!(report.version, 6);
    let restored: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&target.join("store.db")).expect("open restored"));
    assert_eq!(
        ConfigRepo::open(restored)
            .await
            .expect("open")
            .saved()
            .version,
        6
    );
}

#[tokio::test]
async fn a_configuration_no_controller_could_read_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("open store");
    // History and tree agree, checksums hold, but the document is not a node.
    store
        .put("/config/nodes/a/node.json", br#"{"name":"a","colour":1}"#)
        .await
        .expect("put");
    let pack = pack_of(&store, false).await;
    let err = verify(&pack.bytes).expect_err("unreadable configuration");
    assert!(
        err.to_string()
            .contains("packed configuration cannot be read"),
        "{err}"
    );
    let target = dir.path().join("target");
    unpack(request(pack.bytes, &target))
        .await
        .expect_err("refused");
    assert!(!target.exists(), "nothing was written");
}
