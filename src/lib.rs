//! modeltrail: a tamper-evident, append-only audit log for machine-learning
//! model registries, built on an RFC 6962 Merkle tree with signed C2SP
//! checkpoints, tiles and offline receipts.

pub mod audit;
pub mod error;
pub mod log;
pub mod metrics;
pub mod note;
pub mod store;
pub mod tree;

pub use error::Error;
pub mod access;
pub mod api;
pub mod auditor;
pub mod client;
pub mod monitor;
pub mod registry;
pub mod server;
pub mod tiles;
pub mod trace;
pub mod verify;
pub mod witness;
