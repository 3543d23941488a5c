//! Files that must survive a crash: one rule for every file the project
//! writes outside RocksDB (keys, tokens, monitor and witness state,
//! evidence).
//!
//! The rule: write a temporary file beside the target, fsync it, rename it
//! over the target, fsync the directory. After [`write_atomic`] returns, the
//! target holds either the old or the new contents after a crash or power
//! loss, never a mix, and the new contents are durable. Secrets are the
//! same, created owner-only (0600) before a byte is written.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is readable by others; run chmod 600 on it")]
    NotPrivate(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let tmp = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        path.with_file_name(name)
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(contents).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir_of(path)
}

/// Fsync the directory holding `path`, so that a rename or a new file in it
/// is durable.
pub fn sync_dir_of(path: &Path) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Replace `path` atomically and durably (see the module rule).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    write_with_mode(path, contents, 0o644)
}

/// Like [`write_atomic`], for a file only its owner may read.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), FileError> {
    write_with_mode(path, contents.as_bytes(), 0o600)
}

/// Read a secret file, refusing one that others can read. Surrounding
/// whitespace is trimmed.
pub fn read_secret(path: &Path) -> Result<String, FileError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(FileError::NotPrivate(path.to_path_buf()));
    }
    let s = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(s.trim().to_string())
}

/// Make a directory (and its parents) and restrict it to its owner.
pub fn private_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_and_secret_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);

        let s = d.path().join("secret");
        write_secret(&s, "hunter2\n").unwrap();
        let mode = std::fs::metadata(&s).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_secret(&s).unwrap(), "hunter2");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read_secret(&s), Err(FileError::NotPrivate(_))));
    }
}
