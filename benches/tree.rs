//! Criterion benches for the pure tree code: hashing, proof planning and
//! assembly, verification. A plain SHA-256 of the same bytes is the baseline.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use modeltrail::tree::{
    consistency_plan, inclusion_plan, leaf_hash, node_hash, verify_consistency, verify_inclusion,
    Hash, HashReader, NodeId, RightEdge, TreeError,
};
use sha2::{Digest, Sha256};
use std::hint::black_box;

/// Every complete node of a tree, by level, as the stores keep them.
struct Levels(Vec<Vec<Hash>>);

impl HashReader for Levels {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        Ok(ids
            .iter()
            .map(|id| self.0[id.level as usize][id.index as usize])
            .collect())
    }
}

fn build(n: u64) -> (Levels, Vec<Hash>, Hash) {
    let mut edge = RightEdge::empty();
    let mut nodes = Vec::new();
    let mut levels: Vec<Vec<Hash>> = vec![Vec::new(); 64];
    let mut leaves = Vec::with_capacity(n as usize);
    for i in 0..n {
        let l = leaf_hash(&i.to_be_bytes());
        leaves.push(l);
        nodes.clear();
        edge.push(l, &mut nodes);
        for (id, h) in &nodes {
            levels[id.level as usize].push(*h);
        }
    }
    (Levels(levels), leaves, edge.root())
}

fn hashing(c: &mut Criterion) {
    let entry = vec![b'x'; 300];
    let mut g = c.benchmark_group("hashing");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_sha256_300B", |b| {
        b.iter(|| Sha256::digest(black_box(&entry)))
    });
    g.bench_function("leaf_hash_300B", |b| {
        b.iter(|| leaf_hash(black_box(&entry)))
    });
    let (l, r) = ([1u8; 32], [2u8; 32]);
    g.bench_function("node_hash", |b| {
        b.iter(|| node_hash(black_box(&l), black_box(&r)))
    });
    g.bench_function("right_edge_push", |b| {
        let mut edge = RightEdge::empty();
        let mut nodes = Vec::new();
        b.iter(|| {
            nodes.clear();
            edge.push(black_box(l), &mut nodes);
        })
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let n = 1u64 << 20;
    let (reader, leaves, root) = build(n);
    let mut g = c.benchmark_group("proofs_1M");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("inclusion_plan_fetch", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            inclusion_plan(i, n).unwrap().fetch(&reader).unwrap()
        })
    });
    let proof = inclusion_plan(12345, n).unwrap().fetch(&reader).unwrap();
    g.bench_function("inclusion_verify", |b| {
        b.iter(|| verify_inclusion(12345, n, &leaves[12345], black_box(&proof), &root).unwrap())
    });
    let old = 777_777u64;
    let old_root = modeltrail::tree::root(old, &reader).unwrap();
    let cproof = consistency_plan(old, n).unwrap().fetch(&reader).unwrap();
    g.bench_function("consistency_plan_fetch", |b| {
        b.iter(|| {
            consistency_plan(black_box(old), n)
                .unwrap()
                .fetch(&reader)
                .unwrap()
        })
    });
    g.bench_function("consistency_verify", |b| {
        b.iter(|| verify_consistency(old, n, black_box(&cproof), &old_root, &root).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("root");
    for size in [1000u64, 1 << 20] {
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &s| {
            b.iter(|| modeltrail::tree::root(s, &reader).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, hashing, proofs);
criterion_main!(benches);
