//! The wire contract of Dure's REST API: every JSON shape the controller
//! serves or accepts, the route paths, and a typed async client.
//!
//! API boundary: this is the only crate that knows JSON shapes of the API;
//! the controller, the agent and the CLI all go through these types.

pub mod auth;
pub mod client;
pub mod file_body;
pub mod identity;
pub mod routes;
pub mod sse;
pub mod tls;
pub mod tls_listener;
pub mod types;

pub use client::{
    ArtifactDownload, ChangeOutcome, Changed, Client, ClientError, ConfigChange, Watched,
};
pub use sse::{EventStream, StreamMessage};
pub use tls::{ClientTls, TrustError, CA_FILE};
pub use types::*;
