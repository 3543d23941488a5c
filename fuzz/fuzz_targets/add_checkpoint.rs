//! A witness's `add-checkpoint` request body from untrusted bytes: parsing
//! must fail cleanly, and whatever parses is exactly its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modeltrail::witness::AddCheckpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddCheckpoint::parse(data) {
        assert_eq!(req.encode(), data);
    }
});
