//! An offline receipt (tlog-proof text) from untrusted bytes: parsing and
//! full verification must fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modeltrail::note::{KeyName, SignerKey, TlogProof};
use modeltrail::verify::{self, Policy};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = TlogProof::parse(text) {
            // What parses re-encodes to the same text.
            assert_eq!(TlogProof::parse(&p.encode()).unwrap(), p);
        }
    }
    let key = SignerKey::from_seed(KeyName::new("fuzz.example/log").unwrap(), [1u8; 32]);
    let policy = Policy::log_only(key.verifier());
    let _ = verify::receipt(&policy, br#"{"action":"approve"}"#, data);
});
