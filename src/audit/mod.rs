//! ML audit events: the schema of design §3 and its canonical form.

pub mod event;
pub mod signature;
