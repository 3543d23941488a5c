//! Content-addressed artifact blobs, never in RocksDB: files in the data
//! directory (`artifacts/sha256/<2 hex>/<64 hex>`, the default), or objects
//! in an S3-compatible bucket (`<prefix>sha256/<64 hex>`).
//!
//! A blob is written once under its SHA-256 digest and never overwritten
//! or deleted through this module; an upload is hashed as it streams
//! (bounded memory whatever the size) and becomes visible only if it
//! hashes to its digest.
//!
//! - **Local**: the upload streams into a private temporary file, is
//!   refused and removed if the digest differs, and otherwise is synced and
//!   linked into place with a call that fails rather than replace
//!   (`link(2)`), then the directory is synced.
//! - **Bucket**: the upload streams into a multipart upload (parts of
//!   5 MiB, at most two in flight), which is completed only if the digest
//!   matches and aborted otherwise; an incomplete multipart upload is
//!   never visible as an object.
//!
//! Either way the same bytes again are a no-op, concurrent uploads of one
//! digest both succeed and leave one blob (for a bucket, the same bytes
//! written twice), and an upload cut off halfway leaves nothing visible.
//!
//! What this module does not do: authenticate, log, or decide policy.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Largest blob accepted, unless configured otherwise (64 GiB).
pub const DEFAULT_MAX_BLOB: u64 = 64 << 30;

/// What can go wrong with a blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("a digest is 64 lowercase hex digits")]
    BadDigest,
    #[error("the upload hashes to {actual}, not {expected}; nothing was stored")]
    Mismatch { expected: String, actual: String },
    #[error("the upload is larger than {0} bytes; nothing was stored")]
    TooLarge(u64),
    #[error("no space left for the upload; nothing was stored")]
    NoSpace,
    #[error("the upload was cut off: {0}; nothing was stored")]
    CutOff(String),
    #[error("no blob sha256:{0}")]
    NotFound(String),
    /// The bucket did not answer, or answered with an error.
    #[error("the artifact bucket failed: {0}")]
    Backend(String),
    #[error("{0}")]
    Io(String),
}

fn io(e: std::io::Error) -> BlobError {
    if e.raw_os_error() == Some(28) {
        BlobError::NoSpace
    } else {
        BlobError::Io(e.to_string())
    }
}

/// The 32 bytes of a lowercase hex digest, or `None`.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// What a stored blob says when hashed again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rehash {
    Ok { size: u64 },
    Missing,
    Mismatch { actual: String },
}

/// Whether an upload stored new bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub created: bool,
    pub size: u64,
}

/// Where blobs live.
#[derive(Debug)]
enum Backend {
    /// `<root>/sha256/<2 hex>/<hex>`, temporary files in `<root>/tmp`.
    Local(PathBuf),
    /// `<prefix>sha256/<hex>` in a bucket.
    Bucket {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        name: String,
    },
}

/// An S3-compatible bucket. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
/// never from a file the server writes or logs.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub bucket: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); AWS if absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Keys start with this (`modeltrail/`).
    #[serde(default)]
    pub prefix: String,
    /// Allow a plain-HTTP endpoint (a local test server).
    #[serde(default)]
    pub allow_http: bool,
}

/// A client of the S3-compatible bucket `cfg` names (credentials from the
/// environment). No overall time limit (an object can take long to
/// stream), but a connection must open in 5 s and a silent one fails after
/// 60 s; a failing request is retried at most 3 times within 15 s.
pub fn open_bucket(cfg: &BucketConfig) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let options = object_store::ClientOptions::new()
        .with_allow_http(cfg.allow_http)
        .with_timeout_disabled()
        .with_connect_timeout(std::time::Duration::from_secs(5))
        .with_read_timeout(std::time::Duration::from_secs(60));
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(15),
        ..Default::default()
    };
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&cfg.bucket)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(e) = &cfg.endpoint {
        b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
    }
    if let Some(r) = &cfg.region {
        b = b.with_region(r);
    }
    Ok(Arc::new(b.build()?))
}

/// The blob store.
#[derive(Debug)]
pub struct Blobs {
    backend: Backend,
    max_bytes: u64,
}

/// Part size of bucket uploads, and how many may be in flight: the memory
/// an upload to a bucket holds is about their product.
const PART_BYTES: usize = 5 << 20;
const PARTS_IN_FLIGHT: usize = 2;

fn bucket_error(e: object_store::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

impl Blobs {
    /// Open (making them if needed, owner-only) `<root>/sha256` and
    /// `<root>/tmp`; temporary files of uploads cut off by a crash are
    /// removed.
    pub fn open(root: &Path, max_bytes: u64) -> Result<Blobs, BlobError> {
        for d in [root.to_path_buf(), root.join("sha256"), root.join("tmp")] {
            crate::fsutil::private_dir(&d).map_err(|e| BlobError::Io(e.to_string()))?;
        }
        if let Ok(list) = std::fs::read_dir(root.join("tmp")) {
            for e in list.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Blobs {
            backend: Backend::Local(root.to_path_buf()),
            max_bytes,
        })
    }

    /// Blobs in a bucket.
    pub fn bucket(cfg: &BucketConfig, max_bytes: u64) -> Result<Blobs, BlobError> {
        Ok(Blobs {
            backend: Backend::Bucket {
                store: open_bucket(cfg).map_err(bucket_error)?,
                prefix: cfg.prefix.clone(),
                name: format!("s3://{}/{}", cfg.bucket, cfg.prefix),
            },
            max_bytes,
        })
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where the blobs are: `local` or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local(_) => "local".into(),
            Backend::Bucket { name, .. } => name.clone(),
        }
    }

    /// Check a digest (64 lowercase hex digits).
    pub fn check(&self, hex: &str) -> Result<(), BlobError> {
        parse_digest(hex).map(|_| ()).ok_or(BlobError::BadDigest)
    }

    /// Where the blob with this digest lives in a local store (the digest
    /// is checked); `None` for a bucket.
    pub fn path(&self, hex: &str) -> Result<Option<PathBuf>, BlobError> {
        self.check(hex)?;
        Ok(match &self.backend {
            Backend::Local(root) => Some(root.join("sha256").join(&hex[..2]).join(hex)),
            Backend::Bucket { .. } => None,
        })
    }

    fn key(prefix: &str, hex: &str) -> object_store::path::Path {
        object_store::path::Path::from(format!("{prefix}sha256/{hex}"))
    }

    /// Size of a stored blob.
    pub async fn size(&self, hex: &str) -> Result<u64, BlobError> {
        self.check(hex)?;
        match &self.backend {
            Backend::Local(_) => {
                let path = self.path(hex)?.ok_or(BlobError::BadDigest)?;
                match tokio::fs::metadata(path).await {
                    Ok(m) => Ok(m.len()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(BlobError::NotFound(hex.to_string()))
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Backend::Bucket { store, prefix, .. } => {
                match store.head(&Self::key(prefix, hex)).await {
                    Ok(m) => Ok(m.size),
                    Err(object_store::Error::NotFound { .. }) => {
                        Err(BlobError::NotFound(hex.to_string()))
                    }
                    Err(e) => Err(bucket_error(e)),
                }
            }
        }
    }

    /// `len` bytes of a stored blob from `start`, as a stream.
    pub async fn read(
        &self,
        hex: &str,
        start: u64,
        len: u64,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, BlobError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        self.check(hex)?;
        match &self.backend {
            Backend::Local(_) => {
                let path = self.path(hex)?.ok_or(BlobError::BadDigest)?;
                let mut file = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(BlobError::NotFound(hex.to_string()))
                    }
                    Err(e) => return Err(io(e)),
                };
                if start > 0 {
                    file.seek(std::io::SeekFrom::Start(start))
                        .await
                        .map_err(io)?;
                }
                Ok(tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024).boxed())
            }
            // An empty range is no request at all (S3 refuses one).
            Backend::Bucket { .. } if len == 0 => Ok(futures_util::stream::empty().boxed()),
            Backend::Bucket { store, prefix, .. } => {
                let opts = object_store::GetOptions {
                    range: Some(object_store::GetRange::Bounded(start..start + len)),
                    ..Default::default()
                };
                let r = match store.get_opts(&Self::key(prefix, hex), opts).await {
                    Ok(r) => r,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(BlobError::NotFound(hex.to_string()))
                    }
                    Err(e) => return Err(bucket_error(e)),
                };
                Ok(r.into_stream()
                    .map(|c| c.map_err(std::io::Error::other))
                    .boxed())
            }
        }
    }

    /// Store what `body` yields under `hex`, hashing as it streams.
    pub async fn put<S, E>(&self, hex: &str, body: S) -> Result<Stored, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        self.check(hex)?;
        match &self.backend {
            Backend::Local(root) => self.put_local(root, hex, body).await,
            Backend::Bucket { store, prefix, .. } => {
                self.put_bucket(store.as_ref(), &Self::key(prefix, hex), hex, body)
                    .await
            }
        }
    }

    async fn put_bucket<S, E>(
        &self,
        store: &dyn ObjectStore,
        key: &object_store::path::Path,
        hex: &str,
        body: S,
    ) -> Result<Stored, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        match store.head(key).await {
            Ok(m) => {
                drain(body, self.max_bytes).await?;
                return Ok(Stored {
                    created: false,
                    size: m.size,
                });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(bucket_error(e)),
        }
        let upload = store.put_multipart(key).await.map_err(bucket_error)?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        let failed = loop {
            let Some(chunk) = body.next().await else {
                break None;
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => break Some(BlobError::CutOff(e.to_string())),
            };
            size += chunk.len() as u64;
            if size > self.max_bytes {
                break Some(BlobError::TooLarge(self.max_bytes));
            }
            hasher.update(&chunk);
            if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(bucket_error(e));
            }
            w.write(&chunk);
        };
        let failed = failed.or_else(|| {
            let actual = hex::encode(hasher.finalize());
            (actual != hex).then(|| BlobError::Mismatch {
                expected: hex.to_string(),
                actual,
            })
        });
        if let Some(e) = failed {
            let _ = w.abort().await;
            return Err(e);
        }
        if size == 0 {
            // A multipart upload needs a part; an empty blob is one put.
            let _ = w.abort().await;
            store
                .put(key, object_store::PutPayload::default())
                .await
                .map_err(bucket_error)?;
        } else {
            w.finish().await.map_err(bucket_error)?;
        }
        Ok(Stored {
            created: true,
            size,
        })
    }

    async fn put_local<S, E>(&self, root: &Path, hex: &str, body: S) -> Result<Stored, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let dest = root.join("sha256").join(&hex[..2]).join(hex);
        if let Ok(m) = tokio::fs::metadata(&dest).await {
            // Already stored: read the body to its end (bounded), keep the
            // blob as it is.
            drain(body, self.max_bytes).await?;
            return Ok(Stored {
                created: false,
                size: m.len(),
            });
        }
        let tmp = root
            .join("tmp")
            .join(format!("{hex}.{}", uuid::Uuid::now_v7()));
        let result = self.write_temp(&tmp, hex, body).await;
        let size = match result {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let (tmp2, dest2) = (tmp.clone(), dest.clone());
        let linked = tokio::task::spawn_blocking(move || -> Result<bool, BlobError> {
            let dir = dest2
                .parent()
                .ok_or_else(|| BlobError::Io("no parent".into()))?;
            crate::fsutil::private_dir(dir).map_err(|e| BlobError::Io(e.to_string()))?;
            let created = match std::fs::hard_link(&tmp2, &dest2) {
                Ok(()) => true,
                // Someone stored the same digest first: the same bytes.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io(e)),
            };
            let _ = std::fs::remove_file(&tmp2);
            crate::fsutil::sync_dir_of(&dest2).map_err(|e| BlobError::Io(e.to_string()))?;
            Ok(created)
        })
        .await
        .map_err(|e| BlobError::Io(e.to_string()))?;
        let created = match linked {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        Ok(Stored { created, size })
    }

    async fn write_temp<S, E>(&self, tmp: &Path, hex: &str, body: S) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .await
            .map_err(io)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::CutOff(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Err(BlobError::TooLarge(self.max_bytes));
            }
            hasher.update(&chunk);
            f.write_all(&chunk).await.map_err(io)?;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != hex {
            return Err(BlobError::Mismatch {
                expected: hex.to_string(),
                actual,
            });
        }
        f.flush().await.map_err(io)?;
        f.sync_all().await.map_err(io)?;
        Ok(size)
    }

    /// Hash a stored blob again, reading it whole in chunks.
    pub async fn rehash(&self, hex: &str) -> Result<Rehash, BlobError> {
        self.check(hex)?;
        let (actual, size) = match &self.backend {
            Backend::Local(_) => {
                let path = self.path(hex)?.ok_or(BlobError::BadDigest)?;
                let r = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
                    Ok(mut f) => hash_reader(&mut f, &|_| {}).map(Some),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                })
                .await
                .map_err(|e| BlobError::Io(e.to_string()))?
                .map_err(io)?;
                match r {
                    Some(r) => r,
                    None => return Ok(Rehash::Missing),
                }
            }
            Backend::Bucket { store, prefix, .. } => {
                let r = match store.get(&Self::key(prefix, hex)).await {
                    Ok(r) => r,
                    Err(object_store::Error::NotFound { .. }) => return Ok(Rehash::Missing),
                    Err(e) => return Err(bucket_error(e)),
                };
                let mut stream = r.into_stream();
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                while let Some(c) = stream.next().await {
                    let c = c.map_err(bucket_error)?;
                    size += c.len() as u64;
                    hasher.update(&c);
                }
                (hex::encode(hasher.finalize()), size)
            }
        };
        Ok(if actual == hex {
            Rehash::Ok { size }
        } else {
            Rehash::Mismatch { actual }
        })
    }
}

/// SHA-256 (lowercase hex) and length of everything `r` yields, read in
/// 1 MiB chunks; `progress` is told the bytes read so far.
pub fn hash_reader(r: &mut impl Read, progress: &dyn Fn(u64)) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
        progress(size);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Read a body to its end without keeping it (bounded).
async fn drain<S, E>(body: S, max: u64) -> Result<(), BlobError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        size += chunk.map_err(|e| BlobError::CutOff(e.to_string()))?.len() as u64;
        if size > max {
            return Err(BlobError::TooLarge(max));
        }
    }
    Ok(())
}

/// One `Range: bytes=…` of a blob of `size` bytes, as `(start, end)`
/// inclusive; `Ok(None)` for no range header; `Err` when unsatisfiable or
/// malformed (one range only).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, String> {
    let Some(h) = header else { return Ok(None) };
    let spec = h
        .strip_prefix("bytes=")
        .ok_or_else(|| format!("unsupported range {h:?}: use bytes=start-end"))?;
    if spec.contains(',') {
        return Err("one range at a time".into());
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| format!("malformed range {h:?}"))?;
    let num = |s: &str| -> Result<u64, String> {
        crate::encoding::parse_canonical_u64(s).ok_or_else(|| format!("malformed range {h:?}"))
    };
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (false, false) => (num(a)?, num(b)?),
        (false, true) => (num(a)?, size.saturating_sub(1)),
        (true, false) => {
            let n = num(b)?;
            if n == 0 {
                return Err("an empty suffix range".into());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (true, true) => return Err(format!("malformed range {h:?}")),
    };
    if start >= size || end < start {
        return Err(format!("range {h:?} is outside the {size} bytes"));
    }
    Ok(Some((start, end.min(size - 1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    fn digest(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[tokio::test]
    async fn blobs_are_content_addressed_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path(), 1 << 20).unwrap();
        let d = digest(b"hello world");
        let s = blobs
            .put(&d, stream(vec![b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(
            s,
            Stored {
                created: true,
                size: 11
            }
        );
        assert_eq!(blobs.rehash(&d).await.unwrap(), Rehash::Ok { size: 11 });
        // Again: a no-op.
        let s = blobs.put(&d, stream(vec![b"hello world"])).await.unwrap();
        assert!(!s.created);
        // A mismatch leaves nothing behind.
        let other = digest(b"other");
        let e = blobs
            .put(&other, stream(vec![b"not other"]))
            .await
            .unwrap_err();
        assert!(matches!(e, BlobError::Mismatch { .. }), "{e}");
        assert_eq!(blobs.rehash(&other).await.unwrap(), Rehash::Missing);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        // Too large, cut off: nothing behind either.
        let small = Blobs::open(dir.path(), 4).unwrap();
        let e = small.put(&other, stream(vec![b"other"])).await.unwrap_err();
        assert!(matches!(e, BlobError::TooLarge(4)), "{e}");
        let cut = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"oth")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let e = blobs.put(&other, cut).await.unwrap_err();
        assert!(matches!(e, BlobError::CutOff(_)), "{e}");
        assert_eq!(blobs.rehash(&other).await.unwrap(), Rehash::Missing);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        // Path tricks never reach the file system.
        for bad in ["../../etc/passwd", &d.to_uppercase(), &d[..63], ""] {
            assert!(
                matches!(blobs.path(bad), Err(BlobError::BadDigest)),
                "{bad}"
            );
        }
        // A changed file is found by rehashing.
        std::fs::write(blobs.path(&d).unwrap().unwrap(), b"tampered").unwrap();
        assert!(matches!(
            blobs.rehash(&d).await.unwrap(),
            Rehash::Mismatch { .. }
        ));
    }

    #[tokio::test]
    async fn concurrent_uploads_of_one_digest_leave_one_blob() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = std::sync::Arc::new(Blobs::open(dir.path(), 1 << 20).unwrap());
        let d = digest(b"same bytes");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (b, d) = (blobs.clone(), d.clone());
            tasks.push(tokio::spawn(async move {
                b.put(&d, stream(vec![b"same ", b"bytes"])).await.unwrap()
            }));
        }
        let mut created = 0;
        for t in tasks {
            created += t.await.unwrap().created as u32;
        }
        assert!(created >= 1);
        assert_eq!(blobs.rehash(&d).await.unwrap(), Rehash::Ok { size: 10 });
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=-0",
            "bytes=x-1",
            "bytes=-",
        ] {
            assert!(parse_range(Some(bad), 10).is_err(), "{bad}");
        }
    }
}
