use super::*;
use serde_json::json;

fn good() -> Value {
    json!({
        "action": "promote",
        "actor": {"type": "user", "id": "mlops.alex"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": "fraud:v3"},
        "related": [{"type": "run", "id": "run-933"}, {"type": "dataset", "id": "ds:2025-05-01"}],
        "metadata": {"from_stage": "staging", "to_stage": "production", "metrics": {"auc": 0.945}},
        "integrity": {"artifact_sha256": "b1c0000000000000000000000000000000000000000000000000000000000000"}
    })
}

fn prep(v: &Value) -> Result<Prepared, EventError> {
    prepare(v.to_string().as_bytes())
}

#[test]
fn assigns_uuid_v7_and_canonicalizes() {
    let p = prep(&good()).unwrap();
    assert!(!p.client_id);
    assert_eq!(p.event_id().get_version_num(), 7);
    let text = String::from_utf8(p.canonical.clone()).unwrap();
    // JCS: sorted keys, no whitespace.
    assert!(text.starts_with(
        "{\"action\":\"promote\",\"actor\":{\"id\":\"mlops.alex\",\"type\":\"user\"}"
    ));
    assert!(text.contains(&format!("\"event_id\":\"{}\"", p.event_id())));
    assert_eq!(p.leaf_hash, crate::tree::leaf_hash(&p.canonical));
    // The canonical form is a fixed point, and whitespace or key order in
    // the submission does not change it.
    let mut v = good();
    v["event_id"] = json!(p.event_id().to_string());
    let again = prepare(serde_json::to_string_pretty(&v).unwrap().as_bytes()).unwrap();
    assert!(again.client_id);
    assert_eq!(again.canonical, p.canonical);
    let reparsed: Value = serde_json::from_slice(&p.canonical).unwrap();
    assert_eq!(canonicalize(&reparsed), p.canonical);
}

#[test]
fn jcs_numbers() {
    let mut v = good();
    v["metadata"] =
        json!({"a": 1.0, "b": 1e21, "c": -0.0, "d": 0.000001, "e": 9007199254740991u64});
    let p = prep(&v).unwrap();
    let text = String::from_utf8(p.canonical).unwrap();
    assert!(
        text.contains(
            "\"metadata\":{\"a\":1,\"b\":1e+21,\"c\":0,\"d\":0.000001,\"e\":9007199254740991}"
        ),
        "{text}"
    );
}

#[test]
fn rejects_bad_events() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("unknown top-level", Box::new(|v| v["extra"] = json!(1))),
        (
            "missing action",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("action");
            }),
        ),
        (
            "missing actor",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("actor");
            }),
        ),
        (
            "missing timestamp",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("timestamp");
            }),
        ),
        (
            "missing subject",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("subject");
            }),
        ),
        ("action number", Box::new(|v| v["action"] = json!(5))),
        ("action upper", Box::new(|v| v["action"] = json!("Promote"))),
        ("action empty", Box::new(|v| v["action"] = json!(""))),
        ("actor string", Box::new(|v| v["actor"] = json!("alex"))),
        (
            "actor bad type",
            Box::new(|v| v["actor"]["type"] = json!("robot")),
        ),
        ("actor empty id", Box::new(|v| v["actor"]["id"] = json!(""))),
        (
            "actor extra",
            Box::new(|v| v["actor"]["email"] = json!("a@b")),
        ),
        (
            "timestamp bad",
            Box::new(|v| v["timestamp"] = json!("yesterday")),
        ),
        (
            "timestamp no zone",
            Box::new(|v| v["timestamp"] = json!("2025-05-05T14:03:00")),
        ),
        (
            "timestamp number",
            Box::new(|v| v["timestamp"] = json!(1746453780)),
        ),
        (
            "subject no id",
            Box::new(|v| v["subject"] = json!({"type": "model_version"})),
        ),
        (
            "subject bad type",
            Box::new(|v| v["subject"]["type"] = json!("Model Version")),
        ),
        (
            "related object",
            Box::new(|v| v["related"] = json!({"type": "run", "id": "r"})),
        ),
        (
            "related item",
            Box::new(|v| v["related"] = json!(["run-1"])),
        ),
        (
            "related too many",
            Box::new(|v| v["related"] = json!(vec![json!({"type":"run","id":"r"}); 65])),
        ),
        ("metadata array", Box::new(|v| v["metadata"] = json!([1]))),
        (
            "integrity hex",
            Box::new(|v| v["integrity"]["artifact_sha256"] = json!("B1C")),
        ),
        (
            "integrity extra",
            Box::new(|v| v["integrity"]["md5"] = json!("x")),
        ),
        ("event_id number", Box::new(|v| v["event_id"] = json!(7))),
        (
            "event_id bad",
            Box::new(|v| v["event_id"] = json!("not-a-uuid")),
        ),
        (
            "event_id upper",
            Box::new(|v| v["event_id"] = json!("018F4C1E-0000-7000-8000-000000000000")),
        ),
        (
            "event_id braces",
            Box::new(|v| v["event_id"] = json!("{018f4c1e-0000-7000-8000-000000000000}")),
        ),
        (
            "event_id nil",
            Box::new(|v| v["event_id"] = json!("00000000-0000-0000-0000-000000000000")),
        ),
        (
            "big int",
            Box::new(|v| v["metadata"] = json!({"n": 9007199254740992u64})),
        ),
        (
            "big negative",
            Box::new(|v| v["metadata"] = json!({"n": -9007199254740992i64})),
        ),
        (
            "too large",
            Box::new(|v| v["metadata"] = json!({"blob": "x".repeat(70_000)})),
        ),
    ];
    for (name, mutate) in cases {
        let mut v = good();
        mutate(&mut v);
        assert!(prep(&v).is_err(), "{name} was accepted");
    }
}

#[test]
fn rejects_bad_json() {
    for bad in [
        &b"[1,2]"[..],
        b"\"str\"",
        b"null",
        b"",
        b"{",
        b"{\"action\":\"a\",\"action\":\"b\"}",
        b"{\"metadata\":{\"k\":1,\"k\":2}}",
        b"{\"a\":\xff}",
        b"{} {}",
        b"{\"a\":NaN}",
    ] {
        assert!(
            prepare(bad).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let mut v = good();
    v["metadata"] = json!({"d": serde_json::from_str::<Value>(&deep).unwrap()});
    assert!(prep(&v).is_err());
}

#[test]
fn every_accepted_event_reparses_from_its_canonical_bytes() {
    // An integral float past 2^53 is written by RFC 8785 as a plain
    // integer, which the strict parser refuses: such an event must be
    // refused when it is submitted, not stored and then unverifiable.
    for n in [
        json!(1e16),
        json!(-1e16),
        json!(9007199254740992.0),
        json!(1e20),
    ] {
        let mut v = good();
        v["metadata"] = json!({"x": n});
        assert!(prep(&v).is_err(), "{n} was accepted");
    }
    // Around the edges, what is accepted re-parses and is a fixed point.
    for n in [
        json!(9007199254740991.0),
        json!(-9007199254740991.0),
        json!(1e21),
        json!(1.5e300),
        json!(0.1),
        json!(-0.0),
        json!(5e-324),
    ] {
        let mut v = good();
        v["metadata"] = json!({"x": n});
        let p = prep(&v).unwrap_or_else(|e| panic!("{n}: {e}"));
        let again = parse_strict(&p.canonical).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(canonicalize(&again), p.canonical, "{n}");
        Event::from_canonical(&p.canonical).unwrap();
    }
}

#[test]
fn ids_refuse_invisible_and_reordering_characters() {
    for bad in [
        "alice\u{200b}",    // zero-width space
        "ali\u{202e}ecila", // right-to-left override
        "\u{2066}alice",    // left-to-right isolate
        "al\u{00ad}ice",    // soft hyphen
        "alice\u{feff}",    // byte order mark
        "alice\u{2028}",    // line separator
        "alice\u{e000}",    // private use
        "alice\u{7}",       // control
    ] {
        for path in ["actor", "subject"] {
            let mut v = good();
            v[path]["id"] = json!(bad);
            assert!(prep(&v).is_err(), "{path}.id {bad:?} was accepted");
        }
        let mut v = good();
        v["related"][0]["id"] = json!(bad);
        assert!(prep(&v).is_err(), "related id {bad:?} was accepted");
    }
    // Letters of any script are fine.
    for ok in ["алиса", "アリス", "ali.ce-1:v2", "Ωmega"] {
        let mut v = good();
        v["actor"]["id"] = json!(ok);
        prep(&v).unwrap();
    }
}

/// The printable-ASCII shortcut says what the table says, for every
/// ASCII character, alone and next to other characters.
#[test]
fn the_ascii_shortcut_agrees_with_the_unicode_table() {
    for b in 0u8..=0x7f {
        let c = char::from(b);
        for s in [c.to_string(), format!("ab{c}"), format!("{c}\u{e9}")] {
            assert_eq!(has_invisible(&s), s.chars().any(invisible), "{s:?}");
        }
    }
    assert!(!has_invisible("ali ce~!"));
    assert!(has_invisible("alice\u{7f}"));
    assert!(has_invisible("\u{e9}\u{200b}"));
}

#[test]
fn the_typed_view_is_the_stored_one() {
    // Found by the `event` fuzz target: `1200.0` is stored as `1200`. The
    // view the state folds at append time must be the one a rebuild reads
    // back from the log, or the two could disagree (as_u64 of 1200.0 is
    // None, of 1200 is Some).
    let mut e = good();
    e["metadata"] = json!({"rows": 1200.0, "x": [1.0, 2.5e3]});
    let p = prep(&e).unwrap();
    assert_eq!(p.event, Event::from_canonical(&p.canonical).unwrap());
    assert_eq!(p.event.meta_u64("rows"), Some(1200));
}

#[test]
fn errors_in_references_name_the_exact_field() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("subject", Box::new(|v| v["subject"] = json!("fraud:v3"))),
        (
            "subject.version",
            Box::new(|v| v["subject"]["version"] = json!(3)),
        ),
        (
            "subject.type",
            Box::new(|v| {
                v["subject"].as_object_mut().unwrap().remove("type");
            }),
        ),
        (
            "subject.type",
            Box::new(|v| v["subject"]["type"] = json!("Model")),
        ),
        (
            "subject.id",
            Box::new(|v| v["subject"]["id"] = json!("a\u{202e}b")),
        ),
        ("related[0]", Box::new(|v| v["related"][0] = json!([]))),
        (
            "related[1].type",
            Box::new(|v| v["related"][1]["type"] = json!("9data")),
        ),
        (
            "related[1].id",
            Box::new(|v| {
                v["related"][1].as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            "related[1].id",
            Box::new(|v| v["related"][1]["id"] = json!("")),
        ),
        (
            "related[0].kind",
            Box::new(|v| v["related"][0]["kind"] = json!("x")),
        ),
    ];
    for (want, mutate) in cases {
        let mut v = good();
        mutate(&mut v);
        match prep(&v) {
            Err(EventError::Field { field, .. }) => assert_eq!(field, want, "{v}"),
            other => panic!("{want}: expected a field error, got {other:?}"),
        }
    }
}

mod round_trip {
    use super::*;
    use proptest::prelude::*;

    /// JSON values heavy in the numbers RFC 8785 rewrites: integral
    /// doubles (`1200.0`), negative zero, doubles of every magnitude, and
    /// text with escapes.
    fn value() -> impl Strategy<Value = Value> {
        let safe = MAX_SAFE_INT as i64;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-safe..=safe).prop_map(|n| json!(n)),
            (-safe..=safe).prop_map(|n| json!(n as f64)),
            (-1000i64..1000).prop_map(|n| json!(n as f64)),
            Just(json!(-0.0)),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| json!(x)),
            (-1_000_000i64..1_000_000, 0u32..8)
                .prop_map(|(m, e)| json!(m as f64 / 10f64.powi(e as i32))),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A JSON number as a client may spell it: any sign, leading part,
    /// fraction and exponent the grammar allows.
    fn number_text() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just(""), Just("-")],
            prop_oneof![Just("0".to_string()), "[1-9][0-9]{0,24}"],
            proptest::option::of("[0-9]{1,20}"),
            proptest::option::of((
                "[eE]",
                prop_oneof![Just(""), Just("+"), Just("-")],
                "[0-9]{1,3}",
            )),
        )
            .prop_map(|(sign, int, frac, exp)| {
                let mut t = format!("{sign}{int}");
                if let Some(f) = frac {
                    t += &format!(".{f}");
                }
                if let Some((e, s, d)) = exp {
                    t += &format!("{e}{s}{d}");
                }
                t
            })
    }

    /// Submits `text` as a number in an event's metadata; if `prepare`
    /// accepts it, checks the round trip as stored.
    fn check_number_text(text: &str) -> Result<bool, TestCaseError> {
        let base = good().to_string();
        let body = base.replacen(
            "\"metadata\":{",
            &format!("\"metadata\":{{\"n\":{text},\"l\":[{text},{{\"m\":{text}}}],"),
            1,
        );
        prop_assert_ne!(&body, &base);
        let Ok(p) = prepare(body.as_bytes()) else {
            return Ok(false);
        };
        let again = parse_strict(&p.canonical);
        prop_assert!(again.is_ok(), "{}: {:?}", text, again.err());
        let again = again.unwrap();
        prop_assert_eq!(&canonicalize(&again), &p.canonical, "{}", text);
        let typed: Event = serde_json::from_value(again).unwrap();
        prop_assert_eq!(&typed, &p.event, "{}", text);
        Ok(true)
    }

    #[test]
    fn number_spellings_read_back_as_stored() {
        for text in [
            "1E2",
            "100e-2",
            "-0",
            "-0.0",
            "0.1e1",
            "1200.000",
            "5e-324",
            "1e-7",
            "9007199254740991",
            "-9007199254740991",
            "9007199254740991.0",
            "90071992547409910e-1",
            "1e21",
            "1.5E+300",
            "123456789012345678901234567890e-20",
        ] {
            assert!(check_number_text(text).unwrap(), "{text} was refused");
        }
        for text in [
            "9007199254740992",
            "9007199254740992.0",
            "1e20",
            "1e400",
            "-1e16",
        ] {
            assert!(!check_number_text(text).unwrap(), "{text} was accepted");
        }
    }

    proptest! {
        #[test]
        fn numbers_as_clients_spell_them_read_back_as_stored(text in number_text()) {
            check_number_text(&text)?;
        }

        /// What `prepare` accepts reads back, as stored, as the same event:
        /// its canonical bytes parse under the strict rules, canonicalize
        /// to themselves, and give the typed view `prepare` returned.
        #[test]
        fn what_is_accepted_reads_back_as_stored(x in value(), y in value()) {
            let mut v = good();
            v["metadata"] = json!({"x": x, "y": y});
            let p = prep(&v);
            prop_assume!(p.is_ok(), "refused: {:?}", p.err());
            let p = p.unwrap();
            let again = parse_strict(&p.canonical);
            prop_assert!(again.is_ok(), "{:?}", again.err());
            let again = again.unwrap();
            prop_assert_eq!(&canonicalize(&again), &p.canonical);
            let typed: Event = serde_json::from_value(again).unwrap();
            prop_assert_eq!(&typed, &p.event);
            prop_assert_eq!(&Event::from_canonical(&p.canonical).unwrap(), &p.event);
        }
    }
}
