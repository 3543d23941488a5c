//! modeltrail: a tamper-evident, append-only audit log for machine-learning
//! model registries, built on an RFC 6962 Merkle tree with signed C2SP
//! checkpoints, tiles and offline receipts.
//!
//! The layers, from the pure core outwards (`docs/ARCHITECTURE.md` has the
//! table of which module may use which, checked by `tests/it/layers.rs`):
//!
//! - pure core: [`encoding`], [`tree`], [`note`], [`tiles`], [`audit`],
//!   [`access`], [`registry`], [`wire`];
//! - storage and the sequencer: [`store`], [`log`], [`state`], and the
//!   artifact blobs ([`artifacts`]);
//! - the service: [`ledger`], [`trace`], [`api`], [`server`], [`witness`];
//! - verification and clients: [`verify`], [`client`], [`auditor`],
//!   [`monitor`], [`report`], [`cli`]; publishing the static files to a
//!   bucket: [`mirror`].

pub mod access;
pub mod api;
pub mod artifacts;
pub mod audit;
pub mod auditor;
pub mod cli;
pub mod client;
pub mod encoding;
pub mod error;
pub mod fsutil;
pub mod ledger;
pub mod log;
pub mod metrics;
pub mod mirror;
pub mod mlflow;
pub mod monitor;
pub mod note;
pub mod privacy;
pub mod registry;
pub mod report;
pub mod serve;
pub mod server;
pub mod state;
pub mod store;
pub mod tiles;
pub mod trace;
pub mod tree;
pub mod verify;
pub mod wire;
pub mod witness;

pub use error::Error;
