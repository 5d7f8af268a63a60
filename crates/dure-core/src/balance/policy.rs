//! The balancing policies a cluster can use, and their names in
//! configuration documents and flags.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a pool chooses the member for a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Smooth weighted round robin (nginx's algorithm): over every run of
    /// `total weight` picks each member gets exactly its weight, spread out.
    #[default]
    RoundRobin,
    /// Weighted random, from the random number the caller passes.
    Random,
    /// Fewest in-flight requests relative to weight; ties in turn.
    LeastConn,
    /// Consistent hashing of a client key (a Maglev table): adding or
    /// removing one of n members moves about 1/n of the keys.
    IpHash,
}

/// Each policy with its name, once.
const POLICY_NAMES: [(Policy, &str); 4] = [
    (Policy::RoundRobin, "round_robin"),
    (Policy::Random, "random"),
    (Policy::LeastConn, "least_conn"),
    (Policy::IpHash, "ip_hash"),
];

impl Policy {
    /// Returns the name used in documents and flags, such as `round_robin`.
    pub fn as_str(self) -> &'static str {
        POLICY_NAMES
            .iter()
            .find(|(policy, _)| *policy == self)
            .map(|(_, name)| *name)
            .expect("every policy has a name")
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no balancing policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a balancing policy: use round_robin, random, least_conn or ip_hash")]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(word: &str) -> Result<Policy, UnknownPolicy> {
        POLICY_NAMES
            .iter()
            .find(|(_, name)| *name == word)
            .map(|(policy, _)| *policy)
            .ok_or_else(|| UnknownPolicy(word.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_policy() {
        for (policy, name) in POLICY_NAMES {
            assert_eq!(name.parse::<Policy>(), Ok(policy));
            assert_eq!(policy.to_string(), name);
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), policy);
        }
    }

    #[test]
    fn an_unknown_word_is_refused_naming_the_valid_ones() {
        let err = "roundrobin".parse::<Policy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`roundrobin` is not a balancing policy: use round_robin, random, least_conn or ip_hash"
        );
        let err = serde_json::from_str::<Policy>("\"fastest\"").unwrap_err();
        assert!(err.to_string().contains("least_conn"), "{err}");
    }
}
