//! The Python client (src/clients/python) against the real server binary: its
//! pytest suite (tests/python) submits, reads and verifies, and must refuse
//! every tampered receipt, checkpoint and proof; mypy checks its types
//! strictly. Python, pytest, mypy and `cryptography` come from the venv
//! the README's test command prepares; missing, the test fails loudly.

use crate::common::{run_pytest, venv_tool};
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
    run_pytest(
        &python(),
        "tests/python",
        &[
            // The package as it is in this tree, not an installed copy.
            ("PYTHONPATH", root().join("src/clients/python").into()),
            ("MODELTRAIL_URL", server.0.base.clone().into()),
            ("MODELTRAIL_TOKEN", token.trim().into()),
            ("MODELTRAIL_VKEY", server.0.vkey.to_string().into()),
            (
                "MODELTRAIL_VECTORS",
                root().join("tests/data/merkle").into(),
            ),
        ],
    );
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
