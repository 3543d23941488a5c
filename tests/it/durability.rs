//! Acknowledged events survive SIGKILL: a few kill/restart cycles of the real
//! binary under concurrent load. `cargo bench --bench crash_cycles` runs many.

use crate::common::crash;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let cycles = std::env::var("MODELTRAIL_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (size, acked) = crash::run_cycles(
        env!("CARGO_BIN_EXE_modeltrail"),
        cycles,
        16,
        std::time::Duration::from_millis(700),
    )
    .await;
    assert!(acked > 0, "no append was acknowledged");
    assert!(size >= acked as u64);
    eprintln!("{cycles} cycles: {acked} acknowledged, tree size {size}");
}

/// Derived state is a fold over the log: access changes and registry
/// events acknowledged just before a SIGKILL, with no snapshot of the
/// derived state written since, take effect after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_access_changes_survive_sigkill_before_any_snapshot() {
    use serde_json::{json, Value};
    let bin = env!("CARGO_BIN_EXE_modeltrail");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // No periodic snapshot during the test: only the fold can recover.
    let config = dir.path().join("slow-snapshots.toml");
    std::fs::write(&config, "[limits]\nsnapshot_interval_secs = 3600\n").unwrap();
    let cfg = config.to_str().unwrap();
    let mut server = crash::spawn_with(bin, &data, &["--config", cfg]);
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let http = reqwest::Client::new();
    let call =
        |base: String, method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
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
