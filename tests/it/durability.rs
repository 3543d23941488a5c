//! Acknowledged events survive SIGKILL: a few kill/restart cycles of the real
//! binary under concurrent load. `cargo bench --bench crash_cycles` runs many.

use crate::common::crash;
use serde_json::Value;

/// A call with a bearer token and an optional JSON body: the status and
/// the JSON answer (null if none).
fn json_call(
    http: &reqwest::Client,
    base: String,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> impl std::future::Future<Output = (u16, Value)> {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    async move {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let cycles = std::env::var("MODELTRAIL_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // A small leaf-index batch: the writer's puts, which skip the
    // write-ahead log, are under way at every kill.
    let (size, acked) = crash::run_cycles(
        env!("CARGO_BIN_EXE_modeltrail"),
        cycles,
        16,
        std::time::Duration::from_millis(700),
        64,
    )
    .await;
    assert!(acked > 0, "no append was acknowledged");
    assert!(size >= acked as u64);
    eprintln!("{cycles} cycles: {acked} acknowledged, tree size {size}");
}

/// `limits.leaf_index_batch` is bounded both ways.
#[test]
fn the_leaf_index_batch_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let resolve = |v: &str| {
        std::fs::write(&path, format!("[limits]\nleaf_index_batch = {v}\n")).unwrap();
        modeltrail::server::ServerConfig::resolve(modeltrail::server::Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
    };
    assert_eq!(resolve("64").unwrap().leaf_index_batch, 64);
    assert!(resolve("0").unwrap_err().to_string().contains("at least 1"));
    let err = resolve("1048577").unwrap_err().to_string();
    assert!(err.contains("at most 1048576"), "{err}");
}

/// Derived state is a fold over the log: access changes and registry
/// events acknowledged just before a SIGKILL, with no snapshot of the
/// derived state written since, take effect after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_access_changes_survive_sigkill_before_any_snapshot() {
    use serde_json::json;
    let bin = env!("CARGO_BIN_EXE_modeltrail");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // No periodic snapshot during the test: only the fold can recover.
    let config = dir.path().join("slow-snapshots.toml");
    std::fs::write(&config, "[limits]\nsnapshot_interval_secs = 3600\n").unwrap();
    let cfg = config.to_str().unwrap();
    let mut server = crash::spawn_with(bin, &data, &["--config", cfg]);
    let admin = crash::admin_token(&data);
    let http = reqwest::Client::new();
    let call =
        |base: String, method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
            json_call(&http, base, method, path, token, body)
        };
    let grant = |base: String, kind: &str, id: &str, role: &str| {
        call(
            base,
            reqwest::Method::POST,
            "/v1/admin/tokens",
            &admin,
            Some(json!({"principal": {"type": kind, "id": id}, "roles": [role]})),
        )
    };
    let ev = |action: &str, kind: &str, id: &str| {
        json!({"action": action, "actor": {"type": kind, "id": id},
               "timestamp": "2025-05-05T14:03:00Z",
               "subject": {"type": "model_version", "id": "m:v1"},
               "metadata": {"kind": "tests", "passed": true}})
    };
    let (status, g) = grant(server.base.clone(), "user", "alice", "approver").await;
    assert_eq!(status, 201, "{g}");
    let alice = g["token"].as_str().unwrap().to_string();
    let alice_id = g["token_id"].as_str().unwrap().to_string();
    let (status, g) = grant(server.base.clone(), "service", "ci", "submitter").await;
    assert_eq!(status, 201, "{g}");
    let ci = g["token"].as_str().unwrap().to_string();
    let post = |base: String, token: &str, e: Value| {
        call(base, reqwest::Method::POST, "/v1/events", token, Some(e))
    };
    let (status, r) = post(server.base.clone(), &ci, ev("register", "service", "ci")).await;
    assert_eq!(status, 201, "{r}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // The grants and the registration are back, from the log alone.
    let mut server = crash::spawn_with(bin, &data, &["--config", cfg]);
    let (status, r) = post(server.base.clone(), &alice, ev("approve", "user", "alice")).await;
    assert_eq!(status, 201, "alice's grant was lost: {r}");
    let (status, r) = call(
        server.base.clone(),
        reqwest::Method::DELETE,
        &format!("/v1/admin/tokens/{alice_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // The revocation is back too: alice is refused, ci is not, and the
    // version's state has its registration and alice's approval.
    let mut server = crash::spawn_with(bin, &data, &["--config", cfg]);
    let (status, _) = post(server.base.clone(), &alice, ev("approve", "user", "alice")).await;
    assert_eq!(status, 401, "a logged revocation did not take effect");
    let (status, r) = post(server.base.clone(), &ci, ev("attest", "service", "ci")).await;
    assert_eq!(status, 201, "{r}");
    let (status, v) = call(
        server.base.clone(),
        reqwest::Method::GET,
        "/v1/models/m/versions/v1",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["registered"]["by"], "service:ci");
    assert_eq!(v["approvers"], json!(["user:alice"]));
    assert_eq!(v["attestations"].as_array().unwrap().len(), 1);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// The server writes its snapshots of the derived state incrementally
/// (only the records that changed): after snapshots taken between events
/// of several models and tokens, out of the happy order, and a SIGKILL
/// that leaves no snapshot at shutdown, the stored snapshot is exactly the
/// fold of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_snapshots_are_the_fold_of_the_log() {
    use modeltrail::store::{RocksOptions, RocksStore, Store};
    use serde_json::json;
    let bin = env!("CARGO_BIN_EXE_modeltrail");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("fast-snapshots.toml");
    std::fs::write(
        &config,
        "[limits]\nsnapshot_interval_secs = 1\n\
         [registry.staging]\nmin_human_approvals = 0\n\
         [registry.production]\nmin_human_approvals = 0\n",
    )
    .unwrap();
    let mut server = crash::spawn_with(bin, &data, &["--config", config.to_str().unwrap()]);
    let admin = crash::admin_token(&data);
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let send = |method: reqwest::Method, path: &str, body: Option<Value>| {
        json_call(&http, base.clone(), method, path, &admin, body)
    };
    let ev = |action: &str, version: &str, metadata: Value| {
        json!({"action": action, "actor": {"type": "user", "id": "admin"},
               "timestamp": "2025-05-05T14:03:00Z",
               "subject": {"type": "model_version", "id": version},
               "metadata": metadata})
    };
    let post = |e: Value| send(reqwest::Method::POST, "/v1/events", Some(e));
    let prod = || json!({"to_stage": "Production"});
    let wait_for_a_snapshot = || tokio::time::sleep(std::time::Duration::from_secs(4));

    // Before the first snapshot: two models, a token, an approval of a
    // version not registered yet (denied and logged).
    assert_eq!(post(ev("approve", "m3:v1", json!({}))).await.0, 422);
    for v in ["m1:v1", "m1:v2", "m2:v1"] {
        assert_eq!(post(ev("register", v, json!({}))).await.0, 201);
    }
    assert_eq!(post(ev("promote", "m1:v1", prod())).await.0, 201);
    let (status, g) = send(
        reqwest::Method::POST,
        "/v1/admin/tokens",
        Some(json!({"principal": {"type": "user", "id": "alice"}, "roles": ["approver"]})),
    )
    .await;
    assert_eq!(status, 201, "{g}");
    let alice_id = g["token_id"].as_str().unwrap().to_string();
    wait_for_a_snapshot().await;

    // Changes of records already stored: production handed over (m1:v1
    // archived by the server), a version retired, a token revoked, a
    // model registered after the others.
    assert_eq!(post(ev("promote", "m1:v2", prod())).await.0, 201);
    assert_eq!(post(ev("retire", "m2:v1", json!({}))).await.0, 201);
    assert_eq!(post(ev("register", "m3:v1", json!({}))).await.0, 201);
    let (status, r) = send(
        reqwest::Method::DELETE,
        &format!("/v1/admin/tokens/{alice_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let (_, log) = send(reqwest::Method::GET, "/v1/log", None).await;
    let size = log["tree_size"].as_u64().unwrap();
    wait_for_a_snapshot().await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let store = RocksStore::open(&data.join("db"), &RocksOptions::default()).unwrap();
    assert_eq!(store.tree_size().unwrap(), size);
    let stored = modeltrail::state::Snapshot::load(&store).unwrap().unwrap();
    assert_eq!(stored.indexed, size, "no snapshot after the last events");
    let rebuilt = modeltrail::state::rebuild(&store, size).unwrap();
    assert_eq!(stored, rebuilt);
    let versions = &stored.registry.versions;
    assert_eq!(versions["m1:v1"].stage, "archived");
    assert_eq!(versions["m1:v2"].stage, "production");
    assert_eq!(versions["m2:v1"].stage, "archived");
    assert_eq!(versions["m3:v1"].denials.len(), 1);
    assert_eq!(
        stored.registry.models["m1"].production.as_deref(),
        Some("m1:v2")
    );
    assert!(stored.access.token(&alice_id).unwrap().revoked_at.is_some());
}

/// `modeltrail compact` rewrites every table of a stopped server's store
/// (the upgrade path to the partitioned table format): afterwards the
/// server opens the same log, with the same checkpoint, the same entries
/// and the same proofs, and appends after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_keeps_the_log_its_checkpoint_and_its_proofs() {
    use serde_json::json;
    let bin = env!("CARGO_BIN_EXE_modeltrail");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = crash::spawn(bin, &data);
    let admin = crash::admin_token(&data);
    let http = reqwest::Client::new();
    let (status, g) = json_call(
        &http,
        server.base.clone(),
        reqwest::Method::POST,
        "/v1/admin/tokens",
        &admin,
        Some(json!({"principal": {"type": "service", "id": "ci"}, "roles": ["submitter"]})),
    )
    .await;
    assert_eq!(status, 201, "{g}");
    let ci = g["token"].as_str().unwrap().to_string();
    let ev = |i: usize| {
        json!({"action": "register", "actor": {"type": "service", "id": "ci"},
               "timestamp": "2025-05-05T14:03:00Z",
               "subject": {"type": "model_version", "id": format!("m{}:v{i}", i % 3)},
               "metadata": {"n": i}})
    };
    let post = |base: String, i: usize| {
        json_call(
            &http,
            base,
            reqwest::Method::POST,
            "/v1/events",
            &ci,
            Some(ev(i)),
        )
    };
    for i in 0..300 {
        let (status, r) = post(server.base.clone(), i).await;
        assert_eq!(status, 201, "{r}");
    }
    // What an auditor saw before: the checkpoint, proofs, an entry page.
    let reads = [
        "/checkpoint".to_string(),
        "/v1/proof/inclusion?index=0".to_string(),
        "/v1/proof/inclusion?index=157".to_string(),
        "/v1/proof/inclusion?index=300".to_string(),
        "/v1/proof/consistency?old_size=100".to_string(),
        "/v1/proof/consistency?old_size=257".to_string(),
        "/v1/entries?start=250&limit=20".to_string(),
        "/tile/0/000".to_string(),
        "/v1/models/m1/versions/v4".to_string(),
    ];
    let read_all = |base: String| {
        let http = http.clone();
        let admin = admin.clone();
        let reads = reads.clone();
        async move {
            let mut out = Vec::new();
            for path in &reads {
                let r = http
                    .get(format!("{base}{path}"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{path}");
                out.push(r.bytes().await.unwrap());
            }
            out
        }
    };
    let before = read_all(server.base.clone()).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let out = std::process::Command::new(bin)
        .args(["compact", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("compacted: "), "{text}");
    // A small log's tables are KiB, not "0.0 MiB".
    assert!(text.contains(" KiB of tables before, "), "{text}");

    let mut server = crash::spawn(bin, &data);
    let after = read_all(server.base.clone()).await;
    for ((path, b), a) in reads.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "{path} changed across compact");
    }
    let (status, r) = post(server.base.clone(), 300).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["index"], 301, "{r}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// The maintenance commands refuse a directory that holds no log, rather
/// than create an empty one there and report it rebuilt or compacted.
#[test]
fn maintenance_commands_refuse_a_directory_without_a_log() {
    let bin = env!("CARGO_BIN_EXE_modeltrail");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("typo");
    for cmd in ["compact", "reindex"] {
        let out = std::process::Command::new(bin)
            .args([cmd, "--data-dir", data.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("no log here"), "{cmd}: {err}");
        assert!(!data.exists(), "{cmd} created {}", data.display());
    }
}
