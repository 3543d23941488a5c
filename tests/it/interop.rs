//! Cross-checks against independent implementations: `rs_merkle` (roots and
//! inclusion paths, with an RFC 6962 hasher), Cloudflare's `signed_note`
//! (signatures, both directions) and `tlog_tiles` (checkpoints, proofs and
//! the served tiles, through its own tile reader).

use crate::common::*;
use modeltrail::note::{Checkpoint, KeyName, Note, SignerKey, VerifierKey};
use modeltrail::tree::{
    self, consistency_plan, inclusion_plan, leaf_hash, HashReader, NodeId, RightEdge, TreeError,
};
use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[derive(Clone)]
struct Rfc6962;

impl Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => tree::node_hash(left, r),
            // An unpaired node moves up unchanged: the RFC 6962 shape.
            None => *left,
        }
    }
}

struct Map(HashMap<NodeId, [u8; 32]>);
impl HashReader for Map {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<[u8; 32]>, TreeError> {
        Ok(ids.iter().map(|i| self.0[i]).collect())
    }
}

#[test]
fn roots_and_inclusion_paths_match_rs_merkle() {
    let leaves: Vec<[u8; 32]> = (0..130u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut edge = RightEdge::empty();
    let mut nodes = Vec::new();
    for n in 1..=leaves.len() {
        edge.push(leaves[n - 1], &mut nodes);
        let reference = MerkleTree::<Rfc6962>::from_leaves(&leaves[..n]);
        assert_eq!(Some(edge.root()), reference.root(), "root of {n}");
        let reader = Map(nodes.iter().copied().collect());
        for i in 0..n {
            let ours = inclusion_plan(i as u64, n as u64)
                .unwrap()
                .fetch(&reader)
                .unwrap();
            let theirs = reference.proof(&[i]);
            assert_eq!(ours, theirs.proof_hashes(), "path of {i} in {n}");
        }
    }
}

#[test]
fn our_signatures_verify_with_signed_note() {
    let k = SignerKey::generate(KeyName::new("log.example/interop").unwrap()).unwrap();
    let cp = Checkpoint::new("log.example/interop", 42, [5u8; 32]);
    let signed = cp.sign(&k).unwrap();

    let v = signed_note::StandardVerifier::new(&k.verifier().to_string()).unwrap();
    let note = signed_note::Note::from_bytes(signed.as_bytes()).unwrap();
    let list = signed_note::VerifierList::new(vec![Box::new(v)]);
    let (verified, _) = note.verify(&list).unwrap();
    assert_eq!(verified.len(), 1);
    let theirs = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
    assert_eq!(theirs.origin(), "log.example/interop");
    assert_eq!(theirs.size(), 42);
    assert_eq!(theirs.hash().0, [5u8; 32]);

    // Their signer accepts our secret key format and makes the same note.
    let their_signer = signed_note::StandardSigner::new(&k.encode_secret()).unwrap();
    let mut n = signed_note::Note::new(cp.to_text().as_bytes(), &[]).unwrap();
    n.add_sigs(&[&their_signer]).unwrap();
    assert_eq!(
        String::from_utf8(n.to_bytes()).unwrap(),
        signed,
        "Ed25519 is deterministic"
    );
}

#[test]
fn their_signatures_verify_with_ours() {
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, "witness.example/w1");
    let signer = signed_note::StandardSigner::new(&skey).unwrap();
    let text = "log.example/interop\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let mut n = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
    n.add_sigs(&[&signer]).unwrap();
    let ours = VerifierKey::parse(&vkey).unwrap();
    assert_eq!(ours.to_string(), vkey);
    let note = Note::parse(&n.to_bytes()).unwrap();
    assert_eq!(note.verify(std::slice::from_ref(&ours)).unwrap().len(), 1);
    assert_eq!(note.text(), text);
    let ours_key = SignerKey::parse(&skey).unwrap();
    assert_eq!(ours_key.verifier(), ours);
    // Tampered text fails with both.
    let bad = String::from_utf8(n.to_bytes())
        .unwrap()
        .replace("\n7\n", "\n8\n");
    assert!(Note::parse(bad.as_bytes())
        .unwrap()
        .verify(&[ours])
        .is_err());
}

#[test]
fn our_proofs_check_with_tlog_tiles() {
    let leaves: Vec<[u8; 32]> = (0..300u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut edge = RightEdge::empty();
    let mut nodes = Vec::new();
    let mut roots = vec![edge.root()];
    for l in &leaves {
        edge.push(*l, &mut nodes);
        roots.push(edge.root());
    }
    let reader = Map(nodes.into_iter().collect());
    let h = |x: [u8; 32]| tlog_tiles::Hash(x);
    for n in [1u64, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300] {
        for i in (0..n).step_by(7) {
            let p = inclusion_plan(i, n).unwrap().fetch(&reader).unwrap();
            let p: Vec<_> = p.into_iter().map(h).collect();
            tlog_tiles::check_record(&p, n, h(roots[n as usize]), i, h(leaves[i as usize]))
                .unwrap();
        }
        for m in (1..=n).step_by(5) {
            let p = consistency_plan(m, n).unwrap().fetch(&reader).unwrap();
            let p: Vec<_> = p.into_iter().map(h).collect();
            tlog_tiles::check_tree(&p, n, h(roots[n as usize]), m, h(roots[m as usize])).unwrap();
        }
    }
}

/// Tiles fetched from a running server, read back through tlog_tiles'
/// own `TileHashReader`, which authenticates every tile against the signed
/// root; its proofs must equal ours.
struct FetchedTiles(HashMap<(u8, u64, u32), Vec<u8>>);

impl tlog_tiles::TileReader for FetchedTiles {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        Ok(tiles
            .iter()
            .map(|t| self.0[&(t.level(), t.level_index(), t.width())].clone())
            .collect())
    }
    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_tiles_and_proofs_check_with_tlog_tiles() {
    let mut s = start().await;
    for n in 0..(256 * 2 + 40) {
        assert_eq!(s.post(&event(n)).await.0, 201);
    }
    let text = s.get("/checkpoint").await.text().await.unwrap();
    let (cp, _) = Checkpoint::open(text.as_bytes(), ORIGIN, &s.vkey).unwrap();
    let size = cp.size;
    assert_eq!(size, 552);

    // Every tile of this tree: levels 0 and 1.
    let mut tiles = HashMap::new();
    for level in 0u8..2 {
        let width_all = size >> (8 * level as u64);
        for index in 0..=(width_all / 256) {
            let w = (width_all - index * 256).min(256) as u32;
            if w == 0 {
                continue;
            }
            let path = modeltrail::tiles::TilePath {
                kind: modeltrail::tiles::TileKind::Hashes { level },
                index,
                width: w as u64,
            };
            let r = s.get(&format!("/tile/{}", path.encode())).await;
            assert_eq!(r.status(), 200, "{}", path.encode());
            tiles.insert((level, index, w), r.bytes().await.unwrap().to_vec());
        }
    }
    let fetched = FetchedTiles(tiles);
    let reader = tlog_tiles::TileHashReader::new(size, tlog_tiles::Hash(cp.root), &fetched);
    assert_eq!(tlog_tiles::tree_hash(size, &reader).unwrap().0, cp.root);
    for i in [0u64, 1, 255, 256, 300, 511, 512, 551] {
        let theirs = tlog_tiles::prove_record(size, i, &reader).unwrap();
        let (_, ours) = s
            .get_json(&format!("/v1/proof/inclusion?index={i}&tree_size={size}"))
            .await;
        let ours = hex_list(&ours["proof"]);
        assert_eq!(
            theirs.iter().map(|h| h.0).collect::<Vec<_>>(),
            ours,
            "inclusion {i}"
        );
    }
    for m in [1u64, 2, 100, 256, 300, 512, 551] {
        let theirs = tlog_tiles::prove_tree(size, m, &reader).unwrap();
        let (_, ours) = s
            .get_json(&format!(
                "/v1/proof/consistency?old_size={m}&new_size={size}"
            ))
            .await;
        let ours = hex_list(&ours["proof"]);
        assert_eq!(
            theirs.iter().map(|h| h.0).collect::<Vec<_>>(),
            ours,
            "consistency {m}"
        );
    }

    // The receipt's tlog-proof checks with their verifier too.
    let (_, r) = s.post(&event(9999)).await;
    let p = modeltrail::note::TlogProof::parse(r["tlog_proof"].as_str().unwrap()).unwrap();
    let note = signed_note::Note::from_bytes(p.checkpoint.as_bytes()).unwrap();
    let v = signed_note::StandardVerifier::new(&s.vkey.to_string()).unwrap();
    note.verify(&signed_note::VerifierList::new(vec![Box::new(v)]))
        .unwrap();
    let their_cp = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
    let leaf = leaf_hash(&serde_json::to_vec(&r["event"]).unwrap());
    let proof: Vec<_> = p.proof.iter().map(|x| tlog_tiles::Hash(*x)).collect();
    tlog_tiles::check_record(
        &proof,
        their_cp.size(),
        *their_cp.hash(),
        p.index,
        tlog_tiles::Hash(leaf),
    )
    .unwrap();
    s.stop().await;
}
