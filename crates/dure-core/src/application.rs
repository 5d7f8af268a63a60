//! Applications deployed to a cluster (`dure app deploy`): the rule for
//! context paths, the directory name a context is installed under (Tomcat's
//! naming: `/` is `ROOT`, `/a/b` is `a#b`), the kinds of artifact, the
//! SHA-256 digest form artifacts are stored under, and the record of one
//! application version.
//!
//! A version is a number per cluster (1, 2, 3, … over all its contexts,
//! never reused); a rollback deploys an earlier version's artifact again as
//! a new version that says which one it rolls back to.

use crate::model::ServerSpec;
use crate::template::TemplateKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest context path accepted.
pub const MAX_CONTEXT_LEN: usize = 200;

/// What the agent installs: a WAR file, copied as `<name>.war` for the
/// server to expand, or a directory (an exploded application, sent as a
/// tar archive), unpacked into `<name>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    War,
    Dir,
}

impl ArtifactKind {
    /// The kind of an artifact from its first bytes: a zip (`PK\3\4`, what
    /// a WAR is) or a POSIX tar (`ustar` at offset 257); `None` for
    /// anything else.
    pub fn sniff(head: &[u8]) -> Option<ArtifactKind> {
        if head.starts_with(b"PK\x03\x04") {
            Some(ArtifactKind::War)
        } else if head.get(257..262) == Some(b"ustar") {
            Some(ArtifactKind::Dir)
        } else {
            None
        }
    }

    /// How many leading bytes [`ArtifactKind::sniff`] needs.
    pub const SNIFF_BYTES: usize = 262;

    /// The name the application has in its server's application
    /// directory: `<dir>.war` or `<dir>`.
    pub fn installed_name(self, dir_name: &str) -> String {
        match self {
            ArtifactKind::War => format!("{dir_name}.war"),
            ArtifactKind::Dir => dir_name.to_string(),
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::War => "war",
            ArtifactKind::Dir => "dir",
        })
    }
}

/// Why a context path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("context path `{context}` is invalid: {reason}")]
pub struct ContextError {
    pub context: String,
    pub reason: &'static str,
}

/// Checks a context path: `/`, or `/` followed by segments of letters,
/// digits, `.`, `_`, `-` and `~` separated by single `/`, none starting
/// with `.` (dot names are where the agent keeps staged and previous
/// copies) and no trailing `/`; `/ROOT` is refused, since its directory
/// would be the root context's.
pub fn check_context(context: &str) -> Result<(), ContextError> {
    let refuse = |reason| {
        Err(ContextError {
            context: context.to_string(),
            reason,
        })
    };
    if context == "/" {
        return Ok(());
    }
    if context.len() > MAX_CONTEXT_LEN {
        return refuse("it is longer than 200 characters");
    }
    let Some(rest) = context.strip_prefix('/') else {
        return refuse("it must start with `/`, such as `/shop` or `/` for the root");
    };
    if rest.ends_with('/') {
        return refuse("it must not end with `/`");
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return refuse("it has an empty segment (`//`)");
        }
        if segment.starts_with('.') {
            return refuse("a segment must not start with `.`");
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~');
        if !segment.chars().all(allowed) {
            return refuse("use only letters, digits, `.`, `_`, `-` and `~` between the `/`");
        }
    }
    if rest == "ROOT" {
        return refuse("`/ROOT` would be installed where the root context `/` is: deploy to `/`");
    }
    Ok(())
}

/// The directory name of a valid context, as Tomcat names them: `/` is
/// `ROOT`, `/shop` is `shop`, `/a/b` is `a#b`.
pub fn dir_name(context: &str) -> String {
    match context {
        "/" => "ROOT".to_string(),
        path => path.trim_start_matches('/').replace('/', "#"),
    }
}

/// Whether `digest` is a SHA-256 digest as artifacts are named: 64
/// lowercase hexadecimal digits.
pub fn is_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether applications can be deployed to `spec`: it names its
/// application directory, or its template has one (a Tomcat's `webapps`).
pub fn has_app_dir(spec: &ServerSpec) -> bool {
    spec.app_dir.is_some()
        || spec
            .template
            .as_ref()
            .is_some_and(|t| t.kind == TemplateKind::Tomcat)
}

/// One deployed version of an application in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppVersion {
    pub cluster: String,
    pub context: String,
    /// The cluster's version number: 1, 2, 3, … over all its contexts.
    pub version: u64,
    /// SHA-256 of the artifact, as the controller stores it.
    pub digest: String,
    pub size: u64,
    pub kind: ArtifactKind,
    pub created_ms: u64,
    /// Who deployed it.
    pub actor: String,
    /// The deploy operation that installs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The version whose artifact a rollback deploys again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_named_like_tomcat_names_them() {
        assert_eq!(dir_name("/"), "ROOT");
        assert_eq!(dir_name("/shop"), "shop");
        assert_eq!(dir_name("/a/b"), "a#b");
        assert_eq!(
            ArtifactKind::War.installed_name(&dir_name("/a/b")),
            "a#b.war"
        );
        assert_eq!(ArtifactKind::Dir.installed_name("ROOT"), "ROOT");
    }

    #[test]
    fn bad_contexts_are_refused_with_the_reason() {
        for good in ["/", "/shop", "/a/b", "/v1.2_x-y~z"] {
            assert_eq!(check_context(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("", "start with `/`"),
            ("shop", "start with `/`"),
            ("/shop/", "end with `/`"),
            ("/a//b", "empty segment"),
            ("/..", "start with `.`"),
            ("/a/.dure", "start with `.`"),
            ("/a b", "only letters"),
            ("/a#b", "only letters"),
            ("/ROOT", "root context"),
        ] {
            let refused = check_context(bad).expect_err(bad);
            assert!(refused.to_string().contains(says), "{bad}: {refused}");
        }
        assert!(check_context(&format!("/{}", "a".repeat(MAX_CONTEXT_LEN))).is_err());
    }

    #[test]
    fn artifacts_are_told_by_their_first_bytes() {
        assert_eq!(
            ArtifactKind::sniff(b"PK\x03\x04rest"),
            Some(ArtifactKind::War)
        );
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(ArtifactKind::sniff(&tar), Some(ArtifactKind::Dir));
        assert_eq!(ArtifactKind::sniff(b"<html>"), None);
        assert_eq!(ArtifactKind::sniff(b""), None);
    }

    #[test]
    fn digests_are_lowercase_sha256_hex() {
        assert!(is_digest(&"ab".repeat(32)));
        assert!(!is_digest(&"AB".repeat(32)));
        assert!(!is_digest("abc"));
        assert!(!is_digest(&"../".repeat(22)[..64]));
    }
}
