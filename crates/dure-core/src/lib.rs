//! Domain core of Dure: the configuration model (nodes, servers, clusters),
//! its validation, the server lifecycle and cluster status rules, restart
//! backoff and cluster operation plans.
//!
//! Architecture invariant: this crate does no I/O. Time is passed in as
//! milliseconds since the Unix epoch, never read from a clock here, so every
//! rule is a pure function that unit and property tests can drive directly.
#![forbid(unsafe_code)]

pub mod access;
pub mod application;
pub mod balance;
pub mod changeset;
pub mod domain;
pub mod domain_error;
pub mod domain_settings;
pub mod duration;
pub mod lb;
pub mod lb_export;
mod lb_rules;
pub mod lifecycle;
pub mod membership;
pub mod model;
pub mod name;
pub mod operation;
pub mod reconcile;
pub mod rename;
pub mod restart;
pub mod state;
pub mod status;
pub mod takeover;
pub mod template;
pub mod timefmt;

pub use domain::{Domain, DomainError};
pub use domain_settings::DomainSettings;
pub use duration::DurationSpec;
pub use lb::{ActiveCheck, ClusterBalance, LbSpec, Listener, Route, TlsFiles};
pub use model::{
    check_expected, document_digest, ClusterSpec, NodeSpec, Readiness, ReadyCheck, RestartMode,
    RestartPolicy, ServerSpec, StopPolicy, StopSignal,
};
pub use name::{validate_name, NameError, NameKind};
pub use state::{Intent, ObservedServer, ServerState};
pub use status::ClusterStatus;
