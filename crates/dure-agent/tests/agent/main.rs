//! Integration tests of the agent with real processes: supervisors driven
//! directly (no controller), the agent's HTTP endpoint, and INDEPENDENT mode
//! from a local copy.

mod endpoint;
mod independent;
mod supervisor;
mod support;
