//! Storage behind a narrow trait, with RocksDB ([`RocksStore`]) and in-memory
//! ([`MemStore`]) implementations that pass the same conformance tests.
//!
//! # Contract
//!
//! - **One writer.** Only the sequencer calls [`Store::commit`], and never
//!   concurrently with itself. Any thread may call the read methods at any
//!   time, concurrently with a commit.
//! - **Atomic and durable commits.** When `commit` returns `Ok`, everything in
//!   the batch (entries, node hashes, both indexes, the new tree size and the
//!   signed checkpoint) is on stable storage and survives a crash or power
//!   loss. (The RocksDB store writes its leaf-hash index after the commit,
//!   and indexes again at open what a crash took from it: to a caller, a
//!   leaf is found from the moment its commit returns.) If it returns `Err`
//!   or the process dies during the call, either all of the batch is stored
//!   or none of it is; the caller must then reload its state from the store
//!   before writing again.
//! - **Immutability.** Data below the committed tree size never changes, so
//!   readers that only ask below a size they were told about need no locks.
//! - **Layout.** Node hashes are stored so that a tile is one read
//!   ([`Store::node_range`]); entries by index so that an entry bundle is
//!   one range read ([`Store::entries`]).
//! - **Metadata** ([`Store::put_meta`]) is durable when the call returns and
//!   replaces the key's value atomically. Every key is a [`MetaKey`]; its doc
//!   says who writes it and when. Besides the log's identity (written once)
//!   it holds *snapshots of derived state*: values computed from the entries
//!   alone (tokens, keys, the registry), each recording the tree size it
//!   covers. A snapshot is a cache, never the truth: one that is missing,
//!   old or lost in a crash costs only a longer fold over the entries after
//!   it, and `modeltrail reindex` rebuilds and checks it from the entries.

mod cache;
pub mod fault;
mod leaf_tail;
mod mem;
mod rocks;
mod tile_file;

pub use cache::{UpperLevels, DEFAULT_MIN_LEVEL};
pub use mem::MemStore;
pub use rocks::{node_key as rocks_node_key, RocksOptions, RocksStore, DEFAULT_LEAF_INDEX_BATCH};

use crate::tree::{Hash, HashReader, NodeId, TreeError};

/// A 16-byte event id (UUID).
pub type EventId = [u8; 16];

/// Every metadata key the project stores, in one place.
///
/// | key | value | written |
/// |---|---|---|
/// | `Origin` | the log's origin (UTF-8) | once, when the log is created |
/// | `VerifierKey` | the log's verifier key string | once, when the log is created |
/// | `WitnessedCheckpoint` | the last cosigned checkpoint published | replaced by the witness collector; its size only grows |
/// | `DerivedState` | the header of the derived state's snapshot (JSON: format version, the tree size it covers); its records are in [`Store::state_records`] | with the records it describes, by [`Store::put_state`] |
/// | `LineageLayout` | the layout of the lineage index ([`LINEAGE_LAYOUT`]) | when the index is complete in that layout |
/// | `LegacyAccessTokens` | the token table of earlier versions (JSON) | never any more; read to find the hashes of tokens granted before grants carried them |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    Origin,
    VerifierKey,
    WitnessedCheckpoint,
    DerivedState,
    LineageLayout,
    LegacyAccessTokens,
}

impl MetaKey {
    /// The key's name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaKey::Origin => "origin",
            MetaKey::VerifierKey => "verifier_key",
            MetaKey::WitnessedCheckpoint => "witnessed_checkpoint",
            MetaKey::DerivedState => "derived_state",
            MetaKey::LineageLayout => "lineage_layout",
            MetaKey::LegacyAccessTokens => "access_tokens",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("batch does not continue the log: {0}")]
    NotContiguous(String),
}

/// Memory an engine reports, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryUsage {
    pub block_cache: u64,
    pub memtables: u64,
    pub table_readers: u64,
    /// Node hashes held by [`UpperLevels`].
    pub node_cache: u64,
}

/// The RocksDB store's tile file (row 0's complete tiles, read with one
/// `pread`), for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TileFileStatus {
    /// Records written and read by proofs.
    pub records: u64,
    /// Complete row-0 tiles: those past `records` are read from the
    /// store until the file's writer reaches them.
    pub complete: u64,
    /// Reads of a record that failed its check (and went to the store).
    pub failed_checks: u64,
}

/// One new leaf.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// The leaf bytes, shared with the receipt that will embed them.
    pub bytes: std::sync::Arc<Vec<u8>>,
    pub leaf_hash: Hash,
    pub event_id: EventId,
    /// What the entry mentions, for the lineage index: each a
    /// [`mention_key`] prefix and whether it is the subject.
    pub mentions: Vec<(Vec<u8>, Role)>,
}

/// One record of the derived state to write: its key, and its value
/// (`None`: delete).
pub type StateRecord = (Vec<u8>, Option<Vec<u8>>);
/// One stored record of the derived state: its key and value.
pub type StoredRecord = (Vec<u8>, Vec<u8>);

/// How an entry mentions an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Subject,
    Related,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Subject => b's',
            Role::Related => b'r',
        }
    }
}

/// The lineage index's key prefix for `(type, id)`: `type 0x00 id 0x00`.
/// Types are identifiers and ids have no control characters, so the
/// prefix is unambiguous. Full keys append the role byte and the entry
/// index (u64 BE): one range scan lists the entries that have `(type, id)`
/// as their subject (or in `related`) in log order, however many entries
/// mention it the other way.
pub fn mention_key(kind: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + id.len() + 2);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k
}

/// The key prefix of one role's mentions.
fn role_prefix(prefix: &[u8], role: Role) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9);
    k.extend_from_slice(prefix);
    k.push(role.byte());
    k
}

/// A full lineage key.
fn mention_full_key(prefix: &[u8], index: u64, role: Role) -> Vec<u8> {
    role_key(&role_prefix(prefix, role), index)
}

/// The full lineage key of `index` under a [`role_prefix`].
fn role_key(role_prefix: &[u8], index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(role_prefix.len() + 8);
    k.extend_from_slice(role_prefix);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The index at the end of a full lineage key under `role_prefix`.
fn mention_index(role_prefix: &[u8], key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(role_prefix)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The value of a lineage key that stands for a group of entries: the
/// indexes after the key's own, each as its distance from the one before
/// (LEB128). The entries of one commit that mention an id the same way
/// (the actor, the action, the month, a deployment) are one key, not one
/// each; a key with an empty value is a group of one, as every key
/// written before groups was.
fn mention_group_value(first: u64, rest: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = first;
    for i in rest {
        // Strictly increasing: a repeat (or anything out of order) has no
        // place in a group.
        if i <= prev {
            continue;
        }
        let mut d = i - prev;
        prev = i;
        loop {
            let low = (d & 0x7f) as u8;
            d >>= 7;
            if d == 0 {
                out.push(low);
                break;
            }
            out.push(low | 0x80);
        }
    }
    out
}

/// The indexes of the lineage group stored at `key`, under
/// `role_prefix`, with `value`: never empty, strictly increasing.
fn read_group(role_prefix: &[u8], key: &[u8], value: &[u8]) -> Result<Vec<u64>, StoreError> {
    let first = mention_index(role_prefix, key)
        .ok_or_else(|| StoreError::Corrupt("malformed lineage key".into()))?;
    mention_group(first, value)
}

/// The indexes of a lineage group: its key's `first`, then those its
/// value adds, strictly increasing.
fn mention_group(first: u64, value: &[u8]) -> Result<Vec<u64>, StoreError> {
    let bad = || StoreError::Corrupt("malformed lineage group".into());
    let mut out = vec![first];
    let mut prev = first;
    let mut d = 0u64;
    let mut shift = 0u32;
    for &b in value {
        if shift > 63 || (shift == 63 && b > 1) {
            return Err(bad());
        }
        d |= u64::from(b & 0x7f) << shift;
        if b & 0x80 != 0 {
            shift += 7;
            continue;
        }
        if d == 0 {
            return Err(bad());
        }
        prev = prev.checked_add(d).ok_or_else(bad)?;
        out.push(prev);
        d = 0;
        shift = 0;
    }
    if shift != 0 {
        return Err(bad());
    }
    Ok(out)
}

/// The version of the lineage index layout this code writes.
/// "3": with the auditor's keys (actor, action, month), one key per entry.
/// "4": a commit's entries that mention an id the same way are one key
/// (`mention_group_value`). A layout-3 index is a layout-4 index whose
/// groups all hold one entry, so it is taken as it is; the new number
/// keeps an earlier version from reading groups as their first entry
/// alone (it rebuilds its own index instead).
pub const LINEAGE_LAYOUT: &[u8] = b"4";
/// The earlier layout this code reads as it is.
pub const LINEAGE_LAYOUT_SINGLE: &[u8] = b"3";

/// Everything one sequencer batch writes, atomically.
#[derive(Debug)]
pub struct Batch<'a> {
    /// Index of the first entry; must equal the committed tree size.
    pub first_index: u64,
    pub entries: &'a [NewEntry],
    /// Every complete node created by these entries.
    pub nodes: &'a [(NodeId, Hash)],
    /// The signed checkpoint for `first_index + entries.len()`.
    pub checkpoint: &'a [u8],
}

impl Batch<'_> {
    pub fn new_size(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }
}

pub trait Store: Send + Sync + 'static {
    /// The committed tree size (0 for a new store).
    fn tree_size(&self) -> Result<u64, StoreError>;
    /// The checkpoint stored with the last commit.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Atomically and durably append a batch (see the module contract).
    fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError>;

    /// Entries `[start, end)`; an error if any is missing.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Node hashes in the order asked; `None` where not stored.
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError>;
    /// Node hashes at `level` for indexes `[start, end)`; an error if any is missing.
    fn node_range(&self, level: u8, start: u64, end: u64) -> Result<Vec<Hash>, StoreError>;
    /// Every complete node of levels `min_level` and up of a tree of `size`
    /// leaves, by level: `out[l - min_level][i]` is node `(l, i)`. How the
    /// upper levels are loaded into memory ([`UpperLevels`]); an engine
    /// whose layout allows it reads them in fewer passes than one
    /// [`Store::node_range`] per level.
    fn upper_levels(&self, min_level: u8, size: u64) -> Result<Vec<Vec<Hash>>, StoreError> {
        let mut levels = Vec::new();
        for level in min_level..64 {
            let n = size >> level;
            if n == 0 {
                break;
            }
            levels.push(self.node_range(level, 0, n)?);
        }
        Ok(levels)
    }
    /// The index of the entry with this leaf hash.
    fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, StoreError>;
    /// The indexes of the entries with these event ids, in order.
    fn find_events(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError>;
    /// Entries that mention the [`mention_key`] `prefix` in `role`, from
    /// index `from` on, in log order, at most `limit`: one range read.
    fn mentions_as(
        &self,
        prefix: &[u8],
        role: Role,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError>;

    /// The last entry before index `before` that mentions `prefix` in
    /// `role`: one seek.
    fn last_mention(
        &self,
        prefix: &[u8],
        role: Role,
        before: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// Entries that mention `prefix` in either role, from index `from` on,
    /// in log order, at most `limit`.
    fn mentions(
        &self,
        prefix: &[u8],
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Role)>, StoreError> {
        let subject = self.mentions_as(prefix, Role::Subject, from, limit)?;
        let related = self.mentions_as(prefix, Role::Related, from, limit)?;
        let mut out: Vec<(u64, Role)> = subject
            .into_iter()
            .map(|i| (i, Role::Subject))
            .chain(related.into_iter().map(|i| (i, Role::Related)))
            .collect();
        out.sort_by_key(|m| m.0);
        out.truncate(limit);
        Ok(out)
    }

    /// Write lineage keys for committed entries again (idempotent): how
    /// `reindex` repairs the lineage index from the entries alone.
    fn put_mentions(&self, items: &[(u64, Vec<u8>, Role)]) -> Result<(), StoreError>;

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replace a metadata value, atomically and durably.
    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError>;

    /// Every record of the derived state's snapshot, in key order (one per
    /// token, service, model version and model; see `state`).
    fn state_records(&self) -> Result<Vec<StoredRecord>, StoreError>;
    /// In one atomic, durable write: drop every record first if
    /// `replace_all`, put each record (a `None` value deletes the key), and
    /// replace `MetaKey::DerivedState` with `header`. How a snapshot is
    /// updated with only what changed since the last one.
    fn put_state(
        &self,
        header: &[u8],
        records: &[StateRecord],
        replace_all: bool,
    ) -> Result<(), StoreError>;

    /// After a failed commit, try to make the store writable again (an
    /// engine may stop writes after an I/O error until asked). The caller
    /// then proves it with a durable write before trusting the store.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Memory the engine reports using: block cache, memtables, table
    /// readers (bytes). For metrics; empty where the engine has none.
    fn memory(&self) -> MemoryUsage {
        MemoryUsage::default()
    }

    /// The tile file's progress, where the engine keeps one.
    fn tile_file(&self) -> Option<TileFileStatus> {
        None
    }

    /// One entry.
    fn entry(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        self.entries(index, index + 1)?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("entry {index} missing")))
    }
    fn find_event(&self, id: &EventId) -> Result<Option<u64>, StoreError> {
        Ok(self.find_events(std::slice::from_ref(id))?.pop().flatten())
    }
}

/// Reads tree nodes from a store for the pure tree code.
pub struct StoreHashes<'a, S: Store + ?Sized>(pub &'a S);

impl<S: Store + ?Sized> HashReader for StoreHashes<'_, S> {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        let got = self
            .0
            .nodes(ids)
            .map_err(|e| TreeError::Storage(e.to_string()))?;
        ids.iter()
            .zip(got)
            .map(|(id, h)| {
                h.ok_or(TreeError::MissingNode {
                    level: id.level,
                    index: id.index,
                })
            })
            .collect()
    }
}

/// Check that a batch continues the committed tree; shared by both stores.
fn check_contiguous(committed: u64, batch: &Batch<'_>) -> Result<(), StoreError> {
    if batch.first_index != committed {
        return Err(StoreError::NotContiguous(format!(
            "batch starts at {} but the tree has {committed} entries",
            batch.first_index
        )));
    }
    Ok(())
}

#[cfg(test)]
mod conformance;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_lineage_group_reads_back_as_written(
            first in any::<u64>(),
            gaps in proptest::collection::vec(1u64..=u64::MAX, 0..40),
        ) {
            let mut want = vec![first];
            for g in gaps {
                match want.last().unwrap().checked_add(g) {
                    Some(i) => want.push(i),
                    None => break,
                }
            }
            let value = mention_group_value(first, want[1..].iter().copied());
            prop_assert_eq!(mention_group(first, &value).unwrap(), want);
        }
    }

    #[test]
    fn a_lineage_group_is_small_and_malformed_values_are_refused() {
        // A batch's neighbours cost a byte each; a key of earlier versions
        // (no value) is a group of one.
        let v = mention_group_value(1000, [1001, 1002, 1130, 1131]);
        assert_eq!(v, [1, 1, 0x80, 1, 1]);
        assert_eq!(
            mention_group_value(1000, [1000, 1001, 1001, 999, 1002]),
            [1, 1]
        );
        assert_eq!(mention_group(7, &[]).unwrap(), [7]);
        for bad in [
            &[0x80][..],                                                    // cut short
            &[0][..],                                                       // no distance
            &[0x80, 0][..], // no distance, long form
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2][..], // beyond 64 bits
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0,
            ][..],
        ] {
            assert!(
                matches!(mention_group(5, bad), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
        // Past the last index there is none.
        let v = mention_group_value(u64::MAX - 1, [u64::MAX]);
        assert_eq!(
            mention_group(u64::MAX - 1, &v).unwrap(),
            [u64::MAX - 1, u64::MAX]
        );
        assert!(mention_group(u64::MAX, &v).is_err());
    }
}
