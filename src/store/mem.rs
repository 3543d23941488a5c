//! In-memory store: the reference for the contract, and fast for tests and
//! benches. Not durable, by design.

use super::{
    check_contiguous, mention_full_key, mention_index, role_key, role_prefix, Batch, EventId,
    MetaKey, Role, StateRecord, Store, StoreError, StoredRecord,
};
use crate::tree::{Hash, NodeId};
use std::collections::BTreeSet;
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

#[derive(Default)]
struct Inner {
    entries: Vec<Vec<u8>>,
    /// nodes[level][index]: complete nodes arrive in index order per level.
    nodes: Vec<Vec<Hash>>,
    leaves: HashMap<Hash, u64>,
    events: HashMap<EventId, u64>,
    mentions: BTreeSet<Vec<u8>>,
    checkpoint: Option<Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Default)]
pub struct MemStore {
    inner: RwLock<Inner>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Inner>, StoreError> {
        self.inner
            .read()
            .map_err(|_| StoreError::Engine("lock poisoned".into()))
    }
}

impl Store for MemStore {
    fn mentions_as(
        &self,
        prefix: &[u8],
        role: Role,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let under = role_prefix(prefix, role);
        let start = role_key(&under, from);
        let g = self.read()?;
        let mut out = Vec::new();
        for k in g.mentions.range(start..) {
            if out.len() >= limit || !k.starts_with(&under) {
                break;
            }
            out.push(
                mention_index(&under, k)
                    .ok_or_else(|| StoreError::Corrupt("malformed lineage key".into()))?,
            );
        }
        Ok(out)
    }

    fn last_mention(
        &self,
        prefix: &[u8],
        role: Role,
        before: u64,
    ) -> Result<Option<u64>, StoreError> {
        let under = role_prefix(prefix, role);
        let end = role_key(&under, before);
        let g = self.read()?;
        match g.mentions.range(under.clone()..end).next_back() {
            Some(k) => mention_index(&under, k)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt("malformed lineage key".into())),
            None => Ok(None),
        }
    }

    fn put_mentions(&self, items: &[(u64, Vec<u8>, Role)]) -> Result<(), StoreError> {
        let mut g = self
            .inner
            .write()
            .map_err(|_| StoreError::Engine("lock poisoned".into()))?;
        for (index, prefix, role) in items {
            g.mentions.insert(mention_full_key(prefix, *index, *role));
        }
        Ok(())
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        Ok(self.read()?.entries.len() as u64)
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read()?.checkpoint.clone())
    }

    fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        let mut g = self
            .inner
            .write()
            .map_err(|_| StoreError::Engine("lock poisoned".into()))?;
        check_contiguous(g.entries.len() as u64, batch)?;
        // Validate node placement before changing anything (all or nothing).
        let mut lens: Vec<u64> = g.nodes.iter().map(|l| l.len() as u64).collect();
        for (id, _) in batch.nodes {
            let l = id.level as usize;
            if lens.len() <= l {
                lens.resize(l + 1, 0);
            }
            if lens[l] != id.index {
                return Err(StoreError::NotContiguous(format!(
                    "node {}/{} out of order",
                    id.level, id.index
                )));
            }
            lens[l] += 1;
        }
        for (i, e) in batch.entries.iter().enumerate() {
            let index = batch.first_index + i as u64;
            g.leaves.insert(e.leaf_hash, index);
            g.events.insert(e.event_id, index);
            for (prefix, role) in &e.mentions {
                g.mentions.insert(mention_full_key(prefix, index, *role));
            }
            g.entries.push(e.bytes.to_vec());
        }
        for (id, h) in batch.nodes {
            let l = id.level as usize;
            if g.nodes.len() <= l {
                g.nodes.resize_with(l + 1, Vec::new);
            }
            g.nodes[l].push(*h);
        }
        g.checkpoint = Some(batch.checkpoint.to_vec());
        Ok(())
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let g = self.read()?;
        if start > end || end > g.entries.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "entries {start}..{end} missing"
            )));
        }
        Ok(g.entries[start as usize..end as usize].to_vec())
    }

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        let g = self.read()?;
        Ok(ids
            .iter()
            .map(|id| {
                g.nodes
                    .get(id.level as usize)
                    .and_then(|l| usize::try_from(id.index).ok().and_then(|i| l.get(i)))
                    .copied()
            })
            .collect())
    }

    fn node_range(&self, level: u8, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        let g = self.read()?;
        let l = g
            .nodes
            .get(level as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if start > end || end > l.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "nodes {level}/{start}..{end} missing"
            )));
        }
        Ok(l[start as usize..end as usize].to_vec())
    }

    fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        Ok(self.read()?.leaves.get(leaf).copied())
    }

    fn find_events(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError> {
        let g = self.read()?;
        Ok(ids.iter().map(|id| g.events.get(id).copied()).collect())
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read()?.meta.get(key.as_str()).cloned())
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        self.inner
            .write()
            .map_err(|_| StoreError::Engine("lock poisoned".into()))?
            .meta
            .insert(key.as_str().to_string(), value.to_vec());
        Ok(())
    }

    fn state_records(&self) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(self
            .read()?
            .state
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn put_state(
        &self,
        header: &[u8],
        records: &[StateRecord],
        replace_all: bool,
    ) -> Result<(), StoreError> {
        let mut inner = self
            .inner
            .write()
            .map_err(|_| StoreError::Engine("lock poisoned".into()))?;
        if replace_all {
            inner.state.clear();
        }
        for (k, v) in records {
            match v {
                Some(v) => inner.state.insert(k.clone(), v.clone()),
                None => inner.state.remove(k),
            };
        }
        inner
            .meta
            .insert(MetaKey::DerivedState.as_str().to_string(), header.to_vec());
        Ok(())
    }
}
