//! ML audit events: the schema of design §3 and its canonical form
//! ([`event`]), the typed vocabulary of actions, principals and roles
//! ([`vocab`]), events the server records itself ([`record`]) and signed
//! attestations ([`signature`]).
//!
//! Pure: no I/O, no HTTP, no storage.

pub mod commitment;
pub mod event;
pub mod record;
pub mod signature;
pub mod vocab;

pub use event::{Event, Prepared};
pub use record::Record;
pub use vocab::{Action, Fold, Principal, PrincipalKind, Ref, Role};
