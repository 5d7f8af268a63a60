//! Change sets and configuration differences as pure functions over
//! document maps (path → canonical JSON text): the view a change set gives
//! on top of the saved configuration, restaging after an edit, the paths
//! where the saved configuration moved under a change set, and the
//! differences between two versions with a unified diff of each document.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A whole configuration: document path → canonical JSON text.
pub type Documents = BTreeMap<String, String>;

/// Turns canonical JSON bytes (always UTF-8) into texts.
pub fn texts(docs: BTreeMap<String, Vec<u8>>) -> Documents {
    docs.into_iter()
        .map(|(path, bytes)| {
            let text = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (path, text)
        })
        .collect()
}

/// One staged document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagedDocument {
    /// The saved text when the path was first staged (`None`: it did not
    /// exist). A save is refused when the saved text has moved from it.
    pub base: Option<String>,
    /// The staged text (`None`: the document is deleted).
    pub staged: Option<String>,
}

/// One caller's staged edits on top of the saved configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSet {
    /// The saved configuration revision the change set started from.
    pub base_revision: u64,
    /// When the first edit was staged (ms since the Unix epoch).
    pub created_ms: u64,
    /// Every path whose staged text differs from the saved one.
    pub documents: BTreeMap<String, StagedDocument>,
    /// What each staged edit was, oldest first; becomes the save's message.
    #[serde(default)]
    pub messages: Vec<String>,
}

impl ChangeSet {
    pub fn new(base_revision: u64, created_ms: u64) -> ChangeSet {
        ChangeSet {
            base_revision,
            created_ms,
            ..ChangeSet::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// Returns the configuration as it is with this change set applied on
    /// top of `saved`.
    pub fn apply_to(&self, saved: &Documents) -> Documents {
        let mut view = saved.clone();
        for (path, doc) in &self.documents {
            match &doc.staged {
                Some(text) => view.insert(path.clone(), text.clone()),
                None => view.remove(path),
            };
        }
        view
    }

    /// Makes the change set's view equal `wanted`: stages every path where
    /// `wanted` differs from `saved` and drops paths that no longer differ.
    /// A path already staged keeps the base it was first staged against, so
    /// a conflict with a save made since is never forgotten.
    pub fn restage(&mut self, saved: &Documents, wanted: &Documents) {
        let paths: BTreeSet<&String> = saved
            .keys()
            .chain(wanted.keys())
            .chain(self.documents.keys())
            .collect();
        let mut next = BTreeMap::new();
        for path in paths {
            let want = wanted.get(path);
            let now = saved.get(path);
            if want == now {
                continue;
            }
            let base = match self.documents.get(path) {
                Some(doc) => doc.base.clone(),
                None => now.cloned(),
            };
            next.insert(
                path.clone(),
                StagedDocument {
                    base,
                    staged: want.cloned(),
                },
            );
        }
        self.documents = next;
    }

    /// Returns the staged paths whose saved text moved since they were
    /// staged to something other than what this change set wants, sorted.
    pub fn conflicts(&self, saved: &Documents) -> Vec<String> {
        self.documents
            .iter()
            .filter(|(path, doc)| {
                let now = saved.get(*path);
                now != doc.base.as_ref() && now != doc.staged.as_ref()
            })
            .map(|(path, _)| path.clone())
            .collect()
    }
}

/// How a document differs between two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One document that differs between two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Difference {
    pub fn kind(&self) -> ChangeKind {
        match (&self.old, &self.new) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Deleted,
            _ => ChangeKind::Modified,
        }
    }

    /// Returns the unified diff of the document (old → new), with `a/` and
    /// `b/` paths as `git diff` writes them.
    pub fn unified(&self) -> String {
        let old = self.old.as_deref().unwrap_or("");
        let new = self.new.as_deref().unwrap_or("");
        let relative = self.path.trim_start_matches('/');
        let from = match self.old {
            Some(_) => format!("a/{relative}"),
            None => "/dev/null".to_string(),
        };
        let to = match self.new {
            Some(_) => format!("b/{relative}"),
            None => "/dev/null".to_string(),
        };
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(&from, &to)
            .to_string()
    }
}

/// Returns every path whose text differs between `old` and `new`, sorted.
pub fn differences(old: &Documents, new: &Documents) -> Vec<Difference> {
    let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    paths
        .into_iter()
        .filter(|path| old.get(*path) != new.get(*path))
        .map(|path| Difference {
            path: path.clone(),
            old: old.get(path).cloned(),
            new: new.get(path).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(pairs: &[(&str, &str)]) -> Documents {
        pairs
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    const WEB1: &str = "/nodes/n1/servers/web1/server.json";
    const WEB2: &str = "/nodes/n1/servers/web2/server.json";
    const CLUSTER: &str = "/clusters/c/cluster.json";

    #[test]
    fn staging_keeps_only_differences_and_the_view_shows_them() {
        let saved = docs(&[(WEB1, "w1\n"), (WEB2, "w2\n")]);
        let mut cs = ChangeSet::new(7, 0);
        let wanted = docs(&[(WEB1, "w1 changed\n"), (CLUSTER, "c\n")]);
        cs.restage(&saved, &wanted);
        assert_eq!(cs.documents.len(), 3);
        assert_eq!(cs.apply_to(&saved), wanted);
        assert_eq!(
            cs.documents[WEB2],
            StagedDocument {
                base: Some("w2\n".into()),
                staged: None
            }
        );
        // Putting a document back as saved unstages it.
        let mut back = wanted.clone();
        back.insert(WEB2.into(), "w2\n".into());
        cs.restage(&saved, &back);
        assert!(!cs.documents.contains_key(WEB2));
        cs.restage(&saved, &saved);
        assert!(cs.is_empty());
    }

    #[test]
    fn a_moved_saved_document_conflicts_and_restaging_keeps_the_base() {
        let saved = docs(&[(WEB1, "weight 100\n"), (WEB2, "w2\n")]);
        let mut cs = ChangeSet::new(1, 0);
        let mut wanted = saved.clone();
        wanted.insert(WEB1.into(), "weight 5\n".into());
        cs.restage(&saved, &wanted);
        assert!(cs.conflicts(&saved).is_empty());

        // Someone saves a direct change to web1 and an unrelated one to web2.
        let moved = docs(&[(WEB1, "weight 50\n"), (WEB2, "w2 moved\n")]);
        assert_eq!(cs.conflicts(&moved), [WEB1]);
        // An unrelated staged edit on top of the moved config keeps the old base.
        let mut view = cs.apply_to(&moved);
        view.insert(CLUSTER.into(), "c\n".into());
        cs.restage(&moved, &view);
        assert_eq!(cs.documents[WEB1].base.as_deref(), Some("weight 100\n"));
        assert_eq!(cs.documents[CLUSTER].base, None);
        assert_eq!(cs.conflicts(&moved), [WEB1]);
        // A save that made the same change is no conflict.
        let same = docs(&[(WEB1, "weight 5\n"), (WEB2, "w2 moved\n")]);
        assert!(cs.conflicts(&same).is_empty());
    }

    #[test]
    fn deleting_and_recreating_in_the_saved_config_conflicts() {
        let saved = docs(&[(WEB1, "a\n")]);
        let mut cs = ChangeSet::new(1, 0);
        cs.restage(&saved, &Documents::new());
        assert!(cs.conflicts(&saved).is_empty());
        assert_eq!(cs.conflicts(&docs(&[(WEB1, "b\n")])), [WEB1]);
        // Already deleted by a save: what the change set wants anyway.
        assert!(cs.conflicts(&Documents::new()).is_empty());

        let mut added = ChangeSet::new(1, 0);
        added.restage(&Documents::new(), &docs(&[(CLUSTER, "mine\n")]));
        assert_eq!(added.conflicts(&docs(&[(CLUSTER, "theirs\n")])), [CLUSTER]);
    }

    #[test]
    fn differences_have_kinds_and_unified_diffs() {
        let old = docs(&[(WEB1, "{\n  \"weight\": 100\n}\n"), (WEB2, "x\n")]);
        let new = docs(&[(WEB1, "{\n  \"weight\": 5\n}\n"), (CLUSTER, "c\n")]);
        let diffs = differences(&old, &new);
        let kinds: Vec<_> = diffs.iter().map(|d| (d.path.as_str(), d.kind())).collect();
        assert_eq!(
            kinds,
            [
                (CLUSTER, ChangeKind::Added),
                (WEB1, ChangeKind::Modified),
                (WEB2, ChangeKind::Deleted)
            ]
        );
        assert_eq!(
            diffs[1].unified(),
            "--- a/nodes/n1/servers/web1/server.json\n\
             +++ b/nodes/n1/servers/web1/server.json\n\
             @@ -1,3 +1,3 @@\n \
             {\n\
             -  \"weight\": 100\n\
             +  \"weight\": 5\n \
             }\n"
        );
        assert!(diffs[0]
            .unified()
            .starts_with("--- /dev/null\n+++ b/clusters/c/cluster.json\n"));
        assert!(diffs[2].unified().contains("+++ /dev/null\n"));
        assert!(differences(&old, &old).is_empty());
    }

    #[test]
    fn change_sets_round_trip_as_json() {
        let mut cs = ChangeSet::new(3, 42);
        cs.restage(&Documents::new(), &docs(&[(CLUSTER, "c\n")]));
        cs.messages.push("created cluster `c`".into());
        let text = serde_json::to_string(&cs).unwrap();
        assert_eq!(serde_json::from_str::<ChangeSet>(&text).unwrap(), cs);
    }
}
