//! What a pool knows of one member: its configuration ([`MemberSpec`]),
//! its handle ([`MemberId`]), the controller's word on it
//! ([`MemberState`]) and what that all adds up to ([`Availability`]).

use crate::state::ServerState;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The largest weight a member may have: a server's own bound, so every
/// weight an operator can give a server reaches the balancer as it is.
/// Weights are relative, and the round robin schedule divides them by
/// their greatest common divisor, so the usual weights (100 each) cost one
/// entry per member.
pub const MAX_WEIGHT: u32 = crate::model::MAX_WEIGHT;

/// One member of a cluster as the balancer is configured with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    /// The server's name; the member's identity across updates.
    pub name: String,
    /// Its relative share of requests, 1 to [`MAX_WEIGHT`].
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Used only while every primary (non-backup) member is unavailable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup: bool,
    /// The route sticky sessions name it by (a Tomcat `jvmRoute` that is
    /// not the server's name); its name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

fn default_weight() -> u32 {
    1
}

impl MemberSpec {
    /// Returns a primary member of weight 1.
    pub fn new(name: impl Into<String>) -> MemberSpec {
        MemberSpec {
            name: name.into(),
            weight: default_weight(),
            backup: false,
            route: None,
        }
    }

    /// Returns the member with weight `weight`.
    pub fn weight(mut self, weight: u32) -> MemberSpec {
        self.weight = weight;
        self
    }

    /// Returns the member marked as a backup.
    pub fn backup(mut self) -> MemberSpec {
        self.backup = true;
        self
    }

    /// Returns the member with sticky route `route`.
    pub fn route(mut self, route: impl Into<String>) -> MemberSpec {
        self.route = Some(route.into());
        self
    }

    /// Returns the route sticky sessions name the member by.
    pub fn route_name(&self) -> &str {
        self.route.as_deref().unwrap_or(&self.name)
    }
}

/// The longest route accepted, as long as the longest name.
pub const MAX_ROUTE_LEN: usize = crate::name::MAX_NAME_LEN;

/// Returns whether `route` can be a route: 1 to [`MAX_ROUTE_LEN`] letters,
/// digits, `-`, `_` and `.`, all safe in a cookie value and a session id.
pub fn is_valid_route(route: &str) -> bool {
    (1..=MAX_ROUTE_LEN).contains(&route.len())
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A handle on a member of one [`Pool`](super::Pool), valid until the
/// member is removed. A handle of a removed member is never confused with a
/// member added later: every call given it does nothing, so an in-flight
/// request that ends after its member went away is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// The controller's word on a member, the first input of its availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Ready: takes new requests (if its health allows).
    Serving,
    /// Being stopped gracefully: takes no new requests; requests bound to it
    /// by a sticky session still go to it until `deadline` (a time on the
    /// caller's monotonic clock), then none.
    Draining {
        /// When sticky requests stop going to the member.
        deadline: Duration,
    },
    /// Anything else: stopped, stopping, starting, failed, unknown. Takes
    /// nothing, before any health check notices.
    Out,
}

impl MemberState {
    /// Returns the state a member in server state `state` has: only a
    /// `ready` server serves. A `running` one failed its readiness probe,
    /// a `starting` one has not passed it yet, and `unknown` means its
    /// node stopped reporting: each is out at once.
    pub fn from_server_state(state: ServerState) -> MemberState {
        match state {
            ServerState::Ready => MemberState::Serving,
            ServerState::Stopped
            | ServerState::Starting
            | ServerState::Running
            | ServerState::Stopping
            | ServerState::Failed
            | ServerState::Unknown => MemberState::Out,
        }
    }
}

/// What a member may take at a given time, all inputs combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// New and sticky requests.
    Available,
    /// Only requests bound to it by a sticky session (draining, before its
    /// deadline, healthy and not ejected).
    StickyOnly,
    /// Nothing.
    Unavailable,
}

impl Availability {
    /// Combines the controller's state, the active health check and the
    /// passive ejection at time `now`.
    pub fn of(state: MemberState, healthy: bool, ejected: bool, now: Duration) -> Availability {
        if !healthy || ejected {
            return Availability::Unavailable;
        }
        match state {
            MemberState::Serving => Availability::Available,
            MemberState::Draining { deadline } if now < deadline => Availability::StickyOnly,
            MemberState::Draining { .. } | MemberState::Out => Availability::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ready_server_serves() {
        use ServerState::*;
        for state in [Stopped, Starting, Running, Ready, Stopping, Failed, Unknown] {
            let expected = if state == Ready {
                MemberState::Serving
            } else {
                MemberState::Out
            };
            assert_eq!(MemberState::from_server_state(state), expected, "{state}");
        }
    }

    #[test]
    fn draining_takes_sticky_requests_until_its_deadline() {
        let draining = MemberState::Draining {
            deadline: Duration::from_secs(10),
        };
        let at = Duration::from_secs;
        assert_eq!(
            Availability::of(draining, true, false, at(9)),
            Availability::StickyOnly
        );
        assert_eq!(
            Availability::of(draining, true, false, at(10)),
            Availability::Unavailable
        );
        assert_eq!(
            Availability::of(draining, false, false, at(1)),
            Availability::Unavailable
        );
    }

    #[test]
    fn health_and_ejection_each_take_a_serving_member_out() {
        let now = Duration::ZERO;
        let serving = MemberState::Serving;
        assert_eq!(
            Availability::of(serving, true, false, now),
            Availability::Available
        );
        assert_eq!(
            Availability::of(serving, false, false, now),
            Availability::Unavailable
        );
        assert_eq!(
            Availability::of(serving, true, true, now),
            Availability::Unavailable
        );
        assert_eq!(
            Availability::of(MemberState::Out, true, false, now),
            Availability::Unavailable
        );
    }

    #[test]
    fn a_spec_reads_with_defaults() {
        let spec: MemberSpec = serde_json::from_str(r#"{"name":"web1"}"#).unwrap();
        assert_eq!(spec, MemberSpec::new("web1"));
        let spec: MemberSpec =
            serde_json::from_str(r#"{"name":"web2","weight":5,"backup":true}"#).unwrap();
        assert_eq!(spec, MemberSpec::new("web2").weight(5).backup());
        let spec: MemberSpec = serde_json::from_str(r#"{"name":"web3","route":"jvm3"}"#).unwrap();
        assert_eq!(spec.route_name(), "jvm3");
        assert_eq!(MemberSpec::new("web4").route_name(), "web4");
    }

    #[test]
    fn a_route_is_cookie_safe() {
        for route in ["web1", "jvm.3", "a-b_c"] {
            assert!(is_valid_route(route), "{route}");
        }
        for route in ["", "a b", "a;b", "a=b", "\"a\"", &"x".repeat(64)] {
            assert!(!is_valid_route(route), "{route}");
        }
    }
}
