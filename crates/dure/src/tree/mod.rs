//! Configuration trees in files, for `dure export`, `dure diff -f` and
//! `dure apply -f`: a directory of JSON documents (`DIR/nodes/n1/node.json`,
//! …), one TOML file with a table per document (`[nodes.n1]`,
//! `[servers.web1]`, `[clusters.shop]`), or one JSON file
//! (`{"version": N, "revision": R, "documents": {path: document}}`). Reading checks every
//! document against its type and names the file, line and field of a
//! problem.

mod toml_form;
mod typed;

use crate::exit::UsageError;
use dure_api::DocumentTree;
use dure_core::model::{canonical_json, paths};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

pub use toml_form::to_toml;
pub use typed::canonical_document;

/// How a tree is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Dir,
    Toml,
    Json,
}

impl Form {
    /// `.toml` and `.json` files by their extension; anything else is a
    /// directory.
    pub fn of(path: &Path) -> Form {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") if !path.is_dir() => Form::Toml,
            Some("json") if !path.is_dir() => Form::Json,
            _ => Form::Dir,
        }
    }
}

/// The single-file JSON form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTree {
    #[serde(default)]
    #[allow(dead_code)]
    version: u64,
    #[serde(default)]
    #[allow(dead_code)]
    revision: u64,
    documents: typed::Documents,
}

/// Reads a tree from a file or directory: document path → canonical JSON.
pub fn read(path: &Path) -> Result<BTreeMap<String, Value>, UsageError> {
    match Form::of(path) {
        Form::Dir => read_dir(path),
        Form::Toml => {
            let text = read_text(path)?;
            let parsed = toml::Deserializer::parse(&text)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            let tree: toml_form::TomlTree =
                serde_path_to_error::deserialize(parsed).map_err(|e| located(path, e))?;
            Ok(tree.documents())
        }
        Form::Json => {
            let text = read_text(path)?;
            let mut de = serde_json::Deserializer::from_str(&text);
            let tree: JsonTree =
                serde_path_to_error::deserialize(&mut de).map_err(|e| located(path, e))?;
            de.end()
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            Ok(tree.documents.0)
        }
    }
}

fn read_text(path: &Path) -> Result<String, UsageError> {
    std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))
}

/// Reads every `*.json` file under `dir` as the document its place names.
fn read_dir(dir: &Path) -> Result<BTreeMap<String, Value>, UsageError> {
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "{} is not a directory, a .toml file or a .json file",
            dir.display()
        )));
    }
    let mut docs = BTreeMap::new();
    for file in json_files(dir)? {
        let path = document_path(dir, &file);
        let text = read_text(&file)?;
        let mut de = serde_json::Deserializer::from_str(&text);
        let mut track = serde_path_to_error::Track::new();
        let value = typed::document_value(
            &path,
            serde_path_to_error::Deserializer::new(&mut de, &mut track),
        )
        .map_err(|e| located(&file, serde_path_to_error::Error::new(track.path(), e)))?;
        de.end()
            .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
        docs.insert(path, value);
    }
    Ok(docs)
}

/// Every `*.json` file under `dir`, sorted. Links to directories are not
/// followed, so a link back up the tree cannot make the walk endless.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, UsageError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let cannot_read =
            |e: std::io::Error| UsageError(format!("cannot read {}: {e}", next.display()));
        for entry in std::fs::read_dir(&next).map_err(cannot_read)? {
            let entry = entry.map_err(cannot_read)?;
            let path = entry.path();
            if entry.file_type().map_err(cannot_read)?.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `DIR/nodes/n1/node.json` → `/nodes/n1/node.json`.
fn document_path(dir: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(dir).unwrap_or(file);
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    format!("/{}", parts.join("/"))
}

/// A parse error naming the file, the field and the parser's position.
fn located<E: Display>(file: &Path, error: serde_path_to_error::Error<E>) -> UsageError {
    let field = error.path().to_string();
    let inner = error.into_inner().to_string();
    let inner = inner.trim_end();
    if field.is_empty() || field == "." {
        UsageError(format!("{}: {inner}", file.display()))
    } else {
        UsageError(format!("{}: field `{field}`: {inner}", file.display()))
    }
}

/// Writes `tree` to `path` in the form its name says; returns what was written.
pub fn write(path: &Path, tree: &DocumentTree) -> anyhow::Result<String> {
    match Form::of(path) {
        Form::Toml => {
            write_file(path, to_toml(tree)?.as_bytes())?;
            Ok(format!("wrote {}", path.display()))
        }
        Form::Json => {
            write_file(path, &canonical_json(tree))?;
            Ok(format!("wrote {}", path.display()))
        }
        Form::Dir => write_dir(path, tree),
    }
}

/// Writes each document as its own file, and removes document files left
/// from an earlier export that the tree no longer has, so the directory
/// is exactly the configuration. Other files are left alone.
fn write_dir(dir: &Path, tree: &DocumentTree) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut removed = 0;
    for file in json_files(dir)? {
        let path = document_path(dir, &file);
        if paths::parse(&path).is_some() && !tree.documents.contains_key(&path) {
            std::fs::remove_file(&file)
                .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", file.display()))?;
            removed += 1;
        }
    }
    for (path, value) in &tree.documents {
        let file = dir.join(path.trim_start_matches('/'));
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
        }
        write_file(&file, &canonical_document(path, value))?;
    }
    let stale = if removed > 0 {
        format!(", removed {removed} stale document file(s)")
    } else {
        String::new()
    };
    Ok(format!(
        "wrote {} document(s) under {}{stale}",
        tree.documents.len(),
        dir.display()
    ))
}

/// Writes a file whole: a reader never sees half of it.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> DocumentTree {
        let documents = serde_json::json!({
            "/nodes/n1/node.json": {"name": "n1", "address": "127.0.0.1"},
            "/nodes/n1/servers/web1/server.json": {"name": "web1", "node": "n1", "argv": ["/bin/app"]},
            "/clusters/shop/cluster.json": {"name": "shop", "members": ["web1"]}
        });
        let documents: BTreeMap<String, Value> = serde_json::from_value(documents).unwrap();
        let documents = documents
            .into_iter()
            .map(|(path, value)| {
                let typed = typed::document_value(&path, &value).unwrap();
                (path, typed)
            })
            .collect();
        DocumentTree {
            version: 2,
            revision: 3,
            documents,
        }
    }

    #[test]
    fn a_directory_holds_each_document_as_stored_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tree();
        write(dir.path(), &tree).unwrap();
        let node = std::fs::read_to_string(dir.path().join("nodes/n1/node.json")).unwrap();
        assert!(node.starts_with("{\n  \"name\": \"n1\","), "{node}");
        assert_eq!(read(dir.path()).unwrap(), tree.documents);
    }

    #[test]
    fn a_link_back_up_the_tree_is_not_walked() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tree();
        write(dir.path(), &tree).unwrap();
        // Followed, one link alone nests until the path is too deep to open.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("nodes/up")).unwrap();
        assert_eq!(read(dir.path()).unwrap(), tree.documents);
        write(dir.path(), &tree).unwrap();
    }
}
