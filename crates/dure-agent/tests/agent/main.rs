//! Integration tests of the agent with real processes: supervisors driven
//! directly (no controller), and the agent's HTTP endpoint.

mod endpoint;
mod supervisor;
mod support;
