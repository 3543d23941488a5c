//! Criterion bench for snapshots of the derived state: a registry of N
//! model versions (each registered, approved, attested, promoted) on
//! RocksDB, then 100 more registry events (approvals of 100 versions),
//! then one snapshot, timed alone. Compared:
//! the snapshot written whole (every record, as before snapshots were
//! incremental) and written incrementally (the records those events
//! changed), next to the baseline of one raw RocksDB synced put of one
//! record's size.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use modeltrail::audit::event::prepare;
use modeltrail::audit::Event;
use modeltrail::state::{Changes, Snapshot};
use modeltrail::store::{RocksOptions, RocksStore};

fn event(action: &str, actor: (&str, &str), version: &str, metadata: serde_json::Value) -> Event {
    let v = serde_json::json!({
        "action": action,
        "actor": {"type": actor.0, "id": actor.1},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": version},
        "metadata": metadata,
    });
    prepare(v.to_string().as_bytes()).unwrap().event
}

/// The events of one version's life.
fn life(version: &str) -> Vec<Event> {
    vec![
        event(
            "register",
            ("service", "ci"),
            version,
            serde_json::json!({}),
        ),
        event("approve", ("user", "alice"), version, serde_json::json!({})),
        event(
            "attest",
            ("service", "ci"),
            version,
            serde_json::json!({"kind": "tests", "passed": true}),
        ),
        event(
            "promote",
            ("user", "bob"),
            version,
            serde_json::json!({"to_stage": "Staging"}),
        ),
    ]
}

fn snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20);
    for versions in [1_000usize, 10_000, 50_000] {
        let mut snap = Snapshot {
            changes: Changes::all(),
            ..Snapshot::default()
        };
        let mut index = 0u64;
        for v in 0..versions {
            for ev in life(&format!("model{}:v{}", v % 100, v / 100)) {
                snap.apply(index, &ev);
                index += 1;
            }
        }
        snap.indexed = index;
        snap.changes = Changes::default();
        // Each variant on its own store holding the snapshot so far.
        let stored = || {
            let dir = tempfile::tempdir().unwrap();
            let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
            snap.save(&store).unwrap();
            (dir, store)
        };
        // The next 100 registry events: approvals of 100 versions.
        let approvals: Vec<Event> = (0..100)
            .map(|v| {
                event(
                    "approve",
                    ("user", "carol"),
                    &format!("model{}:v{}", v % 100, v / 100),
                    serde_json::json!({}),
                )
            })
            .collect();
        let record = serde_json::to_vec(&snap.registry.versions["model0:v0"]).unwrap();

        let mut next = 0u64;
        g.bench_with_input(
            BenchmarkId::new("raw_rocksdb_synced_put", versions),
            &versions,
            |b, _| {
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                let raw = tempfile::tempdir().unwrap();
                let db = rocksdb::DB::open_default(raw.path()).unwrap();
                b.iter(|| {
                    next += 1;
                    db.put_opt(next.to_be_bytes(), &record, &wo).unwrap();
                })
            },
        );
        // Each iteration starts from the same state with the 100 approvals
        // folded in (a clone, not timed) and times the snapshot alone.
        let next_state = || {
            let mut s = snap.clone();
            for ev in &approvals {
                s.apply(index, ev);
            }
            s
        };
        let (_whole_dir, store) = stored();
        g.bench_with_input(BenchmarkId::new("whole", versions), &versions, |b, _| {
            b.iter_batched(
                next_state,
                // The state is returned, so that it is dropped untimed.
                |s| {
                    s.save(&store).unwrap();
                    s
                },
                criterion::BatchSize::PerIteration,
            )
        });
        let (_incremental_dir, store) = stored();
        g.bench_with_input(
            BenchmarkId::new("incremental", versions),
            &versions,
            |b, _| {
                b.iter_batched(
                    next_state,
                    |mut s| {
                        assert_eq!(s.save_changes(&store).unwrap().records(), 100);
                        s
                    },
                    criterion::BatchSize::PerIteration,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
