//! Event bodies: strict parsing, validation and canonicalization. Whatever
//! is accepted must read back, as stored, under every verifier: the full
//! log audit (canonical bytes, leaf hash), the typed view the derived state
//! folds, and the fold itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modeltrail::audit::{event, Event};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = event::prepare(data) {
        // The canonical form is a fixed point.
        let again = event::canonicalize(&event::parse_strict(&p.canonical).unwrap());
        assert_eq!(again, p.canonical);
        // The auditor's check of stored bytes.
        let (canonical, leaf) = modeltrail::verify::event_leaf(&p.canonical).unwrap();
        assert_eq!(canonical, p.canonical);
        assert_eq!(leaf, p.leaf_hash);
        // The typed view the derived state reads, and the fold.
        let ev = Event::from_canonical(&p.canonical).unwrap();
        assert_eq!(ev, p.event);
        let mut snap = modeltrail::state::Snapshot::default();
        snap.apply(0, &ev);
    }
});
