//! The integration tests, in one test crate (one binary to link): a real
//! server on an ephemeral loopback port with a real RocksDB in a temporary
//! directory, real HTTP clients, the real `modeltrail` binary where a test
//! kills or runs it, and independent implementations where they exist.

mod common;

mod access;
mod artifacts;
mod audit;
mod bucket;
mod durability;
mod explorer;
mod faults;
mod hostile;
mod http;
mod interop;
mod layers;
mod mlflow;
mod models;
mod openapi;
mod privacy;
mod properties;
mod python;
mod registry;
mod scenario;
mod trace;
mod vectors;
mod witness;
