//! Growth: appends events through the real sequencer onto RocksDB up to each
//! target size, and at each records the process RSS and inclusion proofs/s
//! at random indexes. The baseline, measured in the same run on the same
//! database, is raw RocksDB `multi_get` of every node key a proof needs,
//! read from the store alone. The log keeps the upper levels of the tree
//! in memory (`store::UpperLevels`) and reads only the lowest ones, so the
//! ratio is what that cache buys, net of planning and assembly.
//!
//! ```text
//! cargo bench --bench scale -- [--sizes 1000000,10000000] [--proof-seconds 5] [--cache-mb 128]
//! ```
//!
//! RSS is the whole process (it uses the server's allocator); `RssAnon`
//! leaves out file-backed pages.

use modeltrail::audit::event::prepare;
use modeltrail::log::{Log, LogConfig};
use modeltrail::metrics::Metrics;
use modeltrail::note::{KeyName, SignerKey};
use modeltrail::store::{
    rocks_node_key, RocksOptions, RocksStore, Store, UpperLevels, DEFAULT_MIN_LEVEL,
};
use modeltrail::tree::inclusion_plan;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORIGIN: &str = "scale.example/log";

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A field of /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A cheap deterministic pseudo-random sequence (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let mut sizes = vec![1_000_000u64, 10_000_000];
    let mut proof_secs = 5u64;
    let mut cache_mb = 128usize;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--sizes" => {
                sizes = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|x| x.parse().unwrap())
                    .collect()
            }
            "--proof-seconds" => proof_secs = it.next().unwrap().parse().unwrap(),
            "--cache-mb" => cache_mb = it.next().unwrap().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    let signer = SignerKey::from_seed(KeyName::new(ORIGIN).unwrap(), [4u8; 32]);

    println!("block cache (RocksDB memory budget): {cache_mb} MiB");
    println!("| entries | append phase entries/s | RSS MiB | RssAnon MiB | proofs/s (ours) | raw multi_get of the same keys/s | ratio |");
    println!("|---|---|---|---|---|---|---|");
    let rocks_opts = RocksOptions {
        block_cache_bytes: cache_mb << 20,
        ..RocksOptions::default()
    };
    let mut size = 0u64;
    let mut rss = Vec::new();
    // One store and log for the whole run, as in the server.
    let rocks: Arc<dyn Store> = Arc::new(RocksStore::open(&db_path, &rocks_opts).unwrap());
    let store: Arc<dyn Store> = Arc::new(UpperLevels::open(rocks, DEFAULT_MIN_LEVEL).unwrap());
    let log = Arc::new(
        Log::open(
            store.clone(),
            signer.clone(),
            LogConfig::new(ORIGIN),
            Arc::new(Metrics::default()),
        )
        .unwrap(),
    );
    for &target in &sizes {
        // Grow through the real sequencer, 4096 concurrent appends at a time.
        let started = Instant::now();
        let from = size;
        rt.block_on(async {
            while size < target {
                let wave = (target - size).min(4096);
                let tasks: Vec<_> = (size..size + wave)
                    .map(|i| {
                        let log = log.clone();
                        tokio::spawn(async move {
                            let v = serde_json::json!({
                                "action": "predict",
                                "actor": {"type": "service", "id": "scorer"},
                                "timestamp": "2025-05-05T14:03:00Z",
                                "subject": {"type": "prediction", "id": format!("p-{i}")},
                                "related": [{"type": "deployment", "id": "fraud-prod"}],
                                "metadata": {"score": 0.913}
                            });
                            log.append(prepare(v.to_string().as_bytes()).unwrap())
                                .await
                                .unwrap();
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                size += wave;
            }
        });
        let append_rate = (size - from) as f64 / started.elapsed().as_secs_f64();
        let rss_now = status_mib("VmRSS:");
        let m = store.memory();
        eprintln!(
            "at {size}: block cache {} MiB (memtables charged to it), memtables {} MiB, table readers {} MiB, upper levels in memory {:.1} MiB",
            m.block_cache >> 20,
            m.memtables >> 20,
            m.table_readers >> 20,
            m.node_cache as f64 / 1048576.0
        );
        let anon_now = status_mib("RssAnon:");
        rss.push(rss_now);

        // Proofs through the log's read path, at random indexes.
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let t0 = Instant::now();
        let mut proofs = 0u64;
        let mut keys_per_proof = Vec::new();
        while t0.elapsed() < Duration::from_secs(proof_secs) {
            let i = rng.next() % size;
            let p = log.inclusion_proof(i, size).unwrap();
            std::hint::black_box(p);
            proofs += 1;
        }
        let ours = proofs as f64 / t0.elapsed().as_secs_f64();
        // Baseline: raw RocksDB multi_get of the same node keys, on the same
        // files through a second, read-only handle (RocksDB's default options).
        let raw_db = {
            let opts = rocksdb::Options::default();
            let cfs = rocksdb::DB::list_cf(&opts, &db_path).unwrap();
            rocksdb::DB::open_cf_for_read_only(&opts, &db_path, cfs, false).unwrap()
        };
        let cf = raw_db.cf_handle("node_tiles").unwrap();
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let t0 = Instant::now();
        let mut gets = 0u64;
        while t0.elapsed() < Duration::from_secs(proof_secs) {
            let i = rng.next() % size;
            let keys: Vec<[u8; 11]> = inclusion_plan(i, size)
                .unwrap()
                .node_ids()
                .iter()
                .map(rocks_node_key)
                .collect();
            keys_per_proof.push(keys.len());
            let got = raw_db.batched_multi_get_cf(cf, &keys, false);
            assert!(got.iter().all(|r| matches!(r, Ok(Some(_)))));
            gets += 1;
        }
        let raw = gets as f64 / t0.elapsed().as_secs_f64();
        drop(raw_db);
        println!(
            "| {size} | {append_rate:.0} | {rss_now:.0} | {anon_now:.0} | {ours:.0} | {raw:.0} | {:.2} |",
            ours / raw
        );
        let mean_keys =
            keys_per_proof.iter().sum::<usize>() as f64 / keys_per_proof.len().max(1) as f64;
        eprintln!("mean node reads per proof at {size}: {mean_keys:.1}");
    }
    if rss.len() >= 2 {
        println!("RSS ratio last/first: {:.2}", rss[rss.len() - 1] / rss[0]);
    }
}
