//! Entry bundles (tlog-tiles) from untrusted bytes, as an auditor reads
//! them from a server: parsing fails cleanly, and what parses re-encodes to
//! the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&w, rest)) = data.split_first() else {
        return;
    };
    let width = (w as usize) + 1;
    if let Ok(entries) = modeltrail::auditor::parse_bundle(rest, width) {
        assert_eq!(entries.len(), width);
        let owned: Vec<Vec<u8>> = entries.iter().map(|e| e.to_vec()).collect();
        assert_eq!(modeltrail::tiles::entry_bundle(&owned), rest);
    }
});
