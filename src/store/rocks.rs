//! RocksDB store. Column families:
//!
//! | cf | key | value |
//! |---|---|---|
//! | `entries` | index (u64 BE) | leaf bytes |
//! | `node_tiles` | tile row (u8) ‖ tile (u64 BE) ‖ level in the row (u8) ‖ index in the tile (u8) | 32-byte hash |
//! | `full_tiles` | tile row (u8) ‖ tile (u64 BE) | the tile's 510 node hashes, in `node_tiles` key order |
//! | `leaf_index` | leaf hash; empty: the marker | index (u64 BE); marker: the entries below it are all in (`leaf_tail`) |
//! | `event_index` | event id (16 bytes) | index (u64 BE) |
//! | `lineage` | type ‖ 0 ‖ id ‖ 0 ‖ role (`s`/`r`) ‖ index (u64 BE) | empty (the lineage index) |
//! | `derived_state` | a record's key (`state`: kind ‖ 0 ‖ id) | the record (JSON) |
//! | `default` | `tree_size`, `checkpoint`, `meta/<MetaKey>` | tree size, checkpoint, metadata |
//!
//! Node keys are grouped by tile, as tlog-tiles cuts the tree: node
//! `(8t + r, i)` lies in tile `i >> (8 - r)` of row `t`, so the nodes of one
//! 256-leaf subtree (every level of it) are neighbours on disk, and the
//! part of an inclusion proof below the cached upper levels is one or two
//! data blocks (of 32 KiB in this column family). Logs written before
//! this layout kept nodes in a `nodes` column family keyed
//! `level ‖ index`; they are copied once, at open.
//!
//! A complete tile is also one value in `full_tiles`, written in the
//! commit that completes it: a proof then reads its nodes below the cached
//! upper levels with one point read instead of one lookup per node in a
//! block (the lookups were a third of a proof's CPU; docs/PERFORMANCE.md).
//! The rightmost, partial tile of each row is read node by node; so is
//! any tile of a log written before `full_tiles` existed, until `compact`
//! writes their values. Range reads of one level (`/tile`, the mirror)
//! slice the values too. The price is the node hashes twice on disk, 64
//! bytes per entry: the per-node keys still serve the partial tiles, the
//! one-pass load of the cached upper levels at open, and logs not yet
//! compacted.
//!
//! Row 0's complete tiles are read first from a flat file beside the
//! tables, `row0.v2.tiles` (`tile_file`): one `pread` at a fixed offset
//! of the part of a record a proof needs, whatever the log's size, where
//! a point read in `full_tiles` misses the block cache once the values
//! outgrow it. The file is a copy written
//! behind the commits from `full_tiles`, another 64 bytes per entry;
//! `full_tiles` stays the record, and serves any tile the file does not
//! hold yet or holds damaged.
//!
//! A commit is one `WriteBatch` written with `sync = true`: one WAL fsync,
//! atomic across column families. The leaf-hash index follows it, in key
//! order (`leaf_tail`). RocksDB's memory is bounded by one number,
//! the block cache size: index and filter blocks live in the cache, and the
//! memtables of all column families are charged to it through one write
//! buffer manager, so memory stays flat as the log grows. Indexes and
//! filters are partitioned (4 KiB partitions under a pinned top level),
//! so an evicted one costs one small read, not a table's whole index.
//! Tables keep the format they were written in: `compact` rewrites them
//! all in the current one. A bigger cache
//! holds more of the `nodes` column family and makes proofs on a large log
//! faster; that is the trade-off to tune.

use super::leaf_tail::{self, LeafTail};
use super::tile_file::{TileFile, TileSource};
use super::{
    check_contiguous, Batch, EventId, MetaKey, StateRecord, Store, StoreError, StoredRecord,
};
use crate::tree::{Hash, NodeId};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor,
    DBCompressionType, Options, ReadOptions, WriteBatch, WriteBufferManager, WriteOptions, DB,
};
use std::path::Path;
use std::sync::Arc;

const CF_ENTRIES: &str = "entries";
const CF_NODES: &str = "node_tiles";
/// Node hashes in the layout of earlier versions (`level ‖ index`): copied
/// into `node_tiles` at open, then dropped.
const CF_OLD_NODES: &str = "nodes";
/// Each complete tile's nodes as one value.
const CF_TILES: &str = "full_tiles";
const CF_LEAF: &str = "leaf_index";
const CF_EVENT: &str = "event_index";
const CF_LINEAGE: &str = "lineage";
/// The records of the derived state's snapshot.
const CF_STATE: &str = "derived_state";
/// Every column family of the current layout.
const ALL_CFS: [&str; 8] = [
    "default", CF_ENTRIES, CF_NODES, CF_TILES, CF_LEAF, CF_EVENT, CF_LINEAGE, CF_STATE,
];
/// The lineage index of earlier versions (another key layout): dropped at
/// open, rebuilt into `lineage` from the entries.
const CF_OLD_MENTIONS: &str = "mentions";
const META_SIZE: &[u8] = b"tree_size";
const META_CHECKPOINT: &[u8] = b"checkpoint";
/// Set when every table is in the current format: at creation, and by
/// `compact`. A log with tables of an earlier format lacks it.
const META_TABLE_FORMAT: &[u8] = b"table_format";
/// Partitioned indexes and filters, 32 KiB node blocks, and a
/// `full_tiles` value for every complete tile.
const TABLE_FORMAT: &[u8] = b"3";
const META_PREFIX: &str = "meta/";
/// How many records of the tile file are synced (`tile_file`).
const META_TILE_FILE: &[u8] = b"tile_file_v2_synced";
/// The tile file, in the database's directory: row 0's complete tiles.
const TILE_FILE: &str = "row0.v2.tiles";
/// The tile file of earlier releases (each record checked whole), and
/// its watermark: removed at open, the file above is written instead.
const OLD_TILE_FILE: &str = "row0.tiles";
const OLD_META_TILE_FILE: &[u8] = b"tile_file_synced";

/// The data block size of `node_tiles`: a full tile's 511 nodes take
/// about 27 KiB, so the nodes a proof reads below the upper levels are
/// in one block, or two, instead of four to seven of RocksDB's default
/// 4 KiB.
const NODE_BLOCK_BYTES: usize = 32 << 10;

/// See [`RocksOptions::leaf_index_batch`]: 16 Ki leaf hashes and their
/// indexes are under 1 MiB in memory.
pub const DEFAULT_LEAF_INDEX_BATCH: usize = 16 << 10;

/// Tunables with defaults sized for a small machine.
#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// The memory budget: block cache plus all memtables.
    pub block_cache_bytes: usize,
    /// One memtable's size, per column family.
    pub write_buffer_bytes: usize,
    /// Entries whose leaf hashes are gathered in memory before they are
    /// written to the leaf-hash index in key order (`leaf_tail`).
    pub leaf_index_batch: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            block_cache_bytes: 128 << 20,
            write_buffer_bytes: 16 << 20,
            leaf_index_batch: DEFAULT_LEAF_INDEX_BATCH,
        }
    }
}

pub struct RocksStore {
    db: Arc<DB>,
    /// The leaf hashes not yet in `leaf_index`, and their writer: set by
    /// `open` once the column family holds every entry below the tree size.
    leaves: Option<LeafTail>,
    /// Row 0's complete tiles in a flat file, and its writer (`tile_file`).
    tiles: Option<TileFile>,
}

/// The store as the tile file's source: row-0 tile values, and the
/// file's watermark in the default column family.
struct RowZeroTiles {
    db: Arc<DB>,
}

impl TileSource for RowZeroTiles {
    fn tile(&self, t: u64) -> Result<Vec<u8>, StoreError> {
        let mut key = [0u8; 9];
        key[1..].copy_from_slice(&t.to_be_bytes());
        let tiles = cf_of(&self.db, CF_TILES)?;
        if let Some(v) = self.db.get_pinned_cf(tiles, key).map_err(engine)? {
            return Ok(v.to_vec());
        }
        // A tile of a log written before `full_tiles`: from its nodes.
        let mut tile = TileValue::new();
        tile.fill_from_nodes(&self.db, &key)?;
        tile.bytes()
            .ok_or_else(|| StoreError::Corrupt(format!("tile 0/{t} misses nodes")))
    }

    fn synced(&self) -> Result<u64, StoreError> {
        match self.db.get_pinned(META_TILE_FILE).map_err(engine)? {
            Some(v) => u64_value(&v),
            None => Ok(0),
        }
    }

    fn set_synced(&self, n: u64) -> Result<(), StoreError> {
        // Not synced: the next commit's WAL sync carries it, and one lost
        // in a crash is an older watermark.
        self.db.put(META_TILE_FILE, n.to_be_bytes()).map_err(engine)
    }
}

pub(super) fn cf_of<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, StoreError> {
    db.cf_handle(name)
        .ok_or_else(|| StoreError::Corrupt(format!("column family {name} missing")))
}

/// Every node key from `from` (below `to`, if given) in key order, and
/// its value.
fn each_node_in(
    db: &DB,
    from: &[u8],
    to: Option<Vec<u8>>,
    mut f: impl FnMut(&[u8; 11], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut ro = ReadOptions::default();
    if let Some(to) = to {
        ro.set_iterate_upper_bound(to);
    }
    let mut it = db.raw_iterator_cf_opt(cf_of(db, CF_NODES)?, ro);
    it.seek(from);
    while it.valid() {
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            let k: &[u8; 11] = k
                .try_into()
                .map_err(|_| StoreError::Corrupt("malformed node key".into()))?;
            f(k, v)?;
        }
        it.next();
    }
    it.status().map_err(engine)
}

/// A complete tile's hashes: pinned in RocksDB, or read from the tile file.
enum TileBytes<'a> {
    Stored(rocksdb::DBPinnableSlice<'a>),
    File(Vec<u8>),
}

impl std::ops::Deref for TileBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            TileBytes::Stored(v) => v,
            TileBytes::File(v) => v,
        }
    }
}

pub(super) fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.into_string())
}

/// The key of node `id`: tile row, tile, level in the row, index in the
/// tile (see the module doc).
pub fn node_key(id: &NodeId) -> [u8; 11] {
    let (row, r) = (id.level / 8, id.level % 8);
    let shift = 8 - u32::from(r);
    let mut k = [0u8; 11];
    k[0] = row;
    k[1..9].copy_from_slice(&(id.index >> shift).to_be_bytes());
    k[9] = r;
    k[10] = (id.index & ((1u64 << shift) - 1)) as u8;
    k
}

/// The nodes of one tile in a row: 256 + 128 + … + 2 (its root is in the
/// row above).
const TILE_NODES: usize = 510;
const TILE_BYTES: usize = TILE_NODES * 32;
/// Where each level of a row starts in a tile's value, in hashes.
pub(super) const TILE_LEVEL_START: [usize; 8] = [0, 256, 384, 448, 480, 496, 504, 508];

/// A `full_tiles` key: tile row (u8) ‖ tile (u64 BE).
type TileKey = [u8; 9];

/// The `full_tiles` key of the tile holding the node of this key.
fn tile_of_key(k: &[u8; 11]) -> TileKey {
    let mut t = [0u8; 9];
    t.copy_from_slice(&k[..9]);
    t
}

/// The number of a tile in its row.
fn tile_number(tile: &TileKey) -> u64 {
    let mut n = [0u8; 8];
    n.copy_from_slice(&tile[1..]);
    u64::from_be_bytes(n)
}

/// Where the node of this key sits in its tile's value, in hashes.
fn slot_of_key(k: &[u8; 11]) -> usize {
    TILE_LEVEL_START[usize::from(k[9] & 7)] + usize::from(k[10])
}

/// Whether the node of this key is the last one of its tile: the right
/// child of the tile's root, at the top level of its row.
fn completes_tile(k: &[u8; 11]) -> bool {
    k[9] == 7 && k[10] == 1
}

/// A tile's nodes as they are gathered, then its value.
struct TileValue {
    hashes: Vec<Option<Hash>>,
}

impl TileValue {
    fn new() -> Self {
        TileValue {
            hashes: vec![None; TILE_NODES],
        }
    }

    fn put(&mut self, k: &[u8; 11], h: Hash) {
        if let Some(s) = self.hashes.get_mut(slot_of_key(k)) {
            *s = Some(h);
        }
    }

    /// Put in every node the store holds under this tile's key.
    fn fill_from_nodes(&mut self, db: &DB, key: &TileKey) -> Result<(), StoreError> {
        let mut end = key.to_vec();
        end.push(0xff);
        each_node_in(db, key, Some(end), |k, v| {
            self.put(k, hash_value(v)?);
            Ok(())
        })
    }

    fn is_complete(&self) -> bool {
        self.hashes.iter().all(Option::is_some)
    }

    fn bytes(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(TILE_BYTES);
        for h in &self.hashes {
            out.extend_from_slice(h.as_ref()?);
        }
        Some(out)
    }
}

/// The node a key names.
fn node_of_key(k: &[u8]) -> Option<NodeId> {
    let k: &[u8; 11] = k.try_into().ok()?;
    let (row, r) = (k[0], k[9]);
    if r >= 8 {
        return None;
    }
    let tile = u64::from_be_bytes(k[1..9].try_into().ok()?);
    let shift = 8 - u32::from(r);
    let index = tile.checked_shl(shift)? | u64::from(k[10]);
    Some(NodeId::new(row.checked_mul(8)? + r, index))
}

/// The key of node `(level, index)` in the layout of earlier versions.
fn old_node_key(id: &NodeId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = id.level;
    k[1..].copy_from_slice(&id.index.to_be_bytes());
    k
}

fn u64_value(v: &[u8]) -> Result<u64, StoreError> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("index value is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(a))
}

fn hash_value(v: &[u8]) -> Result<Hash, StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt("node hash is not 32 bytes".into()))
}

impl RocksStore {
    pub fn open(path: &Path, opts: &RocksOptions) -> Result<Self, StoreError> {
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        // Memtables of every column family share half the budget, charged
        // to the cache. Not stalling: a full budget triggers flushes.
        let memtables = WriteBufferManager::new_write_buffer_manager_with_cache(
            opts.block_cache_bytes / 2,
            false,
            cache.clone(),
        );
        let table = |bloom: bool| {
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            // Index and filter blocks live in the cache, cut into 4 KiB
            // partitions under a small pinned top level. A table's whole
            // index or filter is hundreds of KiB or more: once evicted by
            // the data blocks of random proofs, every miss read and
            // checksummed all of it again (half of a proof's CPU on a
            // 10 M-entry log as written, docs/PERFORMANCE.md). A
            // partition costs what a data block costs.
            t.set_cache_index_and_filter_blocks(true);
            t.set_pin_l0_filter_and_index_blocks_in_cache(true);
            t.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
            t.set_partition_filters(true);
            t.set_metadata_block_size(4096);
            t.set_pin_top_level_index_and_filter(true);
            if bloom {
                t.set_bloom_filter(10.0, false);
            }
            t
        };
        let cf_opts = |bloom: bool, compress: bool| {
            let mut o = Options::default();
            o.set_block_based_table_factory(&table(bloom));
            o.set_write_buffer_size(opts.write_buffer_bytes);
            o.set_max_write_buffer_number(2);
            o.set_write_buffer_manager(&memtables);
            o.set_compression_type(if compress {
                DBCompressionType::Lz4
            } else {
                DBCompressionType::None
            });
            o
        };
        let mut db_opts = cf_opts(false, false);
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_open_files(512);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_total_wal_size(64 << 20);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_ENTRIES, cf_opts(false, true)),
            ColumnFamilyDescriptor::new(CF_NODES, {
                // Every node a proof asks for exists, but a point read
                // probes each level of the LSM tree above the one holding
                // it: bloom filters answer those probes without reading a
                // data block. The last level, where most nodes live and
                // every probe hits, needs no filter (and keeps the filters
                // to a small part of the cache).
                let mut o = cf_opts(true, false);
                o.set_optimize_filters_for_hits(true);
                let mut t = table(true);
                t.set_block_size(NODE_BLOCK_BYTES);
                o.set_block_based_table_factory(&t);
                o
            }),
            // One value of 16 KiB per tile, each in its own data block.
            // The Bloom filter answers the reads of partial tiles, which
            // have no value.
            ColumnFamilyDescriptor::new(CF_TILES, cf_opts(true, false)),
            ColumnFamilyDescriptor::new(CF_LEAF, cf_opts(true, false)),
            ColumnFamilyDescriptor::new(CF_EVENT, cf_opts(true, false)),
            ColumnFamilyDescriptor::new(CF_LINEAGE, cf_opts(false, true)),
            ColumnFamilyDescriptor::new(CF_STATE, cf_opts(false, true)),
        ];
        let existing = DB::list_cf(&db_opts, path).unwrap_or_default();
        let old = existing.iter().any(|c| c == CF_OLD_MENTIONS);
        let old_nodes = existing.iter().any(|c| c == CF_OLD_NODES);
        let mut cfs = cfs;
        if old {
            cfs.push(ColumnFamilyDescriptor::new(
                CF_OLD_MENTIONS,
                cf_opts(false, true),
            ));
        }
        if old_nodes {
            cfs.push(ColumnFamilyDescriptor::new(
                CF_OLD_NODES,
                cf_opts(false, false),
            ));
        }
        let mut db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(engine)?;
        if old {
            db.drop_cf(CF_OLD_MENTIONS).map_err(engine)?;
        }
        if old_nodes {
            let copied = copy_old_nodes(&db)?;
            tracing::info!(nodes = copied, "node hashes copied into the tile layout");
            db.drop_cf(CF_OLD_NODES).map_err(engine)?;
        }
        let mut store = RocksStore {
            db: Arc::new(db),
            leaves: None,
            tiles: None,
        };
        let size = store.tree_size()?;
        let redone = leaf_tail::recover(&store.db, CF_LEAF, size, |from, to| {
            store.node_range(0, from, to)
        })?;
        if redone > 0 {
            tracing::info!(entries = redone, "leaf hash index caught up after a crash");
        }
        store.leaves = Some(LeafTail::start(
            store.db.clone(),
            CF_LEAF,
            size,
            opts.leaf_index_batch,
        )?);
        match std::fs::remove_file(path.join(OLD_TILE_FILE)) {
            Ok(()) => tracing::info!("the tile file is written again in its current layout"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Engine(format!(
                    "removing the earlier tile file: {e}"
                )))
            }
        }
        if store
            .db
            .get_pinned(OLD_META_TILE_FILE)
            .map_err(engine)?
            .is_some()
        {
            store.db.delete(OLD_META_TILE_FILE).map_err(engine)?;
        }
        store.tiles = Some(TileFile::open(
            &path.join(TILE_FILE),
            Arc::new(RowZeroTiles {
                db: store.db.clone(),
            }),
            size >> 8,
        )?);
        if !store.tables_current()? {
            if store.tree_size()? == 0 {
                store.mark_tables_current()?;
            } else {
                tracing::warn!(
                    "the store's tables are in an earlier format: proofs on a large log \
                     are faster after `modeltrail compact` (with the server stopped)"
                );
            }
        }
        Ok(store)
    }
}

/// Copy every node of the earlier layout into `node_tiles` (the same
/// hashes under new keys; idempotent, so a copy cut off by a crash is
/// simply done again at the next open), durably.
fn copy_old_nodes(db: &DB) -> Result<u64, StoreError> {
    let cf = |name: &str| {
        db.cf_handle(name)
            .ok_or_else(|| StoreError::Corrupt(format!("column family {name} missing")))
    };
    let (from, to) = (cf(CF_OLD_NODES)?, cf(CF_NODES)?);
    let mut it = db.raw_iterator_cf(from);
    it.seek_to_first();
    let mut wb = WriteBatch::default();
    let mut copied = 0u64;
    while it.valid() {
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            let k: [u8; 9] = k
                .try_into()
                .map_err(|_| StoreError::Corrupt("malformed node key".into()))?;
            let id = NodeId::new(
                k[0],
                u64::from_be_bytes(k[1..].try_into().unwrap_or([0; 8])),
            );
            debug_assert_eq!(old_node_key(&id), k);
            wb.put_cf(to, node_key(&id), hash_value(v)?);
            copied += 1;
            if wb.len() >= 100_000 {
                db.write(std::mem::take(&mut wb)).map_err(engine)?;
            }
        }
        it.next();
    }
    it.status().map_err(engine)?;
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(wb, &wo).map_err(engine)?;
    db.flush_cf(to).map_err(engine)?;
    Ok(copied)
}

impl RocksStore {
    /// Write the values of complete tiles that lack one, rewrite every
    /// table of every column family in the current table
    /// format, and report the live table bytes before and after. Tables
    /// keep the format they were written in, and in an append-only log
    /// most of them sit in the last level, which compaction seldom
    /// rewrites: after an upgrade that changes the format (the
    /// partitioned indexes), this is how an existing log gets it. It also
    /// leaves each column family one sorted run, the cheapest shape to
    /// read.
    pub fn compact(&self) -> Result<(u64, u64), StoreError> {
        let size = || -> Result<u64, StoreError> {
            let mut total = 0;
            for name in ALL_CFS {
                let cf = self.cf(name)?;
                total += self
                    .db
                    .property_int_value_cf(cf, "rocksdb.live-sst-files-size")
                    .map_err(engine)?
                    .unwrap_or(0);
            }
            Ok(total)
        };
        let before = size()?;
        let written = self.write_missing_tiles()?;
        if written > 0 {
            tracing::info!(tiles = written, "tile values written");
        }
        let mut o = rocksdb::CompactOptions::default();
        o.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf).map_err(engine)?;
            self.db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &o);
        }
        self.mark_tables_current()?;
        Ok((before, size()?))
    }

    /// The values of the tiles completed by a commit: their nodes from the
    /// commit's own and, for the rest, from the store.
    fn completed_tiles(
        &self,
        completed: &[TileKey],
        fresh: &[(NodeId, Hash)],
    ) -> Result<Vec<(TileKey, Vec<u8>)>, StoreError> {
        let mut tiles: std::collections::BTreeMap<TileKey, TileValue> =
            completed.iter().map(|t| (*t, TileValue::new())).collect();
        for (id, h) in fresh {
            let k = node_key(id);
            if let Some(tile) = tiles.get_mut(&tile_of_key(&k)) {
                tile.put(&k, *h);
            }
        }
        let mut out = Vec::with_capacity(tiles.len());
        for (key, mut tile) in tiles {
            if !tile.is_complete() {
                tile.fill_from_nodes(&self.db, &key)?;
            }
            let value = tile.bytes().ok_or_else(|| {
                StoreError::Corrupt(format!("tile {key:02x?} is complete but misses nodes"))
            })?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Every node key from `from` (below `to`, if given) in key order, and
    /// its value.
    fn each_node(
        &self,
        from: &[u8],
        to: Option<Vec<u8>>,
        f: impl FnMut(&[u8; 11], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        each_node_in(&self.db, from, to, f)
    }

    /// A tile's value, if it has one, checked to be 510 hashes long: a
    /// row-0 tile from the tile file when it holds it, else from
    /// `full_tiles`.
    fn tile_value(
        &self,
        tiles_cf: &ColumnFamily,
        tile: &TileKey,
    ) -> Result<Option<TileBytes<'_>>, StoreError> {
        if tile[0] == 0 {
            if let Some(v) = self.tiles.as_ref().and_then(|f| f.read(tile_number(tile))) {
                return Ok(Some(TileBytes::File(v)));
            }
        }
        Ok(self
            .stored_tile_value(tiles_cf, tile)?
            .map(TileBytes::Stored))
    }

    /// A tile's value in `full_tiles`, if it has one, checked to be 510
    /// hashes long.
    fn stored_tile_value(
        &self,
        tiles_cf: &ColumnFamily,
        tile: &TileKey,
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>, StoreError> {
        let v = self.db.get_pinned_cf(tiles_cf, tile).map_err(engine)?;
        if v.as_ref().is_some_and(|v| v.len() != TILE_BYTES) {
            return Err(StoreError::Corrupt("tile value is not 510 hashes".into()));
        }
        Ok(v)
    }

    /// The nodes of `level` from `start` to `end` from their own keys, in
    /// one range read, appended to `out`.
    fn scan_level(
        &self,
        level: u8,
        start: u64,
        end: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        let from = node_key(&NodeId::new(level, start));
        let mut to = node_key(&NodeId::new(level, end - 1)).to_vec();
        to.push(0);
        self.each_node(&from, Some(to), |k, v| match node_of_key(k) {
            Some(id) if id.level == level && id.index >= start && id.index < end => {
                out.push(hash_value(v)?);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(StoreError::Corrupt("malformed node key".into())),
        })
    }

    /// Write the value of every complete tile that has none (tiles of a
    /// log written before `full_tiles`), durably; one pass over the nodes.
    fn write_missing_tiles(&self) -> Result<u64, StoreError> {
        let tiles = self.cf(CF_TILES)?;
        let mut wb = WriteBatch::default();
        let mut written = 0u64;
        let mut current: Option<(TileKey, TileValue)> = None;
        let mut finish =
            |t: Option<(TileKey, TileValue)>, wb: &mut WriteBatch| -> Result<(), StoreError> {
                if let Some((key, tile)) = t {
                    if let Some(value) = tile.bytes() {
                        if self.db.get_pinned_cf(tiles, key).map_err(engine)?.is_none() {
                            wb.put_cf(tiles, key, value);
                            written += 1;
                        }
                    }
                }
                if wb.len() >= 1024 {
                    self.db.write(std::mem::take(wb)).map_err(engine)?;
                }
                Ok(())
            };
        self.each_node(&[], None, |k, v| {
            let key = tile_of_key(k);
            if current.as_ref().map(|(c, _)| *c) != Some(key) {
                finish(current.replace((key, TileValue::new())), &mut wb)?;
            }
            if let Some((_, tile)) = current.as_mut() {
                tile.put(k, hash_value(v)?);
            }
            Ok(())
        })?;
        finish(current.take(), &mut wb)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(engine)?;
        Ok(written)
    }

    /// Wait up to `limit` for the tile file to hold every complete tile of
    /// row 0 (at the first open of a large log it writes them all, in the
    /// background); whether it does.
    pub fn wait_for_tile_file(&self, limit: std::time::Duration) -> bool {
        self.tiles.as_ref().is_some_and(|f| f.wait_written(limit))
    }

    /// Whether every table is in the current format (see `compact`).
    pub fn tables_current(&self) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned(META_TABLE_FORMAT)
            .map_err(engine)?
            .is_some_and(|v| *v == *TABLE_FORMAT))
    }

    fn mark_tables_current(&self) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_opt(META_TABLE_FORMAT, TABLE_FORMAT, &wo)
            .map_err(engine)
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StoreError> {
        cf_of(&self.db, name)
    }

    /// Values for keys `[start, end)` of a column family, in key order.
    fn scan(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
        want: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, ro);
        it.seek(start);
        let mut out = Vec::with_capacity(want);
        while it.valid() {
            if let Some(v) = it.value() {
                out.push(v.to_vec());
            }
            it.next();
        }
        it.status().map_err(engine)?;
        Ok(out)
    }
}

impl Drop for RocksStore {
    /// Write the leaf-hash index's tail and the memtables out on a clean
    /// close, so the next open has no write-ahead log to replay and no
    /// leaf hashes to index again (a crash leaves both to the next open:
    /// nothing acknowledged depends on this).
    fn drop(&mut self) {
        if let Some(mut leaves) = self.leaves.take() {
            leaves.stop();
        }
        if let Some(mut tiles) = self.tiles.take() {
            tiles.stop();
        }
        for name in ALL_CFS {
            if let Some(cf) = self.db.cf_handle(name) {
                if let Err(e) = self.db.flush_cf(cf) {
                    tracing::warn!(error = %e, cf = name, "flush at close failed");
                }
            }
        }
    }
}

impl Store for RocksStore {
    fn tree_size(&self) -> Result<u64, StoreError> {
        match self.db.get_pinned(META_SIZE).map_err(engine)? {
            Some(v) => u64_value(&v),
            None => Ok(0),
        }
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(META_CHECKPOINT).map_err(engine)
    }

    fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        check_contiguous(self.tree_size()?, batch)?;
        let leaves = self
            .leaves
            .as_ref()
            .ok_or_else(|| StoreError::Engine("the leaf index writer is not running".into()))?;
        let (entries, nodes, event, mentions) = (
            self.cf(CF_ENTRIES)?,
            self.cf(CF_NODES)?,
            self.cf(CF_EVENT)?,
            self.cf(CF_LINEAGE)?,
        );
        // A memtable insert finds its place from the last one's in O(1)
        // when nothing lies between them, and searches the whole memtable
        // otherwise. So each column family's keys go in in key order: the
        // entries of a batch mentioning the same id (an actor, a
        // deployment, the month), the new nodes of one level of a tile and
        // the time-ordered ids the server gives events are then each a run
        // of neighbours, which follows the previous batch's last key of
        // that run. Puts of one key keep their order, so what is written
        // is the same.
        let mut wb = WriteBatch::default();
        let mut lineage = Vec::new();
        let mut ids = Vec::with_capacity(batch.entries.len());
        for (i, e) in batch.entries.iter().enumerate() {
            let index = (batch.first_index + i as u64).to_be_bytes();
            wb.put_cf(entries, index, e.bytes.as_slice());
            ids.push((e.event_id, index));
            for (prefix, role) in &e.mentions {
                lineage.push((prefix.as_slice(), *role, batch.first_index + i as u64));
            }
        }
        ids.sort_unstable();
        for (id, index) in &ids {
            wb.put_cf(event, id, index);
        }
        // Sorted by id, role and index (the keys' order, as a prefix ends
        // in its id's 0), the batch's mentions of one id and role are
        // neighbours, and they are one key: the first's, with the others
        // in its value.
        lineage.sort_unstable_by_key(|&(prefix, role, index)| (prefix, role.byte(), index));
        for run in lineage.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let (prefix, role, first) = run[0];
            let value = super::mention_group_value(first, run[1..].iter().map(|&(_, _, i)| i));
            wb.put_cf(
                mentions,
                super::mention_full_key(prefix, first, role),
                value,
            );
        }
        let mut node_keys: Vec<([u8; 11], &Hash)> = batch
            .nodes
            .iter()
            .map(|(id, h)| (node_key(id), h))
            .collect();
        node_keys.sort_by_key(|(k, _)| *k);
        let mut completed = Vec::new();
        for (k, h) in node_keys {
            wb.put_cf(nodes, k, h);
            if completes_tile(&k) {
                completed.push(tile_of_key(&k));
            }
        }
        if !completed.is_empty() {
            let tiles = self.cf(CF_TILES)?;
            for (key, value) in self.completed_tiles(&completed, batch.nodes)? {
                wb.put_cf(tiles, key, value);
            }
        }
        wb.put(META_SIZE, batch.new_size().to_be_bytes());
        wb.put(META_CHECKPOINT, batch.checkpoint);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(engine)?;
        // The leaf-hash index follows, in key order (`leaf_tail`), and the
        // tile file, behind the tiles this commit completed.
        leaves.add(batch.first_index, batch.entries.iter().map(|e| e.leaf_hash));
        if let Some(tiles) = &self.tiles {
            if batch.new_size() >> 8 > batch.first_index >> 8 {
                tiles.completed(batch.new_size() >> 8);
            }
        }
        Ok(())
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        if start > end {
            return Err(StoreError::Corrupt(format!("bad range {start}..{end}")));
        }
        let want = (end - start) as usize;
        let out = self.scan(CF_ENTRIES, &start.to_be_bytes(), &end.to_be_bytes(), want)?;
        if out.len() != want {
            return Err(StoreError::Corrupt(format!(
                "entries {start}..{end} missing"
            )));
        }
        Ok(out)
    }

    /// A proof's nodes below the cached levels lie in a tile or two of
    /// each row. A row-0 tile the tile file holds is one read of the part
    /// of its record with the nodes (`TileFile::read_slots`); any other
    /// tile is one point read of its value, and the nodes of tiles without
    /// one (partial ones) are one batched read.
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        let keys: Vec<[u8; 11]> = ids.iter().map(node_key).collect();
        let mut out = vec![None; ids.len()];
        let mut found = vec![false; ids.len()];
        if let Some(file) = &self.tiles {
            let mut tried: Vec<TileKey> = Vec::new();
            for k in &keys {
                let tile = tile_of_key(k);
                if tile[0] != 0 || tried.contains(&tile) {
                    continue;
                }
                tried.push(tile);
                let at: Vec<usize> = (0..keys.len())
                    .filter(|&m| tile_of_key(&keys[m]) == tile)
                    .collect();
                let slots: Vec<usize> = at.iter().map(|&m| slot_of_key(&keys[m])).collect();
                if let Some(hashes) = file.read_slots(tile_number(&tile), &slots) {
                    for (&m, h) in at.iter().zip(hashes) {
                        out[m] = Some(h);
                        found[m] = true;
                    }
                }
            }
        }
        let tiles_cf = self.cf(CF_TILES)?;
        let mut values: Vec<(TileKey, Option<rocksdb::DBPinnableSlice<'_>>)> = Vec::new();
        let (mut rest, mut rest_at) = (Vec::new(), Vec::new());
        for (n, k) in keys.iter().enumerate() {
            if found[n] {
                continue;
            }
            let tile = tile_of_key(k);
            let v = match values.iter().position(|(t, _)| *t == tile) {
                Some(i) => &values[i].1,
                None => {
                    values.push((tile, self.stored_tile_value(tiles_cf, &tile)?));
                    &values[values.len() - 1].1
                }
            };
            match v {
                Some(v) => {
                    let o = slot_of_key(k) * 32;
                    out[n] = Some(hash_value(&v[o..o + 32])?);
                }
                None => {
                    rest.push(*k);
                    rest_at.push(n);
                }
            }
        }
        if !rest.is_empty() {
            let got = self
                .db
                .batched_multi_get_cf(self.cf(CF_NODES)?, &rest, false);
            for (n, r) in rest_at.into_iter().zip(got) {
                out[n] = match r.map_err(engine)? {
                    Some(v) => Some(hash_value(&v)?),
                    None => None,
                };
            }
        }
        Ok(out)
    }

    fn node_range(&self, level: u8, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        if start > end {
            return Err(StoreError::Corrupt(format!("bad range {start}..{end}")));
        }
        let want = (end - start) as usize;
        let mut out = Vec::with_capacity(want);
        // Tile by tile: a complete tile's nodes of this level are one slice
        // of its value. The tiles with no value (the partial one, or those
        // of a log written before `full_tiles`) are read as one range read
        // per run of them; within a tile the other levels of its row lie
        // between the nodes asked for.
        let tiles_cf = self.cf(CF_TILES)?;
        let per_tile_mask = (1u64 << (8 - u32::from(level % 8))) - 1;
        let mut unread: Option<u64> = None;
        let mut i = start;
        while i < end {
            let stop = end.min((i | per_tile_mask).saturating_add(1));
            let k = node_key(&NodeId::new(level, i));
            match self.tile_value(tiles_cf, &tile_of_key(&k))? {
                Some(v) => {
                    if let Some(from) = unread.take() {
                        self.scan_level(level, from, i, &mut out)?;
                    }
                    let first = slot_of_key(&k) * 32;
                    let last = first + (stop - i) as usize * 32;
                    for h in v[first..last].chunks_exact(32) {
                        out.push(hash_value(h)?);
                    }
                }
                None => {
                    unread.get_or_insert(i);
                }
            }
            i = stop;
        }
        if let Some(from) = unread {
            self.scan_level(level, from, end, &mut out)?;
        }
        if out.len() != want {
            return Err(StoreError::Corrupt(format!(
                "nodes {level}/{start}..{end} missing"
            )));
        }
        Ok(out)
    }

    /// One pass over each row of tiles from `min_level`'s up: the levels of
    /// a row are interleaved tile by tile, so reading them level by level
    /// would read the row once per level (eight times).
    fn upper_levels(&self, min_level: u8, size: u64) -> Result<Vec<Vec<Hash>>, StoreError> {
        let mut levels: Vec<Vec<Hash>> = (min_level..64)
            .map(|l| size >> l)
            .take_while(|&n| n > 0)
            .map(|n| Vec::with_capacity(usize::try_from(n).unwrap_or(0)))
            .collect();
        if levels.is_empty() {
            return Ok(levels);
        }
        let top = min_level + (levels.len() as u8 - 1);
        for row in (min_level / 8)..=(top / 8) {
            self.each_node(&[row], Some(vec![row + 1]), |k, v| {
                let id = node_of_key(k)
                    .ok_or_else(|| StoreError::Corrupt("malformed node key".into()))?;
                if let Some(slot) = id
                    .level
                    .checked_sub(min_level)
                    .and_then(|l| levels.get_mut(usize::from(l)))
                {
                    // Within a level, keys come in index order.
                    if id.index == slot.len() as u64 && id.index < size >> id.level {
                        slot.push(hash_value(v)?);
                    }
                }
                Ok(())
            })?;
        }
        for (l, slot) in levels.iter().enumerate() {
            let level = min_level + l as u8;
            if slot.len() as u64 != size >> level {
                return Err(StoreError::Corrupt(format!(
                    "level {level} has {} of its {} nodes",
                    slot.len(),
                    size >> level
                )));
            }
        }
        Ok(levels)
    }

    fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        if let Some(i) = self.leaves.as_ref().and_then(|l| l.get(leaf)) {
            return Ok(Some(i));
        }
        match self
            .db
            .get_pinned_cf(self.cf(CF_LEAF)?, leaf)
            .map_err(engine)?
        {
            Some(v) => u64_value(&v).map(Some),
            None => Ok(None),
        }
    }

    fn find_events(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError> {
        self.db
            .batched_multi_get_cf(self.cf(CF_EVENT)?, ids, false)
            .into_iter()
            .map(|r| match r.map_err(engine)? {
                Some(v) => u64_value(&v).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    fn tile_file(&self) -> Option<super::TileFileStatus> {
        self.tiles.as_ref().map(TileFile::status)
    }

    fn memory(&self) -> super::MemoryUsage {
        let mut m = super::MemoryUsage::default();
        let prop = |cf: Option<&ColumnFamily>, name: &rocksdb::properties::PropName| {
            let v = match cf {
                Some(cf) => self.db.property_int_value_cf(cf, name),
                None => self.db.property_int_value(name),
            };
            v.ok().flatten().unwrap_or(0)
        };
        // The cache is shared by the column families (not the default one,
        // which has none of its own data): read it once, through one of them.
        m.block_cache = self
            .cf(CF_NODES)
            .map(|cf| prop(Some(cf), rocksdb::properties::BLOCK_CACHE_USAGE))
            .unwrap_or(0);
        m.memtables = prop(None, rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES);
        m.table_readers = prop(None, rocksdb::properties::ESTIMATE_TABLE_READERS_MEM);
        for name in [CF_ENTRIES, CF_NODES, CF_TILES, CF_LEAF, CF_EVENT] {
            if let Ok(cf) = self.cf(name) {
                m.memtables += prop(Some(cf), rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES);
                m.table_readers += prop(Some(cf), rocksdb::properties::ESTIMATE_TABLE_READERS_MEM);
            }
        }
        m
    }

    fn mentions_as(
        &self,
        prefix: &[u8],
        role: super::Role,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let under = super::role_prefix(prefix, role);
        let mut end = under.clone();
        end.extend_from_slice(&[0xff; 9]);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(under.clone());
        ro.set_iterate_upper_bound(end);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_LINEAGE)?, ro);
        // The group holding `from` starts at or before it. Groups do not
        // overlap: each ends before the next one's first index.
        let start = super::role_key(&under, from);
        it.seek_for_prev(&start);
        if !it.valid() {
            it.seek(&start);
        }
        let mut out = Vec::new();
        let mut last: Option<u64> = None;
        while it.valid() && out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let group = super::read_group(&under, k, v)?;
            if last.is_some_and(|l| group[0] <= l) {
                return Err(StoreError::Corrupt("lineage groups overlap".into()));
            }
            last = group.last().copied();
            out.extend(
                group
                    .into_iter()
                    .filter(|&i| i >= from)
                    .take(limit - out.len()),
            );
            it.next();
        }
        it.status().map_err(engine)?;
        Ok(out)
    }

    fn last_mention(
        &self,
        prefix: &[u8],
        role: super::Role,
        before: u64,
    ) -> Result<Option<u64>, StoreError> {
        if before == 0 {
            return Ok(None);
        }
        let under = super::role_prefix(prefix, role);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(under.clone());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_LINEAGE)?, ro);
        // The last group that starts before `before`: one commit's
        // entries, so no other group holds an index between its first
        // and `before`.
        it.seek_for_prev(super::role_key(&under, before - 1));
        let found = match (it.key(), it.value()) {
            (Some(k), Some(v)) if it.valid() => super::read_group(&under, k, v)?
                .into_iter()
                .take_while(|&i| i < before)
                .last(),
            _ => None,
        };
        it.status().map_err(engine)?;
        Ok(found)
    }

    fn put_mentions(&self, items: &[(u64, Vec<u8>, super::Role)]) -> Result<(), StoreError> {
        // An index inside a group's span goes into that group, so groups
        // never overlap; any other is a group of one.
        let cf = self.cf(CF_LINEAGE)?;
        let mut groups: std::collections::BTreeMap<Vec<u8>, Vec<u64>> = Default::default();
        for (index, prefix, role) in items {
            let under = super::role_prefix(prefix, *role);
            let key = super::role_key(&under, *index);
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(under.clone());
            let mut it = self.db.raw_iterator_cf_opt(cf, ro);
            it.seek_for_prev(&key);
            let covering = match (it.key(), it.value()) {
                (Some(k), Some(v)) if it.valid() => {
                    Some((k.to_vec(), super::read_group(&under, k, v)?))
                }
                _ => None,
            };
            it.status().map_err(engine)?;
            // What this call changed before wins over what is stored.
            let earlier = groups
                .range(under.clone()..=key.clone())
                .next_back()
                .map(|(k, g)| (k.clone(), g.clone()));
            let covering = match (earlier, covering) {
                (Some(e), Some(c)) => Some(if e.0 >= c.0 { e } else { c }),
                (e, c) => e.or(c),
            };
            match covering {
                Some((k, mut g)) if g.last().is_some_and(|&l| l >= *index) => {
                    if let Err(at) = g.binary_search(index) {
                        g.insert(at, *index);
                        groups.insert(k, g);
                    }
                }
                _ => {
                    groups.entry(key).or_insert_with(|| vec![*index]);
                }
            }
        }
        let mut wb = WriteBatch::default();
        for (key, g) in &groups {
            wb.put_cf(
                cf,
                key,
                super::mention_group_value(g[0], g[1..].iter().copied()),
            );
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(engine)
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get(format!("{META_PREFIX}{}", key.as_str()))
            .map_err(engine)
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_opt(format!("{META_PREFIX}{}", key.as_str()), value, &wo)
            .map_err(engine)
    }

    fn state_records(&self) -> Result<Vec<StoredRecord>, StoreError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_STATE)?);
        it.seek_to_first();
        let mut out = Vec::new();
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                out.push((k.to_vec(), v.to_vec()));
            }
            it.next();
        }
        it.status().map_err(engine)?;
        Ok(out)
    }

    fn put_state(
        &self,
        header: &[u8],
        records: &[StateRecord],
        replace_all: bool,
    ) -> Result<(), StoreError> {
        let cf = self.cf(CF_STATE)?;
        let mut wb = WriteBatch::default();
        if replace_all {
            for (k, _) in self.state_records()? {
                wb.delete_cf(cf, k);
            }
        }
        for (k, v) in records {
            match v {
                Some(v) => wb.put_cf(cf, k, v),
                None => wb.delete_cf(cf, k),
            }
        }
        wb.put(
            format!("{META_PREFIX}{}", MetaKey::DerivedState.as_str()),
            header,
        );
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{mention_index, mention_key, role_prefix, Role};

    #[test]
    fn the_lineage_index_of_earlier_versions_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = raw_db(&path, &[CF_OLD_MENTIONS]);
            db.put_cf(db.cf_handle(CF_OLD_MENTIONS).unwrap(), b"k", b"")
                .unwrap();
        }
        let store = RocksStore::open(&path, &RocksOptions::default()).unwrap();
        assert_eq!(store.tree_size().unwrap(), 0);
        drop(store);
        let cfs = DB::list_cf(&Options::default(), &path).unwrap();
        assert!(!cfs.iter().any(|c| c == CF_OLD_MENTIONS), "{cfs:?}");
        assert!(cfs.iter().any(|c| c == CF_LINEAGE), "{cfs:?}");
    }

    #[test]
    fn node_keys_group_each_tile_and_read_back() {
        for (level, index) in [
            (0, 0),
            (0, 255),
            (0, 256),
            (3, 77),
            (7, 1),
            (8, 0),
            (8, 513),
            (15, 3),
            (20, 9),
            (63, 0),
        ] {
            let id = NodeId::new(level, index);
            assert_eq!(node_of_key(&node_key(&id)), Some(id));
        }
        // Every level of the subtree over leaves 256..512 sorts between
        // the tile before it and the tile after it.
        let tile = |l: u8, i: u64| node_key(&NodeId::new(l, i));
        assert!(tile(0, 255) < tile(0, 256));
        assert!(tile(0, 511) < tile(7, 3) && tile(7, 3) < tile(0, 512));
        assert!(tile(0, 300) < tile(1, 128) && tile(1, 128) < tile(0, 600));
    }

    /// A database opened with RocksDB's default options (the table format
    /// of earlier versions), with these column families.
    fn raw_db(path: &Path, cfs: &[&str]) -> DB {
        let mut o = Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        DB::open_cf(&o, path, cfs).unwrap()
    }

    /// The root and every complete node of a tree of `n` leaves.
    fn sample_tree(n: u64) -> (Hash, Vec<(NodeId, Hash)>) {
        let mut edge = crate::tree::RightEdge::empty();
        let mut nodes = Vec::new();
        for i in 0..n {
            edge.push(crate::tree::leaf_hash(&i.to_be_bytes()), &mut nodes);
        }
        (edge.root(), nodes)
    }

    /// The store holds every one of `nodes`, and its tree of `n` leaves
    /// has root `root`.
    fn assert_tree(store: &RocksStore, n: u64, root: Hash, nodes: &[(NodeId, Hash)]) {
        let ids: Vec<NodeId> = nodes.iter().map(|(id, _)| *id).collect();
        let want: Vec<Option<Hash>> = nodes.iter().map(|(_, h)| Some(*h)).collect();
        assert_eq!(store.nodes(&ids).unwrap(), want);
        assert_eq!(
            crate::tree::root(n, &super::super::StoreHashes(store)).unwrap(),
            root
        );
        // Range reads of each level: whole, and cut off inside tiles at
        // both ends (from tile values, node keys, or both).
        let mut levels: std::collections::BTreeMap<u8, Vec<(u64, Hash)>> = Default::default();
        for (id, h) in nodes {
            levels.entry(id.level).or_default().push((id.index, *h));
        }
        for (level, mut hs) in levels {
            hs.sort();
            let count = hs.len() as u64;
            assert_eq!(
                hs.last().unwrap().0,
                count - 1,
                "level {level} is contiguous"
            );
            let hs: Vec<Hash> = hs.into_iter().map(|(_, h)| h).collect();
            for (a, b) in [(0, count), (count / 3, count), (1, count.saturating_sub(1))] {
                if a <= b {
                    assert_eq!(
                        store.node_range(level, a, b).unwrap(),
                        hs[a as usize..b as usize],
                        "level {level}, {a}..{b} of {n}"
                    );
                }
            }
            assert!(store.node_range(level, 0, count + 1).is_err());
        }
    }

    /// Commit `entries` in one batch after the leaves of `edge`.
    fn commit_entries(
        store: &RocksStore,
        edge: &mut crate::tree::RightEdge,
        entries: &[super::super::NewEntry],
    ) {
        let first_index = edge.size();
        let mut nodes = Vec::new();
        for e in entries {
            edge.push(e.leaf_hash, &mut nodes);
        }
        store
            .commit(&Batch {
                first_index,
                entries,
                nodes: &nodes,
                checkpoint: b"cp",
            })
            .unwrap();
    }

    /// Commit leaves `first..first + n` (leaf bytes: the index) in one batch.
    fn commit_leaves(store: &RocksStore, edge: &mut crate::tree::RightEdge, n: u64) {
        let first = edge.size();
        let entries: Vec<super::super::NewEntry> = (first..first + n)
            .map(|i| {
                let bytes = i.to_be_bytes().to_vec();
                let mut event_id = [0u8; 16];
                event_id[8..].copy_from_slice(&i.to_be_bytes());
                super::super::NewEntry {
                    leaf_hash: crate::tree::leaf_hash(&bytes),
                    bytes: std::sync::Arc::new(bytes),
                    event_id,
                    mentions: Vec::new(),
                }
            })
            .collect();
        commit_entries(store, edge, &entries);
    }

    /// The lineage keys under `(kind, id)` in `role`, with their values.
    fn lineage_keys(store: &RocksStore, kind: &str, id: &str, role: Role) -> Vec<(u64, Vec<u8>)> {
        let prefix = mention_key(kind, id);
        let under = role_prefix(&prefix, role);
        store
            .db
            .prefix_iterator_cf(store.cf(CF_LINEAGE).unwrap(), &under)
            .map(|kv| kv.unwrap())
            .take_while(|(k, _)| k.starts_with(&under))
            .map(|(k, v)| (mention_index(&under, &k).unwrap(), v.to_vec()))
            .collect()
    }

    #[test]
    fn a_commits_mentions_of_one_id_are_one_key_and_read_with_single_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(&dir.path().join("db"), &RocksOptions::default()).unwrap();
        // Every entry: its own subject, the month as subject, and a
        // deployment in `related` by every other entry.
        let commit = |first: u64, n: u64, edge: &mut crate::tree::RightEdge| {
            let entries: Vec<super::super::NewEntry> = (first..first + n)
                .map(|i| {
                    let bytes = format!("{{\"i\":{i}}}").into_bytes();
                    let mut event_id = [0u8; 16];
                    event_id[8..].copy_from_slice(&i.to_be_bytes());
                    let mut mentions = vec![
                        (mention_key("prediction", &format!("p{i}")), Role::Subject),
                        (mention_key("@month", "2025-05"), Role::Subject),
                    ];
                    if i % 2 == 0 {
                        mentions.push((mention_key("deployment", "d"), Role::Related));
                    }
                    super::super::NewEntry {
                        leaf_hash: crate::tree::leaf_hash(&bytes),
                        bytes: std::sync::Arc::new(bytes),
                        event_id,
                        mentions,
                    }
                })
                .collect();
            commit_entries(&store, edge, &entries);
        };
        let mut edge = crate::tree::RightEdge::empty();
        commit(0, 10, &mut edge);
        commit(10, 1, &mut edge);
        commit(11, 300, &mut edge);
        // One key per commit for the shared ids, the first entry's, and
        // one byte per other entry; one key per prediction.
        let month = lineage_keys(&store, "@month", "2025-05", Role::Subject);
        assert_eq!(
            month.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [0, 10, 11]
        );
        assert_eq!(month[0].1, [1; 9]);
        assert!(month[1].1.is_empty());
        assert_eq!(month[2].1.len(), 299);
        let deployment = lineage_keys(&store, "deployment", "d", Role::Related);
        assert_eq!(
            deployment.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [0, 10, 12]
        );
        assert_eq!(
            lineage_keys(&store, "prediction", "p7", Role::Subject),
            [(7, vec![])]
        );

        let month_key = mention_key("@month", "2025-05");
        let all: Vec<u64> = (0..311).collect();
        assert_eq!(
            store
                .mentions_as(&month_key, Role::Subject, 0, usize::MAX)
                .unwrap(),
            all
        );
        assert_eq!(
            store.mentions_as(&month_key, Role::Subject, 9, 3).unwrap(),
            [9, 10, 11]
        );
        assert_eq!(
            store.last_mention(&month_key, Role::Subject, 11).unwrap(),
            Some(10)
        );
        assert_eq!(
            store.last_mention(&month_key, Role::Subject, 311).unwrap(),
            Some(310)
        );

        // A repair (`reindex`) puts an index a group lost back into that
        // group, leaves one it holds alone, and writes others as keys of
        // one, the form of every key before groups.
        let under = role_prefix(&month_key, Role::Subject);
        let key_at = |i: u64| {
            let mut k = under.clone();
            k.extend_from_slice(&i.to_be_bytes());
            k
        };
        let lineage = store.cf(CF_LINEAGE).unwrap();
        let holed = super::super::mention_group_value(0, [1, 2, 3, 4, 6, 7, 8, 9]);
        store.db.put_cf(lineage, key_at(0), &holed).unwrap();
        assert_eq!(
            store.mentions_as(&month_key, Role::Subject, 4, 2).unwrap(),
            [4, 6]
        );
        store
            .put_mentions(&[
                (312, month_key.clone(), Role::Subject),
                (5, month_key.clone(), Role::Subject),
                (311, month_key.clone(), Role::Subject),
                (7, month_key.clone(), Role::Subject),
            ])
            .unwrap();
        let month = lineage_keys(&store, "@month", "2025-05", Role::Subject);
        assert_eq!(
            month.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [0, 10, 11, 311, 312]
        );
        assert_eq!(month[0].1, [1; 9]);
        let mut want = all.clone();
        want.extend([311, 312]);
        assert_eq!(
            store
                .mentions_as(&month_key, Role::Subject, 0, usize::MAX)
                .unwrap(),
            want
        );
        super::super::conformance::check_mentions(
            &store,
            &month_key,
            Role::Subject,
            &want,
            [0, 4, 5, 6, 9, 10, 11, 12, 310, 311, 312, 313],
            &[0, 1, 2, 5, 400],
        );

        // Groups that overlap, which no write here makes, are an error.
        store.db.put_cf(lineage, key_at(5), []).unwrap();
        assert!(matches!(
            store.mentions_as(&month_key, Role::Subject, 0, usize::MAX),
            Err(StoreError::Corrupt(_))
        ));
        store.db.delete_cf(lineage, key_at(5)).unwrap();

        // A damaged group is an error, not a wrong answer.
        store.db.put_cf(lineage, key_at(10), [0x80]).unwrap();
        assert!(matches!(
            store.mentions_as(&month_key, Role::Subject, 0, usize::MAX),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.last_mention(&month_key, Role::Subject, 11),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// Every tile's value in `full_tiles`, by key.
    fn tile_values(store: &RocksStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut it = store.db.raw_iterator_cf(store.cf(CF_TILES).unwrap());
        it.seek_to_first();
        let mut out = Vec::new();
        while it.valid() {
            out.push((it.key().unwrap().to_vec(), it.value().unwrap().to_vec()));
            it.next();
        }
        out
    }

    /// What a tile's value must be: its nodes in key order, read one by one.
    fn tile_from_nodes(store: &RocksStore, key: &[u8]) -> Vec<u8> {
        let mut it = store.db.raw_iterator_cf(store.cf(CF_NODES).unwrap());
        it.seek(key);
        let mut out = Vec::new();
        while it.valid() && it.key().unwrap().starts_with(key) {
            out.extend_from_slice(it.value().unwrap());
            it.next();
        }
        out
    }

    fn tile_key(row: u8, tile: u64) -> Vec<u8> {
        let mut k = vec![row];
        k.extend_from_slice(&tile.to_be_bytes());
        k
    }

    #[test]
    fn each_complete_tile_is_one_value_written_by_the_commit_that_completes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let mut edge = crate::tree::RightEdge::empty();
        // Batches that end inside tiles, exactly on a tile's end, and span
        // many tiles; past 65,536 leaves the first tile of row 1 completes.
        let mut sizes = vec![1, 254, 1, 300, 211, 256, 5000];
        sizes.extend([20_000, 40_000, 100, 2_000]);
        for n in sizes {
            commit_leaves(&store, &mut edge, n);
            let size = edge.size();
            let mut want: Vec<Vec<u8>> = (0..size / 256).map(|t| tile_key(0, t)).collect();
            want.extend((0..size / 65_536).map(|t| tile_key(1, t)));
            want.sort();
            let got = tile_values(&store);
            assert_eq!(
                got.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
                want,
                "at size {size}"
            );
            for (k, v) in &got {
                assert_eq!(v.len(), TILE_BYTES);
                assert_eq!(*v, tile_from_nodes(&store, k), "tile {k:?} at {size}");
            }
        }
        let size = edge.size();
        assert_eq!(size, 68_123);
        let (root, nodes) = sample_tree(size);
        assert_eq!(edge.root(), root);
        assert_tree(&store, size, root, &nodes);
        // Reads of a complete tile's nodes come from its value: one changed
        // there is what `nodes` returns (and a partial tile's from its keys).
        // Without the tile file, which row 0's reads use first
        // (`row_zero_tiles_are_read_from_the_tile_file`).
        drop(store.tiles.take());
        let id = NodeId::new(3, 777);
        let mut k = tile_from_nodes(&store, &tile_key(0, 777 >> 5));
        let at = slot_of_key(&node_key(&id)) * 32;
        k[at] ^= 1;
        store
            .db
            .put_cf(store.cf(CF_TILES).unwrap(), tile_key(0, 777 >> 5), &k)
            .unwrap();
        let (_, real) = nodes.iter().find(|(n, _)| *n == id).unwrap();
        let got = store.nodes(&[id, NodeId::new(0, size - 1)]).unwrap();
        assert_ne!(got[0], Some(*real));
        assert_eq!(got[0].unwrap()[1..], real[1..]);
        assert_eq!(
            got[1],
            Some(crate::tree::leaf_hash(&(size - 1).to_be_bytes()))
        );
        // So do range reads (here over two tiles of row 0, level 3).
        let range = store.node_range(3, 760, 800).unwrap();
        for (i, h) in (760..800).zip(&range) {
            let (_, real) = nodes.iter().find(|(n, _)| *n == NodeId::new(3, i)).unwrap();
            assert_eq!(h == real, i != 777, "node 3/{i}");
        }
        // A value of the wrong length is corruption, not a wrong answer.
        store
            .db
            .put_cf(store.cf(CF_TILES).unwrap(), tile_key(0, 2), [0u8; 64])
            .unwrap();
        assert!(matches!(
            store.nodes(&[NodeId::new(0, 600)]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.node_range(0, 500, 600),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn row_zero_tiles_are_read_from_the_tile_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let wait = std::time::Duration::from_secs(10);
        let mut edge = crate::tree::RightEdge::empty();
        let size = 3_000;
        let (root, nodes) = sample_tree(size);
        let real = |id: NodeId| nodes.iter().find(|(n, _)| *n == id).unwrap().1;
        let id = NodeId::new(2, 200); // in tile 3 of row 0
        let key = tile_key(0, 3);
        let tiles = store_tiles(&path, &mut edge, size);
        {
            let store = RocksStore::open(&path, &RocksOptions::default()).unwrap();
            let file = store.tiles.as_ref().unwrap();
            assert!(file.wait_written(wait));
            assert_eq!(file.ready(), size / 256);
            assert_tree(&store, size, root, &nodes);
            // A changed `full_tiles` value is not what is read: the file is.
            let mut changed = tiles[3].1.clone();
            changed[slot_of_key(&node_key(&id)) * 32] ^= 1;
            let cf = store.cf(CF_TILES).unwrap();
            store.db.put_cf(cf, &key, &changed).unwrap();
            assert_eq!(store.nodes(&[id]).unwrap(), vec![Some(real(id))]);
            // A damaged chunk of the record is not read: the value in
            // `full_tiles` is. Damage elsewhere in it does not stop a
            // proof's read (it reads the chunks with its nodes), only a
            // read of the whole tile.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path.join(TILE_FILE))
                .unwrap();
            let damage = |at: u64| {
                std::os::unix::fs::FileExt::write_all_at(&f, &[0xaa; 4], 3 * 16_384 + at).unwrap()
            };
            damage(9); // in leaf 0's hash: subtree 0
            assert_eq!(store.nodes(&[id]).unwrap(), vec![Some(real(id))]);
            assert_ne!(store.node_range(2, 200, 201).unwrap(), vec![real(id)]);
            damage(1988 + 9); // subtree 1, where node 2/200 lies (leaves 32 to 35)
            let got = store.nodes(&[id]).unwrap()[0].unwrap();
            assert_ne!(got, real(id));
            assert_eq!(got[1..], real(id)[1..]);
            assert_eq!(store.node_range(2, 200, 201).unwrap(), vec![got]);
            store.db.put_cf(cf, &key, &tiles[3].1).unwrap();
        }
        // With no file, the next open writes it again from `full_tiles`;
        // the earlier release's file and watermark are removed.
        std::fs::remove_file(path.join(TILE_FILE)).unwrap();
        std::fs::write(path.join(OLD_TILE_FILE), vec![1u8; 3 * 16_384]).unwrap();
        {
            let cfs = DB::list_cf(&Options::default(), &path).unwrap();
            let db = raw_db(&path, &cfs.iter().map(String::as_str).collect::<Vec<_>>());
            db.put(OLD_META_TILE_FILE, 3u64.to_be_bytes()).unwrap();
        }
        let store = RocksStore::open(&path, &RocksOptions::default()).unwrap();
        assert!(!path.join(OLD_TILE_FILE).exists());
        assert_eq!(store.db.get(OLD_META_TILE_FILE).unwrap(), None);
        assert!(store.tiles.as_ref().unwrap().wait_written(wait));
        assert_eq!(store.nodes(&[id]).unwrap(), vec![Some(real(id))]);
        assert_tree(&store, size, root, &nodes);
        assert_eq!(
            std::fs::metadata(path.join(TILE_FILE)).unwrap().len(),
            (size / 256) * 16_384
        );
    }

    /// Commit `size` leaves in uneven batches, close, and return every
    /// value in `full_tiles`.
    fn store_tiles(
        path: &Path,
        edge: &mut crate::tree::RightEdge,
        size: u64,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let store = RocksStore::open(path, &RocksOptions::default()).unwrap();
        let mut left = size;
        for n in [1, 300, 255, 1000].into_iter().cycle() {
            let n = n.min(left);
            commit_leaves(&store, edge, n);
            left -= n;
            if left == 0 {
                break;
            }
        }
        tile_values(&store)
    }

    /// The table properties of a column family, summed over its tables.
    fn table_properties(store: &RocksStore, cf: &str) -> String {
        store
            .db
            .property_value_cf(store.cf(cf).unwrap(), "rocksdb.aggregated-table-properties")
            .unwrap()
            .unwrap_or_default()
    }

    #[test]
    fn compact_rewrites_tables_of_the_earlier_format_and_keeps_every_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (root, nodes) = sample_tree(5000);
        // Tables written with RocksDB's default format: one whole index
        // block per table, as every version before partitioned indexes.
        {
            let db = raw_db(&path, &[CF_NODES, CF_ENTRIES]);
            let cf = db.cf_handle(CF_NODES).unwrap();
            for (id, h) in &nodes {
                db.put_cf(cf, node_key(id), h).unwrap();
            }
            let entries = db.cf_handle(CF_ENTRIES).unwrap();
            for i in 0..5000u64 {
                db.put_cf(entries, i.to_be_bytes(), format!("entry {i}"))
                    .unwrap();
            }
            db.put(META_SIZE, 5000u64.to_be_bytes()).unwrap();
            db.flush_cf(cf).unwrap();
            db.flush_cf(entries).unwrap();
        }
        let store = RocksStore::open(&path, &RocksOptions::default()).unwrap();
        assert!(!store.tables_current().unwrap());
        // Without tile values, nodes are read one by one.
        assert!(tile_values(&store).is_empty());
        assert_tree(&store, 5000, root, &nodes);
        for cf in [CF_NODES, CF_ENTRIES] {
            let p = table_properties(&store, cf);
            assert!(!p.is_empty() && !p.contains("# entries=0;"), "{cf}: {p}");
            assert!(!p.contains("# index partitions"), "{cf}: {p}");
        }
        let (before, after) = store.compact().unwrap();
        assert!(before > 0 && after > 0, "{before} {after}");
        assert!(store.tables_current().unwrap());
        for cf in [CF_NODES, CF_ENTRIES] {
            let p = table_properties(&store, cf);
            assert!(p.contains("# index partitions="), "{cf}: {p}");
        }
        // Every complete tile now has its value; the partial one none.
        let tiles = tile_values(&store);
        assert_eq!(
            tiles.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            (0..5000 / 256).map(|t| tile_key(0, t)).collect::<Vec<_>>()
        );
        for (k, v) in &tiles {
            assert_eq!(*v, tile_from_nodes(&store, k));
        }
        assert_tree(&store, 5000, root, &nodes);
        let entries = store.entries(0, 5000).unwrap();
        assert_eq!(entries.len(), 5000);
        assert_eq!(entries[4321], b"entry 4321");
        // And it survives a reopen in the new format.
        drop(store);
        let store = RocksStore::open(&path, &RocksOptions::default()).unwrap();
        assert_tree(&store, 5000, root, &nodes);
        assert_eq!(store.tree_size().unwrap(), 5000);
        assert!(store.tables_current().unwrap());
    }

    fn leaf_of(i: u64) -> Hash {
        crate::tree::leaf_hash(&i.to_be_bytes())
    }

    /// Every leaf of a tree of `size` leaves made by `commit_leaves` is
    /// found at its index, and the next one is not.
    fn assert_leaves_found(store: &RocksStore, size: u64) {
        for i in 0..size {
            assert_eq!(
                store.find_leaf(&leaf_of(i)).unwrap(),
                Some(i),
                "leaf {i} of {size}"
            );
        }
        assert_eq!(store.find_leaf(&leaf_of(size)).unwrap(), None);
    }

    fn tail_len(store: &RocksStore) -> usize {
        store.leaves.as_ref().unwrap().len()
    }

    /// The leaf hashes of indexes `from..` in the column family itself.
    fn leaf_keys_in_cf(store: &RocksStore, from: u64, to: u64) -> usize {
        let cf = store.cf(CF_LEAF).unwrap();
        (from..to)
            .filter(|i| store.db.get_pinned_cf(cf, leaf_of(*i)).unwrap().is_some())
            .count()
    }

    /// A store at `path` given commits of `sizes` leaves, then closed;
    /// the right edge of its tree.
    fn committed_and_closed(path: &Path, sizes: &[u64]) -> crate::tree::RightEdge {
        let store = RocksStore::open(path, &small_leaf_batches()).unwrap();
        let mut edge = crate::tree::RightEdge::empty();
        for &n in sizes {
            commit_leaves(&store, &mut edge, n);
        }
        edge
    }

    fn small_leaf_batches() -> RocksOptions {
        RocksOptions {
            leaf_index_batch: 100,
            ..RocksOptions::default()
        }
    }

    #[test]
    fn the_leaf_index_is_written_in_sorted_batches_and_every_leaf_is_found_throughout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = RocksStore::open(&path, &small_leaf_batches()).unwrap();
        let mut edge = crate::tree::RightEdge::empty();
        // Commits smaller than a batch, one that ends on one, and one of
        // ten batches at once.
        for n in [1, 99, 1, 250, 37, 1000, 3, 9] {
            commit_leaves(&store, &mut edge, n);
            // Found as soon as the commit returns, in the tail or not.
            assert_leaves_found(&store, edge.size());
        }
        let size = edge.size();
        assert_eq!(size, 1400);
        // The writer catches up to less than a batch behind, and the
        // marker says where the column family's part ends.
        let mut waited = 0;
        while tail_len(&store) >= 100 && waited < 1000 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        let tail = tail_len(&store) as u64;
        assert!(tail < 100, "tail of {tail} after 10 s");
        let m = leaf_tail::marker(&store.db, CF_LEAF, size)
            .unwrap()
            .unwrap();
        assert_eq!(m, size - tail);
        assert_eq!(leaf_keys_in_cf(&store, 0, size), m as usize);
        assert_leaves_found(&store, size);
        // A clean close writes the tail: nothing to index again at open.
        drop(store);
        let store = RocksStore::open(&path, &small_leaf_batches()).unwrap();
        assert_eq!(tail_len(&store), 0);
        assert_eq!(
            leaf_tail::marker(&store.db, CF_LEAF, size).unwrap(),
            Some(size)
        );
        assert_eq!(leaf_keys_in_cf(&store, 0, size), size as usize);
        assert_leaves_found(&store, size);
    }

    /// A crash loses the leaf-hash index's memtables, written without the
    /// write-ahead log: the column family is an earlier state of itself,
    /// its marker included. Here that state is made by hand.
    #[test]
    fn leaf_hashes_a_crash_lost_are_indexed_again_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut edge = committed_and_closed(&path, &[300, 555, 45]);
        let size = edge.size();
        let lost_from = 432u64;
        {
            let db = raw_db(&path, &ALL_CFS[1..]);
            let cf = db.cf_handle(CF_LEAF).unwrap();
            for i in lost_from..size {
                db.delete_cf(cf, leaf_of(i)).unwrap();
            }
            db.put_cf(cf, leaf_tail::MARKER, lost_from.to_be_bytes())
                .unwrap();
        }
        let store = RocksStore::open(&path, &small_leaf_batches()).unwrap();
        // Indexed again into the column family itself, durably, at open.
        assert_eq!(tail_len(&store), 0);
        assert_eq!(leaf_keys_in_cf(&store, 0, size), size as usize);
        assert_eq!(
            leaf_tail::marker(&store.db, CF_LEAF, size).unwrap(),
            Some(size)
        );
        assert_leaves_found(&store, size);
        // And the log goes on from there.
        commit_leaves(&store, &mut edge, 10);
        assert_leaves_found(&store, size + 10);
        drop(store);

        // A marker beyond the tree is corruption, not a reason to guess.
        {
            let db = raw_db(&path, &ALL_CFS[1..]);
            let cf = db.cf_handle(CF_LEAF).unwrap();
            db.put_cf(cf, leaf_tail::MARKER, (size + 11).to_be_bytes())
                .unwrap();
        }
        assert!(matches!(
            RocksStore::open(&path, &small_leaf_batches()),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// Versions before the marker put every leaf hash in the commit's own
    /// batch: their column family holds the whole tree.
    #[test]
    fn a_leaf_index_without_a_marker_holds_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        committed_and_closed(&path, &[250]);
        {
            let db = raw_db(&path, &ALL_CFS[1..]);
            db.delete_cf(db.cf_handle(CF_LEAF).unwrap(), leaf_tail::MARKER)
                .unwrap();
        }
        let store = RocksStore::open(&path, &small_leaf_batches()).unwrap();
        assert_eq!(
            leaf_tail::marker(&store.db, CF_LEAF, 250).unwrap(),
            Some(250)
        );
        assert_leaves_found(&store, 250);
    }

    #[test]
    fn a_new_store_is_in_the_current_table_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(RocksStore::open(&path, &RocksOptions::default()).unwrap());
        let store = RocksStore::open(&path, &RocksOptions::default()).unwrap();
        assert!(store.tables_current().unwrap());
    }

    #[test]
    fn nodes_of_the_earlier_layout_are_copied_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (root, nodes) = sample_tree(3000);
        {
            let db = raw_db(&path, &[CF_OLD_NODES]);
            let cf = db.cf_handle(CF_OLD_NODES).unwrap();
            for (id, h) in &nodes {
                db.put_cf(cf, old_node_key(id), h).unwrap();
            }
            db.put(META_SIZE, 3000u64.to_be_bytes()).unwrap();
        }
        let store = RocksStore::open(&path, &RocksOptions::default()).unwrap();
        assert_tree(&store, 3000, root, &nodes);
        drop(store);
        let cfs = DB::list_cf(&Options::default(), &path).unwrap();
        assert!(!cfs.iter().any(|c| c == CF_OLD_NODES), "{cfs:?}");
    }
}
