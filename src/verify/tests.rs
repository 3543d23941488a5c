use super::*;
use crate::note::{KeyName, SignerKey};
use crate::tree::RightEdge;

const ORIGIN: &str = "log.example/audit";

fn log_key() -> SignerKey {
    SignerKey::from_seed(KeyName::new(ORIGIN).unwrap(), [1u8; 32])
}

fn witness(name: &str, seed: u8) -> SignerKey {
    SignerKey::with_kind(
        KeyName::new(name).unwrap(),
        [seed; 32],
        KeyKind::CosignatureV1,
    )
}

/// A small log of canonical events, its checkpoint and a receipt for `index`.
fn setup(index: usize) -> (Vec<Vec<u8>>, String, TlogProof) {
    let events: Vec<Vec<u8>> = (0..7)
        .map(|i| {
            let v = serde_json::json!({"action": "approve", "n": i});
            event::canonicalize(&v)
        })
        .collect();
    let mut edge = RightEdge::empty();
    let mut nodes = Vec::new();
    for e in &events {
        edge.push(tree::leaf_hash(e), &mut nodes);
    }
    let signed = Checkpoint::new(ORIGIN, 7, edge.root())
        .sign(&log_key())
        .unwrap();
    struct R(std::collections::HashMap<tree::NodeId, Hash>);
    impl tree::HashReader for R {
        fn read_hashes(&self, ids: &[tree::NodeId]) -> Result<Vec<Hash>, tree::TreeError> {
            Ok(ids.iter().map(|i| self.0[i]).collect())
        }
    }
    let proof = tree::inclusion_plan(index as u64, 7)
        .unwrap()
        .fetch(&R(nodes.into_iter().collect()))
        .unwrap();
    let p = TlogProof {
        extra: None,
        index: index as u64,
        proof,
        checkpoint: signed.clone(),
    };
    (events, signed, p)
}

#[test]
fn receipt_verifies_offline_whatever_the_event_formatting() {
    let (events, _, p) = setup(3);
    let policy = Policy::log_only(log_key().verifier());
    let pretty = serde_json::to_vec_pretty(
        &serde_json::from_slice::<serde_json::Value>(&events[3]).unwrap(),
    )
    .unwrap();
    let r = receipt(&policy, &pretty, p.encode().as_bytes()).unwrap();
    assert_eq!(r.index, 3);
    assert_eq!(r.checkpoint.checkpoint.size, 7);
}

#[test]
fn receipt_failures_are_classified() {
    let (events, _, p) = setup(3);
    let policy = Policy::log_only(log_key().verifier());
    let text = p.encode();
    let invalid = |e: &[u8], t: &str| match receipt(&policy, e, t.as_bytes()) {
        Err(Failure::Invalid(_)) => {}
        other => panic!("expected invalid, got {other:?}"),
    };
    let malformed = |e: &[u8], t: &str| match receipt(&policy, e, t.as_bytes()) {
        Err(Failure::Malformed(_)) => {}
        other => panic!("expected malformed, got {other:?}"),
    };
    // Another event, another index, a flipped proof hash, a missing or extra
    // hash: the receipt does not prove it.
    invalid(&events[4], &text);
    invalid(
        &events[3],
        &TlogProof {
            index: 4,
            ..p.clone()
        }
        .encode(),
    );
    let mut flipped = p.clone();
    flipped.proof[0][0] ^= 1;
    invalid(&events[3], &flipped.encode());
    let mut short = p.clone();
    short.proof.pop();
    invalid(&events[3], &short.encode());
    let mut long = p.clone();
    long.proof.push([0u8; 32]);
    invalid(&events[3], &long.encode());
    // Signed by a key with the right name but the wrong key material.
    let impostor = SignerKey::from_seed(KeyName::new(ORIGIN).unwrap(), [9u8; 32]);
    let cp = Checkpoint::parse_text(Note::parse(p.checkpoint.as_bytes()).unwrap().text()).unwrap();
    let forged = TlogProof {
        checkpoint: cp.sign(&impostor).unwrap(),
        ..p.clone()
    };
    invalid(&events[3], &forged.encode());
    // Unreadable inputs.
    malformed(&events[3], &text[..text.len() / 2]);
    malformed(&events[3], &text.replacen("index 3", "index 03", 1));
    malformed(&events[3], &text.replace('\n', "\r\n"));
    malformed(&events[3], &text.replacen("\n\n", "\n\n\n", 1));
    malformed(b"{not json", &text);
    malformed(b"[1, 2]", &text);
    malformed(&events[3], "");
}

#[test]
fn witness_policy_counts_valid_cosignatures() {
    let (_, signed, _) = setup(0);
    let (w1, w2, w3) = (
        witness("w1.example", 11),
        witness("w2.example", 12),
        witness("w3.example", 13),
    );
    let mut note = Note::parse(signed.as_bytes()).unwrap();
    let text = note.text().to_string();
    note.add_signature(w1.cosign(&text, 1_700_000_000).unwrap());
    note.add_signature(w2.cosign(&text, 1_700_000_001).unwrap());
    let cosigned = note.encode();
    let policy = |min| Policy {
        log_key: log_key().verifier(),
        witnesses: vec![w1.verifier(), w2.verifier(), w3.verifier()],
        min_witnesses: min,
        max_cosignature_age: None,
    };
    let v = policy(2).open_checkpoint(cosigned.as_bytes()).unwrap();
    assert_eq!(v.witnesses, vec!["w1.example", "w2.example"]);
    assert!(matches!(
        policy(3).open_checkpoint(cosigned.as_bytes()),
        Err(Failure::Invalid(_))
    ));
    assert!(matches!(
        policy(4).open_checkpoint(cosigned.as_bytes()),
        Err(Failure::Malformed(_))
    ));
    // A cosignature over another checkpoint does not count; it rejects.
    let other = Checkpoint::new(ORIGIN, 8, [0u8; 32]).to_text();
    let mut bad = Note::parse(signed.as_bytes()).unwrap();
    bad.add_signature(w3.cosign(&other, 1_700_000_000).unwrap());
    assert!(matches!(
        policy(0).open_checkpoint(bad.encode().as_bytes()),
        Err(Failure::Invalid(_))
    ));
    // Witnesses alone are not the log.
    let without_log: String = cosigned
        .split_inclusive('\n')
        .filter(|l| !l.starts_with(&format!("\u{2014} {ORIGIN} ")))
        .collect();
    assert!(matches!(
        policy(0).open_checkpoint(without_log.as_bytes()),
        Err(Failure::Invalid(_))
    ));
}

#[test]
fn cosigner_keys_round_trip_and_are_kept_apart() {
    let w = witness("w1.example", 11);
    assert_eq!(
        SignerKey::parse(&w.encode_secret()).unwrap().verifier(),
        w.verifier()
    );
    let v = VerifierKey::parse(&w.verifier().to_string()).unwrap();
    assert_eq!(v.kind(), KeyKind::CosignatureV1);
    // The same key material as a log key has another id.
    let as_log = SignerKey::from_seed(KeyName::new("w1.example").unwrap(), [11u8; 32]);
    assert_ne!(as_log.verifier().key_id(), w.verifier().key_id());
    assert!(w.cosign("x\n", i64::MAX as u64 + 1).is_err());
    assert!(as_log.cosign("x\n", 1).is_err());
    assert!(Note::sign("x\n", &w).is_err());
    // A log key cannot stand as a witness in a policy, nor the reverse.
    let p = Policy {
        log_key: log_key().verifier(),
        witnesses: vec![as_log.verifier()],
        min_witnesses: 0,
        max_cosignature_age: None,
    };
    assert!(matches!(p.check(), Err(Failure::Malformed(_))));
}

#[test]
fn consistency_rules() {
    let a = Checkpoint::new(ORIGIN, 5, [1u8; 32]);
    let b = Checkpoint::new(ORIGIN, 5, [2u8; 32]);
    let smaller = Checkpoint::new(ORIGIN, 4, [1u8; 32]);
    assert!(consistency(&a, &a, &[]).is_ok());
    assert!(matches!(consistency(&a, &b, &[]), Err(Failure::Invalid(m)) if m.contains("forked")));
    assert!(
        matches!(consistency(&a, &smaller, &[]), Err(Failure::Invalid(m)) if m.contains("shrank"))
    );
    let empty = Checkpoint::new(ORIGIN, 0, tree::empty_root());
    assert!(consistency(&empty, &a, &[]).is_ok());
    assert!(parse_hex_hashes(&["AB".repeat(32)]).is_err());
    assert_eq!(
        parse_hex_hashes(&["ab".repeat(32)]).unwrap(),
        vec![[0xab; 32]]
    );
}

#[test]
fn a_witness_counts_once_and_only_while_fresh() {
    let (_, signed, _) = setup(0);
    let w1 = witness("w1.example", 11);
    let mut note = Note::parse(signed.as_bytes()).unwrap();
    let text = note.text().to_string();
    note.add_signature(w1.cosign(&text, 1_700_000_000).unwrap());
    let cosigned = note.encode();
    // The same witness key listed twice is one witness: a policy that
    // needs two cannot be met by it.
    let twice = Policy {
        log_key: log_key().verifier(),
        witnesses: vec![w1.verifier(), w1.verifier()],
        min_witnesses: 2,
        max_cosignature_age: None,
    };
    assert!(matches!(
        twice.open_checkpoint(cosigned.as_bytes()),
        Err(Failure::Malformed(_))
    ));
    let once = Policy {
        min_witnesses: 1,
        ..twice.clone()
    };
    let v = once.open_checkpoint(cosigned.as_bytes()).unwrap();
    assert_eq!(v.witnesses, vec!["w1.example"]);
    // With a maximum age, an old cosignature no longer counts, nor one
    // from too far in the future.
    let aged = Policy {
        max_cosignature_age: Some(3600),
        ..once.clone()
    };
    assert!(aged
        .open_checkpoint_at(cosigned.as_bytes(), 1_700_000_000 + 3600)
        .is_ok());
    assert!(matches!(
        aged.open_checkpoint_at(cosigned.as_bytes(), 1_700_000_000 + 3601),
        Err(Failure::Invalid(_))
    ));
    assert!(matches!(
        aged.open_checkpoint_at(cosigned.as_bytes(), 1_700_000_000 - MAX_CLOCK_SKEW - 1),
        Err(Failure::Invalid(_))
    ));
}
