//! Prometheus metrics, exposed at `GET /metrics` in the text format.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub appends: Counter,
    pub duplicates: Counter,
    pub conflicts: Counter,
    pub overloaded: Counter,
    pub batches: Counter,
    pub commit_failures: Counter,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub tree_size: Gauge,
    pub block_cache_bytes: Gauge,
    pub memtable_bytes: Gauge,
    pub table_reader_bytes: Gauge,
    pub node_cache_bytes: Gauge,
    pub tile_file_records: Gauge,
    pub tile_file_behind: Gauge,
    pub tile_file_failed_checks: Gauge,
    pub witnessed_size: Gauge,
    pub witness_failures: Counter,
    /// MLflow webhook deliveries accepted, and those ignored (event types
    /// this log does not record).
    pub mlflow_deliveries: Counter,
    pub mlflow_ignored: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("modeltrail");
        let m = Metrics {
            appends: Counter::default(),
            duplicates: Counter::default(),
            conflicts: Counter::default(),
            overloaded: Counter::default(),
            batches: Counter::default(),
            commit_failures: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            tree_size: Gauge::default(),
            block_cache_bytes: Gauge::default(),
            memtable_bytes: Gauge::default(),
            table_reader_bytes: Gauge::default(),
            node_cache_bytes: Gauge::default(),
            tile_file_records: Gauge::default(),
            tile_file_behind: Gauge::default(),
            tile_file_failed_checks: Gauge::default(),
            witnessed_size: Gauge::default(),
            witness_failures: Counter::default(),
            mlflow_deliveries: Counter::default(),
            mlflow_ignored: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "appends",
            "Events appended as new leaves",
            m.appends.clone(),
        );
        registry.register(
            "duplicates",
            "Resubmissions answered with the original index",
            m.duplicates.clone(),
        );
        registry.register(
            "conflicts",
            "Event ids reused with different content",
            m.conflicts.clone(),
        );
        registry.register(
            "overloaded",
            "Appends refused because the queue was full",
            m.overloaded.clone(),
        );
        registry.register(
            "batches",
            "Group commits (one fsync and one checkpoint each)",
            m.batches.clone(),
        );
        registry.register(
            "commit_failures",
            "Group commits that failed and forced a reload",
            m.commit_failures.clone(),
        );
        registry.register(
            "batch_size",
            "Submissions per group commit",
            m.batch_size.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time to write, fsync and sign one batch",
            m.commit_seconds.clone(),
        );
        registry.register("tree_size", "Entries in the log", m.tree_size.clone());
        registry.register(
            "witnessed_tree_size",
            "Tree size of the published checkpoint (cosigned when witnesses are configured)",
            m.witnessed_size.clone(),
        );
        registry.register(
            "witness_failures",
            "Witness requests that did not return a valid cosignature",
            m.witness_failures.clone(),
        );
        registry.register(
            "mlflow_deliveries",
            "MLflow webhook deliveries verified and recorded",
            m.mlflow_deliveries.clone(),
        );
        registry.register(
            "mlflow_ignored",
            "MLflow webhook deliveries of event types this log does not record",
            m.mlflow_ignored.clone(),
        );
        registry.register(
            "storage_block_cache_bytes",
            "Block cache in use (memtables are charged to it)",
            m.block_cache_bytes.clone(),
        );
        registry.register(
            "storage_memtable_bytes",
            "Memtables, all column families",
            m.memtable_bytes.clone(),
        );
        registry.register(
            "storage_table_reader_bytes",
            "Table readers outside the block cache",
            m.table_reader_bytes.clone(),
        );
        registry.register(
            "storage_node_cache_bytes",
            "Hashes of the upper tree levels held in memory",
            m.node_cache_bytes.clone(),
        );
        registry.register(
            "storage_tile_file_records",
            "Complete tiles of row 0 in the tile file, read by proofs with one pread",
            m.tile_file_records.clone(),
        );
        registry.register(
            "storage_tile_file_behind",
            "Complete tiles of row 0 not yet in the tile file (read from RocksDB meanwhile)",
            m.tile_file_behind.clone(),
        );
        registry.register(
            "storage_tile_file_failed_checks",
            "Reads of a tile file record that failed its check (read from RocksDB instead)",
            m.tile_file_failed_checks.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Record what the storage engine reports before rendering.
    pub fn set_storage(&self, m: crate::store::MemoryUsage) {
        self.block_cache_bytes.set(m.block_cache as i64);
        self.memtable_bytes.set(m.memtables as i64);
        self.table_reader_bytes.set(m.table_readers as i64);
        self.node_cache_bytes.set(m.node_cache as i64);
    }

    /// Record the tile file's progress before rendering (nothing where the
    /// store keeps none).
    pub fn set_tile_file(&self, t: Option<crate::store::TileFileStatus>) {
        if let Some(t) = t {
            let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.tile_file_records.set(gauge(t.records));
            self.tile_file_behind
                .set(gauge(t.complete.saturating_sub(t.records)));
            self.tile_file_failed_checks.set(gauge(t.failed_checks));
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}
