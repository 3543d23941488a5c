//! Event bodies: strict parsing, validation and canonicalization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modeltrail::audit::event;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = event::prepare(data) {
        // The canonical form is a fixed point.
        let again = event::canonicalize(&event::parse_strict(&p.canonical).unwrap()).unwrap();
        assert_eq!(again, p.canonical);
    }
});
