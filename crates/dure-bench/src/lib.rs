//! What the benchmark programs of this crate share: latency statistics.

pub mod stats;
