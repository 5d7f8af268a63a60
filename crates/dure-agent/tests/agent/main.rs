//! Integration tests of the agent with real processes: supervisors driven
//! directly (no controller), the agent's HTTP endpoint, INDEPENDENT mode
//! from a local copy, and the controller link against a stand-in controller.

mod endpoint;
mod independent;
mod link;
mod supervisor;
mod support;
