//! Names of nodes, servers, clusters, balancers and ports: the one rule they all share.

use std::fmt;

/// What a name is for; used to say which kind of name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Node,
    Server,
    Cluster,
    Port,
    Lb,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Node => "node",
            NameKind::Server => "server",
            NameKind::Cluster => "cluster",
            NameKind::Port => "port",
            NameKind::Lb => "balancer",
        })
    }
}

/// A refused name, with the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name `{name}` is invalid: names are 1-63 characters of letters, digits, `-` and `_`, starting with a letter or digit")]
pub struct NameError {
    pub kind: NameKind,
    pub name: String,
}

/// The longest name accepted; keeps names usable as file names and DNS labels.
pub const MAX_NAME_LEN: usize = 63;

/// Checks `name` against the naming rule shared by every kind of object.
pub fn validate_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let first_ok = bytes.first().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if first_ok && rest_ok && bytes.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(NameError {
            kind,
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["web1", "a", "9lives", "node_a-2", &"x".repeat(63)] {
            assert!(validate_name(NameKind::Server, name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_bad_names_and_states_the_rule() {
        for name in [
            "",
            "-web",
            "_web",
            "web 1",
            "web/1",
            "wéb",
            "a.b",
            &"x".repeat(64),
        ] {
            let err = validate_name(NameKind::Cluster, name).unwrap_err();
            assert!(err.to_string().starts_with("cluster name"), "{err}");
            assert!(err.to_string().contains("1-63 characters"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn valid_names_never_contain_path_separators(name in "\\PC{0,80}") {
            if validate_name(NameKind::Node, &name).is_ok() {
                prop_assert!(!name.contains('/') && !name.contains('.') && !name.is_empty());
                prop_assert!(name.len() <= MAX_NAME_LEN);
            }
        }

        #[test]
        fn generated_valid_names_pass(name in "[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}") {
            prop_assert!(validate_name(NameKind::Server, &name).is_ok());
        }
    }
}
