//! Query strings from untrusted bytes: strict parsing of keys, numbers,
//! flags and pages must answer a value or a 400, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modeltrail::api::extract::{Page, Query};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let allowed = ["start", "limit", "index", "type", "id", "proofs", "wait"];
    if let Ok(q) = Query::parse(Some(text), &allowed) {
        for k in allowed {
            let _ = q.u64(k);
            let _ = q.flag(k);
            let _ = q.required(k);
        }
        if let Ok(p) = Page::parse(&q, 1000) {
            assert!(p.limit >= 1 && p.limit <= 1000);
        }
    }
});
