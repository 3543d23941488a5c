//! Publishing the log's static files (c2sp tlog-tiles) to an S3-compatible
//! bucket, so that auditors, monitors and a CDN read the log without
//! touching the server.
//!
//! One sync, from the checkpoint the bucket holds (`old`, possibly none) to
//! the log's current one (`new`):
//!
//! 1. fetch `new` from the log and verify it under the trust policy; read
//!    `old` from the bucket, verify it too, and check that `new` is
//!    consistent with it (a mirror never publishes a fork or a rollback);
//! 2. rebuild the tree's right edge at `old` from the bucket's own tiles
//!    and check it against `old`'s root;
//! 3. fetch the entry bundles from `old` on, hash every entry into the
//!    edge, and upload each bundle and each hash tile the edge produces:
//!    the hash tiles are computed here from the entries, never copied;
//! 4. check that the edge's root is `new`'s root, and only then upload the
//!    checkpoint: it is the last object written, so a reader that sees a
//!    checkpoint finds every tile it names;
//! 5. delete the partial tiles of `old` whose full tile now exists (which
//!    tlog-tiles allows; readers fall back to the full tile).
//!
//! A sync cut off at any point (a crash, a failed upload) leaves the old
//! checkpoint in place with everything it names; the next sync starts from
//! it again and writes the same objects. So a full tile may be written more
//! than once while no checkpoint covers it, and never after one does.
//! Partial tiles of a sync that never finished stay behind, unreferenced.
//!
//! Memory is bounded: the right edge (at most 64 hashes), one pending tile
//! per level, and a bounded number of fetches and uploads in flight.

use crate::artifacts::{open_bucket, BucketConfig};
use crate::auditor::{self, nodes_from_tiles, parse_bundle, split_tile, AuditError};
use crate::client::Client;
use crate::tiles::{TileKind, TilePath, TILE_WIDTH};
use crate::tree::{leaf_hash, range_nodes, Hash, HashReader, NodeId, RightEdge, TreeError};
use crate::verify::{Failure, Policy, Verified};
use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Entry bundles fetched from the log ahead of the one being hashed.
const FETCH_AHEAD: usize = 8;
/// Uploads in flight.
const UPLOADS: usize = 16;
/// Cache-Control of objects that never change once a checkpoint names
/// them (full tiles and bundles) and of those that do (the checkpoint,
/// partial tiles, which a newer checkpoint makes obsolete).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const CHANGING: &str = "public, max-age=5";

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The log or the bucket's files did not verify, or could not be read.
    #[error("{0}")]
    Audit(#[from] AuditError),
    /// The bucket refused or failed a request.
    #[error("bucket: {0}")]
    Bucket(String),
}

impl MirrorError {
    /// 1 verification failed, 2 malformed, 3 could not reach the log or
    /// the bucket.
    pub fn exit_code(&self) -> i32 {
        match self {
            MirrorError::Audit(a) => a.exit_code(),
            MirrorError::Bucket(_) => 3,
        }
    }
}

impl From<Failure> for MirrorError {
    fn from(f: Failure) -> Self {
        MirrorError::Audit(AuditError::Failed(f))
    }
}

fn bucket(e: object_store::Error) -> MirrorError {
    MirrorError::Bucket(e.to_string())
}

/// What one sync did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// The size of the checkpoint the bucket held before (0 if none).
    pub old_size: u64,
    /// The size of the checkpoint it holds now.
    pub new_size: u64,
    /// Objects written (tiles, bundles and the checkpoint).
    pub uploaded: u64,
    /// Partial tiles deleted because their full tile now exists.
    pub deleted: u64,
}

/// A log's mirror in a bucket.
pub struct Mirror {
    pub source: Client,
    pub policy: Policy,
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Mirror {
    pub fn new(source: Client, policy: Policy, cfg: &BucketConfig) -> Result<Self, MirrorError> {
        let mut prefix = cfg.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Ok(Mirror {
            source,
            policy,
            store: open_bucket(cfg).map_err(bucket)?,
            prefix,
        })
    }

    fn key(&self, name: &str) -> Key {
        Key::from(format!("{}{name}", self.prefix))
    }

    fn tile_key(&self, path: TilePath) -> Key {
        self.key(&format!("tile/{}", path.encode()))
    }

    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, MirrorError> {
        match self.store.get(key).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(bucket)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(bucket(e)),
        }
    }

    /// A tile of the bucket's current tree; it must be there.
    async fn bucket_tile(&self, path: TilePath) -> Result<Vec<u8>, AuditError> {
        match self.get(&self.tile_key(path)).await {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(Failure::Invalid(format!(
                "the bucket's checkpoint names tile {} but the bucket does not hold it",
                path.encode()
            ))
            .into()),
            Err(e) => Err(Failure::Malformed(e.to_string()).into()),
        }
    }

    /// Bring the bucket up to the log's current checkpoint. `report` is
    /// told the name of every object written or deleted.
    pub async fn sync(&self, report: &(dyn Fn(&str) + Sync)) -> Result<Synced, MirrorError> {
        let new = auditor::checkpoint(&self.source, &self.policy).await?;
        let old = match self.get(&self.key("checkpoint")).await? {
            Some(bytes) => Some(self.policy.open_checkpoint(&bytes).map_err(|f| {
                Failure::Invalid(format!("the bucket's checkpoint does not verify: {f}"))
            })?),
            None => None,
        };
        let old_size = old.as_ref().map_or(0, |o| o.checkpoint.size);
        let mut done = Synced {
            old_size,
            new_size: old_size,
            ..Synced::default()
        };
        if let Some(o) = &old {
            if new.checkpoint.size < o.checkpoint.size {
                return Err(Failure::Invalid(format!(
                    "the log's checkpoint (size {}) is older than the bucket's (size {})",
                    new.checkpoint.size, o.checkpoint.size
                ))
                .into());
            }
            auditor::prove_consistency(&self.source, &o.checkpoint, &new.checkpoint).await?;
            if new.checkpoint.size == o.checkpoint.size {
                return Ok(done);
            }
        }
        self.upload_tiles(&old, &new, report, &mut done).await?;
        // Everything the new checkpoint names is in place: publish it.
        self.put(
            self.key("checkpoint"),
            new.signed.as_bytes().to_vec(),
            CHANGING,
        )
        .await?;
        report("checkpoint");
        done.uploaded += 1;
        done.new_size = new.checkpoint.size;
        // Partial tiles of the old checkpoint whose full tile now exists.
        for path in obsolete_partials(old_size, new.checkpoint.size) {
            match self.store.delete(&self.tile_key(path)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    report(&format!("deleted tile/{}", path.encode()));
                    done.deleted += 1;
                }
                Err(e) => return Err(bucket(e)),
            }
        }
        Ok(done)
    }

    async fn put(&self, key: Key, body: Vec<u8>, cache: &'static str) -> Result<(), MirrorError> {
        put_object(self.store.as_ref(), key, body, cache).await
    }

    async fn upload_tiles(
        &self,
        old: &Option<Verified>,
        new: &Verified,
        report: &(dyn Fn(&str) + Sync),
        done: &mut Synced,
    ) -> Result<(), MirrorError> {
        let old_size = old.as_ref().map_or(0, |o| o.checkpoint.size);
        let size = new.checkpoint.size;
        // The right edge at the old size, from the bucket's own tiles.
        let mut edge = RightEdge::empty();
        if let Some(o) = old {
            let ids = range_nodes(0, old_size);
            let hashes = nodes_from_tiles(old_size, &ids, |p| self.bucket_tile(p)).await?;
            edge = RightEdge::load(old_size, &Fetched(hashes))
                .map_err(|e| Failure::Malformed(e.to_string()))?;
            if edge.root() != o.checkpoint.root {
                return Err(Failure::Invalid(
                    "the bucket's tiles do not hash to its checkpoint's root".into(),
                )
                .into());
            }
        }
        // pending[t]: the hashes of tree level 8t in the tile being built,
        // starting with those the old checkpoint's partial tile holds.
        let mut pending: Vec<Vec<Hash>> = Vec::new();
        for t in 0..8u8 {
            let count = old_size >> (8 * u32::from(t));
            let w = count % TILE_WIDTH;
            let mut hashes = Vec::with_capacity(TILE_WIDTH as usize);
            if w > 0 {
                let path = TilePath {
                    kind: TileKind::Hashes { level: t },
                    index: count / TILE_WIDTH,
                    width: w,
                };
                hashes = split_tile(&self.bucket_tile(path).await?, path)?;
            }
            pending.push(hashes);
        }

        let mut uploads: JoinSet<Result<String, MirrorError>> = JoinSet::new();
        let first = old_size / TILE_WIDTH;
        let bundles = size.div_ceil(TILE_WIDTH);
        let source = &self.source;
        let mut fetched = futures_util::stream::iter(first..bundles)
            .map(|n| async move {
                let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
                let path = TilePath {
                    kind: TileKind::Entries,
                    index: n,
                    width,
                };
                let bytes = source
                    .get_bytes_retrying(&format!("/tile/{}", path.encode()), 5)
                    .await
                    .map_err(AuditError::from)?;
                Ok::<_, MirrorError>((path, bytes))
            })
            .buffered(FETCH_AHEAD);
        let mut nodes = Vec::new();
        while let Some(got) = fetched.next().await {
            let (path, bytes) = got?;
            let start = path.index * TILE_WIDTH;
            for (i, entry) in parse_bundle(&bytes, path.width as usize)?
                .into_iter()
                .enumerate()
            {
                let index = start + i as u64;
                let leaf = leaf_hash(entry);
                if index < old_size {
                    // Already in the tree: it must be the leaf it was.
                    if pending[0].get(i) != Some(&leaf) {
                        return Err(Failure::Invalid(format!(
                            "entry {index} is not the entry the bucket's checkpoint holds"
                        ))
                        .into());
                    }
                    continue;
                }
                nodes.clear();
                edge.push(leaf, &mut nodes);
                for (id, h) in &nodes {
                    if id.level % 8 == 0 {
                        pending[usize::from(id.level / 8)].push(*h);
                    }
                }
            }
            self.spawn_put(&mut uploads, path, bytes, report, done)
                .await?;
            // Full hash tiles at every level.
            for (t, hashes) in pending.iter_mut().enumerate() {
                if hashes.len() as u64 == TILE_WIDTH {
                    let index = (edge.size() >> (8 * t as u32)) / TILE_WIDTH - 1;
                    let path = TilePath {
                        kind: TileKind::Hashes { level: t as u8 },
                        index,
                        width: TILE_WIDTH,
                    };
                    let body = std::mem::take(hashes).concat();
                    self.spawn_put(&mut uploads, path, body, report, done)
                        .await?;
                }
            }
        }
        if edge.size() != size || edge.root() != new.checkpoint.root {
            return Err(Failure::Invalid(
                "the log's entries do not hash to its checkpoint's root".into(),
            )
            .into());
        }
        // The partial tiles of the new checkpoint.
        for (t, hashes) in pending.iter().enumerate() {
            if !hashes.is_empty() {
                let path = TilePath {
                    kind: TileKind::Hashes { level: t as u8 },
                    index: (size >> (8 * t as u32)) / TILE_WIDTH,
                    width: hashes.len() as u64,
                };
                self.spawn_put(&mut uploads, path, hashes.concat(), report, done)
                    .await?;
            }
        }
        while let Some(r) = uploads.join_next().await {
            report(&r.map_err(|e| MirrorError::Bucket(e.to_string()))??);
        }
        Ok(())
    }

    /// Start an upload, first waiting for one to finish if enough are in
    /// flight.
    async fn spawn_put(
        &self,
        uploads: &mut JoinSet<Result<String, MirrorError>>,
        path: TilePath,
        body: Vec<u8>,
        report: &(dyn Fn(&str) + Sync),
        done: &mut Synced,
    ) -> Result<(), MirrorError> {
        while uploads.len() >= UPLOADS {
            if let Some(r) = uploads.join_next().await {
                report(&r.map_err(|e| MirrorError::Bucket(e.to_string()))??);
            }
        }
        let store = self.store.clone();
        let key = self.tile_key(path);
        let cache = if path.is_partial() {
            CHANGING
        } else {
            IMMUTABLE
        };
        let name = format!("tile/{}", path.encode());
        uploads.spawn(async move {
            put_object(store.as_ref(), key, body, cache).await?;
            Ok(name)
        });
        done.uploaded += 1;
        Ok(())
    }
}

async fn put_object(
    store: &dyn ObjectStore,
    key: Key,
    body: Vec<u8>,
    cache: &'static str,
) -> Result<(), MirrorError> {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::CacheControl, cache.into());
    attributes.insert(
        Attribute::ContentType,
        if key.as_ref().ends_with("checkpoint") {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        }
        .into(),
    );
    store
        .put_opts(&key, PutPayload::from(body), PutOptions::from(attributes))
        .await
        .map_err(bucket)?;
    Ok(())
}

/// The partial tiles (hashes and entries) of a tree of `old` whose full
/// tile exists in the tree of `new`.
fn obsolete_partials(old: u64, new: u64) -> Vec<TilePath> {
    let mut out = Vec::new();
    let levels = (0..8u8)
        .map(|t| TileKind::Hashes { level: t })
        .chain([TileKind::Entries]);
    for kind in levels {
        let shift = match kind {
            TileKind::Hashes { level } => 8 * u32::from(level),
            TileKind::Entries => 0,
        };
        let (count_old, count_new) = (old >> shift, new >> shift);
        let w = count_old % TILE_WIDTH;
        let n = count_old / TILE_WIDTH;
        if w > 0 && count_new >= (n + 1) * TILE_WIDTH {
            out.push(TilePath {
                kind,
                index: n,
                width: w,
            });
        }
    }
    out
}

/// Hashes already fetched, in the order they will be asked for.
struct Fetched(Vec<Hash>);

impl HashReader for Fetched {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        if ids.len() != self.0.len() {
            return Err(TreeError::Storage("unexpected node request".into()));
        }
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obsolete_partials_are_those_whose_full_tile_now_exists() {
        let names = |o, n| {
            obsolete_partials(o, n)
                .iter()
                .map(|p| p.encode())
                .collect::<Vec<_>>()
        };
        assert!(names(0, 1000).is_empty());
        assert_eq!(names(100, 300), vec!["0/000.p/100", "entries/000.p/100"]);
        // Still partial, only wider: the old partial stays.
        assert!(names(100, 200).is_empty());
        assert_eq!(
            names(256 * 256 + 5, 256 * 256 * 2 + 3),
            vec!["0/256.p/5", "entries/256.p/5"]
        );
        assert_eq!(
            names(256 * 1044 + 7, 256 * 1045),
            vec!["0/x001/044.p/7", "entries/x001/044.p/7"]
        );
        assert_eq!(
            names(256 * 256 - 1, 256 * 256),
            vec!["0/255.p/255", "1/000.p/255", "entries/255.p/255"]
        );
    }
}
