//! The upper levels of the tree in memory, in front of any store.
//!
//! Every inclusion and consistency proof of a tree of size `s` needs about
//! `log2(s)` node hashes; all but the lowest few are high in the tree, and
//! every proof shares them. [`UpperLevels`] keeps the complete nodes of
//! levels `min_level` and up in memory and reads only the lower levels from
//! the store it wraps: with `min_level` 8, a proof at any tree size reads
//! at most the eight or nine hashes of one 256-leaf tile from the store.
//!
//! Memory: level `l` has `s >> l` complete nodes, so levels 8 and up hold
//! about `s / 128` hashes, `s / 4` bytes (25 MiB at 100 M entries).
//!
//! It also keeps the complete nodes below `min_level` at the right edge
//! of the tree, under the last (partial) node of `min_level`: at most
//! `2^(min_level+1)` hashes. A proof for the latest tree size needs one or
//! two of them (the perfect subtrees that end the tree), and on RocksDB
//! they are the one tile with no single value to read.
//!
//! The cache fills from the store at open ([`Store::upper_levels`]: one
//! pass per row of tiles on RocksDB) and
//! grows with every successful commit, before the commit returns, so a
//! reader that was told a tree size finds its nodes. It is only a copy:
//! a node it does not hold is read from the store.

use super::{
    Batch, EventId, MemoryUsage, MetaKey, Role, StateRecord, Store, StoreError, StoredRecord,
};
use crate::tree::{Hash, NodeId};
use std::sync::{Arc, RwLock};

/// The level from which the server keeps nodes in memory: the second row
/// of tiles and up.
pub const DEFAULT_MIN_LEVEL: u8 = 8;

pub struct UpperLevels {
    inner: Arc<dyn Store>,
    min_level: u8,
    /// `levels[l - min_level][i]`: node `(l, i)`, complete nodes from index 0.
    levels: RwLock<Vec<Vec<Hash>>>,
    edge: RwLock<Edge>,
}

/// The complete nodes of levels below `min_level` from leaf `start` on,
/// where `start` is the first leaf of the partial node of `min_level`.
struct Edge {
    start: u64,
    /// `levels[l][j]`: node `(l, (start >> l) + j)`.
    levels: Vec<Vec<Hash>>,
}

impl Edge {
    fn get(&self, id: &NodeId) -> Option<Hash> {
        let first = self.start >> id.level;
        let j = usize::try_from(id.index.checked_sub(first)?).ok()?;
        self.levels.get(usize::from(id.level))?.get(j).copied()
    }
}

fn poisoned() -> StoreError {
    StoreError::Engine("node cache lock poisoned".into())
}

impl UpperLevels {
    /// Wrap `inner`, loading its complete nodes of levels `min_level` and up.
    pub fn open(inner: Arc<dyn Store>, min_level: u8) -> Result<Self, StoreError> {
        let size = inner.tree_size()?;
        let levels = inner.upper_levels(min_level, size)?;
        let start = edge_start(size, min_level);
        let mut edge = Edge {
            start,
            levels: Vec::with_capacity(usize::from(min_level)),
        };
        for l in 0..min_level {
            edge.levels
                .push(inner.node_range(l, start >> l, size >> l)?);
        }
        Ok(UpperLevels {
            inner,
            min_level,
            levels: RwLock::new(levels),
            edge: RwLock::new(edge),
        })
    }

    /// Node `id` if it is held at the right edge (below `min_level`).
    #[cfg(test)]
    pub fn edge_node(&self, id: &NodeId) -> Option<Hash> {
        self.edge.read().ok()?.get(id)
    }

    /// Hashes held in memory for levels `min_level` and up.
    pub fn cached(&self) -> usize {
        self.levels
            .read()
            .map(|l| l.iter().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Add the nodes of a committed batch. A node beyond the end of its
    /// level (the nodes of an earlier commit that failed to report success
    /// but reached the disk) first brings the level up to date from the
    /// store; nodes already held are skipped.
    fn extend(&self, nodes: &[(NodeId, Hash)], size: u64) -> Result<(), StoreError> {
        self.extend_edge(nodes, size)?;
        let mut levels = self.levels.write().map_err(|_| poisoned())?;
        for (id, h) in nodes.iter().filter(|(id, _)| id.level >= self.min_level) {
            let slot = usize::from(id.level - self.min_level);
            while levels.len() <= slot {
                levels.push(Vec::new());
            }
            let have = levels[slot].len() as u64;
            if id.index > have {
                let gap = self.inner.node_range(id.level, have, id.index)?;
                levels[slot].extend(gap);
            }
            if id.index == levels[slot].len() as u64 {
                levels[slot].push(*h);
            }
        }
        Ok(())
    }
}

impl UpperLevels {
    /// Move the right edge to a tree of `size` and add its new nodes, from
    /// the store for any the batch lacks (as in [`UpperLevels::extend`]).
    fn extend_edge(&self, nodes: &[(NodeId, Hash)], size: u64) -> Result<(), StoreError> {
        let mut edge = self.edge.write().map_err(|_| poisoned())?;
        let start = edge_start(size, self.min_level);
        if start != edge.start {
            edge.start = start;
            edge.levels.iter_mut().for_each(Vec::clear);
        }
        for (id, h) in nodes.iter().filter(|(id, _)| id.level < self.min_level) {
            let first = start >> id.level;
            if id.index < first {
                continue;
            }
            let Some(level) = edge.levels.get_mut(usize::from(id.level)) else {
                continue;
            };
            let next = first + level.len() as u64;
            if id.index > next {
                let gap = self.inner.node_range(id.level, next, id.index)?;
                level.extend(gap);
            }
            if id.index == first + level.len() as u64 {
                level.push(*h);
            }
        }
        Ok(())
    }
}

/// The first leaf under the partial node of `min_level` in a tree of `size`.
fn edge_start(size: u64, min_level: u8) -> u64 {
    size.checked_shr(u32::from(min_level))
        .and_then(|n| n.checked_shl(u32::from(min_level)))
        .unwrap_or(0)
}

impl Store for UpperLevels {
    fn tree_size(&self) -> Result<u64, StoreError> {
        self.inner.tree_size()
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.checkpoint()
    }

    fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.inner.commit(batch)?;
        self.extend(batch.nodes, batch.new_size())
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.entries(start, end)
    }

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        let mut out: Vec<Option<Hash>> = vec![None; ids.len()];
        let mut missing = Vec::new();
        {
            let levels = self.levels.read().map_err(|_| poisoned())?;
            let edge = self.edge.read().map_err(|_| poisoned())?;
            for (slot, id) in out.iter_mut().zip(ids) {
                let held = match id.level.checked_sub(self.min_level) {
                    Some(l) => levels
                        .get(usize::from(l))
                        .and_then(|v| usize::try_from(id.index).ok().and_then(|i| v.get(i)))
                        .copied(),
                    None => edge.get(id),
                };
                match held {
                    Some(h) => *slot = Some(h),
                    None => missing.push(*id),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let mut got = self.inner.nodes(&missing)?.into_iter();
        for slot in out.iter_mut().filter(|s| s.is_none()) {
            *slot = got.next().flatten();
        }
        Ok(out)
    }

    fn node_range(&self, level: u8, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        if let Some(l) = level.checked_sub(self.min_level) {
            let levels = self.levels.read().map_err(|_| poisoned())?;
            if let Some(v) = levels.get(usize::from(l)) {
                if let (Ok(s), Ok(e)) = (usize::try_from(start), usize::try_from(end)) {
                    if let Some(part) = v.get(s..e) {
                        return Ok(part.to_vec());
                    }
                }
            }
        }
        self.inner.node_range(level, start, end)
    }

    fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        self.inner.find_leaf(leaf)
    }

    fn find_events(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError> {
        self.inner.find_events(ids)
    }

    fn mentions_as(
        &self,
        prefix: &[u8],
        role: Role,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.inner.mentions_as(prefix, role, from, limit)
    }

    fn last_mention(
        &self,
        prefix: &[u8],
        role: Role,
        before: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.inner.last_mention(prefix, role, before)
    }

    fn put_mentions(&self, items: &[(u64, Vec<u8>, Role)]) -> Result<(), StoreError> {
        self.inner.put_mentions(items)
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        self.inner.put_meta(key, value)
    }

    fn state_records(&self) -> Result<Vec<StoredRecord>, StoreError> {
        self.inner.state_records()
    }

    fn put_state(
        &self,
        header: &[u8],
        records: &[StateRecord],
        replace_all: bool,
    ) -> Result<(), StoreError> {
        self.inner.put_state(header, records, replace_all)
    }

    fn recover(&self) -> Result<(), StoreError> {
        self.inner.recover()
    }

    fn tile_file(&self) -> Option<super::TileFileStatus> {
        self.inner.tile_file()
    }

    fn memory(&self) -> MemoryUsage {
        let mut m = self.inner.memory();
        m.node_cache = self.cached() as u64 * 32;
        m
    }
}
