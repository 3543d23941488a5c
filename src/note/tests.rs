use super::*;

const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

fn key(name: &str) -> SignerKey {
    SignerKey::from_seed(KeyName::new(name).unwrap(), [7u8; 32])
}

#[test]
fn spec_example_verifies() {
    let vkey = VerifierKey::parse(SPEC_VKEY).unwrap();
    assert_eq!(vkey.to_string(), SPEC_VKEY);
    let note = Note::parse(SPEC_NOTE.as_bytes()).unwrap();
    assert_eq!(note.text(), "This is an example message.\n");
    assert_eq!(note.verify(std::slice::from_ref(&vkey)).unwrap().len(), 1);
    assert_eq!(note.encode(), SPEC_NOTE);
    // One changed byte of text breaks it.
    let tampered = SPEC_NOTE.replace("example message", "example massage");
    let note = Note::parse(tampered.as_bytes()).unwrap();
    assert_eq!(
        note.verify(std::slice::from_ref(&vkey)),
        Err(NoteError::BadSignature("example.com/foo".into()))
    );
}

#[test]
fn keys_round_trip() {
    // Many keys, so that base64 with '+' and '/' in it is covered.
    for seed in 0..64u8 {
        let k = SignerKey::from_seed(KeyName::new("log.example/a").unwrap(), [seed; 32]);
        assert_eq!(
            SignerKey::parse(&k.encode_secret()).unwrap().verifier(),
            k.verifier()
        );
        assert_eq!(
            VerifierKey::parse(&k.verifier().to_string()).unwrap(),
            k.verifier()
        );
    }
    let k = SignerKey::generate(KeyName::new("log.example/a").unwrap()).unwrap();
    let again = SignerKey::parse(&k.encode_secret()).unwrap();
    assert_eq!(again.verifier(), k.verifier());
    let v = VerifierKey::parse(&k.verifier().to_string()).unwrap();
    assert_eq!(v, k.verifier());
    assert!(!format!("{k:?}").contains(&k.encode_secret()[20..]));
}

#[test]
fn bad_keys_rejected() {
    let good = key("log.example/a").verifier().to_string();
    let (name, rest) = good.split_once('+').unwrap();
    let (id, b64) = rest.split_once('+').unwrap();
    for bad in [
        String::new(),
        format!("+{id}+{b64}"),
        format!("{name}+{}+{b64}", id.to_uppercase()),
        format!("{name}+0{id}+{b64}"),
        format!("{name}+00000000+{b64}"),
        format!("{name}+{id}+{b64}="),
        format!("{name}+{id}+{b64}+x"),
        format!("{name}+{id}"),
        format!("a b+{id}+{b64}"),
        format!("{name}+{id}+{}", encode_b64(&[1u8; 32])),
    ] {
        assert!(VerifierKey::parse(&bad).is_err(), "accepted {bad:?}");
    }
    assert!(SignerKey::parse("PRIVATE+KEY+x+00000000+AQ==").is_err());
    assert!(SignerKey::parse(&good).is_err());
}

#[test]
fn checkpoint_round_trip_and_open() {
    let k = key("log.example/a");
    let cp = Checkpoint::new("log.example/a", 12345, [9u8; 32]);
    let signed = cp.sign(&k).unwrap();
    let (back, note) = Checkpoint::open(signed.as_bytes(), "log.example/a", &k.verifier()).unwrap();
    assert_eq!(back, cp);
    assert_eq!(note.encode(), signed);
    assert!(matches!(
        Checkpoint::open(signed.as_bytes(), "log.example/b", &k.verifier()),
        Err(NoteError::WrongOrigin { .. })
    ));
    // Right name and id, wrong key: a collision that must not verify.
    let other = SignerKey::from_seed(KeyName::new("log.example/a").unwrap(), [8u8; 32]);
    let forged = cp.sign(&other).unwrap();
    assert!(Checkpoint::open(forged.as_bytes(), "log.example/a", &k.verifier()).is_err());
}

#[test]
fn unknown_signatures_are_ignored_but_one_known_is_required() {
    let log = key("log.example/a");
    let witness = SignerKey::from_seed(KeyName::new("witness.example").unwrap(), [3u8; 32]);
    let text = Checkpoint::new("log.example/a", 1, [0u8; 32]).to_text();
    let mut note = Note::sign(&text, &witness).unwrap();
    assert_eq!(
        note.verify(&[log.verifier()]),
        Err(NoteError::NoKnownSignature)
    );
    note.add_signature(Note::sign(&text, &log).unwrap().signatures()[0].clone());
    let keys = [log.verifier(), witness.verifier()];
    assert_eq!(note.verify(&keys).unwrap().len(), 2);
    let reparsed = Note::parse(note.encode().as_bytes()).unwrap();
    assert_eq!(reparsed, note);
}

#[test]
fn malformed_checkpoints_rejected() {
    let root = encode_b64(&[1u8; 32]);
    for bad in [
        format!("o\n01\n{root}\n"),
        format!("o\n+1\n{root}\n"),
        format!("o\n1 \n{root}\n"),
        format!("o\n18446744073709551616\n{root}\n"),
        format!("o\n1\n{root}"),
        format!("o\n1\n{root}\n\n"),
        format!("\n1\n{root}\n"),
        format!("o\n1\n{}\n", &root[..root.len() - 1]),
        format!("o\n1\n{}\n", encode_b64(&[1u8; 31])),
        "o\n1\n".to_string(),
    ] {
        assert!(Checkpoint::parse_text(&bad).is_err(), "accepted {bad:?}");
    }
    assert!(Checkpoint::parse_text(&format!("o\n0\n{root}\next\n")).is_ok());
}

#[test]
fn malformed_notes_rejected() {
    let k = key("log.example/a");
    let good = Checkpoint::new("log.example/a", 3, [2u8; 32])
        .sign(&k)
        .unwrap();
    let bad_cases = [
        good.replace('\n', "\r\n"),
        good.trim_end().to_string(),
        good.replace("\u{2014} ", "- "),
        good.replacen("\n\n", "\n\n\n", 1),
        format!("{good}\n"),
        good.replace("\n\n", "\n"),
        format!("{}\u{7}", good),
        String::from_utf8_lossy(&[b'a', 0xff, b'\n', b'\n']).to_string(),
        "x".repeat(MAX_NOTE_BYTES + 1),
    ];
    for bad in bad_cases {
        let r = Note::parse(bad.as_bytes()).and_then(|n| n.verify(&[k.verifier()]).map(|_| ()));
        assert!(r.is_err(), "accepted {bad:?}");
    }
    assert!(Note::parse(&[b'a', 0xff, b'\n', b'\n']).is_err());
}

#[test]
fn tlog_proof_round_trip_and_rejects() {
    let k = key("log.example/a");
    let signed = Checkpoint::new("log.example/a", 3, [2u8; 32])
        .sign(&k)
        .unwrap();
    let p = TlogProof {
        extra: Some(b"hello".to_vec()),
        index: 2,
        proof: vec![[1u8; 32], [4u8; 32]],
        checkpoint: signed.clone(),
    };
    let text = p.encode();
    assert_eq!(TlogProof::parse(&text).unwrap(), p);
    let no_extra = TlogProof {
        extra: None,
        ..p.clone()
    };
    assert_eq!(TlogProof::parse(&no_extra.encode()).unwrap(), no_extra);
    for bad in [
        text.replacen("index 2", "index 02", 1),
        text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        text[..40].to_string(),
        text.replacen("extra aGVsbG8=", "extra aGVsbG8", 1),
        text.replacen("\n\nlog.example", "\nlog.example", 1),
    ] {
        assert!(TlogProof::parse(&bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn canonical_numbers() {
    assert_eq!(parse_canonical_u64("0"), Some(0));
    assert_eq!(parse_canonical_u64("18446744073709551615"), Some(u64::MAX));
    for bad in [
        "",
        "00",
        "01",
        "-1",
        "+1",
        " 1",
        "1e3",
        "18446744073709551616",
        "１",
    ] {
        assert_eq!(parse_canonical_u64(bad), None, "{bad:?}");
    }
}
