//! ML audit events: the schema of design §3 ([`event`]), the RFC 8785
//! canonical form of its JSON ([`jcs`]), the typed vocabulary of actions,
//! principals and roles ([`vocab`]), events the server records itself
//! ([`record`]) and signed attestations ([`signature`]).
//!
//! Pure: no I/O, no HTTP, no storage.

pub mod commitment;
pub mod event;
pub mod jcs;
pub mod record;
pub mod signature;
pub mod vocab;

pub use event::{Event, Prepared};
pub use record::Record;
pub use vocab::{Action, Fold, Principal, PrincipalKind, Ref, Role};
