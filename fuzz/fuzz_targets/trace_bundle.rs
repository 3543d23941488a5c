//! A trace bundle from untrusted bytes: offline verification must fail
//! cleanly, never panic, and rendering what verified must not panic either.
//!
//! Random bytes rarely carry a valid signature, so the target checks each
//! input twice: as it is, and with its checkpoint re-signed by the fuzzing
//! key (same origin line replaced, same size and root). The second check
//! reaches what lies past the signature: leaf hashes, inclusion proofs,
//! nodes and links. Seeds are real bundles served by a log.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modeltrail::note::{Checkpoint, KeyName, Note, SignerKey};
use modeltrail::verify::Policy;
use modeltrail::wire::TraceBundle;

const ORIGIN: &str = "fuzz.example/log";

fuzz_target!(|data: &[u8]| {
    let key = SignerKey::from_seed(KeyName::new(ORIGIN).unwrap(), [1u8; 32]);
    let policy = Policy::log_only(key.verifier());
    if let Ok(t) = modeltrail::trace::check(&policy, data) {
        let _ = modeltrail::trace::render(&t.bundle);
    }
    let Ok(mut b) = serde_json::from_slice::<TraceBundle>(data) else {
        return;
    };
    let text = match Note::parse(b.checkpoint.as_bytes()) {
        Ok(note) => note.text().to_string(),
        Err(_) => b.checkpoint.clone(),
    };
    let Ok(cp) = Checkpoint::parse_text(&text) else {
        return;
    };
    let Ok(signed) = Checkpoint::new(ORIGIN, cp.size, cp.root).sign(&key) else {
        return;
    };
    b.checkpoint = signed;
    let Ok(bytes) = serde_json::to_vec(&b) else {
        return;
    };
    match modeltrail::trace::check(&policy, &bytes) {
        Ok(t) => {
            assert_eq!(t.tree_size, cp.size);
            let _ = modeltrail::trace::render(&t.bundle);
        }
        Err(_) => {}
    }
});
