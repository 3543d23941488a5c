//! Online verification against a running log: fetch, then check everything
//! with [`crate::verify`]. Nothing the server says is taken on trust: the
//! checkpoint is verified under the policy first, and every proof, tile and
//! entry is checked against it.

use crate::client::{Client, ClientError};
use crate::note::Checkpoint;
use crate::tiles::{TileKind, TilePath, TILE_WIDTH};
use crate::tree::{leaf_hash, Hash, NodeId, RightEdge};
use crate::verify::{self, Failure, Policy, Verified};
use crate::wire;

/// What went wrong: the server could not be reached, or what it sent did
/// not verify or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Fetch(#[from] ClientError),
    #[error("{0}")]
    Failed(#[from] Failure),
}

impl AuditError {
    /// 1 verification failed, 2 malformed, 3 could not fetch.
    pub fn exit_code(&self) -> i32 {
        match self {
            AuditError::Fetch(_) => 3,
            AuditError::Failed(f) => f.exit_code(),
        }
    }
}

/// Retries for each fetch (network errors and 5xx only).
const ATTEMPTS: u32 = 5;

/// Fetch and verify the current checkpoint.
pub async fn checkpoint(client: &Client, policy: &Policy) -> Result<Verified, AuditError> {
    let signed = client.get_bytes_retrying("/checkpoint", ATTEMPTS).await?;
    Ok(policy.open_checkpoint(&signed)?)
}

/// Prove that the entry at `index` (or with `leaf`) is in the current
/// verified checkpoint. Returns the checkpoint, the index and the leaf hash.
pub async fn inclusion(
    client: &Client,
    policy: &Policy,
    index: Option<u64>,
    leaf: Option<Hash>,
) -> Result<(Verified, u64, Hash), AuditError> {
    let cp = checkpoint(client, policy).await?;
    let size = cp.checkpoint.size;
    let query = match (index, leaf) {
        (Some(i), None) => format!("index={i}"),
        (None, Some(h)) => format!("leaf_hash={}", hex::encode(h)),
        _ => return Err(Failure::Malformed("give an index or an event, not both".into()).into()),
    };
    let p: wire::InclusionProof = client
        .get_json(&format!("/v1/proof/inclusion?{query}&tree_size={size}"))
        .await?;
    let index = p.index;
    let served = p.leaf_hash.0;
    let leaf = match leaf {
        Some(l) if l != served => {
            return Err(Failure::Invalid("the server answered for another leaf".into()).into())
        }
        Some(l) => l,
        // By index: the leaf hash comes from the entry itself, recomputed.
        None => {
            let e: wire::Entry = client.get_json(&format!("/v1/entries/{index}")).await?;
            let (_, l) = verify::event_leaf(e.event.get().as_bytes())?;
            if l != served {
                return Err(Failure::Invalid(format!(
                    "entry {index} does not hash to the leaf the proof is for"
                ))
                .into());
            }
            l
        }
    };
    verify::inclusion(&cp.checkpoint, index, &leaf, &wire::unhex(&p.proof))?;
    Ok((cp, index, leaf))
}

/// Fetch and check the proof that `new` extends `old`.
pub async fn prove_consistency(
    client: &Client,
    old: &Checkpoint,
    new: &Checkpoint,
) -> Result<Vec<Hash>, AuditError> {
    let proof = if old.size == 0 || old.size > new.size {
        Vec::new()
    } else {
        fetch_consistency(client, old.size, new.size).await?
    };
    verify::consistency(old, new, &proof)?;
    Ok(proof)
}

/// The consistency proof between two sizes, unverified: from the log's
/// proof endpoint, or, where there is none (a mirror of the log's static
/// files in a bucket answers 404), computed from the hash tiles.
pub async fn fetch_consistency(
    client: &Client,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, AuditError> {
    let path = format!("/v1/proof/consistency?old_size={old}&new_size={new}");
    match client.get_json::<wire::ConsistencyProof>(&path).await {
        Ok(p) => Ok(wire::unhex(&p.proof)),
        // A bucket answers 404, or 403 to a reader who may not list it.
        Err(ClientError::Status {
            status: 403 | 404, ..
        }) => consistency_from_tiles(client, old, new).await,
        Err(e) => Err(e.into()),
    }
}

/// Read an entry bundle: exactly `width` length-prefixed entries.
pub fn parse_bundle(bytes: &[u8], width: usize) -> Result<Vec<&[u8]>, Failure> {
    let mut out = Vec::with_capacity(width);
    let mut pos = 0usize;
    while pos < bytes.len() {
        let len_bytes = bytes
            .get(pos..pos + 2)
            .ok_or_else(|| Failure::Malformed("entry bundle ends inside a length".into()))?;
        let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
        let entry = bytes
            .get(pos + 2..pos + 2 + len)
            .ok_or_else(|| Failure::Malformed("entry bundle ends inside an entry".into()))?;
        out.push(entry);
        pos += 2 + len;
    }
    if out.len() != width {
        return Err(Failure::Invalid(format!(
            "entry bundle has {} entries, expected {width}",
            out.len()
        )));
    }
    Ok(out)
}

/// Summary of a full audit.
#[derive(Debug)]
pub struct LogAudit {
    pub checkpoint: Verified,
    pub entries: u64,
    pub tiles: u64,
}

/// Download every entry bundle and hash tile of the current checkpoint,
/// recompute every leaf hash from the entry bytes, every tile hash from the
/// level below, and the root; check that each entry is canonical JSON, that
/// every served tile matches, and that the root is the signed one.
///
/// Memory is bounded: the tree is rebuilt through its right edge (at most 64
/// hashes) and at most one pending tile per level is held.
pub async fn audit_log(
    client: &Client,
    policy: &Policy,
    progress: &dyn Fn(u64, u64),
) -> Result<LogAudit, AuditError> {
    let cp = checkpoint(client, policy).await?;
    let size = cp.checkpoint.size;
    let mut edge = RightEdge::empty();
    let mut nodes: Vec<(NodeId, Hash)> = Vec::new();
    // pending[l]: hashes at tree level 8·l not yet compared with a tile.
    let mut pending: Vec<Vec<Hash>> = vec![Vec::new(); 8];
    let mut tiles = 0u64;
    let mut done = 0u64;
    let bundles = size.div_ceil(TILE_WIDTH);
    for n in 0..bundles {
        let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
        let path = TilePath {
            kind: TileKind::Entries,
            index: n,
            width,
        };
        let bytes = client
            .get_bytes_retrying(&format!("/tile/{}", path.encode()), ATTEMPTS)
            .await?;
        for (i, entry) in parse_bundle(&bytes, width as usize)?
            .into_iter()
            .enumerate()
        {
            let index = n * TILE_WIDTH + i as u64;
            let (canonical, _) = verify::event_leaf(entry)
                .map_err(|e| Failure::Invalid(format!("entry {index} is not a JSON event: {e}")))?;
            if canonical != entry {
                return Err(Failure::Invalid(format!(
                    "entry {index} is not in RFC 8785 canonical form"
                ))
                .into());
            }
            nodes.clear();
            edge.push(leaf_hash(entry), &mut nodes);
            for (id, h) in &nodes {
                if id.level % 8 == 0 {
                    pending[(id.level / 8) as usize].push(*h);
                }
            }
        }
        done += width;
        // Compare every tile that is now complete, at every level.
        for (level, hashes) in pending.iter_mut().enumerate() {
            if hashes.len() as u64 == TILE_WIDTH {
                let index = (edge.size() >> (8 * level)) / TILE_WIDTH - 1;
                check_tile(client, level as u8, index, hashes).await?;
                hashes.clear();
                tiles += 1;
            }
        }
        progress(done, size);
    }
    // The partial tiles the checkpoint requires.
    for (level, hashes) in pending.iter().enumerate() {
        if !hashes.is_empty() {
            let index = (size >> (8 * level)) / TILE_WIDTH;
            check_tile(client, level as u8, index, hashes).await?;
            tiles += 1;
        }
    }
    if edge.root() != cp.checkpoint.root {
        return Err(Failure::Invalid("the entries do not hash to the signed root".into()).into());
    }
    Ok(LogAudit {
        checkpoint: cp,
        entries: size,
        tiles,
    })
}

async fn check_tile(
    client: &Client,
    level: u8,
    index: u64,
    want: &[Hash],
) -> Result<(), AuditError> {
    let path = TilePath {
        kind: TileKind::Hashes { level },
        index,
        width: want.len() as u64,
    };
    let got = client
        .get_bytes_retrying(&format!("/tile/{}", path.encode()), ATTEMPTS)
        .await?;
    if got != want.concat() {
        return Err(
            Failure::Invalid(format!("tile {} does not match the entries", path.encode())).into(),
        );
    }
    Ok(())
}

/// The tile that holds tree node `id` in a tree of `size`, and the range
/// of its hashes the node is the root of. Node `(8t + r, i)` is the root of
/// the `2^r` hashes of tree level `8t` from `i·2^r`, all in one tile.
fn tile_of(id: NodeId, size: u64) -> Option<(TilePath, std::ops::Range<usize>)> {
    let t = id.level / 8;
    let r = u32::from(id.level % 8);
    let first = id.index.checked_shl(r)?;
    let count = size.checked_shr(u32::from(t) * 8)?;
    let n = first / TILE_WIDTH;
    let width = count.checked_sub(n * TILE_WIDTH)?.min(TILE_WIDTH);
    let at = (first % TILE_WIDTH) as usize;
    if (at + (1usize << r)) as u64 > width {
        return None;
    }
    Some((
        TilePath {
            kind: TileKind::Hashes { level: t },
            index: n,
            width,
        },
        at..at + (1usize << r),
    ))
}

/// The root of a complete subtree from its `2^r` hashes at its lowest level.
fn perfect_root(hashes: &[Hash]) -> Hash {
    let mut row = hashes.to_vec();
    while row.len() > 1 {
        row = row
            .chunks(2)
            .map(|p| crate::tree::node_hash(&p[0], &p[1]))
            .collect();
    }
    row[0]
}

/// Node hashes of the tree of `size`, computed from its hash tiles (the
/// static files a log or its mirror serves), each tile fetched once by
/// `fetch` (called with the path below `tile/`; it returns the tile's
/// bytes). What it returns is only as good as the tiles: verify what is
/// built from it against a signed checkpoint.
pub async fn nodes_from_tiles<F, Fut>(
    size: u64,
    ids: &[NodeId],
    mut fetch: F,
) -> Result<Vec<Hash>, AuditError>
where
    F: FnMut(TilePath) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, AuditError>>,
{
    let mut tiles: std::collections::HashMap<TilePath, Vec<Hash>> = Default::default();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let (path, range) = tile_of(*id, size).ok_or_else(|| {
            Failure::Malformed(format!(
                "node {}/{} is not in the tree of size {size}",
                id.level, id.index
            ))
        })?;
        let hashes = match tiles.entry(path) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let bytes = fetch(path).await?;
                e.insert(split_tile(&bytes, path)?)
            }
        };
        out.push(perfect_root(&hashes[range]));
    }
    Ok(out)
}

/// A tile's bytes as hashes; exactly `path.width` of them.
pub fn split_tile(bytes: &[u8], path: TilePath) -> Result<Vec<Hash>, Failure> {
    if bytes.len() as u64 != path.width * 32 {
        return Err(Failure::Invalid(format!(
            "tile {} has {} bytes, expected {}",
            path.encode(),
            bytes.len(),
            path.width * 32
        )));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Fetch a tile from a log or a mirror by URL. A partial tile that is gone
/// (a mirror may delete one once its full tile exists, as tlog-tiles
/// allows) is read from the full tile's first hashes.
pub async fn fetch_tile(client: &Client, path: TilePath) -> Result<Vec<u8>, AuditError> {
    match client
        .get_bytes_retrying(&format!("/tile/{}", path.encode()), ATTEMPTS)
        .await
    {
        Ok(b) => Ok(b),
        Err(ClientError::Status {
            status: 403 | 404, ..
        }) if path.is_partial() => {
            let full = TilePath {
                width: TILE_WIDTH,
                ..path
            };
            let mut b = client
                .get_bytes_retrying(&format!("/tile/{}", full.encode()), ATTEMPTS)
                .await?;
            let keep = match path.kind {
                TileKind::Hashes { .. } => (path.width * 32) as usize,
                TileKind::Entries => {
                    return Err(Failure::Malformed("entry bundles are not cut here".into()).into())
                }
            };
            if b.len() < keep {
                return Err(Failure::Invalid(format!("tile {} is short", full.encode())).into());
            }
            b.truncate(keep);
            Ok(b)
        }
        Err(e) => Err(e.into()),
    }
}

/// The consistency proof between two tree sizes computed from the hash
/// tiles alone, for a log read from static files (a mirror in a bucket)
/// that has no proof endpoint. The caller verifies it.
pub async fn consistency_from_tiles(
    client: &Client,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, AuditError> {
    let plan =
        crate::tree::consistency_plan(old, new).map_err(|e| Failure::Malformed(e.to_string()))?;
    let hashes = nodes_from_tiles(new, &plan.node_ids(), |p| fetch_tile(client, p)).await?;
    Ok(plan
        .assemble(&hashes)
        .map_err(|e| Failure::Malformed(e.to_string()))?)
}
