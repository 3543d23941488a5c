//! The registry's rules over the real API: promotion gates that cannot be
//! bypassed, refusals logged as `deny` events with receipts, production
//! handing over (the old version archived by a logged event), rollback,
//! model state derived from the log, and `reindex` rebuilding it from the
//! log alone, identical.

use crate::common::*;
use modeltrail::registry::{Gate, Policy};
use modeltrail::verify::{self, Policy as Trust};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_modeltrail");

fn ev(action: &str, who: (&str, &str), version: &str, metadata: Value) -> Value {
    json!({
        "action": action,
        "actor": {"type": who.0, "id": who.1},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": version},
        "related": [{"type": "run", "id": "run-933"}],
        "metadata": metadata,
    })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_deny_and_log_refusals_and_state_comes_from_the_log() {
    let mut s = start_with(|c| c.registry = policy()).await;
    let ci = grant(&s, "service", "ci", &["submitter"]).await.0;
    let alice = grant(&s, "user", "alice", &["approver"]).await.0;
    let bob = grant(&s, "user", "bob", &["approver"]).await.0;
    let ops = grant(&s, "user", "ops", &["deployer"]).await.0;
    let (c, a, b, o) = (
        ("service", "ci"),
        ("user", "alice"),
        ("user", "bob"),
        ("user", "ops"),
    );
    let trust = Trust::log_only(s.vkey.clone());
    let to = |stage: &str| json!({"to_stage": stage});

    // Approving an unregistered version: 422, and the refusal is logged.
    let size0 = s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap();
    let (status, r) = post_as(&s, &alice, &ev("approve", a, "fraud:v1", json!({}))).await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["error"]["code"], "denied");
    assert!(r["error"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("not registered"));
    let deny = &r["deny_receipt"];
    assert_eq!(deny["index"], size0);
    assert_eq!(deny["event"]["action"], "deny");
    assert_eq!(
        deny["event"]["actor"],
        json!({"type": "service", "id": "modeltrail"})
    );
    assert_eq!(deny["event"]["metadata"]["attempted_action"], "approve");
    assert_eq!(
        deny["event"]["metadata"]["caller"],
        json!({"type": "user", "id": "alice"})
    );
    verify::receipt(
        &trust,
        deny["event"].to_string().as_bytes(),
        deny["tlog_proof"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let size1 = s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap();
    assert_eq!(size1, size0 + 1, "only the refusal was written");

    // Malformed for the registry: 400 and nothing written.
    assert_eq!(
        post_as(&s, &ci, &ev("register", c, "fraud:v1", json!({})))
            .await
            .0,
        201
    );
    let (status, _) = post_as(&s, &ops, &ev("promote", o, "fraud:v1", to("prod"))).await;
    assert_eq!(status, 400);
    let (status, _) = post_as(&s, &ops, &ev("promote", o, "fraud:v1", json!({}))).await;
    assert_eq!(status, 400);
    let size2 = s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap();
    assert_eq!(size2, size1 + 1);

    // Production needs two approvals and passing tests and fairness: the
    // answer lists every unmet requirement.
    let (status, r) = post_as(&s, &ops, &ev("promote", o, "fraud:v1", to("production"))).await;
    assert_eq!(status, 422);
    assert_eq!(r["error"]["reasons"].as_array().unwrap().len(), 3, "{r}");
    // The registrant may not approve; nobody approves twice.
    let admin = ("user", "admin");
    assert_eq!(
        post_as(&s, &s.token, &ev("register", admin, "fraud:v0", json!({})))
            .await
            .0,
        201
    );
    let (status, r) = post_as(&s, &s.token, &ev("approve", admin, "fraud:v0", json!({}))).await;
    assert_eq!(status, 422);
    assert!(
        r["error"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("may not approve"),
        "{r}"
    );
    assert_eq!(
        post_as(&s, &alice, &ev("approve", a, "fraud:v1", json!({})))
            .await
            .0,
        201
    );
    assert_eq!(
        post_as(&s, &alice, &ev("approve", a, "fraud:v1", json!({})))
            .await
            .0,
        422
    );
    assert_eq!(
        post_as(
            &s,
            &s.token,
            &ev("approve", ("user", "admin"), "fraud:v1", json!({}))
        )
        .await
        .0,
        201,
        "the admin may approve, in its own name"
    );
    for (kind, passed) in [("tests", true), ("fairness", true)] {
        let e = ev(
            "attest",
            c,
            "fraud:v1",
            json!({"kind": kind, "passed": passed}),
        );
        assert_eq!(post_as(&s, &ci, &e).await.0, 201);
    }
    // A rejection after the approvals resets them.
    assert_eq!(
        post_as(&s, &bob, &ev("reject", b, "fraud:v1", json!({})))
            .await
            .0,
        201
    );
    assert_eq!(
        post_as(&s, &ops, &ev("promote", o, "fraud:v1", to("production")))
            .await
            .0,
        422
    );
    assert_eq!(
        post_as(&s, &alice, &ev("approve", a, "fraud:v1", json!({})))
            .await
            .0,
        201
    );
    assert_eq!(
        post_as(&s, &bob, &ev("approve", b, "fraud:v1", json!({})))
            .await
            .0,
        201
    );
    // Deploying a version not in staging or production is refused.
    let deploy = |v: &str| {
        json!({"action": "deploy", "actor": {"type": "user", "id": "ops"},
               "timestamp": "2025-05-05T14:03:00Z",
               "subject": {"type": "deployment", "id": "fraud-prod"},
               "related": [{"type": "model_version", "id": v}]})
    };
    assert_eq!(post_as(&s, &ops, &deploy("fraud:v1")).await.0, 422);
    let (status, r) = post_as(&s, &ops, &ev("promote", o, "fraud:v1", to("production"))).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(post_as(&s, &ops, &deploy("fraud:v1")).await.0, 201);

    // v2 replaces v1: the server archives v1 with a logged event.
    assert_eq!(
        post_as(&s, &ci, &ev("register", c, "fraud:v2", json!({})))
            .await
            .0,
        201
    );
    for e in [
        (&alice, ev("approve", a, "fraud:v2", json!({}))),
        (&bob, ev("approve", b, "fraud:v2", json!({}))),
        (
            &ci,
            ev(
                "attest",
                c,
                "fraud:v2",
                json!({"kind": "tests", "passed": true}),
            ),
        ),
        (
            &ci,
            ev(
                "attest",
                c,
                "fraud:v2",
                json!({"kind": "fairness", "passed": true}),
            ),
        ),
    ] {
        assert_eq!(post_as(&s, e.0, &e.1).await.0, 201);
    }
    let (status, r) = post_as(&s, &ops, &ev("promote", o, "fraud:v2", to("production"))).await;
    assert_eq!(status, 201);
    let promote_index = r["index"].as_u64().unwrap();
    let (_, archived) = s
        .get_json(&format!("/v1/entries/{}", promote_index + 1))
        .await;
    assert_eq!(archived["event"]["action"], "archive");
    assert_eq!(archived["event"]["subject"]["id"], "fraud:v1");
    assert_eq!(archived["event"]["metadata"]["cause_index"], promote_index);
    let (_, v1) = s.get_json("/v1/models/fraud/versions/v1").await;
    assert_eq!(v1["stage"], "archived");
    // Rollback: only to a version that was in production.
    let (status, _) = post_as(&s, &ci, &ev("register", c, "fraud:v3", json!({}))).await;
    assert_eq!(status, 201);
    assert_eq!(
        post_as(&s, &ops, &ev("rollback", o, "fraud:v3", json!({})))
            .await
            .0,
        422
    );
    assert_eq!(
        post_as(&s, &ops, &ev("rollback", o, "fraud:v1", json!({})))
            .await
            .0,
        201
    );

    // The state, with the indexes it came from, each an entry of the log.
    let (status, v1) = s.get_json("/v1/models/fraud/versions/v1").await;
    assert_eq!(status, 200);
    assert_eq!(v1["stage"], "production");
    assert_eq!(v1["approvers"], json!(["user:alice", "user:bob"]));
    assert_eq!(v1["registered"]["by"], "service:ci");
    let events = v1["events"].as_array().unwrap();
    for i in events {
        let (_, e) = s.get_json(&format!("/v1/entries/{i}")).await;
        assert!(
            e["event"]["subject"]["id"] == "fraud:v1"
                || e["event"]["related"][0]["id"] == "fraud:v1"
                || e["event"]["related"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|x| x["id"] == "fraud:v1")),
            "{e}"
        );
    }
    // With proofs: each event's inclusion in the signed checkpoint.
    let (status, vp) = s.get_json("/v1/models/fraud/versions/v1?proofs=true").await;
    assert_eq!(status, 200);
    let cp = trust
        .open_checkpoint(vp["checkpoint"].as_str().unwrap().as_bytes())
        .unwrap();
    let proofs = vp["proofs"].as_array().unwrap();
    assert_eq!(proofs.len(), events.len());
    for p in proofs {
        let (_, e) = s.get_json(&format!("/v1/entries/{}", p["index"])).await;
        let (_, leaf) = verify::event_leaf(e["event"].to_string().as_bytes()).unwrap();
        assert_eq!(hex::encode(leaf), p["leaf_hash"].as_str().unwrap());
        modeltrail::tree::verify_inclusion(
            p["index"].as_u64().unwrap(),
            cp.checkpoint.size,
            &leaf,
            &hex_list(&p["inclusion_proof"]),
            &cp.checkpoint.root,
        )
        .unwrap();
    }
    assert_eq!(
        s.get_json("/v1/models/fraud/versions/v1?proofs=yes")
            .await
            .0,
        400
    );
    let (_, v2) = s.get_json("/v1/models/fraud/versions/v2").await;
    assert_eq!(v2["stage"], "archived");
    assert_eq!(s.get_json("/v1/models/fraud/versions/v9").await.0, 404);
    assert!(!v1["denials"].as_array().unwrap().is_empty());

    // Rebuilt from the log alone, the state is identical.
    let data = s.dir.path().join("data");
    s.stop().await;
    // The stopped server's last handles close asynchronously: retry
    // (bounded) while the database is still locked.
    let mut tries = 0;
    let out = loop {
        let out = std::process::Command::new(BIN)
            .args(["reindex", "--data-dir", data.to_str().unwrap()])
            .output()
            .unwrap();
        if out.status.code() == Some(2) && tries < 100 {
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        break out;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("lineage index: complete\n"), "{text}");
    assert!(text.contains("\nidentical: 4 model versions"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_notices_a_state_that_is_not_the_logs() {
    use modeltrail::store::{RocksOptions, RocksStore};
    let mut s = start().await;
    let e = ev("register", ("user", "admin"), "m:v1", json!({}));
    assert_eq!(post_as(&s, &s.token, &e).await.0, 201);
    let data = s.dir.path().join("data");
    s.stop().await;
    {
        // The stopped server's last handles close asynchronously: wait
        // (bounded) for the database lock.
        let mut tries = 0;
        let store = loop {
            match RocksStore::open(&data.join("db"), &RocksOptions::default()) {
                Ok(st) => break st,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("{e}"),
            }
        };
        let mut snap = modeltrail::state::Snapshot::load(&store).unwrap().unwrap();
        snap.registry.versions.get_mut("m:v1").unwrap().stage = "production".into();
        snap.save(&store).unwrap();
    }
    let reindex = || {
        let out = std::process::Command::new(BIN)
            .args(["reindex", "--data-dir", data.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = reindex();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("\ndiffered, replaced"), "{text}");
    let (code, text) = reindex();
    assert_eq!(code, Some(0), "{text}");
}
