//! The balancer's decisions, without I/O: which member of a cluster gets a
//! request, and whether that member is available.
//!
//! A [`Pool`] holds one cluster's members and everything that decides
//! their availability — the controller's state ([`MemberState`]), active
//! health checks ([`health`]) and passive outlier ejection ([`outlier`]) —
//! and picks a member by the cluster's [`Policy`]. The proxy keeps one pool
//! per cluster behind one lock and, per request, calls [`Pool::pick`] and
//! [`Pool::begin`] under that lock, then [`Pool::end`] with the outcome.
//! Sticky sessions ([`sticky`]) route a request by its cookie before the
//! policy does; [`retry`] says whether a failed attempt may go to another
//! member.
//!
//! ```
//! use dure_core::balance::{
//!     AttemptFailure, MemberSpec, MemberState, Outcome, PickContext, Pool, PoolConfig,
//!     RetryConfig,
//! };
//! use std::time::Duration;
//!
//! let mut pool = Pool::new(PoolConfig::default()).unwrap();
//! pool.update(&[MemberSpec::new("web1").weight(2), MemberSpec::new("web2")])
//!     .unwrap();
//! for name in ["web1", "web2"] {
//!     pool.set_state(name, MemberState::Serving).unwrap();
//! }
//! let now = Duration::from_secs(1);
//! let first = pool.pick(&PickContext::at(now)).unwrap();
//! pool.begin(first);
//! // The connection failed: count it, and retry elsewhere if allowed.
//! pool.end(first, AttemptFailure::ConnectFailed.outcome(), now);
//! assert!(RetryConfig::default().may_retry("POST", AttemptFailure::ConnectFailed, 0));
//! let tried = [first];
//! let ctx = PickContext { tried: &tried, ..PickContext::at(now) };
//! let second = pool.pick(&ctx).unwrap();
//! assert_ne!(second, first);
//! pool.begin(second);
//! pool.end(second, Outcome::of_status(200), now);
//! ```
//!
//! Time is passed in by the caller as a monotonic [`Duration`] since an
//! origin of its choosing (for example `Instant::now() - started`); nothing
//! here reads a clock. Randomness is passed in the same way.
//!
//! [`Duration`]: std::time::Duration

pub mod health;
pub mod latency;
mod least_conn;
mod maglev;
pub mod member;
pub mod outlier;
pub mod policy;
pub mod pool;
pub mod retry;
mod smooth;
pub mod sticky;
mod weighted_random;

pub use health::{HealthCheck, HealthConfig};
pub use member::{Availability, MemberId, MemberSpec, MemberState, MAX_WEIGHT};
pub use outlier::{Ejection, Outcome, OutlierConfig};
pub use policy::{Policy, UnknownPolicy};
pub use pool::{MemberView, PickContext, Pool, PoolConfig, PoolError};
pub use retry::{is_idempotent, AttemptFailure, RetryConfig};
pub use sticky::{Sticky, StickyPick};

#[cfg(test)]
mod tests;
