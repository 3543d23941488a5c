//! Property tests: proofs round-trip at random sizes well beyond the
//! exhaustive range, and every parser of untrusted bytes returns a value or
//! an error for arbitrary input, never a panic.

use modeltrail::note::{Checkpoint, KeyName, Note, SignerKey, TlogProof, VerifierKey};
use modeltrail::tree::{
    consistency_plan, inclusion_plan, leaf_hash, verify_consistency, verify_inclusion, Hash,
    HashReader, NodeId, RightEdge, TreeError,
};
use proptest::prelude::*;
use std::sync::OnceLock;

const N: u64 = 1 << 16;

/// A tree of N leaves with every complete node, and the root at every size.
struct Tree {
    levels: Vec<Vec<Hash>>,
    roots: Vec<Hash>,
}

impl HashReader for Tree {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        ids.iter()
            .map(|id| {
                self.levels
                    .get(id.level as usize)
                    .and_then(|l| l.get(id.index as usize))
                    .copied()
                    .ok_or(TreeError::MissingNode {
                        level: id.level,
                        index: id.index,
                    })
            })
            .collect()
    }
}

fn tree() -> &'static Tree {
    static T: OnceLock<Tree> = OnceLock::new();
    T.get_or_init(|| {
        let mut edge = RightEdge::empty();
        let mut levels = vec![Vec::new(); 20];
        let mut roots = vec![edge.root()];
        let mut nodes = Vec::new();
        for i in 0..N {
            nodes.clear();
            edge.push(leaf_hash(&i.to_le_bytes()), &mut nodes);
            for (id, h) in &nodes {
                levels[id.level as usize].push(*h);
            }
            roots.push(edge.root());
        }
        Tree { levels, roots }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn inclusion_round_trips(size in 1..=N, seed in any::<u64>()) {
        let t = tree();
        let index = seed % size;
        let proof = inclusion_plan(index, size).unwrap().fetch(t).unwrap();
        let leaf = leaf_hash(&index.to_le_bytes());
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &t.roots[size as usize]).is_ok());
        prop_assert!(verify_inclusion(index, size, &leaf_hash(b"x"), &proof, &t.roots[size as usize]).is_err());
    }

    #[test]
    fn consistency_round_trips(new in 1..=N, seed in any::<u64>()) {
        let t = tree();
        let old = 1 + seed % new;
        let proof = consistency_plan(old, new).unwrap().fetch(t).unwrap();
        let (r1, r2) = (t.roots[old as usize], t.roots[new as usize]);
        prop_assert!(verify_consistency(old, new, &proof, &r1, &r2).is_ok());
        if old < new {
            prop_assert!(verify_consistency(old, new, &proof, &r2, &r1).is_err());
        }
    }

    #[test]
    fn verifiers_never_panic(index in any::<u64>(), size in any::<u64>(), old in any::<u64>(),
                             proof in prop::collection::vec(any::<[u8; 32]>(), 0..70)) {
        let h = [7u8; 32];
        let _ = verify_inclusion(index, size, &h, &proof, &h);
        let _ = verify_consistency(old, size, &proof, &h, &h);
        let _ = inclusion_plan(index, size);
        let _ = consistency_plan(old, size);
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), text in "\\PC{0,300}") {
        let _ = Note::parse(&bytes);
        let _ = Note::parse(text.as_bytes());
        let _ = Checkpoint::parse_text(&text);
        let _ = TlogProof::parse(&text);
        let _ = VerifierKey::parse(&text);
        let _ = SignerKey::parse(&text);
        let _ = KeyName::new(&text);
        let _ = modeltrail::tiles::parse(&text);
        let _ = modeltrail::audit::event::prepare(&bytes);
        let _ = modeltrail::audit::event::prepare(text.as_bytes());
    }

    #[test]
    fn mutated_signed_notes_fail_closed(pos in any::<usize>(), bit in 0u8..8) {
        let k = SignerKey::from_seed(KeyName::new("log.example/p").unwrap(), [1u8; 32]);
        let signed = Checkpoint::new("log.example/p", 99, [3u8; 32]).sign(&k).unwrap().into_bytes();
        let mut bad = signed.clone();
        let i = pos % bad.len();
        bad[i] ^= 1 << bit;
        // Any flipped bit breaks the UTF-8, the note syntax, the canonical
        // base64, the key name or id, or the signature.
        prop_assert!(Checkpoint::open(&bad, "log.example/p", &k.verifier()).is_err());
    }
}
