//! Criterion benches for the sequencer: group commits of N concurrent
//! appends through `Log` on RocksDB (synced) and in memory, next to the
//! baseline of a raw RocksDB synced `WriteBatch` holding the same entry bytes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use modeltrail::audit::event::{prepare, Prepared};
use modeltrail::log::{Log, LogConfig};
use modeltrail::metrics::Metrics;
use modeltrail::note::{KeyName, SignerKey};
use modeltrail::store::{MemStore, RocksOptions, RocksStore, Store};
use modeltrail::wire;
use std::sync::Arc;

const ORIGIN: &str = "bench.example/log";

fn events(n: usize) -> Vec<Prepared> {
    (0..n)
        .map(|i| {
            let v = serde_json::json!({
                "action": "deploy",
                "actor": {"type": "service", "id": "ci.pipeline"},
                "timestamp": "2025-05-05T14:03:00Z",
                "subject": {"type": "deployment", "id": format!("dep-{i}")},
                "related": [{"type": "model_version", "id": "fraud:v3"}],
                "metadata": {"region": "eu-west-1", "replicas": 3}
            });
            prepare(v.to_string().as_bytes()).unwrap()
        })
        .collect()
}

fn open(store: Arc<dyn Store>) -> Arc<Log> {
    let k = SignerKey::from_seed(KeyName::new(ORIGIN).unwrap(), [9u8; 32]);
    Arc::new(
        Log::open(
            store,
            k,
            LogConfig::new(ORIGIN),
            Arc::new(Metrics::default()),
        )
        .unwrap(),
    )
}

/// Append concurrently, as many clients would, and wait for every receipt.
async fn append_all(log: &Arc<Log>, evs: Vec<Prepared>) {
    let tasks: Vec<_> = evs
        .into_iter()
        .map(|e| {
            let log = log.clone();
            tokio::spawn(async move { log.append(e).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

fn group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("group_commit");
    g.sample_size(20);
    for n in [1usize, 64, 512] {
        g.throughput(Throughput::Elements(n as u64));

        // Baseline: the same bytes in one synced WriteBatch, raw RocksDB.
        let dir = tempfile::tempdir().unwrap();
        let db = rocksdb::DB::open_default(dir.path()).unwrap();
        let evs = events(n);
        let mut next = 0u64;
        g.bench_with_input(
            BenchmarkId::new("raw_rocksdb_synced_batch", n),
            &n,
            |b, _| {
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                b.iter(|| {
                    let mut wb = rocksdb::WriteBatch::default();
                    for e in &evs {
                        next += 1;
                        wb.put(next.to_be_bytes(), &e.canonical);
                    }
                    db.write_opt(wb, &wo).unwrap();
                })
            },
        );

        let dir = tempfile::tempdir().unwrap();
        let rocks: Arc<dyn Store> =
            Arc::new(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
        let mem: Arc<dyn Store> = Arc::new(MemStore::new());
        for (name, store) in [("log_rocksdb", rocks), ("log_memory", mem)] {
            let log = open(store);
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter_batched(
                    || events(n),
                    |evs| rt.block_on(append_all(&log, evs)),
                    criterion::BatchSize::PerIteration,
                )
            });
            rt.block_on(log.shutdown());
        }
    }
    g.finish();
}

/// Per-request work before the sequencer: strict parse, validation, RFC 8785
/// canonical form and leaf hash. Baseline: plain `serde_json` parsing of the
/// same body into a `Value` (and, for the canonical form alone, writing it).
fn event_preparation(c: &mut Criterion) {
    let body = serde_json::json!({
        "action": "deploy",
        "actor": {"type": "service", "id": "ci.pipeline"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "deployment", "id": "dep-1"},
        "related": [{"type": "model_version", "id": "fraud:v3"}, {"type": "run", "id": "run-933"}],
        "metadata": {"region": "eu-west-1", "replicas": 3, "metrics": {"auc": 0.945}}
    })
    .to_string();
    let mut g = c.benchmark_group("event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_serde_json_parse", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(std::hint::black_box(&body)).unwrap())
    });
    g.bench_function("prepare", |b| {
        b.iter(|| prepare(std::hint::black_box(body.as_bytes())).unwrap())
    });
    // The RFC 8785 form alone, which `prepare` writes twice (the canonical
    // form and its fixed-point check): ours, and `serde_jcs`, the
    // reference the tests hold it to. Baseline: plain `serde_json` writing
    // the same value.
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    g.bench_function("baseline_serde_json_write", |b| {
        b.iter(|| serde_json::to_vec(std::hint::black_box(&value)).unwrap())
    });
    g.bench_function("canonical_jcs", |b| {
        b.iter(|| modeltrail::audit::jcs::to_vec(std::hint::black_box(&value)))
    });
    g.bench_function("canonical_serde_jcs", |b| {
        b.iter(|| serde_jcs::to_vec(std::hint::black_box(&value)).unwrap())
    });
    g.finish();

    // The append's answer, for the same event with a proof of 24 hashes
    // and a checkpoint of the usual shape: written from its parts (what
    // `POST /v1/events` sends, its tlog-proof text written into the JSON
    // string directly), against the serde path it replaced (the event
    // embedded as a `RawValue`, which parses it again, and the tlog-proof
    // text built, then escaped).
    let p = prepare(body.as_bytes()).unwrap();
    let proof: Vec<[u8; 32]> = (0..24u8).map(|i| [i; 32]).collect();
    let checkpoint = format!(
        "{ORIGIN}\n12345678\n{}\n\n\u{2014} {ORIGIN} {}\n",
        "A".repeat(44),
        "B".repeat(96)
    );
    let mut g = c.benchmark_group("receipt");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_serde", |b| {
        b.iter(|| {
            serde_json::to_vec(&wire::Receipt {
                index: 12345,
                tree_size: 12345678,
                leaf_hash: wire::Hex32(p.leaf_hash),
                event_id: p.event_id().to_string(),
                event: wire::raw_event(std::hint::black_box(&p.canonical)).unwrap(),
                checkpoint: checkpoint.clone(),
                inclusion_proof: wire::hexes(&proof),
                tlog_proof: modeltrail::note::TlogProof {
                    extra: None,
                    index: 12345,
                    proof: proof.clone(),
                    checkpoint: checkpoint.clone(),
                }
                .encode(),
                witnessed: None,
            })
            .unwrap()
        })
    });
    g.bench_function("from_parts", |b| {
        b.iter(|| {
            wire::ReceiptParts {
                index: 12345,
                tree_size: 12345678,
                leaf_hash: &p.leaf_hash,
                event_id: p.event_id(),
                event: std::hint::black_box(&p.canonical),
                checkpoint: &checkpoint,
                inclusion_proof: &proof,
                witnessed: None,
            }
            .to_json()
            .unwrap()
        })
    });
    g.finish();

    // The tlog-proof field alone: its text built and then escaped into the
    // JSON (what the answer did before), against its lines written with
    // escaped line ends followed by the checkpoint already escaped for the
    // checkpoint field (what `to_json` does now).
    let escaped_checkpoint = serde_json::to_vec(&checkpoint).unwrap();
    let text_then_escaped = || {
        let text = modeltrail::note::TlogProof {
            extra: None,
            index: 12345,
            proof: proof.clone(),
            checkpoint: checkpoint.clone(),
        }
        .encode();
        let mut out = Vec::with_capacity(2048);
        serde_json::to_writer(&mut out, std::hint::black_box(&text)).unwrap();
        out
    };
    let lines_then_escaped_checkpoint = || {
        let mut out = Vec::with_capacity(2048);
        out.push(b'"');
        out.extend_from_slice(
            modeltrail::note::TlogProof::lines_before_checkpoint(12345, &proof, "\\n").as_bytes(),
        );
        out.extend_from_slice(&std::hint::black_box(&escaped_checkpoint)[1..]);
        out
    };
    assert_eq!(
        text_then_escaped(),
        lines_then_escaped_checkpoint(),
        "the two ways agree"
    );
    let mut g = c.benchmark_group("tlog_proof_field");
    g.throughput(Throughput::Elements(1));
    g.bench_function("text_then_escaped", |b| b.iter(text_then_escaped));
    g.bench_function("lines_then_escaped_checkpoint", |b| {
        b.iter(lines_then_escaped_checkpoint)
    });
    g.finish();

    // An inclusion proof's answer (24 hashes, a 10 M-entry log's depth):
    // the wire type through `axum::Json`'s writer (serde_json into a
    // buffer of 128 bytes that grows), against the JSON written by hand.
    let serde_json_answer = || {
        let mut out = bytes::BytesMut::with_capacity(128);
        let body = wire::InclusionProof {
            index: 1234567,
            tree_size: 10040000,
            leaf_hash: wire::Hex32(p.leaf_hash),
            proof: wire::hexes(std::hint::black_box(&proof)),
        };
        serde_json::to_writer(bytes::BufMut::writer(&mut out), &body).unwrap();
        out.freeze()
    };
    let by_hand = || {
        wire::inclusion_proof_json(
            1234567,
            10040000,
            &p.leaf_hash,
            std::hint::black_box(&proof),
        )
    };
    assert_eq!(serde_json_answer()[..], by_hand()[..], "the two agree");
    let mut g = c.benchmark_group("proof_answer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_serde_json", |b| b.iter(serde_json_answer));
    g.bench_function("by_hand", |b| b.iter(by_hand));
    g.finish();
}

criterion_group!(benches, event_preparation, group_commit);
criterion_main!(benches);
