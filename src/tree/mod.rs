//! RFC 6962 / RFC 9162 §2.1 Merkle tree math: hashing, node addressing, proof
//! planning and assembly, verification, and the compact right edge used by the
//! sequencer.
//!
//! Pure: no I/O, no async, no storage engine, no JSON. Hashes are read through
//! the one-method [`HashReader`], so the same code serves the server, the
//! verifier, tests and benches.
//!
//! A proof is built in three steps (plan, fetch, assemble): [`inclusion_plan`]
//! or [`consistency_plan`] says which stored nodes are needed, the caller reads
//! them in one batch, and [`ProofPlan::assemble`] folds them into proof hashes.
//!
//! Not here: tiles' path syntax (see [`crate::tiles`]), signatures (see
//! [`crate::note`]).

mod verify;

pub use verify::{verify_consistency, verify_inclusion, VerifyError};

use sha2::{Digest, Sha256};

/// A SHA-256 Merkle tree hash.
pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A complete (perfect) subtree: the node at `level` covering leaves
/// `[index << level, (index + 1) << level)`. Level 0 nodes are leaf hashes.
/// Only complete subtrees are ever stored; incomplete ones are recomputed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub const fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }
}

/// Errors from reading hashes or from arguments that describe no proof.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old size {old} is not in 1..={new}")]
    BadSizes { old: u64, new: u64 },
    #[error("tree size 0 has no proof")]
    EmptyTree,
    #[error("node hash at level {level}, index {index} is not available")]
    MissingNode { level: u8, index: u64 },
    #[error("storage: {0}")]
    Storage(String),
}

/// Read access to stored complete-subtree hashes.
///
/// Implementations return hashes in the order of `ids`, or an error if any
/// is missing: a missing node means the caller asked beyond the stored tree.
pub trait HashReader {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError>;
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The complete subtrees that make up the RFC 6962 subtree `[lo, hi)`, left to
/// right, largest first. `lo` is always aligned to a power of two at least as
/// large as `hi - lo` for ranges that arise in RFC 6962 proofs and roots, so
/// each piece is a real node of the tree.
pub fn range_nodes(lo: u64, hi: u64) -> Vec<NodeId> {
    RangeNodes::new(lo, hi).collect()
}

/// [`range_nodes`] one by one, without a vector: one piece per set bit of
/// `hi - lo`.
struct RangeNodes {
    start: u64,
    left: u64,
}

impl RangeNodes {
    fn new(lo: u64, hi: u64) -> Self {
        RangeNodes {
            start: lo,
            left: hi.saturating_sub(lo),
        }
    }
}

impl Iterator for RangeNodes {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        if self.left == 0 {
            return None;
        }
        let level = 63 - self.left.leading_zeros();
        let size = 1u64 << level;
        debug_assert_eq!(self.start % size, 0, "unaligned subtree range");
        let id = NodeId::new(level as u8, self.start >> level);
        self.start += size;
        self.left -= size;
        Some(id)
    }
}

/// Fold the hashes of [`range_nodes`] (left to right) into the subtree hash:
/// RFC 6962 hashes the rightmost pieces together first.
pub fn fold_range(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    let mut acc = *last;
    for h in rest.iter().rev() {
        acc = node_hash(h, &acc);
    }
    Some(acc)
}

/// The root of the tree of `size` leaves, from stored nodes.
pub fn root<R: HashReader + ?Sized>(size: u64, reader: &R) -> Result<Hash, TreeError> {
    if size == 0 {
        return Ok(empty_root());
    }
    let hashes = reader.read_hashes(&range_nodes(0, size))?;
    Ok(fold_range(&hashes).expect("size > 0 has at least one node"))
}

/// Which subtrees make up a proof, in proof order (leaf side first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofPlan {
    /// Each element of the proof is the hash of the RFC 6962 subtree `[lo, hi)`.
    ranges: Vec<(u64, u64)>,
}

impl ProofPlan {
    /// Every stored node the proof needs, in the order `assemble` expects.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.node_ids_at(&EdgeFolds::default())
    }

    /// The stored nodes the proof needs besides what `edge` holds (when it
    /// is the right edge of the proof's tree), in the order
    /// [`ProofPlan::assemble_at`] expects.
    pub fn node_ids_at(&self, edge: &EdgeFolds) -> Vec<NodeId> {
        let mut out = Vec::with_capacity(self.ranges.len() + 8);
        for &(lo, hi) in &self.ranges {
            if edge.get(lo, hi).is_none() {
                out.extend(RangeNodes::new(lo, hi));
            }
        }
        out
    }

    /// Number of hashes in the finished proof.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Fold hashes read for [`ProofPlan::node_ids`] into the proof.
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>, TreeError> {
        self.assemble_at(hashes, &EdgeFolds::default())
    }

    /// Fold hashes read for [`ProofPlan::node_ids_at`] into the proof,
    /// taking what `edge` holds from it.
    pub fn assemble_at(&self, hashes: &[Hash], edge: &EdgeFolds) -> Result<Vec<Hash>, TreeError> {
        let mut out = Vec::with_capacity(self.ranges.len());
        let mut pos = 0;
        for &(lo, hi) in &self.ranges {
            if let Some(h) = edge.get(lo, hi) {
                out.push(h);
                continue;
            }
            let n = (hi - lo).count_ones() as usize;
            let part = hashes.get(pos..pos + n).ok_or(TreeError::MissingNode {
                level: 0,
                index: lo,
            })?;
            out.push(fold_range(part).expect("ranges are non-empty"));
            pos += n;
        }
        Ok(out)
    }

    /// Plan, read and assemble in one call.
    pub fn fetch<R: HashReader + ?Sized>(&self, reader: &R) -> Result<Vec<Hash>, TreeError> {
        self.fetch_at(reader, &EdgeFolds::default())
    }

    /// [`ProofPlan::fetch`], taking what `edge` holds from it.
    pub fn fetch_at<R: HashReader + ?Sized>(
        &self,
        reader: &R,
        edge: &EdgeFolds,
    ) -> Result<Vec<Hash>, TreeError> {
        let hashes = reader.read_hashes(&self.node_ids_at(edge))?;
        self.assemble_at(&hashes, edge)
    }
}

/// The hashes of the RFC 6962 subtrees `[lo, size)` of one tree, for each
/// `lo` where a piece of its right edge starts, largest first; the first
/// is the root. They are the accumulators of the fold that makes the root,
/// so the sequencer has them for free. An element of a proof at that size
/// is either one stored node or one of these (a range ending at the right
/// edge), so with them at hand a proof at the log's size reads and hashes
/// nothing there. The default holds nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeFolds {
    size: u64,
    folds: Vec<(u64, Hash)>,
}

impl EdgeFolds {
    /// Nothing: every proof reads its nodes.
    pub const fn none() -> Self {
        EdgeFolds {
            size: 0,
            folds: Vec::new(),
        }
    }

    pub fn of(edge: &RightEdge) -> Self {
        let mut folds = Vec::with_capacity(edge.nodes.len());
        let mut acc: Option<Hash> = None;
        for (id, h) in edge.nodes.iter().rev() {
            let f = match acc {
                None => *h,
                Some(a) => node_hash(h, &a),
            };
            acc = Some(f);
            folds.push((id.index << id.level, f));
        }
        folds.reverse();
        EdgeFolds {
            size: edge.size,
            folds,
        }
    }

    /// The tree's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree.
    pub fn root(&self) -> Hash {
        self.folds.first().map_or_else(empty_root, |f| f.1)
    }

    /// The hash of `[lo, hi)`, if `hi` is this tree's size and `lo` the
    /// start of a piece of its edge.
    fn get(&self, lo: u64, hi: u64) -> Option<Hash> {
        if hi != self.size {
            return None;
        }
        self.folds.iter().find(|f| f.0 == lo).map(|f| f.1)
    }
}

/// RFC 6962 §2.1.1 PATH(index, D[0:size]).
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan, TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi) = (0u64, size);
    let mut ranges = Vec::new();
    // Invariant: lo <= index < hi; walking down from the root, so the
    // siblings come out root side first and are reversed at the end.
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    Ok(ProofPlan { ranges })
}

/// RFC 6962 §2.1.2 PROOF(old, D[0:new]). Needs 1 <= old <= new; the proof
/// for old == new is empty.
pub fn consistency_plan(old: u64, new: u64) -> Result<ProofPlan, TreeError> {
    if old == 0 || old > new {
        return Err(TreeError::BadSizes { old, new });
    }
    let (mut lo, mut hi) = (0u64, new);
    let mut whole = true; // SUBPROOF's b: is [lo, hi) still the original left edge?
    let mut ranges = Vec::new();
    // Invariant: lo < old <= hi.
    loop {
        if old == hi {
            if !whole {
                ranges.push((lo, hi));
            }
            break;
        }
        let k = split_point(hi - lo);
        if old <= lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
            whole = false;
        }
    }
    ranges.reverse();
    Ok(ProofPlan { ranges })
}

/// The compact right edge of a tree: the roots of the complete subtrees that
/// make up `[0, size)`, one per set bit of `size`, largest first.
///
/// Appending a leaf pushes its hash and merges equal-sized neighbours, which
/// yields exactly the new complete nodes to store; the root is the fold of
/// the edge. This is how the sequencer grows the tree without reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RightEdge {
    size: u64,
    nodes: Vec<(NodeId, Hash)>,
}

impl RightEdge {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Rebuild from stored nodes (at most 64 reads, nothing recomputed).
    pub fn load<R: HashReader + ?Sized>(size: u64, reader: &R) -> Result<Self, TreeError> {
        let ids = range_nodes(0, size);
        let hashes = reader.read_hashes(&ids)?;
        Ok(RightEdge {
            size,
            nodes: ids.into_iter().zip(hashes).collect(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn nodes(&self) -> &[(NodeId, Hash)] {
        &self.nodes
    }

    /// Append one leaf hash; `new_nodes` receives every complete node created
    /// (the leaf itself first, then each merged parent).
    pub fn push(&mut self, leaf: Hash, new_nodes: &mut Vec<(NodeId, Hash)>) {
        let mut id = NodeId::new(0, self.size);
        let mut hash = leaf;
        new_nodes.push((id, hash));
        while let Some(&(last_id, last_hash)) = self.nodes.last() {
            if last_id.level != id.level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&last_hash, &hash);
            id = NodeId::new(id.level + 1, last_id.index >> 1);
            new_nodes.push((id, hash));
        }
        self.nodes.push((id, hash));
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let hashes: Vec<Hash> = self.nodes.iter().map(|(_, h)| *h).collect();
        fold_range(&hashes).unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests;
