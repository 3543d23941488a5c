//! The registry tells the truth with the default configuration: several
//! models each with their own production slot, MLflow's stage spelling,
//! human approvals only, deployments that follow stages, auditor queries
//! by actor, action and time, traces that go back in time only, approval
//! chain reports that verify offline, and the seeds' event template.

use crate::common::*;
use modeltrail::trace;
use modeltrail::verify::Policy as Trust;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_modeltrail");

fn ev(action: &str, who: (&str, &str), version: &str, metadata: Value, ts: &str) -> Value {
    json!({
        "action": action,
        "actor": {"type": who.0, "id": who.1},
        "timestamp": ts,
        "subject": {"type": "model_version", "id": version},
        "metadata": metadata,
    })
}

struct Team {
    ci: String,
    alice: String,
    bob: String,
    bot: String,
    ops: String,
}

const C: (&str, &str) = ("service", "ci");
const A: (&str, &str) = ("user", "alice");
const B: (&str, &str) = ("user", "bob");
const O: (&str, &str) = ("user", "ops");

async fn team(s: &TestServer) -> Team {
    Team {
        ci: grant(s, "service", "ci", &["submitter"]).await.0,
        alice: grant(s, "user", "alice", &["approver"]).await.0,
        bob: grant(s, "user", "bob", &["approver"]).await.0,
        bot: grant(s, "service", "bot", &["approver"]).await.0,
        ops: grant(s, "user", "ops", &["deployer"]).await.0,
    }
}

async fn ok(s: &TestServer, token: &str, e: &Value) -> u64 {
    let (status, r) = post_as(s, token, e).await;
    assert_eq!(status, 201, "{e} → {r}");
    r["index"].as_u64().unwrap()
}

async fn refused(s: &TestServer, token: &str, e: &Value) -> Vec<String> {
    let (status, r) = post_as(s, token, e).await;
    assert_eq!(status, 422, "{e} → {r}");
    assert_eq!(r["error"]["code"], "denied", "{r}");
    r["error"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Register, approve twice and promote to production (MLflow spelling).
async fn to_production(s: &TestServer, t: &Team, id: &str, ts: &str) -> u64 {
    to_production_from(s, t, id, ts, None).await
}

/// The same, the registration naming the run it came from.
async fn to_production_from(
    s: &TestServer,
    t: &Team,
    id: &str,
    ts: &str,
    run: Option<&str>,
) -> u64 {
    let mut reg = ev("register", C, id, json!({}), ts);
    if let Some(run) = run {
        reg["related"] = json!([{"type": "run", "id": run}]);
    }
    ok(s, &t.ci, &reg).await;
    ok(s, &t.alice, &ev("approve", A, id, json!({}), ts)).await;
    ok(s, &t.bob, &ev("approve", B, id, json!({}), ts)).await;
    promote(s, t, id, "Production", ts, 201).await
}

/// A promotion by ops, answered with `status`; the entry's index if 201.
async fn promote(s: &TestServer, t: &Team, id: &str, to: &str, ts: &str, status: u16) -> u64 {
    let e = ev("promote", O, id, json!({"to_stage": to}), ts);
    let (got, r) = post_as(s, &t.ops, &e).await;
    assert_eq!(got, status, "{e} → {r}");
    r["index"].as_u64().unwrap_or(0)
}

fn deploy(version: &str, deployment: &str, env: Option<&str>) -> Value {
    let mut e = json!({"action": "deploy", "actor": {"type": "user", "id": "ops"},
        "timestamp": "2025-06-01T00:00:00Z",
        "subject": {"type": "deployment", "id": deployment},
        "related": [{"type": "model_version", "id": version}]});
    if let Some(env) = env {
        e["metadata"] = json!({"environment": env});
    }
    e
}

fn predict(id: &str, deployment: &str) -> Value {
    json!({"action": "predict", "actor": {"type": "service", "id": "ci"},
        "timestamp": "2025-06-02T00:00:00Z",
        "subject": {"type": "prediction", "id": id},
        "related": [{"type": "deployment", "id": deployment}]})
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn size(s: &TestServer) -> u64 {
    s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_keep_their_own_production_versions() {
    let s = start().await;
    let t = team(&s).await;
    to_production(&s, &t, "fraud:v3", "2025-04-10T09:00:00Z").await;
    to_production(&s, &t, "churn:v1", "2025-04-11T09:00:00Z").await;
    // Nothing of fraud was archived when churn entered production.
    let (_, v3) = s.get_json("/v1/models/fraud/versions/v3").await;
    assert_eq!(v3["stage"], "production", "{v3}");
    assert_eq!(v3["approval_status"], "Approved");
    let (status, models) = s.get_json("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(
        models["models"],
        json!([
            {"name": "churn", "production": "churn:v1", "version_count": 1},
            {"name": "fraud", "production": "fraud:v3", "version_count": 1},
        ])
    );
    let (_, page) = s.get_json("/v1/models?limit=1").await;
    assert_eq!(page["models"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_start"], 1);
    let (_, page2) = s.get_json("/v1/models?start=1&limit=1").await;
    assert_eq!(page2["models"][0]["name"], "fraud");
    assert!(page2["next_start"].is_null());

    // fraud:v4 replaces fraud:v3 only.
    let at = to_production(&s, &t, "fraud:v4", "2025-05-10T09:00:00Z").await;
    let (_, archived) = s.get_json(&format!("/v1/entries/{}", at + 1)).await;
    assert_eq!(archived["event"]["action"], "archive");
    assert_eq!(archived["event"]["subject"]["id"], "fraud:v3");
    let (_, fraud) = s.get_json("/v1/models/fraud").await;
    assert_eq!(fraud["production"], "fraud:v4");
    let stages: Vec<(&str, &str)> = fraud["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_str().unwrap(), v["stage"].as_str().unwrap()))
        .collect();
    assert_eq!(stages, vec![("v3", "archived"), ("v4", "production")]);
    let (_, churn) = s.get_json("/v1/models/churn").await;
    assert_eq!(churn["production"], "churn:v1");
    assert_eq!(churn["versions"][0]["stage"], "production");

    // Unknown model, unknown version, bad paths.
    assert_eq!(s.get_json("/v1/models/nope").await.0, 404);
    assert_eq!(s.get_json("/v1/models/fraud/versions/v9").await.0, 404);
    assert_eq!(s.get_json("/v1/models?limit=0").await.0, 400);
    assert_eq!(s.get_json("/v1/models?start=x").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_default_gates_and_every_refusal() {
    let s = start().await;
    let t = team(&s).await;
    let ts = "2025-04-10T09:00:00Z";
    ok(&s, &t.ci, &ev("register", C, "fraud:v1", json!({}), ts)).await;
    // No approvals: not even staging.
    let why = refused(
        &s,
        &t.ops,
        &ev("promote", O, "fraud:v1", json!({"to_stage": "Staging"}), ts),
    )
    .await;
    assert!(
        why[0].contains("1 approvals from distinct human"),
        "{why:?}"
    );
    // A service's approval does not count toward a human gate.
    ok(
        &s,
        &t.bot,
        &ev("approve", ("service", "bot"), "fraud:v1", json!({}), ts),
    )
    .await;
    refused(
        &s,
        &t.ops,
        &ev("promote", O, "fraud:v1", json!({"to_stage": "staging"}), ts),
    )
    .await;
    let (_, v) = s.get_json("/v1/models/fraud/versions/v1").await;
    assert_eq!(v["approval_status"], "PendingManualApproval");
    ok(&s, &t.alice, &ev("approve", A, "fraud:v1", json!({}), ts)).await;
    let (_, v) = s.get_json("/v1/models/fraud/versions/v1").await;
    assert_eq!(v["approval_status"], "Approved");
    ok(
        &s,
        &t.ops,
        &ev("promote", O, "fraud:v1", json!({"to_stage": "STAGING"}), ts),
    )
    .await;
    let (_, v) = s.get_json("/v1/models/fraud/versions/v1").await;
    assert_eq!(v["stage"], "staging");
    assert_eq!(v["approval_status"], "PendingManualApproval");
    // Already in staging.
    let why = refused(
        &s,
        &t.ops,
        &ev("promote", O, "fraud:v1", json!({"to_stage": "Staging"}), ts),
    )
    .await;
    assert!(why[0].contains("already in staging"), "{why:?}");
    // Production needs two distinct humans: alice and the bot are not.
    let why = refused(
        &s,
        &t.ops,
        &ev(
            "promote",
            O,
            "fraud:v1",
            json!({"to_stage": "Production"}),
            ts,
        ),
    )
    .await;
    assert!(why[0].contains("2 approvals"), "{why:?}");
    // A staging version is not deployed to production (the default
    // environment), but may go to staging.
    let why = refused(&s, &t.ops, &deploy("fraud:v1", "fraud-prod", None)).await;
    assert!(why[0].contains("only a production version"), "{why:?}");
    ok(
        &s,
        &t.ops,
        &deploy("fraud:v1", "fraud-stg", Some("staging")),
    )
    .await;
    // Unknown stage spellings: 400, nothing written.
    let before = size(&s).await;
    for bad in ["prod", "Stage", ""] {
        let (status, r) = post_as(
            &s,
            &t.ops,
            &ev("promote", O, "fraud:v1", json!({"to_stage": bad}), ts),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {r}");
    }
    // Not name:version.
    let (status, _) = post_as(&s, &t.ci, &ev("register", C, "fraud", json!({}), ts)).await;
    assert_eq!(status, 400);
    assert_eq!(size(&s).await, before);
    // Rejected: the status says so; production and rollback refused.
    ok(&s, &t.bob, &ev("reject", B, "fraud:v1", json!({}), ts)).await;
    let (_, v) = s.get_json("/v1/models/fraud/versions/v1").await;
    assert_eq!(v["approval_status"], "Rejected");
    // Every refusal above was logged as a deny and is on the version.
    assert_eq!(v["denials"].as_array().unwrap().len(), 5, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attesters_signed_attestations_and_rollback_refusals() {
    let policy: modeltrail::registry::Policy = toml::from_str(
        r#"
        [production]
        attestations = ["eval"]
        attesters = { eval = ["service:ci"] }
        "#,
    )
    .unwrap();
    let s = start_with(|c| c.registry = policy).await;
    let t = team(&s).await;
    let ts = "2025-04-10T09:00:00Z";
    let rogue = grant(&s, "service", "rogue", &["submitter"]).await.0;
    let eval = |v: &str, who: (&str, &str), passed: bool| {
        ev(
            "attest",
            who,
            v,
            json!({"kind": "eval", "passed": passed}),
            ts,
        )
    };
    for v in ["m:v1", "m:v2"] {
        ok(&s, &t.ci, &ev("register", C, v, json!({}), ts)).await;
        ok(&s, &t.alice, &ev("approve", A, v, json!({}), ts)).await;
        ok(&s, &t.bob, &ev("approve", B, v, json!({}), ts)).await;
        // An attester not on the list: refused and logged.
        let why = refused(&s, &rogue, &eval(v, ("service", "rogue"), true)).await;
        assert!(why[0].contains("not an attester of eval"), "{why:?}");
        let why = refused(
            &s,
            &t.ops,
            &ev("promote", O, v, json!({"to_stage": "production"}), ts),
        )
        .await;
        assert!(why[0].contains("no eval attestation"), "{why:?}");
        ok(&s, &t.ci, &eval(v, C, true)).await;
        ok(
            &s,
            &t.ops,
            &ev("promote", O, v, json!({"to_stage": "production"}), ts),
        )
        .await;
    }
    // m:v1 left production; its eval fails afterwards: no rollback to it.
    ok(&s, &t.ci, &eval("m:v1", C, false)).await;
    let why = refused(&s, &t.ops, &ev("rollback", O, "m:v1", json!({}), ts)).await;
    assert!(why[0].contains("did not pass"), "{why:?}");
    // It passes again, but is rejected: still no rollback.
    ok(&s, &t.ci, &eval("m:v1", C, true)).await;
    ok(&s, &t.bob, &ev("reject", B, "m:v1", json!({}), ts)).await;
    let why = refused(&s, &t.ops, &ev("rollback", O, "m:v1", json!({}), ts)).await;
    assert!(why[0].contains("rejected"), "{why:?}");
    // A bad policy is refused at start: attesters are services.
    let bad: modeltrail::registry::Policy =
        toml::from_str("[staging]\nattesters = { eval = [\"user:alice\"] }\n").unwrap();
    assert!(bad.validate().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_actor_action_and_time() {
    let s = start().await;
    let t = team(&s).await;
    // Q1 and Q2 approvals by alice and bob on two models.
    to_production(&s, &t, "fraud:v1", "2025-02-10T09:00:00Z").await;
    to_production(&s, &t, "churn:v1", "2025-05-10T09:00:00+02:00").await;
    to_production(&s, &t, "fraud:v2", "2025-06-30T23:30:00-01:00").await;
    let hits = |r: &Value| -> Vec<(String, String, String)> {
        r["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let ev = &e["event"];
                (
                    ev["action"].as_str().unwrap().to_string(),
                    format!(
                        "{}:{}",
                        ev["actor"]["type"].as_str().unwrap(),
                        ev["actor"]["id"].as_str().unwrap()
                    ),
                    ev["subject"]["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // Every approval by alice in Q2 (2025-06-30T23:30-01:00 is July 1 UTC).
    let (status, r) = s
        .get_json("/v1/search?actor=user:alice&action=approve&since=2025-04-01T00:00:00Z&until=2025-06-30T23:59:59Z")
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        hits(&r),
        vec![("approve".into(), "user:alice".into(), "churn:v1".into())]
    );
    assert!(r["entries"][0].get("role").is_none());
    // Every approval by alice, ever; and by action alone, paged.
    let (_, r) = s
        .get_json("/v1/search?actor=user:alice&action=approve")
        .await;
    assert_eq!(hits(&r).len(), 3);
    let (_, r) = s.get_json("/v1/search?action=promote&limit=2").await;
    assert_eq!(hits(&r).len(), 2);
    let next = r["next_start"].as_u64().unwrap();
    let (_, r2) = s
        .get_json(&format!("/v1/search?action=promote&limit=2&start={next}"))
        .await;
    assert_eq!(hits(&r2).len(), 1);
    assert_eq!(hits(&r2)[0].2, "fraud:v2");
    // By time alone: July 2025 (UTC) holds fraud:v2's four events.
    let (_, r) = s
        .get_json("/v1/search?since=2025-07-01T00:00:00Z&until=2025-07-31T23:59:59Z")
        .await;
    assert_eq!(hits(&r).len(), 4, "{r}");
    assert!(hits(&r).iter().all(|h| h.2 == "fraud:v2"));
    // since only; until only.
    let (_, r) = s.get_json("/v1/search?until=2025-03-01T00:00:00Z").await;
    assert!(hits(&r).iter().all(|h| h.2 == "fraud:v1"));
    assert_eq!(hits(&r).len(), 4);
    // Combined with lineage.
    let (_, r) = s
        .get_json("/v1/search?type=model_version&id=churn:v1&actor=user:bob")
        .await;
    assert_eq!(
        hits(&r),
        vec![("approve".into(), "user:bob".into(), "churn:v1".into())]
    );
    assert_eq!(r["entries"][0]["role"], "subject");
    // Bad queries: 400.
    for bad in [
        "/v1/search",
        "/v1/search?since=2025-07-01T00:00:00Z&until=2025-06-01T00:00:00Z",
        "/v1/search?since=yesterday",
        "/v1/search?until=2025-13-01T00:00:00Z",
        "/v1/search?actor=alice",
        "/v1/search?actor=robot:x",
        "/v1/search?action=Approve",
        "/v1/search?type=model_version",
    ] {
        assert_eq!(s.get_json(bad).await.0, 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_prediction_traces_to_the_version_that_served_it() {
    let s = start().await;
    let t = team(&s).await;
    let ts = "2025-04-10T09:00:00Z";
    let admin = s.token.clone();
    let mut publish = json!({"action": "train", "actor": {"type": "user", "id": "admin"},
        "timestamp": ts, "subject": {"type": "run", "id": "run-3"},
        "related": [{"type": "dataset", "id": "ds:old"}]});
    ok(&s, &admin, &publish).await;
    publish["subject"]["id"] = json!("run-4");
    publish["related"][0]["id"] = json!("ds:new");
    ok(&s, &admin, &publish).await;
    to_production_from(&s, &t, "fraud:v3", ts, Some("run-3")).await;
    ok(&s, &t.ops, &deploy("fraud:v3", "fraud-prod", None)).await;
    let p1 = ok(&s, &t.ci, &predict("P1", "fraud-prod")).await;
    // The hand-over: fraud:v4 (from another run and dataset) replaces v3.
    to_production_from(&s, &t, "fraud:v4", ts, Some("run-4")).await;
    ok(&s, &t.ops, &deploy("fraud:v4", "fraud-prod", None)).await;
    let p2 = ok(&s, &t.ci, &predict("P2", "fraud-prod")).await;

    let trust = Trust::log_only(s.vkey.clone());
    let bundle = |id: &str| {
        let http = s.http.clone();
        let url = s.url(&format!("/v1/trace/prediction/{id}"));
        async move { http.get(url).send().await.unwrap().bytes().await.unwrap() }
    };
    for (id, at, served, run, dataset, not_dataset) in [
        ("P1", p1, "fraud:v3", "run-3", "ds:old", "ds:new"),
        ("P2", p2, "fraud:v4", "run-4", "ds:new", "ds:old"),
    ] {
        let bytes = bundle(id).await;
        let checked = trace::check(&trust, &bytes).unwrap();
        let b = &checked.bundle;
        let sb = b.served_by.as_ref().expect("served_by");
        assert_eq!(sb.model_version, served, "{id}");
        assert_eq!(sb.entry_index, at);
        let nodes: Vec<String> = b.nodes.iter().map(|n| n.reference().to_string()).collect();
        assert!(
            nodes.contains(&format!("model_version:{served}")),
            "{nodes:?}"
        );
        assert!(nodes.contains(&format!("run:{run}")), "{nodes:?}");
        assert!(nodes.contains(&format!("dataset:{dataset}")), "{nodes:?}");
        assert!(
            !nodes.contains(&format!("dataset:{not_dataset}")),
            "{id}: {nodes:?}"
        );
        // Nothing after the prediction, and one deploy for the deployment.
        assert!(b.entries.iter().all(|e| e.index <= at), "{id}");
        let dep = b.nodes.iter().find(|n| n.kind == "deployment").unwrap();
        assert_eq!(dep.entries, vec![sb.deploy_index]);
        assert!(trace::render(b).contains(&format!("served by model_version:{served}")));
    }
    // P1's trace stops before fraud:v3's archive (logged after P1).
    let b1 = trace::check(&trust, &bundle("P1").await).unwrap().bundle;
    assert!(!b1.nodes.iter().any(|n| n.id == "fraud:v4"));
    // From the archived version itself, the archive's link to its
    // successor is not followed.
    let bytes = s
        .http
        .get(s.url("/v1/trace/model_version/fraud:v3"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let b3 = trace::check(&trust, &bytes).unwrap().bundle;
    assert!(b3
        .entries
        .iter()
        .any(|e| e.event.get().contains("\"archive\"")));
    assert!(
        !b3.nodes.iter().any(|n| n.id == "fraud:v4"),
        "{:?}",
        b3.nodes
    );

    // A bundle whose fraud:v3 node also holds v3's archive (logged after
    // the deploy that links to v3) is refused: nodes never reach forward.
    let p1_bytes = bundle("P1").await;
    let mut forged: Value = serde_json::from_slice(&p1_bytes).unwrap();
    let whole_v3: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(forged["tree_size"], whole_v3["tree_size"]);
    let archive = whole_v3["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["action"] == "archive")
        .unwrap()
        .clone();
    let ai = archive["index"].clone();
    forged["entries"].as_array_mut().unwrap().push(archive);
    forged["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["type"] == "model_version" && n["id"] == "fraud:v3")
        .unwrap()["entries"]
        .as_array_mut()
        .unwrap()
        .push(ai);
    let err = trace::check(&trust, forged.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("is not before"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_chain_reports_verify_offline() {
    let s = start().await;
    let t = team(&s).await;
    let ts = "2025-04-10T09:00:00Z";
    ok(&s, &t.ci, &ev("register", C, "fraud:v3", json!({}), ts)).await;
    ok(
        &s,
        &t.ci,
        &ev(
            "attest",
            C,
            "fraud:v3",
            json!({"kind": "eval", "passed": true}),
            ts,
        ),
    )
    .await;
    promote(&s, &t, "fraud:v3", "production", ts, 422).await;
    ok(&s, &t.alice, &ev("approve", A, "fraud:v3", json!({}), ts)).await;
    ok(&s, &t.bob, &ev("approve", B, "fraud:v3", json!({}), ts)).await;
    promote(&s, &t, "fraud:v3", "production", ts, 201).await;
    ok(&s, &t.ops, &deploy("fraud:v3", "fraud-prod", None)).await;
    // Let the published checkpoint cover everything (bounded wait).
    let want = size(&s).await.to_string();
    for _ in 0..100 {
        let cp = s.get("/checkpoint").await.text().await.unwrap();
        if cp.lines().nth(1) == Some(want.as_str()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let vkey = s.vkey.to_string();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("chain.json");
    let report_cmd = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "approval-chain",
            "--server",
            &s.base,
            "--vkey",
            &vkey,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, _, err) = report_cmd(&["--out", json_path.to_str().unwrap(), "fraud:v3"]);
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let kinds: Vec<&str> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "registration",
            "attestation",
            "denial",
            "approval",
            "approval",
            "promotion",
            "deployment"
        ]
    );
    assert_eq!(report["items"][1]["detail"], "eval passed, unsigned");
    assert_eq!(report["items"][3]["actor"], "user:alice");
    let (code, out, _) = run(&[
        "verify",
        "report",
        "--vkey",
        &vkey,
        json_path.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("7 events"), "{out}");
    // A doctored summary, or a dropped proof hash: exit 1.
    for tamper in [
        |r: &mut Value| r["items"][3]["actor"] = json!("user:mallory"),
        |r: &mut Value| {
            r["items"][0]["inclusion_proof"]
                .as_array_mut()
                .unwrap()
                .pop();
        },
    ] {
        let mut bad = report.clone();
        tamper(&mut bad);
        let p = dir.path().join("bad.json");
        std::fs::write(&p, bad.to_string()).unwrap();
        let (code, out, _) = run(&["verify", "report", "--vkey", &vkey, p.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{out}");
    }
    // CSV: a header and one row per item.
    let (code, csv, err) = report_cmd(&["--format", "csv", "fraud:v3"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("model_version,tree_size,index,kind"));
    assert_eq!(lines.len(), 8);
    assert!(lines[3].contains(",denial,"), "{csv}");
    // A version never registered: a clear error, exit 2.
    let (code, _, err) = report_cmd(&["fraud:v9"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("404") || err.contains("no model version"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_event_template_with_its_own_digest() {
    let s = start().await;
    let mut e = json!({
        "event_id": "018f4c1e-7d2a-7c3b-9a4e-3b2f1c0d9e8f",
        "action": "train",
        "actor": {"type": "user", "id": "admin"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "run", "id": "run-933"},
        "related": [{"type": "dataset", "id": "ds:2025-05-01"}],
        "metadata": {"n": 3},
        "integrity": {"artifact_sha256": "b".repeat(64)},
    });
    let digest = hex::encode(Sha256::digest(modeltrail::audit::event::canonicalize(&e)));
    assert_eq!(modeltrail::audit::event::event_sha256(&e).unwrap(), digest);
    e["integrity"]["event_sha256"] = json!(digest);
    let before = size(&s).await;
    // A wrong digest, and one without its own event_id: 422, nothing written.
    let mut wrong = e.clone();
    wrong["metadata"]["n"] = json!(4);
    let (status, r) = s.post(&wrong).await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["error"]["code"], "digest_mismatch");
    let mut no_id = e.clone();
    no_id.as_object_mut().unwrap().remove("event_id");
    assert_eq!(s.post(&no_id).await.0, 422);
    let mut not_hex = e.clone();
    not_hex["integrity"]["event_sha256"] = json!("XYZ");
    assert_eq!(s.post(&not_hex).await.0, 400);
    assert_eq!(size(&s).await, before);
    let (status, r) = s.post(&e).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["event"]["integrity"]["event_sha256"], digest);
}
