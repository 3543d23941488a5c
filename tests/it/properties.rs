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

/// A JSON value as text, with numbers in every spelling a client may use.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        (0u32..40, any::<bool>())
            .prop_map(|(e, neg)| format!("{}1e{e}", if neg { "-" } else { "" })),
        prop_oneof![
            Just("true"),
            Just("false"),
            Just("null"),
            Just("-0.0"),
            Just("0.0")
        ]
        .prop_map(String::from),
        "\\PC{0,24}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(|kv| {
                let mut seen = std::collections::HashSet::new();
                let fields: Vec<String> = kv
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the server accepts is stored as bytes that every verifier
    /// accepts as they are (the full-log audit, receipts, traces) and that
    /// the derived state and `reindex` can read.
    #[test]
    fn every_accepted_event_passes_every_verifier_and_reindex(
        metas in prop::collection::vec(json_value(), 1..24)
    ) {
        use modeltrail::audit::event::prepare;
        use modeltrail::log::{Log, LogConfig};
        use modeltrail::store::{MemStore, Store};
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemStore::new());
        let key = SignerKey::from_seed(KeyName::new("prop.example/log").unwrap(), [4u8; 32]);
        let log = Log::open(
            store.clone(),
            key,
            LogConfig::new("prop.example/log"),
            std::sync::Arc::new(modeltrail::metrics::Metrics::default()),
        )
        .unwrap();
        let mut accepted = 0;
        for (i, m) in metas.iter().enumerate() {
            let action = ["predict", "register", "attest", "grant_access"][i % 4];
            let body = format!(
                r#"{{"action":"{action}","actor":{{"type":"service","id":"s"}},"timestamp":"2025-05-05T14:03:00Z","subject":{{"type":"model_version","id":"m:v{i}"}},"related":[{{"type":"run","id":"r"}}],"metadata":{{"m":{m},"token_id":"t{i}","roles":["submitter"]}}}}"#
            );
            let Ok(p) = prepare(body.as_bytes()) else { continue };
            let canonical = p.canonical.clone();
            let r = runtime().block_on(log.append(p)).unwrap();
            accepted += 1;
            // The auditor's check: canonical JSON of an event, whose leaf is
            // the stored leaf.
            let stored = log.entry(r.index).unwrap();
            prop_assert_eq!(&stored, &canonical);
            let (again, leaf) = modeltrail::verify::event_leaf(&stored)
                .map_err(|e| TestCaseError::fail(format!("{m}: {e}")))?;
            prop_assert_eq!(&again, &stored);
            prop_assert_eq!(leaf, r.leaf_hash);
            modeltrail::audit::Event::from_canonical(&stored)
                .map_err(|e| TestCaseError::fail(format!("{m}: {e}")))?;
        }
        let size = log.head().size;
        prop_assert_eq!(size, accepted);
        let r = modeltrail::state::reindex(store.as_ref())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r.rebuilt.indexed, size);
        prop_assert_eq!(r.lineage_repaired, 0);
        runtime().block_on(log.shutdown());
    }
}
