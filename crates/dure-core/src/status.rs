//! The cluster status light, derived from its members' observed states.

use crate::state::ServerState;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A cluster's light on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    /// Every member is ready.
    Green,
    /// Some members are running, not all are ready.
    Yellow,
    /// No member with a fresh report is running.
    Red,
    /// No member has a fresh report.
    Gray,
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterStatus::Green => "green",
            ClusterStatus::Yellow => "yellow",
            ClusterStatus::Red => "red",
            ClusterStatus::Gray => "gray",
        })
    }
}

/// Computes the light from each member's state (`Unknown` for a member whose
/// node has no fresh report).
pub fn cluster_status(members: &[ServerState]) -> ClusterStatus {
    let known: Vec<ServerState> = members
        .iter()
        .copied()
        .filter(|s| *s != ServerState::Unknown)
        .collect();
    if known.is_empty() {
        ClusterStatus::Gray
    } else if members.iter().all(|s| *s == ServerState::Ready) {
        ClusterStatus::Green
    } else if known.iter().any(|s| s.is_alive()) {
        ClusterStatus::Yellow
    } else {
        ClusterStatus::Red
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ServerState::*;

    #[test]
    fn examples() {
        assert_eq!(cluster_status(&[Ready, Ready]), ClusterStatus::Green);
        assert_eq!(cluster_status(&[Ready, Failed]), ClusterStatus::Yellow);
        assert_eq!(cluster_status(&[Starting, Stopped]), ClusterStatus::Yellow);
        assert_eq!(cluster_status(&[Stopped, Failed]), ClusterStatus::Red);
        assert_eq!(cluster_status(&[Unknown, Unknown]), ClusterStatus::Gray);
        assert_eq!(cluster_status(&[]), ClusterStatus::Gray);
        assert_eq!(cluster_status(&[Ready, Unknown]), ClusterStatus::Yellow);
        assert_eq!(cluster_status(&[Stopped, Unknown]), ClusterStatus::Red);
    }

    fn any_state() -> impl Strategy<Value = ServerState> {
        prop_oneof![
            Just(Stopped),
            Just(Starting),
            Just(Running),
            Just(Ready),
            Just(Stopping),
            Just(Failed),
            Just(Unknown)
        ]
    }

    proptest! {
        #[test]
        fn green_iff_all_ready(states in proptest::collection::vec(any_state(), 1..12)) {
            let status = cluster_status(&states);
            prop_assert_eq!(status == ClusterStatus::Green, states.iter().all(|s| *s == Ready));
        }

        #[test]
        fn gray_iff_nothing_known(states in proptest::collection::vec(any_state(), 1..12)) {
            let status = cluster_status(&states);
            prop_assert_eq!(status == ClusterStatus::Gray, states.iter().all(|s| *s == Unknown));
        }

        #[test]
        fn red_means_nothing_alive(states in proptest::collection::vec(any_state(), 1..12)) {
            if cluster_status(&states) == ClusterStatus::Red {
                prop_assert!(states.iter().all(|s| !s.is_alive()));
            }
        }

        #[test]
        fn order_does_not_matter(mut states in proptest::collection::vec(any_state(), 1..12)) {
            let before = cluster_status(&states);
            states.reverse();
            prop_assert_eq!(cluster_status(&states), before);
        }
    }
}
