use super::*;
use crate::audit::event::prepare;
use crate::audit::Principal;
use serde_json::{json, Value};

/// A validated event, as the fold sees it.
fn typed(v: Value) -> Event {
    prepare(v.to_string().as_bytes()).unwrap().event
}

/// An event about a model version by a user.
fn ev(action: &str, who: &str, version: &str, metadata: Value) -> Event {
    by("user", action, who, version, metadata)
}

/// The same by a principal of any kind.
fn by(kind: &str, action: &str, who: &str, version: &str, metadata: Value) -> Event {
    typed(json!({
        "action": action,
        "actor": {"type": kind, "id": who},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": version},
        "metadata": metadata,
    }))
}

fn attest(kind: &str, passed: bool, version: &str) -> Event {
    service(
        "attest",
        "ci",
        version,
        json!({"kind": kind, "passed": passed}),
    )
}

fn policy() -> Policy {
    Policy {
        staging: Gate {
            min_human_approvals: Some(1),
            attestations: vec!["tests".into()],
            ..Gate::default()
        },
        production: Gate {
            min_human_approvals: Some(2),
            attestations: vec!["tests".into(), "fairness".into()],
            ..Gate::default()
        },
        ..Policy::default()
    }
}

/// Check, then apply (with follow-ups) as the server does.
fn submit(st: &mut State, log: &mut Vec<Event>, e: Event) -> Result<u64, Refusal> {
    submit_with(st, log, &policy(), e)
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
    assert_eq!(st.production_of("m"), Some("m:v1"));
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
    assert_eq!(st.production_of("m"), Some("m:v2"));
    submit(&mut st, &mut log, ev("rollback", "ops", "m:v1", json!({}))).unwrap();
    assert_eq!(st.production_of("m"), Some("m:v1"));
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
    // Two lineage keys and three auditor keys (actor, action, month) each.
    assert_eq!(crate::state::repair_lineage(&store, 5).unwrap(), 25);
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
    assert_eq!(st.production_of("m"), Some("m:v2"));
    assert_eq!(st.version("m:v1").unwrap().stage, "archived");
    assert_eq!(st.version("m:v2").unwrap().stage, "production");
    // And m:v1 can come back by rollback.
    assert_eq!(
        st.check(&ev("rollback", "ops", "m:v1", json!({})), &policy()),
        Ok(())
    );
}

/// An event about a model version by a service.
fn service(action: &str, who: &str, version: &str, metadata: Value) -> Event {
    by("service", action, who, version, metadata)
}

/// Check, apply and log under a given policy.
fn submit_with(
    st: &mut State,
    log: &mut Vec<Event>,
    policy: &Policy,
    e: Event,
) -> Result<u64, Refusal> {
    st.check(&e, policy)?;
    let index = log.len() as u64;
    let follow = st.follow_ups(&e, index);
    st.apply(index, &e);
    log.push(e);
    for f in follow {
        let f = f
            .prepare(&Principal::server(), "2025-05-05T14:03:00Z")
            .unwrap()
            .event;
        st.apply(log.len() as u64, &f);
        log.push(f);
    }
    Ok(index)
}

/// A registry and its log under one policy, fed as the server feeds it.
struct Sim {
    st: State,
    log: Vec<Event>,
    policy: Policy,
}

impl Sim {
    fn new(policy: Policy) -> Sim {
        Sim {
            st: State::default(),
            log: Vec::new(),
            policy,
        }
    }

    fn go(&mut self, e: Event) -> Result<u64, Refusal> {
        submit_with(&mut self.st, &mut self.log, &self.policy, e)
    }
}

/// Register and get `id` into production (under the default policy).
fn to_production(r: &mut Sim, id: &str) {
    for e in [
        service("register", "ci", id, json!({})),
        ev("approve", "alice", id, json!({})),
        ev("approve", "bob", id, json!({})),
        ev("promote", "ops", id, json!({"to_stage": "Production"})),
    ] {
        r.go(e).unwrap();
    }
}

#[test]
fn each_model_has_its_own_production_slot() {
    let mut r = Sim::new(Policy::default());
    to_production(&mut r, "fraud:v3");
    to_production(&mut r, "churn:v1");
    // churn entering production archives nothing of fraud.
    assert!(
        r.log.iter().all(|e| e.action != Action::Archive),
        "{:?}",
        r.log
    );
    assert_eq!(r.st.version("fraud:v3").unwrap().stage, "production");
    assert_eq!(r.st.production_of("fraud"), Some("fraud:v3"));
    assert_eq!(r.st.production_of("churn"), Some("churn:v1"));
    // A second fraud version replaces only fraud:v3.
    to_production(&mut r, "fraud:v4");
    let archives: Vec<&Event> = r
        .log
        .iter()
        .filter(|e| e.action == Action::Archive)
        .collect();
    assert_eq!(archives.len(), 1);
    assert_eq!(archives[0].subject.id, "fraud:v3");
    assert_eq!(archives[0].meta_str("replaced_by"), Some("fraud:v4"));
    assert_eq!(r.st.version("fraud:v3").unwrap().stage, "archived");
    assert_eq!(r.st.version("churn:v1").unwrap().stage, "production");
    assert_eq!(r.st.models["fraud"].versions, vec!["fraud:v3", "fraud:v4"]);
    // Names with colons: the version is after the last one.
    assert_eq!(model_of("team:fraud:v1"), "team:fraud");
    // An id that is not name:version is not registered.
    assert!(matches!(
        r.st.check(
            &service("register", "ci", "fraud", json!({})),
            &Policy::default()
        ),
        Err(Refusal::Malformed(_))
    ));
}

#[test]
fn an_archive_logged_under_the_old_single_slot_rule_is_what_happened() {
    // A log written when production was one slot for the registry: the
    // server archived fraud:v3 when churn:v1 entered production. The fold
    // takes the logged archive as what happened.
    let mut r = Sim::new(Policy::default());
    to_production(&mut r, "fraud:v3");
    to_production(&mut r, "churn:v1");
    let old_rule = Record::new(Action::Archive, Ref::model_version("fraud:v3"))
        .related(Ref::model_version("churn:v1"))
        .meta("to_stage", "archived")
        .meta("replaced_by", "churn:v1")
        .prepare(&Principal::server(), "2025-05-05T14:03:00Z")
        .unwrap()
        .event;
    r.st.apply(r.log.len() as u64, &old_rule);
    assert_eq!(r.st.version("fraud:v3").unwrap().stage, "archived");
    assert_eq!(r.st.production_of("fraud"), None);
    assert_eq!(r.st.production_of("churn"), Some("churn:v1"));
}

#[test]
fn safe_defaults_count_humans_only() {
    let d = Policy::default();
    let mut r = Sim::new(d.clone());
    r.go(service("register", "ci", "m:v1", json!({}))).unwrap();
    // No approvals: not even staging.
    let why = denied(r.go(ev("promote", "ops", "m:v1", json!({"to_stage": "staging"}))));
    assert!(why[0].contains("needs 1 approvals"), "{why:?}");
    // Approvals by services do not count.
    r.go(service("approve", "bot", "m:v1", json!({}))).unwrap();
    denied(r.go(ev("promote", "ops", "m:v1", json!({"to_stage": "STAGING"}))));
    assert_eq!(
        r.st.version("m:v1").unwrap().approval_status(&d),
        ApprovalStatus::PendingManualApproval
    );
    r.go(ev("approve", "alice", "m:v1", json!({}))).unwrap();
    assert_eq!(
        r.st.version("m:v1").unwrap().approval_status(&d),
        ApprovalStatus::Approved
    );
    r.go(ev("promote", "ops", "m:v1", json!({"to_stage": "Staging"})))
        .unwrap();
    assert_eq!(r.st.version("m:v1").unwrap().stage, "staging");
    // Toward production: one human is not two.
    assert_eq!(
        r.st.version("m:v1").unwrap().approval_status(&d),
        ApprovalStatus::PendingManualApproval
    );
    // Already there: denied.
    let why = denied(r.go(ev("promote", "ops", "m:v1", json!({"to_stage": "staging"}))));
    assert!(why[0].contains("already in staging"), "{why:?}");
    // A staging version is not deployed to production (the default).
    let deploy = |env: Option<&str>| {
        let mut e = json!({"action": "deploy", "actor": {"type": "user", "id": "ops"},
            "timestamp": "2025-05-05T14:03:00Z",
            "subject": {"type": "deployment", "id": "d1"},
            "related": [{"type": "model_version", "id": "m:v1"}]});
        if let Some(env) = env {
            e["metadata"] = json!({"environment": env});
        }
        typed(e)
    };
    let why = denied(r.go(deploy(None)));
    assert!(why[0].contains("only a production version"), "{why:?}");
    denied(r.go(deploy(Some("Production"))));
    r.go(deploy(Some("staging"))).unwrap();
    assert_eq!(
        r.st.version("m:v1").unwrap().deployments[0].environment,
        "staging"
    );
    // A rejection after the approvals: Rejected.
    r.go(ev("reject", "carol", "m:v1", json!({}))).unwrap();
    assert_eq!(
        r.st.version("m:v1").unwrap().approval_status(&d),
        ApprovalStatus::Rejected
    );
    // Unknown stage spellings are malformed (400), whatever the case.
    for bad in ["prod", "", "Stage", "production "] {
        assert!(matches!(
            r.st.check(&ev("promote", "ops", "m:v1", json!({"to_stage": bad})), &d),
            Err(Refusal::Malformed(_))
        ));
    }
}

#[test]
fn attesters_and_signed_attestations() {
    let mut p = Policy::default();
    p.production.attestations = vec!["eval".into()];
    p.production
        .attesters
        .insert("eval".into(), vec!["service:ci".into()]);
    p.production.require_signed_attestations = vec!["eval".into()];
    assert_eq!(p.validate(), Ok(()));
    let mut r = Sim::new(p.clone());
    for e in [
        service("register", "ci", "m:v1", json!({})),
        ev("approve", "alice", "m:v1", json!({})),
        ev("approve", "bob", "m:v1", json!({})),
    ] {
        r.go(e).unwrap();
    }
    // Someone not on the list may not attest eval (logged deny).
    let why = denied(r.go(service(
        "attest",
        "rogue",
        "m:v1",
        json!({"kind": "eval", "passed": true}),
    )));
    assert!(why[0].contains("not an attester of eval"), "{why:?}");
    // Other kinds are open.
    r.go(service(
        "attest",
        "rogue",
        "m:v1",
        json!({"kind": "lint", "passed": true}),
    ))
    .unwrap();
    // Unsigned: does not count.
    r.go(service(
        "attest",
        "ci",
        "m:v1",
        json!({"kind": "eval", "passed": true}),
    ))
    .unwrap();
    let why = denied(r.go(ev(
        "promote",
        "ops",
        "m:v1",
        json!({"to_stage": "production"}),
    )));
    assert!(why.iter().any(|w| w.contains("not signed")), "{why:?}");
    // Malformed attestations are 400s.
    for meta in [json!({"passed": true}), json!({"kind": "eval"})] {
        assert!(matches!(
            r.st.check(&service("attest", "ci", "m:v1", meta), &p),
            Err(Refusal::Malformed(_))
        ));
    }
    // Attesters must be services.
    let mut bad = Policy::default();
    bad.staging
        .attesters
        .insert("eval".into(), vec!["user:alice".into()]);
    assert!(bad.validate().is_err());
}

#[test]
fn rollback_refusals() {
    let mut p = Policy::default();
    p.production.attestations = vec!["eval".into()];
    let mut r = Sim::new(p.clone());
    let pass =
        |v: &str, ok: bool| service("attest", "ci", v, json!({"kind": "eval", "passed": ok}));
    for v in ["m:v1", "m:v2", "m:v3"] {
        for e in [
            service("register", "ci", v, json!({})),
            ev("approve", "alice", v, json!({})),
            ev("approve", "bob", v, json!({})),
            pass(v, true),
            ev("promote", "ops", v, json!({"to_stage": "production"})),
        ] {
            r.go(e).unwrap();
        }
    }
    // v1 and v2 left production; v1 was rejected after that.
    r.go(ev("reject", "carol", "m:v1", json!({}))).unwrap();
    let why = denied(r.go(ev("rollback", "ops", "m:v1", json!({}))));
    assert!(why[0].contains("rejected"), "{why:?}");
    // v2's required attestation failed after it left production.
    r.go(pass("m:v2", false)).unwrap();
    let why = denied(r.go(ev("rollback", "ops", "m:v2", json!({}))));
    assert!(why[0].contains("did not pass"), "{why:?}");
    // In production already; never in production.
    denied(r.go(ev("rollback", "ops", "m:v3", json!({}))));
    r.go(service("register", "ci", "m:v4", json!({}))).unwrap();
    denied(r.go(ev("rollback", "ops", "m:v4", json!({}))));
    // A good rollback: v2 passes again.
    r.go(pass("m:v2", true)).unwrap();
    r.go(ev("rollback", "ops", "m:v2", json!({}))).unwrap();
    assert_eq!(r.st.production_of("m"), Some("m:v2"));
    assert_eq!(r.st.version("m:v3").unwrap().stage, "archived");
}
