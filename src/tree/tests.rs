//! Every tree size 1..=300, every index and every pair of sizes, checked
//! against a naive recursive transcription of RFC 6962 §2.1.

use super::*;
use std::collections::HashMap;

const MAX: u64 = 300;

/// The RFC's recursive definitions, memoized on the range (MTH of a range
/// does not depend on the tree it sits in).
struct Reference {
    leaves: Vec<Hash>,
    memo: HashMap<(u64, u64), Hash>,
}

impl Reference {
    fn new(n: u64) -> Self {
        let leaves = (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect();
        Reference {
            leaves,
            memo: HashMap::new(),
        }
    }

    fn k(n: u64) -> u64 {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn mth(&mut self, lo: u64, hi: u64) -> Hash {
        if hi == lo {
            return empty_root();
        }
        if hi - lo == 1 {
            return self.leaves[lo as usize];
        }
        if let Some(h) = self.memo.get(&(lo, hi)) {
            return *h;
        }
        let k = Self::k(hi - lo);
        let l = self.mth(lo, lo + k);
        let r = self.mth(lo + k, hi);
        let h = node_hash(&l, &r);
        self.memo.insert((lo, hi), h);
        h
    }

    /// PATH(m, D[lo:hi]), m relative to lo.
    fn path(&mut self, m: u64, lo: u64, hi: u64) -> Vec<Hash> {
        let n = hi - lo;
        if n == 1 {
            return vec![];
        }
        let k = Self::k(n);
        if m < k {
            let mut p = self.path(m, lo, lo + k);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.path(m - k, lo + k, hi);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    /// SUBPROOF(m, D[lo:hi], b), m relative to lo.
    fn subproof(&mut self, m: u64, lo: u64, hi: u64, b: bool) -> Vec<Hash> {
        let n = hi - lo;
        if m == n {
            return if b { vec![] } else { vec![self.mth(lo, hi)] };
        }
        let k = Self::k(n);
        if m <= k {
            let mut p = self.subproof(m, lo, lo + k, b);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.subproof(m - k, lo + k, hi, false);
            p.push(self.mth(lo, lo + k));
            p
        }
    }
}

/// Every complete node of a tree, built with `RightEdge` as the sequencer does.
struct MapReader(HashMap<NodeId, Hash>);

impl HashReader for MapReader {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        ids.iter()
            .map(|id| {
                self.0.get(id).copied().ok_or(TreeError::MissingNode {
                    level: id.level,
                    index: id.index,
                })
            })
            .collect()
    }
}

fn build(n: u64) -> (Reference, MapReader, Vec<Hash>) {
    let reference = Reference::new(n);
    let mut edge = RightEdge::empty();
    let mut nodes = Vec::new();
    let mut roots = vec![edge.root()];
    for leaf in &reference.leaves {
        edge.push(*leaf, &mut nodes);
        roots.push(edge.root());
    }
    (reference, MapReader(nodes.into_iter().collect()), roots)
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn roots_match_reference_for_every_size() {
    let (mut reference, reader, roots) = build(MAX);
    for n in 0..=MAX {
        let want = reference.mth(0, n);
        assert_eq!(roots[n as usize], want, "right edge root at size {n}");
        assert_eq!(root(n, &reader).unwrap(), want, "stored root at size {n}");
    }
}

#[test]
fn right_edge_reloads_from_stored_nodes() {
    let (_, reader, roots) = build(MAX);
    for n in 0..=MAX {
        let edge = RightEdge::load(n, &reader).unwrap();
        assert_eq!(edge.size(), n);
        assert_eq!(edge.root(), roots[n as usize]);
        assert_eq!(edge.nodes().len(), n.count_ones() as usize);
    }
}

#[test]
fn inclusion_proofs_match_reference_and_verify() {
    let (mut reference, reader, roots) = build(MAX);
    for n in 1..=MAX {
        for i in 0..n {
            let want = reference.path(i, 0, n);
            let got = inclusion_plan(i, n).unwrap().fetch(&reader).unwrap();
            assert_eq!(got, want, "inclusion proof for {i} in {n}");
            let leaf = reference.leaves[i as usize];
            let root = roots[n as usize];
            verify_inclusion(i, n, &leaf, &got, &root).unwrap();

            // Wrong leaf, wrong index, wrong size, mutated proofs: all fail.
            let other = leaf_hash(b"not in the tree");
            assert!(verify_inclusion(i, n, &other, &got, &root).is_err());
            if i + 1 < n {
                assert!(verify_inclusion(i + 1, n, &leaf, &got, &root).is_err());
            }
            // The same proof does not bind the leaf to the next tree's root.
            if n < MAX {
                assert!(verify_inclusion(i, n + 1, &leaf, &got, &roots[n as usize + 1]).is_err());
            }
            for j in 0..got.len() {
                let mut bad = got.clone();
                bad[j][j % 32] ^= 1;
                assert!(verify_inclusion(i, n, &leaf, &bad, &root).is_err());
            }
            let mut longer = got.clone();
            longer.push(root);
            assert!(verify_inclusion(i, n, &leaf, &longer, &root).is_err());
            if !got.is_empty() {
                assert!(verify_inclusion(i, n, &leaf, &got[1..], &root).is_err());
            }
        }
    }
}

#[test]
fn consistency_proofs_match_reference_and_verify() {
    let (mut reference, reader, roots) = build(MAX);
    for n in 1..=MAX {
        for m in 1..=n {
            let want = reference.subproof(m, 0, n, true);
            let got = consistency_plan(m, n).unwrap().fetch(&reader).unwrap();
            assert_eq!(got, want, "consistency proof {m} -> {n}");
            let (r1, r2) = (roots[m as usize], roots[n as usize]);
            verify_consistency(m, n, &got, &r1, &r2).unwrap();

            for j in 0..got.len() {
                let mut bad = got.clone();
                bad[j][31 - j % 32] ^= 0x80;
                assert!(verify_consistency(m, n, &bad, &r1, &r2).is_err());
            }
            if !got.is_empty() {
                assert!(verify_consistency(m, n, &got[..got.len() - 1], &r1, &r2).is_err());
                assert!(verify_consistency(m, n, &got, &r2, &r1).is_err());
            }
            let mut longer = got.clone();
            longer.push(r1);
            assert!(verify_consistency(m, n, &longer, &r1, &r2).is_err());
            if m > 1 {
                assert!(verify_consistency(m - 1, n, &got, &r1, &r2).is_err());
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    assert_eq!(
        inclusion_plan(0, 0),
        Err(TreeError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert!(inclusion_plan(5, 5).is_err());
    assert!(inclusion_plan(u64::MAX, u64::MAX).is_err());
    assert!(consistency_plan(0, 5).is_err());
    assert!(consistency_plan(6, 5).is_err());
    assert!(consistency_plan(5, 5).unwrap().is_empty());
    let h = empty_root();
    assert!(verify_inclusion(0, 0, &h, &[], &h).is_err());
    assert!(verify_inclusion(u64::MAX, u64::MAX, &h, &[], &h).is_err());
    assert!(verify_consistency(0, 0, &[], &h, &h).is_err());
    assert!(verify_consistency(0, 1, &[], &h, &h).is_err());
    assert!(verify_consistency(2, 1, &[], &h, &h).is_err());
    // Sizes above 2^63: once an overflowing shift in the length check.
    assert!(verify_inclusion(1 << 63, u64::MAX, &h, &[], &h).is_err());
    assert!(verify_inclusion(0, u64::MAX, &h, &[h; 64], &h).is_err());
    assert!(verify_consistency(1 << 63, u64::MAX, &[h; 3], &h, &h).is_err());
    assert!(verify_consistency(1, u64::MAX, &[h; 64], &h, &h).is_err());
    // Huge trees plan fine: at most 64 levels.
    let plan = inclusion_plan(u64::MAX - 1, u64::MAX).unwrap();
    assert_eq!(plan.len(), 63);
    assert_eq!(inclusion_plan(0, u64::MAX).unwrap().len(), 64);
    let plan = consistency_plan(u64::MAX / 3, u64::MAX).unwrap();
    assert!(plan.len() <= 128);
}

#[test]
fn missing_nodes_are_reported() {
    let (_, reader, _) = build(10);
    let err = inclusion_plan(3, 20).unwrap().fetch(&reader).unwrap_err();
    assert!(matches!(err, TreeError::MissingNode { .. }));
}

/// A reader that counts the nodes it is asked for.
struct Counting<'a>(&'a MapReader, std::cell::Cell<usize>);

impl HashReader for Counting<'_> {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        self.1.set(self.1.get() + ids.len());
        self.0.read_hashes(ids)
    }
}

#[test]
fn proofs_with_the_edge_folds_are_the_same_and_fold_nothing() {
    let (mut reference, reader, roots) = build(MAX);
    let mut edge = RightEdge::empty();
    let mut sink = Vec::new();
    let mut before = EdgeFolds::of(&edge);
    assert_eq!(before.root(), empty_root());
    for n in 1..=MAX {
        edge.push(reference.leaves[n as usize - 1], &mut sink);
        let folds = EdgeFolds::of(&edge);
        assert_eq!(folds.size(), n);
        assert_eq!(folds.root(), roots[n as usize], "root at {n}");
        let counting = Counting(&reader, std::cell::Cell::new(0));
        let mut plans: Vec<_> = (0..n)
            .map(|i| (inclusion_plan(i, n).unwrap(), reference.path(i, 0, n)))
            .collect();
        for m in 1..=n {
            plans.push((
                consistency_plan(m, n).unwrap(),
                reference.subproof(m, 0, n, true),
            ));
        }
        for (plan, want) in plans {
            counting.1.set(0);
            assert_eq!(plan.fetch_at(&counting, &folds).unwrap(), want, "at {n}");
            // Every element that is a fold of several nodes (they all end
            // at the edge) comes from the folds; each other one is at most
            // one stored node.
            for &(lo, hi) in &plan.ranges {
                if (hi - lo).count_ones() > 1 {
                    assert_eq!(hi, n);
                    assert!(folds.get(lo, hi).is_some(), "{lo}..{hi} at {n}");
                }
            }
            let read = plan
                .ranges
                .iter()
                .filter(|r| folds.get(r.0, r.1).is_none())
                .count();
            assert_eq!(counting.1.get(), read, "{plan:?} at {n}");
            assert_eq!(plan.node_ids_at(&folds).len(), read);
            // The folds of another size, or none, are not used.
            assert_eq!(plan.fetch_at(&reader, &before).unwrap(), want);
            assert_eq!(plan.fetch_at(&reader, &EdgeFolds::none()).unwrap(), want);
        }
        before = folds;
    }
}
