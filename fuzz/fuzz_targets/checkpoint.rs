//! Signed notes and checkpoints from untrusted bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modeltrail::note::{Checkpoint, KeyName, Note, SignerKey};
use modeltrail::verify::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = Note::parse(data) {
        // A parsed note encodes back to exactly its input.
        assert_eq!(note.encode().as_bytes(), data);
        if let Ok(cp) = Checkpoint::parse_text(note.text()) {
            assert_eq!(cp.to_text(), note.text());
        }
    }
    let key = SignerKey::from_seed(KeyName::new("fuzz.example/log").unwrap(), [1u8; 32]);
    // Nothing random can carry a valid signature by this key.
    assert!(Policy::log_only(key.verifier()).open_checkpoint(data).is_err());
});
