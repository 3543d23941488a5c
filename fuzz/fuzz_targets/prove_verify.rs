//! Prove, then verify: proofs from the planner verify for any index and
//! sizes, and a proof with any one bit flipped does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modeltrail::tree::{self, Hash, HashReader, NodeId, RightEdge, TreeError};
use std::collections::HashMap;
use std::sync::OnceLock;

const N: u64 = 5000;

struct Tree(HashMap<NodeId, Hash>, Vec<Hash>, Vec<Hash>);

impl HashReader for Tree {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        Ok(ids.iter().map(|i| self.0[i]).collect())
    }
}

fn tree() -> &'static Tree {
    static T: OnceLock<Tree> = OnceLock::new();
    T.get_or_init(|| {
        let (mut edge, mut nodes, mut leaves, mut roots) = (RightEdge::empty(), Vec::new(), Vec::new(), Vec::new());
        roots.push(edge.root());
        for i in 0..N {
            let l = tree::leaf_hash(&i.to_le_bytes());
            edge.push(l, &mut nodes);
            leaves.push(l);
            roots.push(edge.root());
        }
        Tree(nodes.into_iter().collect(), leaves, roots)
    })
}

fuzz_target!(|data: (u16, u16, u16)| {
    let t = tree();
    let size = 1 + data.0 as u64 % N;
    let index = data.1 as u64 % size;
    let flip = data.2 as usize;
    let p = tree::inclusion_plan(index, size).unwrap().fetch(t).unwrap();
    let root = t.2[size as usize];
    tree::verify_inclusion(index, size, &t.1[index as usize], &p, &root).unwrap();
    if !p.is_empty() {
        let mut bad = p.clone();
        bad[flip % p.len()][(flip / 8) % 32] ^= 1 << (flip % 8);
        assert!(tree::verify_inclusion(index, size, &t.1[index as usize], &bad, &root).is_err());
    }
    let old = 1 + index % size;
    let c = tree::consistency_plan(old, size).unwrap().fetch(t).unwrap();
    tree::verify_consistency(old, size, &c, &t.2[old as usize], &root).unwrap();
});
