//! A store that fails on purpose: any [`Store`] wrapped so that tests can
//! inject the faults a real disk produces and count the work reads do.
//!
//! - [`Fault::FailCommit`]: commits fail and write nothing (a write
//!   refused: disk full, I/O error before the WAL).
//! - [`Fault::FailCommitAfterPersist`]: commits write everything and then
//!   report failure (the fsync's outcome is unknown to the caller: the
//!   batch did reach the log).
//! - [`Fault::FailReads`]: entry and node reads fail.
//! - [`FaultyStore::set_delay_ms`]: a slow disk.
//!
//! It is not a storage engine: it forwards everything else to the store it
//! wraps, and so passes the same conformance suite.

use super::{
    Batch, EventId, MemoryUsage, MetaKey, Role, StateRecord, Store, StoreError, StoredRecord,
};
use crate::tree::{Hash, NodeId};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// What the store does wrong, from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    None = 0,
    FailCommit = 1,
    FailCommitAfterPersist = 2,
    FailReads = 3,
}

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    fault: AtomicU8,
    /// Lineage keys returned by mention scans, in all.
    mention_keys_read: AtomicU64,
    /// Commits attempted (failed or not).
    commits: AtomicU64,
    /// Milliseconds every commit and entry read takes, on top.
    delay_ms: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore {
            inner,
            fault: AtomicU8::new(Fault::None as u8),
            mention_keys_read: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
        }
    }

    /// Make every commit and entry read take `ms` longer (a slow disk).
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    fn slow(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    pub fn set(&self, f: Fault) {
        self.fault.store(f as u8, Ordering::SeqCst);
    }

    fn fault(&self) -> Fault {
        match self.fault.load(Ordering::SeqCst) {
            1 => Fault::FailCommit,
            2 => Fault::FailCommitAfterPersist,
            3 => Fault::FailReads,
            _ => Fault::None,
        }
    }

    /// Lineage keys returned by mention scans since the store was made.
    pub fn mention_keys_read(&self) -> u64 {
        self.mention_keys_read.load(Ordering::SeqCst)
    }

    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn reads(&self) -> Result<(), StoreError> {
        if self.fault() == Fault::FailReads {
            Err(StoreError::Engine("injected read failure".into()))
        } else {
            Ok(())
        }
    }
}

impl Store for FaultyStore {
    fn tree_size(&self) -> Result<u64, StoreError> {
        self.inner.tree_size()
    }
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.checkpoint()
    }
    fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.slow();
        match self.fault() {
            Fault::FailCommit => Err(StoreError::Engine("injected: no space left".into())),
            Fault::FailCommitAfterPersist => {
                self.inner.commit(batch)?;
                Err(StoreError::Engine("injected: fsync failed".into()))
            }
            _ => self.inner.commit(batch),
        }
    }
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.reads()?;
        self.slow();
        self.inner.entries(start, end)
    }
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        self.reads()?;
        self.inner.nodes(ids)
    }
    fn node_range(&self, level: u8, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        self.reads()?;
        self.inner.node_range(level, start, end)
    }
    fn upper_levels(&self, min_level: u8, size: u64) -> Result<Vec<Vec<Hash>>, StoreError> {
        self.reads()?;
        self.inner.upper_levels(min_level, size)
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
        let r = self.inner.mentions_as(prefix, role, from, limit)?;
        self.mention_keys_read
            .fetch_add(r.len() as u64, Ordering::SeqCst);
        Ok(r)
    }
    fn last_mention(
        &self,
        prefix: &[u8],
        role: Role,
        before: u64,
    ) -> Result<Option<u64>, StoreError> {
        let r = self.inner.last_mention(prefix, role, before)?;
        self.mention_keys_read.fetch_add(1, Ordering::SeqCst);
        Ok(r)
    }
    fn put_mentions(&self, items: &[(u64, Vec<u8>, Role)]) -> Result<(), StoreError> {
        self.inner.put_mentions(items)
    }
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }
    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        if self.fault() == Fault::FailCommit {
            return Err(StoreError::Engine("injected: no space left".into()));
        }
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
        if self.fault() == Fault::FailCommit {
            return Err(StoreError::Engine("injected: no space left".into()));
        }
        self.inner.put_state(header, records, replace_all)
    }
    fn memory(&self) -> MemoryUsage {
        self.inner.memory()
    }
    fn tile_file(&self) -> Option<super::TileFileStatus> {
        self.inner.tile_file()
    }
    fn recover(&self) -> Result<(), StoreError> {
        self.inner.recover()
    }
}
