//! Lineage traces: from a prediction, deployment, model version or any id,
//! walk back along `related` links (prediction → deployment → model version
//! → run → dataset, code commit, environment) and return every event on
//! the way with its inclusion proof against one signed checkpoint: a
//! bundle ([`crate::wire::TraceBundle`]) an auditor verifies offline.
//!
//! - [`build`] walks the log (server side);
//! - [`check`] verifies a bundle with nothing but the log's key;
//! - [`render`] prints a verified bundle as a tree for people.
//!
//! The walk visits each `(type, id)` once, so cycles in `related` links end
//! it, and it is bounded in nodes, entries, entries per node and bytes of
//! events (work and memory: each node is one range read); a bundle
//! that hit a bound says so (`truncated`, with the reasons in `notes`).

mod build;
mod check;
mod render;

pub use build::build;
pub use check::{check, TraceCheck};
pub use render::render;

/// Most `(type, id)` nodes in one trace.
pub const MAX_NODES: usize = 256;
/// Most entries in one trace.
pub const MAX_ENTRIES: usize = 1024;
/// Most entries whose subject is one node.
pub const MAX_PER_NODE: usize = 256;
/// Most bytes of events in one trace.
pub const MAX_EVENT_BYTES: usize = 8 << 20;
/// Largest bundle the verifier reads.
pub const MAX_BUNDLE_BYTES: usize = 64 << 20;
