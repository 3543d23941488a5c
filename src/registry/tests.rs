use super::*;
use crate::audit::event::prepare;
use crate::audit::Principal;
use serde_json::{json, Value};

/// A validated event, as the fold sees it.
fn typed(v: Value) -> Event {
    prepare(v.to_string().as_bytes()).unwrap().event
}

fn ev(action: &str, who: &str, version: &str, metadata: Value) -> Event {
    typed(json!({
        "action": action,
        "actor": {"type": "user", "id": who},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": version},
        "metadata": metadata,
    }))
}

fn attest(kind: &str, passed: bool, version: &str) -> Event {
    typed(json!({
        "action": "attest",
        "actor": {"type": "service", "id": "ci"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": version},
        "metadata": {"kind": kind, "passed": passed},
    }))
}

fn policy() -> Policy {
    Policy {
        staging: Gate {
            min_approvals: 1,
            attestations: vec!["tests".into()],
            allow_self_approval: false,
        },
        production: Gate {
            min_approvals: 2,
            attestations: vec!["tests".into(), "fairness".into()],
            allow_self_approval: false,
        },
    }
}

/// Check, then apply (with follow-ups) as the server does.
fn submit(st: &mut State, log: &mut Vec<Event>, e: Event) -> Result<u64, Refusal> {
    st.check(&e, &policy())?;
    let index = log.len() as u64;
    let follow = st.follow_ups(&e, index);
    st.apply(index, &e);
    log.push(e);
    for f in follow {
        let i = log.len() as u64;
        let f = f
            .prepare(&Principal::server(), "2025-05-05T14:03:00Z")
            .unwrap()
            .event;
        st.apply(i, &f);
        log.push(f);
    }
    Ok(index)
}

fn denied(r: Result<u64, Refusal>) -> Vec<String> {
    match r {
        Err(Refusal::Denied(v)) => v,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn gates_approvals_attestations_and_production() {
    let mut st = State::default();
    let mut log = Vec::new();
    let p = |to: &str| json!({"to_stage": to});
    // Nothing before registration.
    denied(submit(
        &mut st,
        &mut log,
        ev("approve", "alice", "m:v1", json!({})),
    ));
    submit(&mut st, &mut log, ev("register", "ci", "m:v1", json!({}))).unwrap();
    denied(submit(
        &mut st,
        &mut log,
        ev("register", "ci", "m:v1", json!({})),
    ));
    // Staging needs one approval and passing tests.
    let why = denied(submit(
        &mut st,
        &mut log,
        ev("promote", "ops", "m:v1", p("staging")),
    ));
    assert_eq!(why.len(), 2, "{why:?}");
    submit(&mut st, &mut log, ev("approve", "alice", "m:v1", json!({}))).unwrap();
    // No approving twice, no approving what you registered.
    denied(submit(
        &mut st,
        &mut log,
        ev("approve", "alice", "m:v1", json!({})),
    ));
    denied(submit(
        &mut st,
        &mut log,
        ev("approve", "ci", "m:v1", json!({})),
    ));
    submit(&mut st, &mut log, attest("tests", true, "m:v1")).unwrap();
    submit(
        &mut st,
        &mut log,
        ev("promote", "ops", "m:v1", p("staging")),
    )
    .unwrap();
    assert_eq!(st.version("m:v1").unwrap().stage, "staging");
    // Production: two approvers and fairness too.
    let why = denied(submit(
        &mut st,
        &mut log,
        ev("promote", "ops", "m:v1", p("production")),
    ));
    assert_eq!(why.len(), 2, "{why:?}");
    submit(&mut st, &mut log, ev("approve", "bob", "m:v1", json!({}))).unwrap();
    submit(&mut st, &mut log, attest("fairness", false, "m:v1")).unwrap();
    let why = denied(submit(
        &mut st,
        &mut log,
        ev("promote", "ops", "m:v1", p("production")),
    ));
    assert!(why[0].contains("did not pass"), "{why:?}");
    submit(&mut st, &mut log, attest("fairness", true, "m:v1")).unwrap();
    // A rejection resets the approvals counted.
    submit(&mut st, &mut log, ev("reject", "carol", "m:v1", json!({}))).unwrap();
    denied(submit(
        &mut st,
        &mut log,
        ev("promote", "ops", "m:v1", p("production")),
    ));
    submit(&mut st, &mut log, ev("approve", "alice", "m:v1", json!({}))).unwrap();
    submit(&mut st, &mut log, ev("approve", "bob", "m:v1", json!({}))).unwrap();
    submit(
        &mut st,
        &mut log,
        ev("promote", "ops", "m:v1", p("production")),
    )
    .unwrap();
    assert_eq!(st.production.as_deref(), Some("m:v1"));
    // Unknown stages are malformed, not denied.
    assert!(matches!(
        st.check(&ev("promote", "ops", "m:v1", p("prod")), &policy()),
        Err(Refusal::Malformed(_))
    ));

    // v2 replaces v1: v1 is archived by a logged event; rollback to v1.
    for e in [
        ev("register", "ci", "m:v2", json!({})),
        ev("approve", "alice", "m:v2", json!({})),
        ev("approve", "bob", "m:v2", json!({})),
        attest("tests", true, "m:v2"),
        attest("fairness", true, "m:v2"),
    ] {
        submit(&mut st, &mut log, e).unwrap();
    }
    denied(submit(
        &mut st,
        &mut log,
        ev("rollback", "ops", "m:v2", json!({})),
    ));
    let at = submit(
        &mut st,
        &mut log,
        ev("promote", "ops", "m:v2", p("production")),
    )
    .unwrap();
    let archive = &log[at as usize + 1];
    assert_eq!(archive.action, Action::Archive);
    assert_eq!(archive.subject.id, "m:v1");
    assert_eq!(st.version("m:v1").unwrap().stage, "archived");
    assert_eq!(st.production.as_deref(), Some("m:v2"));
    submit(&mut st, &mut log, ev("rollback", "ops", "m:v1", json!({}))).unwrap();
    assert_eq!(st.production.as_deref(), Some("m:v1"));
    assert_eq!(st.version("m:v2").unwrap().stage, "archived");

    // Deployments only of staging or production versions.
    let deploy = |v: &str| {
        typed(
            json!({"action": "deploy", "actor": {"type": "user", "id": "ops"},
               "timestamp": "2025-05-05T14:03:00Z",
               "subject": {"type": "deployment", "id": "fraud-prod"},
               "related": [{"type": "model_version", "id": v}]}),
        )
    };
    submit(&mut st, &mut log, deploy("m:v1")).unwrap();
    denied(submit(&mut st, &mut log, deploy("m:v2")));

    // The same fold over the accepted log gives the same state.
    let mut again = State::default();
    for (i, e) in log.iter().enumerate() {
        again.apply(i as u64, e);
    }
    assert_eq!(again, st);
}

#[test]
fn reindex_repairs_a_lineage_index_that_lost_keys() {
    use crate::audit::event::prepare;
    use crate::store::{mention_key, Batch, MemStore, NewEntry, Role, Store};
    let store = MemStore::new();
    // Entries committed without their lineage keys, as an old or damaged
    // index would have them.
    let evs: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            let e = json!({
                "action": "predict", "actor": {"type": "service", "id": "s"},
                "timestamp": "2025-05-05T14:03:00Z",
                "subject": {"type": "prediction", "id": format!("p{i}")},
                "related": [{"type": "deployment", "id": "d"}]
            });
            prepare(e.to_string().as_bytes()).unwrap().canonical
        })
        .collect();
    let entries: Vec<NewEntry> = evs
        .iter()
        .enumerate()
        .map(|(i, b)| NewEntry {
            bytes: std::sync::Arc::new(b.clone()),
            leaf_hash: crate::tree::leaf_hash(b),
            event_id: [i as u8 + 1; 16],
            mentions: Vec::new(),
        })
        .collect();
    store
        .commit(&Batch {
            first_index: 0,
            entries: &entries,
            nodes: &[],
            checkpoint: b"cp",
        })
        .unwrap();
    assert!(store
        .mentions(&mention_key("deployment", "d"), 0, 10)
        .unwrap()
        .is_empty());
    assert_eq!(crate::state::repair_lineage(&store, 5).unwrap(), 10);
    let d = store
        .mentions(&mention_key("deployment", "d"), 0, 10)
        .unwrap();
    assert_eq!(d, (0..5).map(|i| (i, Role::Related)).collect::<Vec<_>>());
    assert_eq!(
        store
            .mentions(&mention_key("prediction", "p3"), 0, 10)
            .unwrap(),
        vec![(3, Role::Subject)]
    );
    assert_eq!(crate::state::repair_lineage(&store, 5).unwrap(), 0);
}

#[test]
fn a_lost_archive_event_still_leaves_one_version_in_production() {
    // A crash between a promotion and the server's archive event: the fold
    // of what reached the log still has exactly one production version.
    let mut st = State::default();
    let p = json!({"to_stage": "production"});
    st.apply(0, &ev("register", "ci", "m:v1", json!({})));
    st.apply(1, &ev("promote", "ops", "m:v1", p.clone()));
    st.apply(2, &ev("register", "ci", "m:v2", json!({})));
    st.apply(3, &ev("promote", "ops", "m:v2", p));
    assert_eq!(st.production.as_deref(), Some("m:v2"));
    assert_eq!(st.version("m:v1").unwrap().stage, "archived");
    assert_eq!(st.version("m:v2").unwrap().stage, "production");
    // And m:v1 can come back by rollback.
    assert_eq!(
        st.check(&ev("rollback", "ops", "m:v1", json!({})), &policy()),
        Ok(())
    );
}
