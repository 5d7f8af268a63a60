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
//! Time is passed in by the caller as a monotonic [`Duration`] since an
//! origin of its choosing (for example `Instant::now() - started`); nothing
//! here reads a clock. Randomness is passed in the same way.
//!
//! [`Duration`]: std::time::Duration

pub mod health;
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
