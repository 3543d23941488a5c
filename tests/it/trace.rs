//! Lineage over the real API: search by any id, and traces from a
//! prediction back to its dataset that verify offline, through the library
//! and the command line; cycles end, long and wide traces are bounded.

use crate::common::*;
use modeltrail::trace::{self, MAX_NODES, MAX_PER_NODE};
use modeltrail::verify::{Failure, Policy};
use modeltrail::wire::TraceBundle as Bundle;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_modeltrail");

fn ev(action: &str, subject: (&str, &str), related: &[(&str, &str)]) -> Value {
    let related: Vec<Value> = related
        .iter()
        .map(|(t, i)| json!({"type": t, "id": i}))
        .collect();
    let mut e = json!({
        "action": action,
        "actor": {"type": "user", "id": "admin"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": subject.0, "id": subject.1},
    });
    if !related.is_empty() {
        e["related"] = Value::Array(related);
    }
    e
}

async fn post_ok(s: &TestServer, e: Value) -> u64 {
    let (status, r) = s.post(&e).await;
    assert!(status == 201, "{status} {r}");
    r["index"].as_u64().unwrap()
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_traces_back_to_its_dataset_and_verifies_offline() {
    // One principal plays every part here, so staging asks for no approval.
    let mut s = start_with(|c| {
        c.registry.staging.min_human_approvals = Some(0);
    })
    .await;
    post_ok(&s, ev("publish", ("dataset", "ds:2025-05-01"), &[])).await;
    post_ok(
        &s,
        ev(
            "train",
            ("run", "run-933"),
            &[
                ("dataset", "ds:2025-05-01"),
                ("commit", "9f1c2e7"),
                ("environment", "sha256:abc"),
            ],
        ),
    )
    .await;
    post_ok(
        &s,
        ev(
            "register",
            ("model_version", "fraud:v3"),
            &[("run", "run-933")],
        ),
    )
    .await;
    let mut promote = ev("promote", ("model_version", "fraud:v3"), &[]);
    promote["metadata"] = json!({"to_stage": "staging"});
    post_ok(&s, promote).await;
    let mut deploy = ev(
        "deploy",
        ("deployment", "fraud-prod"),
        &[("model_version", "fraud:v3")],
    );
    deploy["metadata"] = json!({"environment": "staging"});
    post_ok(&s, deploy).await;
    for p in 0..5 {
        post_ok(
            &s,
            ev(
                "predict",
                ("prediction", &format!("P{p}")),
                &[("deployment", "fraud-prod")],
            ),
        )
        .await;
    }
    // Unrelated noise that must not appear in the trace.
    post_ok(
        &s,
        ev("train", ("run", "run-other"), &[("dataset", "ds:other")]),
    )
    .await;

    // Search: every entry that mentions the deployment, with its role, paged.
    let (status, r) = s
        .get_json("/v1/search?type=deployment&id=fraud-prod&limit=4")
        .await;
    assert_eq!(status, 200);
    let list = r["entries"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["role"], "subject");
    assert_eq!(list[0]["event"]["action"], "deploy");
    assert!(list[1..].iter().all(|e| e["role"] == "related"));
    let next = r["next_start"].as_u64().unwrap();
    let (_, r2) = s
        .get_json(&format!(
            "/v1/search?type=deployment&id=fraud-prod&start={next}&limit=4"
        ))
        .await;
    assert_eq!(r2["entries"].as_array().unwrap().len(), 2);
    assert!(r2["next_start"].is_null());
    for bad in [
        "/v1/search?type=Deployment&id=x",
        "/v1/search?type=deployment",
        "/v1/search?type=deployment&id=x&limit=0",
        "/v1/search?type=deployment&id=x&start=01",
    ] {
        assert_eq!(s.get_json(bad).await.0, 400, "{bad}");
    }
    let (_, none) = s.get_json("/v1/search?type=deployment&id=nope").await;
    assert_eq!(none["entries"], json!([]));

    // The trace: prediction → deployment → model version → run → dataset,
    // commit, environment; one checkpoint, every entry provable.
    let (status, bundle) = s.get_json("/v1/trace/prediction/P3").await;
    assert_eq!(status, 200, "{bundle}");
    let b: Bundle = serde_json::from_value(bundle.clone()).unwrap();
    let kinds: Vec<String> = b
        .nodes
        .iter()
        .map(|n| format!("{}:{}", n.kind, n.id))
        .collect();
    assert_eq!(
        kinds,
        [
            "prediction:P3",
            "deployment:fraud-prod",
            "model_version:fraud:v3",
            "run:run-933",
            "dataset:ds:2025-05-01",
            "commit:9f1c2e7",
            "environment:sha256:abc"
        ]
    );
    // predict, deploy, register, promote, train, publish.
    assert_eq!(b.entries.len(), 6);
    assert!(!b.truncated);
    let policy = Policy::log_only(s.vkey.clone());
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let checked = trace::check(&policy, &bytes).unwrap();
    assert_eq!(checked.tree_size, b.tree_size);
    let text = trace::render(&b);
    assert!(text.starts_with("prediction:P3"), "{text}");
    assert!(text.contains("\n      run:run-933"), "{text}");

    // Tampering of any kind is caught.
    let mut t = bundle.clone();
    t["entries"][2]["event"]["actor"]["id"] = json!("mallory");
    assert!(matches!(
        trace::check(&policy, &serde_json::to_vec(&t).unwrap()),
        Err(Failure::Invalid(_))
    ));
    let mut t = bundle.clone();
    t["nodes"][3]["links"] = json!([]);
    assert!(matches!(
        trace::check(&policy, &serde_json::to_vec(&t).unwrap()),
        Err(Failure::Invalid(_))
    ));
    let mut t = bundle.clone();
    t["nodes"].as_array_mut().unwrap().remove(1);
    assert!(matches!(
        trace::check(&policy, &serde_json::to_vec(&t).unwrap()),
        Err(Failure::Invalid(_))
    ));
    let mut t = bundle.clone();
    t["entries"][0]["inclusion_proof"][0] = json!("zz");
    assert!(matches!(
        trace::check(&policy, &serde_json::to_vec(&t).unwrap()),
        Err(Failure::Malformed(_))
    ));

    // The command line: trace (verifies and saves), then verify offline.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("p3.trace.json");
    let vkey = s.vkey.to_string();
    let (code, out) = run(&[
        "trace",
        "--server",
        &s.base,
        "--vkey",
        &vkey,
        "--bundle",
        saved.to_str().unwrap(),
        "prediction",
        "P3",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OK: 6 entries on 7 nodes"), "{out}");
    let (code, out) = run(&[
        "trace",
        "--server",
        &s.base,
        "--vkey",
        &vkey,
        "prediction",
        "P99",
    ]);
    assert_eq!(code, Some(2), "{out}");
    s.stop().await;
    let (code, out) = run(&["verify", "trace", "--vkey", &vkey, saved.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let mut t: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    t["entries"][1]["event"]["subject"]["id"] = json!("fraud-staging");
    std::fs::write(&saved, t.to_string()).unwrap();
    let (code, out) = run(&["verify", "trace", "--vkey", &vkey, saved.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    std::fs::write(&saved, "{not json").unwrap();
    let (code, _) = run(&["verify", "trace", "--vkey", &vkey, saved.to_str().unwrap()]);
    assert_eq!(code, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycles_end_and_long_or_wide_traces_are_bounded() {
    let mut s = start().await;
    assert_eq!(s.get_json("/v1/trace/prediction/none").await.0, 404);
    assert_eq!(s.get_json("/v1/trace/Prediction/x").await.0, 400);

    // a → b → a: the walk ends and says so. (Traces go back in time, so
    // the cycle is b's link, then a's.)
    post_ok(&s, ev("link", ("node", "b"), &[("node", "a")])).await;
    post_ok(&s, ev("link", ("node", "a"), &[("node", "b")])).await;
    let (status, b) = s.get_json("/v1/trace/node/a").await;
    assert_eq!(status, 200);
    let b: Bundle = serde_json::from_value(b).unwrap();
    assert_eq!(b.nodes.len(), 2);
    assert!(b.notes.iter().any(|n| n.contains("cycle")), "{:?}", b.notes);
    trace::check(
        &Policy::log_only(s.vkey.clone()),
        &serde_json::to_vec(&b).unwrap(),
    )
    .unwrap();

    // A chain longer than the node bound, and a node wider than the
    // per-node bound: both truncated, both still verify.
    // The chain is logged from its far end, so each link points back in
    // time.
    let n_chain = MAX_NODES + 4;
    for i in (0..n_chain).rev() {
        let e = ev(
            "link",
            ("chain", &format!("c{i}")),
            &[("chain", &format!("c{}", i + 1))],
        );
        post_ok(&s, e).await;
    }
    let mut tasks = Vec::new();
    for i in 0..MAX_PER_NODE + 3 {
        tasks.push(ev("touch", ("wide", "w"), &[("leaf", &format!("l{i}"))]));
    }
    let s_ref = &s;
    let chunks: Vec<Vec<Value>> = tasks.chunks(64).map(|c| c.to_vec()).collect();
    for chunk in chunks {
        let futs: Vec<_> = chunk.into_iter().map(|e| post_ok(s_ref, e)).collect();
        for f in futs {
            f.await;
        }
    }
    let policy = Policy::log_only(s.vkey.clone());
    let (_, long) = s.get_json("/v1/trace/chain/c0").await;
    let long: Bundle = serde_json::from_value(long).unwrap();
    assert!(long.truncated);
    assert_eq!(long.nodes.len(), MAX_NODES);
    trace::check(&policy, &serde_json::to_vec(&long).unwrap()).unwrap();
    let (_, wide) = s.get_json("/v1/trace/wide/w").await;
    let wide: Bundle = serde_json::from_value(wide).unwrap();
    assert!(wide.truncated && wide.nodes[0].truncated);
    assert_eq!(wide.nodes[0].entries.len(), MAX_PER_NODE);
    trace::check(&policy, &serde_json::to_vec(&wide).unwrap()).unwrap();
    s.stop().await;
}

/// The walk's work at a node is bounded by the entries about it, not by how
/// many entries mention it: a deployment named by thousands of predictions
/// is one short range read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_mentioned_by_many_entries_costs_one_bounded_read() {
    use modeltrail::audit::event::prepare;
    use modeltrail::log::{Log, LogConfig};
    use modeltrail::note::{KeyName, SignerKey};
    use modeltrail::store::fault::FaultyStore;
    use modeltrail::store::{MemStore, Store};
    use std::sync::Arc;
    let store = Arc::new(FaultyStore::new(Arc::new(MemStore::new())));
    let key = SignerKey::from_seed(KeyName::new("t.example/log").unwrap(), [2u8; 32]);
    let log = Log::open(
        store.clone() as Arc<dyn Store>,
        key.clone(),
        LogConfig::new("t.example/log"),
        Arc::new(modeltrail::metrics::Metrics::default()),
    )
    .unwrap();
    let append = |e: Value| {
        let p = prepare(e.to_string().as_bytes()).unwrap();
        log.append(p)
    };
    append(ev("register", ("model_version", "m:v1"), &[("run", "r1")]))
        .await
        .unwrap();
    append(ev(
        "deploy",
        ("deployment", "d"),
        &[("model_version", "m:v1")],
    ))
    .await
    .unwrap();
    const N: usize = 3000;
    let mut last = 0;
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let futs: Vec<_> = chunk
            .iter()
            .map(|i| {
                append(ev(
                    "predict",
                    ("prediction", &format!("p{i}")),
                    &[("deployment", "d")],
                ))
            })
            .collect();
        for f in futs {
            last = f.await.unwrap().index;
        }
    }
    let _ = last;
    let before = store.mention_keys_read();
    let b = trace::build(&log, modeltrail::audit::Ref::new("prediction", "p2999")).unwrap();
    let read = store.mention_keys_read() - before;
    assert_eq!(
        b.nodes
            .iter()
            .map(|n| n.reference().to_string())
            .collect::<Vec<_>>(),
        [
            "prediction:p2999",
            "deployment:d",
            "model_version:m:v1",
            "run:r1"
        ]
    );
    assert!(read < 20, "the walk read {read} lineage keys");
    let policy = Policy::log_only(key.verifier());
    trace::check(&policy, &serde_json::to_vec(&b).unwrap()).unwrap();
    log.shutdown().await;
}
