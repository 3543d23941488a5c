//! The Python client (src/clients/python) against the real server binary: its
//! pytest suite (tests/python) submits, reads and verifies, and must refuse
//! every tampered receipt, checkpoint and proof; mypy checks its types
//! strictly. Python, pytest, mypy and `cryptography` come from the venv
//! the README's test command prepares; missing, the test fails loudly.

use crate::common::venv_tool;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's `python` that has pytest, mypy and `cryptography`.
fn python() -> PathBuf {
    venv_tool(
        "pytest",
        "MODELTRAIL_PYTEST",
        "pytest mypy cryptography",
        "the Python client",
    )
    .with_file_name("python")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The server binary, stopped when the test ends (or fails).
struct Binary(crate::common::crash::Server);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

#[test]
fn the_python_client_submits_and_verifies() {
    // The real `modeltrail serve` binary, on an ephemeral loopback port.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Binary(crate::common::crash::spawn(
        env!("CARGO_BIN_EXE_modeltrail"),
        &data,
    ));
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let package = root().join("src/clients/python");
    let out = Command::new(python())
        .current_dir(root())
        // The package as it is in this tree, not an installed copy.
        .env("PYTHONPATH", &package)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("MODELTRAIL_URL", &server.0.base)
        .env("MODELTRAIL_TOKEN", token.trim())
        .env("MODELTRAIL_VKEY", server.0.vkey.to_string())
        .env("MODELTRAIL_VECTORS", root().join("tests/data/merkle"))
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .output()
        .expect("run pytest");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client's tests failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every test ran: none skipped, none deselected.
    assert!(text.contains(" passed"), "{text}");
    assert!(!text.contains("skipped"), "{text}");
}

#[test]
fn the_python_client_is_typed() {
    let out = Command::new(python())
        .current_dir(root().join("src/clients/python"))
        .env(
            "MYPY_CACHE_DIR",
            std::env::temp_dir().join("modeltrail-mypy-cache"),
        )
        .args(["-m", "mypy", "--strict", "modeltrail"])
        .output()
        .expect("run mypy");
    assert!(
        out.status.success(),
        "mypy --strict found problems:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
