//! The tree and note modules stay pure: no async runtime, web framework,
//! storage engine or JSON in their imports.

use std::path::Path;

#[test]
fn tree_and_note_import_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for dir in ["tree", "note"] {
        for f in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = f.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            for banned in [
                "tokio",
                "axum",
                "rocksdb",
                "reqwest",
                "serde_json",
                "std::fs",
                "std::net",
            ] {
                assert!(!text.contains(banned), "{} mentions {banned}", p.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 6);
}
