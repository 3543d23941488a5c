//! Size: an in-process bulk fill of RocksDB (not over HTTP) to each target
//! size, then, at each: disk used against the bytes of the events, restart
//! time (open the store, load the upper tree levels, open the log; each
//! part timed, and the upper levels also read level by level, the way they
//! were loaded before, as the baseline of that part), proof
//! latency through the log's read path, and the process's memory while it
//! serves proofs and appends.
//!
//! ```text
//! cargo bench --bench bulk -- [--sizes 1000000,10000000,100000000] [--batch 8192] [--proof-seconds 5] [--keep DIR]
//! ```
//!
//! `--settle S` waits S seconds after each fill before measuring (for the
//! compactions the fill left behind). `--keep DIR` leaves the filled log in `DIR/data`, a data directory that
//! `modeltrail serve --origin bulk.example/log --data-dir DIR/data` opens
//! (its signing key in `log.key`, a derived-state snapshot covering
//! every entry: no entry of the fill changes tokens, keys or the
//! registry, and the lineage index marked complete), for measuring over HTTP at that size; a later run with the
//! same `--keep DIR` continues from the log it finds there.
//!
//! The fill writes what the sequencer writes, in the same store format:
//! each batch of canonical events (a prediction with two `related` links
//! and every index key the server writes for it) with its tree nodes and a
//! signed checkpoint, in one synced `WriteBatch`. The events are formatted
//! here rather than parsed one by one, and every 100,000th is checked
//! against the server's own `prepare` (bytes, leaf hash and index keys).
//! Baselines in the same run: proof latency at the first size, and the
//! event bytes themselves for the disk.

use modeltrail::audit::event::prepare;
use modeltrail::log::{Log, LogConfig};
use modeltrail::metrics::Metrics;
use modeltrail::note::{Checkpoint, KeyName, SignerKey};
use modeltrail::store::{
    mention_key, Batch, NewEntry, RocksOptions, RocksStore, Role, Store, UpperLevels,
    DEFAULT_MIN_LEVEL,
};
use modeltrail::tree::{leaf_hash, RightEdge};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORIGIN: &str = "bulk.example/log";

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn du(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(list) = std::fs::read_dir(path) {
        for e in list.flatten() {
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if m.is_dir() { du(&e.path()) } else { m.len() };
        }
    }
    total
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Event `i` in canonical form (RFC 8785: members sorted), and its id.
fn event(i: u64) -> (Vec<u8>, [u8; 16]) {
    let id = format!("0191e3a0-0000-7000-8000-{:012x}", i);
    let bytes = format!(
        "{{\"action\":\"predict\",\"actor\":{{\"id\":\"scorer\",\"type\":\"service\"}},\
         \"event_id\":\"{id}\",\"metadata\":{{\"score\":0.913,\"threshold\":0.5}},\
         \"related\":[{{\"id\":\"fraud-prod\",\"type\":\"deployment\"}},\
         {{\"id\":\"fraud:v3\",\"type\":\"model_version\"}}],\
         \"subject\":{{\"id\":\"p-{i}\",\"type\":\"prediction\"}},\
         \"timestamp\":\"2025-05-05T14:03:00Z\"}}"
    )
    .into_bytes();
    let uuid = uuid::Uuid::parse_str(&id).expect("event id");
    (bytes, *uuid.as_bytes())
}

/// The index keys the server writes for event `i`: the subject, then
/// those shared by every event (its `related` links, actor, action, month),
/// taken from the server's own `prepare` of event 0.
fn shared_keys() -> Vec<(Vec<u8>, Role)> {
    let p = prepare(&event(0).0).expect("the bench's event is valid");
    index_keys(&p)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b"prediction\0"))
        .collect()
}

/// The store's index keys of a prepared event, as the log writes them.
fn index_keys(p: &modeltrail::audit::event::Prepared) -> Vec<(Vec<u8>, Role)> {
    p.event
        .index_keys()
        .into_iter()
        .map(|(r, subject)| {
            let role = if subject {
                Role::Subject
            } else {
                Role::Related
            };
            (mention_key(&r.kind, &r.id), role)
        })
        .collect()
}

fn check_against_prepare(i: u64, e: &NewEntry) {
    let p = prepare(&e.bytes).expect("valid event");
    assert_eq!(p.canonical, *e.bytes, "event {i} is not canonical");
    assert_eq!(p.leaf_hash, e.leaf_hash);
    assert_eq!(*p.event_id().as_bytes(), e.event_id);
    let want = index_keys(&p);
    let key = |m: &(Vec<u8>, Role)| (m.0.clone(), m.1 == Role::Subject);
    let mut got: Vec<_> = e.mentions.iter().map(key).collect();
    let mut want: Vec<_> = want.iter().map(key).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "index keys of event {i}");
}

fn open_rocks(db: &Path, cache_mb: usize) -> Arc<RocksStore> {
    Arc::new(
        RocksStore::open(
            db,
            &RocksOptions {
                block_cache_bytes: cache_mb << 20,
                ..RocksOptions::default()
            },
        )
        .unwrap(),
    )
}

fn open(db: &Path, cache_mb: usize) -> Arc<dyn Store> {
    Arc::new(UpperLevels::open(open_rocks(db, cache_mb), DEFAULT_MIN_LEVEL).unwrap())
}

/// The upper levels read one range read per level, as they were loaded
/// before one pass per row of tiles: the baseline of the restart breakdown.
fn upper_levels_level_by_level(store: &dyn Store, size: u64) -> usize {
    (DEFAULT_MIN_LEVEL..64)
        .map(|l| size >> l)
        .take_while(|&n| n > 0)
        .enumerate()
        .map(|(i, n)| {
            store
                .node_range(DEFAULT_MIN_LEVEL + i as u8, 0, n)
                .unwrap()
                .len()
        })
        .sum()
}

fn main() {
    let mut sizes = vec![1_000_000u64, 10_000_000];
    let mut batch = 8192u64;
    let mut proof_secs = 5u64;
    let mut cache_mb = 128usize;
    let mut dir_arg: Option<String> = None;
    let mut keep: Option<std::path::PathBuf> = None;
    let mut settle = 0u64;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--sizes" => sizes = v().split(',').map(|x| x.parse().unwrap()).collect(),
            "--batch" => batch = v().parse().unwrap(),
            "--proof-seconds" => proof_secs = v().parse().unwrap(),
            "--cache-mb" => cache_mb = v().parse().unwrap(),
            "--dir" => dir_arg = Some(v()),
            "--keep" => keep = Some(std::path::PathBuf::from(v())),
            "--settle" => settle = v().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let tmp = tempfile::tempdir_in(dir_arg.as_deref().unwrap_or("/tmp")).unwrap();
    let db = match &keep {
        Some(k) => {
            std::fs::create_dir_all(k.join("data")).unwrap();
            k.join("data/db")
        }
        None => tmp.path().join("db"),
    };
    let signer = SignerKey::from_seed(KeyName::new(ORIGIN).unwrap(), [4u8; 32]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shared = shared_keys();

    println!("block cache (RocksDB memory budget): {cache_mb} MiB; batches of {batch}");
    println!("| entries | fill entries/s | disk bytes/entry | event bytes/entry | disk − events, bytes/entry | restart s | upper levels in memory MiB | proof p50 µs | proof p99 µs | proofs/s (1 thread) | p50 ratio to the first size | RSS MiB after proofs and appends | RssAnon MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut event_bytes = 0u64;
    let mut edge = RightEdge::empty();
    let mut first_p50: Option<f64> = None;
    let mut breakdown = Vec::new();
    let mut store = open(&db, cache_mb);
    // The empty log's first checkpoint, as the server writes it.
    drop(
        Log::open(
            store.clone(),
            signer.clone(),
            LogConfig::new(ORIGIN),
            Arc::new(Metrics::default()),
        )
        .unwrap(),
    );
    // A kept log from an earlier run continues from its size (its event
    // bytes estimated from 1,000 entries spread over it).
    let mut size = store.tree_size().unwrap();
    if size > 0 {
        edge = RightEdge::load(size, &modeltrail::store::StoreHashes(store.as_ref())).unwrap();
        let step = (size / 1000).max(1);
        let sample: Vec<u64> = (0..size)
            .step_by(step as usize)
            .map(|i| store.entry(i).unwrap().len() as u64)
            .collect();
        event_bytes = sample.iter().sum::<u64>() * size / sample.len() as u64;
        println!("continuing a kept log of {size} entries");
    }
    for &target in &sizes {
        let started = Instant::now();
        let from = size;
        let mut nodes = Vec::new();
        let mut last_report = Instant::now();
        while size < target {
            let n = (target - size).min(batch);
            let entries: Vec<NewEntry> = (size..size + n)
                .map(|i| {
                    let (bytes, event_id) = event(i);
                    let mut mentions = Vec::with_capacity(shared.len() + 1);
                    mentions.push((mention_key("prediction", &format!("p-{i}")), Role::Subject));
                    mentions.extend(shared.iter().cloned());
                    NewEntry {
                        leaf_hash: leaf_hash(&bytes),
                        bytes: Arc::new(bytes),
                        event_id,
                        mentions,
                    }
                })
                .collect();
            for (k, e) in entries.iter().enumerate() {
                let i = size + k as u64;
                if i.is_multiple_of(100_000) {
                    check_against_prepare(i, e);
                }
                event_bytes += e.bytes.len() as u64;
            }
            nodes.clear();
            for e in &entries {
                edge.push(e.leaf_hash, &mut nodes);
            }
            let signed = Checkpoint::new(ORIGIN, edge.size(), edge.root())
                .sign(&signer)
                .unwrap();
            store
                .commit(&Batch {
                    first_index: size,
                    entries: &entries,
                    nodes: &nodes,
                    checkpoint: signed.as_bytes(),
                })
                .unwrap();
            size += n;
            if last_report.elapsed() > Duration::from_secs(60) {
                eprintln!(
                    "… {size} entries, {:.0}/s",
                    (size - from) as f64 / started.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
        }
        let fill_rate = (size - from) as f64 / started.elapsed().as_secs_f64();
        if settle > 0 {
            std::thread::sleep(Duration::from_secs(settle));
        }

        // Restart: close everything, then time what the server does at start,
        // part by part: RocksDB's open, the upper levels, the log.
        drop(store);
        let t0 = Instant::now();
        let rocks = open_rocks(&db, cache_mb);
        let t_rocks = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        store = Arc::new(UpperLevels::open(rocks.clone(), DEFAULT_MIN_LEVEL).unwrap());
        let t_upper = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let log = Arc::new(
            Log::open(
                store.clone(),
                signer.clone(),
                LogConfig::new(ORIGIN),
                Arc::new(Metrics::default()),
            )
            .unwrap(),
        );
        let restart = t0.elapsed().as_secs_f64();
        let t_log = t2.elapsed().as_secs_f64();
        assert_eq!(log.head().size, size);
        let t3 = Instant::now();
        let nodes = upper_levels_level_by_level(rocks.as_ref(), size);
        assert_eq!(nodes, store.memory().node_cache as usize / 32);
        breakdown.push(format!(
            "| {size} | {t_rocks:.3} | {t_upper:.3} | {:.3} | {t_log:.3} | {restart:.3} |",
            t3.elapsed().as_secs_f64()
        ));
        // A log written before the tile file gets it at its first open, in
        // the background: proofs are measured once it is complete.
        let t4 = Instant::now();
        assert!(rocks.wait_for_tile_file(Duration::from_secs(3600)));
        if t4.elapsed() > Duration::from_millis(100) {
            eprintln!(
                "the tile file was written in {:.1} s",
                t4.elapsed().as_secs_f64()
            );
        }
        drop(rocks);
        let disk = du(&db);
        let cached = store.memory().node_cache as f64 / 1048576.0;

        // Proofs through the log's read path, one thread, random indexes.
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let mut lat = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(proof_secs) {
            let i = rng.next() % size;
            let s = Instant::now();
            let p = log.inclusion_proof(i, size).unwrap();
            lat.record(s.elapsed().as_nanos() as u64).unwrap();
            std::hint::black_box(p);
        }
        let rate = lat.len() as f64 / t0.elapsed().as_secs_f64();
        let p50 = lat.value_at_quantile(0.5) as f64 / 1000.0;
        let p99 = lat.value_at_quantile(0.99) as f64 / 1000.0;
        let first = *first_p50.get_or_insert(p50);
        // Appends through the real sequencer at this size.
        rt.block_on(async {
            let tasks: Vec<_> = (0..20_000u64)
                .map(|k| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let v = serde_json::json!({
                            "action": "predict",
                            "actor": {"type": "service", "id": "scorer"},
                            "timestamp": "2025-05-05T14:03:00Z",
                            "subject": {"type": "prediction", "id": format!("q-{k}")},
                            "related": [{"type": "deployment", "id": "fraud-prod"}],
                            "metadata": {"score": 0.5}
                        });
                        let p = prepare(v.to_string().as_bytes()).unwrap();
                        // More appends than the sequencer's queue holds are
                        // in flight: one it refuses as overloaded is sent
                        // again, as a client does after a 503.
                        loop {
                            match log.append(p.clone()).await {
                                Ok(_) => break,
                                Err(modeltrail::Error::Overloaded) => {
                                    tokio::time::sleep(Duration::from_millis(5)).await
                                }
                                Err(e) => panic!("append {k}: {e}"),
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        let rss = status_mib("VmRSS:");
        let anon = status_mib("RssAnon:");
        // The appends moved the tree on: continue the fill from there.
        let grown = log.head().size;
        event_bytes += log
            .entries(size, grown)
            .unwrap()
            .iter()
            .map(|e| e.len() as u64)
            .sum::<u64>();
        size = grown;
        edge = RightEdge::load(size, &modeltrail::store::StoreHashes(store.as_ref())).unwrap();
        rt.block_on(log.shutdown());
        drop(log);
        let per = |b: u64| b as f64 / size as f64;
        println!(
            "| {size} | {fill_rate:.0} | {:.0} | {:.0} | {:.0} | {restart:.3} | {cached:.1} | {p50:.1} | {p99:.1} | {rate:.0} | {:.2} | {rss:.0} | {anon:.0} |",
            per(disk),
            per(event_bytes),
            per(disk) - per(event_bytes),
            p50 / first
        );
    }
    println!("\nRestart, part by part (the upper levels also read level by level, as before, for comparison):\n");
    println!("| entries | RocksDB open s | upper levels, one pass per tile row s | upper levels, one range read per level s | log open s | restart s |");
    println!("|---|---|---|---|---|---|");
    for row in breakdown {
        println!("{row}");
    }
    if let Some(k) = keep {
        use std::os::unix::fs::PermissionsExt;
        let key = k.join("data/log.key");
        std::fs::write(&key, format!("{}\n", signer.encode_secret())).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        modeltrail::state::Snapshot {
            indexed: size,
            ..Default::default()
        }
        .save(store.as_ref())
        .unwrap();
        // The fill wrote every lineage key: the index is complete.
        store
            .put_meta(
                modeltrail::store::MetaKey::LineageLayout,
                modeltrail::store::LINEAGE_LAYOUT,
            )
            .unwrap();
        println!("kept: {}", k.join("data").display());
    }
}
