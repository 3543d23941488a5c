//! Tile paths: every accepted path is the one canonical spelling of its tile.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = modeltrail::tiles::parse(s) {
            assert_eq!(t.encode(), s);
            let _ = t.min_tree_size();
        }
    }
});
