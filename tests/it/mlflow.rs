//! MLflow's registry webhooks into the log: every delivery checked before
//! anything is appended (signature as MLflow computes it, freshness,
//! replays, shape), the registry's gates applied to alias moves, and the
//! whole path driven by a real `mlflow server` (PyPI's `mlflow`, SQLite,
//! loopback) through MLflow's own Python client.

use crate::common::*;
use modeltrail::mlflow::sign;
use modeltrail::registry::Stage;
use modeltrail::server::{MlflowConfig, ServerConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "webhook-secret-for-tests";

fn hooked(token_file: PathBuf) -> impl FnOnce(&mut ServerConfig) {
    move |c: &mut ServerConfig| {
        c.mlflow = Some(MlflowConfig {
            secret: SECRET.as_bytes().to_vec(),
            token_file,
            max_age: Duration::from_secs(300),
            aliases: [("champion".to_string(), Stage::Production)]
                .into_iter()
                .collect(),
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POST a delivery as MLflow would, with `secret` and `timestamp`.
async fn deliver_as(
    s: &TestServer,
    id: &str,
    timestamp: u64,
    secret: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let body = body.to_string();
    let ts = timestamp.to_string();
    let mut req = s
        .http
        .post(s.url("/v1/integrations/mlflow"))
        .header("content-type", "application/json")
        .header("X-MLflow-Delivery-Id", id)
        .header("X-MLflow-Timestamp", &ts);
    if let Some(secret) = secret {
        req = req.header(
            "X-MLflow-Signature",
            sign(secret.as_bytes(), id, &ts, body.as_bytes()),
        );
    }
    let r = req.body(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn deliver(s: &TestServer, id: &str, body: &Value) -> (u16, Value) {
    deliver_as(s, id, now(), Some(SECRET), body).await
}

fn version_created(name: &str, version: &str) -> Value {
    json!({"entity": "model_version", "action": "created",
        "timestamp": "2026-12-02T02:40:00.123456+00:00",
        "data": {"name": name, "version": version, "source": format!("s3://models/{name}/{version}"),
                 "run_id": "run-7", "tags": {}, "description": null}})
}

fn alias(name: &str, alias: &str, version: &str) -> Value {
    json!({"entity": "model_version_alias", "action": "created",
        "timestamp": "2026-12-02T02:41:00+00:00",
        "data": {"name": name, "alias": alias, "version": version}})
}

/// A delivery: its id, timestamp, secret and body; the status and code
/// it must get.
type Case<'a> = (&'a str, u64, Option<&'a str>, Value, u16, &'a str);

async fn size(s: &TestServer) -> u64 {
    s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap()
}

async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = s.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_verified_before_anything_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("mlflow.token");
    let s = start_with(hooked(token_file.clone())).await;

    // Before the integration has a token: 503, not remembered, so MLflow's
    // retry of the same delivery is recorded once the token is there.
    let first = version_created("fraud", "1");
    let (status, r) = deliver(&s, "d-1", &first).await;
    assert_eq!(status, 503, "{r}");
    let (token, _) = grant(&s, "service", "mlflow", &["submitter", "deployer"]).await;
    modeltrail::fsutil::write_secret(&token_file, &token).unwrap();
    let (status, r) = deliver(&s, "d-1", &first).await;
    assert_eq!(status, 200, "{r}");
    let ev = &r["receipts"][0]["event"];
    assert_eq!(ev["action"], "register");
    assert_eq!(ev["actor"], json!({"type": "service", "id": "mlflow"}));
    assert_eq!(ev["subject"]["id"], "fraud:1");
    assert_eq!(ev["related"][0]["id"], "run-7");
    assert_eq!(ev["metadata"]["source"], "s3://models/fraud/1");
    assert_eq!(ev["metadata"]["mlflow"]["delivery_id"], "d-1");
    let before = size(&s).await;

    // Refused without appending anything.
    let second = version_created("fraud", "2");
    let cases: Vec<Case> = vec![
        ("d-2", now(), None, second.clone(), 401, "unsigned"),
        (
            "d-2",
            now(),
            Some("wrong secret"),
            second.clone(),
            401,
            "bad_signature",
        ),
        (
            "d-2",
            now() - 301,
            Some(SECRET),
            second.clone(),
            401,
            "stale",
        ),
        (
            "d-2",
            now() + 301,
            Some(SECRET),
            second.clone(),
            401,
            "stale",
        ),
        ("d-1", now(), Some(SECRET), first.clone(), 409, "replayed"),
        (
            "d-3",
            now(),
            Some(SECRET),
            json!({"entity": "model_version"}),
            400,
            "bad_delivery",
        ),
        (
            "d-4",
            now(),
            Some(SECRET),
            json!({"entity": "model_version", "action": "created", "data": {"name": "fraud"}}),
            400,
            "bad_delivery",
        ),
    ];
    for (id, ts, secret, body, want, code) in cases {
        let (status, r) = deliver_as(&s, id, ts, secret, &body).await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (want, Some(code)),
            "{id}: {r}"
        );
    }
    // A body signed for one delivery id and sent under another.
    let body = second.to_string();
    let ts = now().to_string();
    let r = s
        .http
        .post(s.url("/v1/integrations/mlflow"))
        .header("X-MLflow-Delivery-Id", "d-5")
        .header("X-MLflow-Timestamp", &ts)
        .header(
            "X-MLflow-Signature",
            sign(SECRET.as_bytes(), "d-6", &ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(size(&s).await, before);

    // An event type this log does not record: 200, ignored, counted.
    let (status, r) = deliver(
        &s,
        "d-7",
        &json!({"entity": "prompt", "action": "created", "data": {"name": "p"}}),
    )
    .await;
    assert_eq!(
        (status, r["ignored"].as_str()),
        (200, Some("prompt.created")),
        "{r}"
    );
    assert_eq!(metric(&s, "modeltrail_mlflow_ignored_total").await, 1.0);
    assert_eq!(size(&s).await, before);

    // An alias mapped to production on a version nobody approved: the
    // registry refuses, the refusal is logged, MLflow is told (422).
    let (status, r) = deliver(&s, "d-8", &alias("fraud", "champion", "1")).await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["error"]["code"], "denied");
    assert_eq!(r["deny_receipt"]["event"]["action"], "deny");
    assert_eq!(size(&s).await, before + 1);
    // With two human approvals the same alias move promotes.
    let alice = grant(&s, "user", "alice", &["approver"]).await.0;
    let bob = grant(&s, "user", "bob", &["approver"]).await.0;
    for (token, who) in [(&alice, "alice"), (&bob, "bob")] {
        let e = json!({"action": "approve", "actor": {"type": "user", "id": who},
            "timestamp": "2026-12-02T02:42:00Z",
            "subject": {"type": "model_version", "id": "fraud:1"}});
        assert_eq!(post_as(&s, token, &e).await.0, 201);
    }
    let (status, r) = deliver(&s, "d-9", &alias("fraud", "champion", "1")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["receipts"][0]["event"]["action"], "promote");
    let (_, v) = s.get_json("/v1/models/fraud/versions/1").await;
    assert_eq!(v["stage"], "production", "{v}");
    assert_eq!(metric(&s, "modeltrail_mlflow_deliveries_total").await, 2.0);

    // Revoking the integration's token stops it (403 from the ledger).
    let (_, tokens) = {
        let r = s
            .http
            .get(s.url("/v1/admin/tokens"))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["principal"]["id"] == "mlflow")
        .unwrap()["token_id"]
        .as_str()
        .unwrap()
        .to_string();
    revoke(&s, &id).await;
    let (status, _) = deliver(&s, "d-10", &version_created("fraud", "3")).await;
    assert_eq!(status, 401);
    let mut s = s;
    s.stop().await;
}

/// Where the MLflow command line (and its Python) is.
fn mlflow_bin() -> PathBuf {
    venv_tool(
        "mlflow",
        "MODELTRAIL_MLFLOW",
        "mlflow",
        "the MLflow integration",
    )
}

struct Mlflow {
    child: Child,
    url: String,
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        // SIGKILL the whole process tree at once. MLflow's helper processes
        // watch their parent; one that outlives it (reparented to init) can
        // signal far beyond its own group, so none may be left to notice.
        let pids = descendants(self.child.id());
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .status();
        let _ = self.child.wait();
    }
}

/// `root` and every process below it, from `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: the command may hold spaces or parens.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let (mut out, mut todo) = (Vec::new(), vec![root]);
    while let Some(p) = todo.pop() {
        out.push(p);
        todo.extend(children.get(&p).into_iter().flatten());
    }
    out
}

async fn start_mlflow(dir: &Path) -> Mlflow {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(mlflow_bin())
        .args([
            "server",
            "--backend-store-uri",
            &format!("sqlite:///{}", dir.join("mlflow.db").display()),
            "--default-artifact-root",
            dir.join("artifacts").to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        // MLflow refuses webhooks to loopback and plain HTTP unless told.
        .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
        .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
        // Webhook lists are cached for a second, not a minute, so a deleted
        // webhook stops receiving at once.
        .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
        // No background job runner: the test needs the registry only.
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mlflow.log")).unwrap())
        .spawn()
        .expect("start mlflow server");
    let m = Mlflow {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = http.get(format!("{}/health", m.url)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "mlflow server did not start: {}",
            std::fs::read_to_string(dir.join("mlflow.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    m
}

/// MLflow's own Python client, doing what a data scientist does.
const DRIVER: &str = r#"
import sys, time
from mlflow import MlflowClient
uri, hook, secret, phase = sys.argv[1:5]
c = MlflowClient(tracking_uri=uri)
if phase == "setup":
    c.create_webhook(name="modeltrail", url=hook, secret=secret, events=[
        "registered_model.created", "model_version.created", "model_version_tag.set",
        "model_version_alias.created", "model_version_alias.deleted"])
    c.create_registered_model("fraud")
    v = c.create_model_version("fraud", source="s3://models/fraud/1", run_id=None)
    c.set_model_version_tag("fraud", v.version, "validated", "true")
    c.set_registered_model_alias("fraud", "champion", v.version)
elif phase == "promote":
    c.set_registered_model_alias("fraud", "champion", "1")
elif phase == "diverge":
    # Stop telling modeltrail, then change MLflow behind its back.
    for w in c.list_webhooks():
        c.delete_webhook(w.webhook_id)
    time.sleep(2)
    v = c.create_model_version("fraud", source="s3://models/fraud/2", run_id=None)
    c.set_registered_model_alias("fraud", "champion", v.version)
"#;

fn drive(dir: &Path, mlflow: &Mlflow, hook: &str, phase: &str) {
    let script = dir.join("drive.py");
    std::fs::write(&script, DRIVER).unwrap();
    let python = mlflow_bin().with_file_name("python");
    let out = Command::new(python)
        .arg(&script)
        .args([&mlflow.url, hook, SECRET, phase])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the MLflow client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn search(s: &TestServer, q: &str) -> Vec<Value> {
    events_at(s, &format!("/v1/search?{q}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_mlflow_server_feeds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("mlflow.token");
    let s = start_with(hooked(token_file.clone())).await;
    let (token, _) = grant(&s, "service", "mlflow", &["submitter", "deployer"]).await;
    modeltrail::fsutil::write_secret(&token_file, &token).unwrap();
    let mlflow = start_mlflow(dir.path()).await;
    let hook = s.url("/v1/integrations/mlflow");

    // Create the webhook, a model, a version, a tag, and move the
    // champion alias before anyone approved: MLflow delivers, the log
    // records all of it and the refusal.
    drive(dir.path(), &mlflow, &hook, "setup");
    let deadline = Instant::now() + Duration::from_secs(60);
    while search(&s, "action=deny").await.is_empty()
        || search(&s, "action=tag_set").await.is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "MLflow's deliveries did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let created = search(&s, "action=create_model").await;
    assert_eq!(
        created[0]["subject"],
        json!({"type": "model", "id": "fraud"})
    );
    let registered = search(&s, "type=model_version&id=fraud:1&action=register").await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0]["actor"]["id"], "mlflow");
    assert_eq!(registered[0]["metadata"]["source"], "s3://models/fraud/1");
    assert_eq!(
        registered[0]["metadata"]["mlflow"]["event"],
        "model_version.created"
    );
    let tags = search(&s, "action=tag_set").await;
    assert_eq!(tags[0]["metadata"]["key"], "validated");
    let deny = search(&s, "action=deny").await;
    assert_eq!(deny[0]["metadata"]["attempted_action"], "promote");
    let (_, v) = s.get_json("/v1/models/fraud/versions/1").await;
    assert_ne!(v["stage"], "production", "{v}");
    // Every delivery's receipt verifies: the whole log does.
    let (code, out) = {
        let out = Command::new(env!("CARGO_BIN_EXE_modeltrail"))
            .args([
                "verify",
                "log",
                "--server",
                &s.base,
                "--vkey",
                &s.vkey.to_string(),
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{out}");

    // Two people approve in modeltrail; moving the alias again promotes.
    for who in ["alice", "bob"] {
        let t = grant(&s, "user", who, &["approver"]).await.0;
        let e = json!({"action": "approve", "actor": {"type": "user", "id": who},
            "timestamp": "2026-12-02T02:42:00Z",
            "subject": {"type": "model_version", "id": "fraud:1"}});
        assert_eq!(post_as(&s, &t, &e).await.0, 201);
    }
    drive(dir.path(), &mlflow, &hook, "promote");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = s.get_json("/v1/models/fraud/versions/1").await;
        if v["stage"] == "production" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the promotion did not arrive: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let promoted = search(&s, "action=promote").await;
    assert_eq!(promoted.len(), 1);
    assert_eq!(promoted[0]["metadata"]["mlflow"]["alias"], "champion");

    // Reconciliation: MLflow and the log agree now...
    let reconcile = |uri: &str, extra: &[&str]| {
        let mut args = vec![
            "reconcile",
            "mlflow",
            "--server",
            &s.base,
            "--token",
            &s.token,
            "--tracking-uri",
            uri,
            "--alias",
            "champion=production",
        ];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_modeltrail"))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, report, err) = reconcile(&mlflow.url, &[]);
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!(
        (report["models"].as_u64(), report["versions"].as_u64()),
        (Some(1), Some(1))
    );
    // ...then MLflow changes without telling the log, and the log holds a
    // version MLflow never had.
    drive(dir.path(), &mlflow, &hook, "diverge");
    let e = json!({"action": "register", "actor": {"type": "service", "id": "mlflow"},
        "timestamp": "2026-12-02T02:50:00Z",
        "subject": {"type": "model_version", "id": "fraud:9"}});
    assert_eq!(post_as(&s, &token, &e).await.0, 201);
    let before = size(&s).await;
    let (code, report, err) = reconcile(&mlflow.url, &["--append"]);
    assert_eq!(code, Some(1), "{report} {err}");
    assert_eq!(
        report["differences"],
        json!([
            {"kind": "not_logged", "model": "fraud", "version": "2"},
            {"kind": "not_in_mlflow", "model": "fraud", "version": "9"},
            {"kind": "alias", "model": "fraud", "alias": "champion", "stage": "production",
             "mlflow_version": "2", "logged_versions": ["1"]},
        ])
    );
    let index = report["reconcile_index"].as_u64().unwrap();
    assert_eq!(index, before);
    let (_, logged) = s.get_json(&format!("/v1/entries/{index}")).await;
    let ev = &logged["event"];
    assert_eq!(ev["action"], "reconcile");
    assert_eq!(ev["subject"], json!({"type": "mlflow", "id": mlflow.url}));
    assert_eq!(ev["metadata"]["differences"], 3);
    assert_eq!(ev["metadata"]["tree_size"], before);
    // An MLflow that does not answer: exit 3.
    drop(mlflow);
    let (code, _, err) = reconcile("http://127.0.0.1:9", &[]);
    assert_eq!(code, Some(3), "{err}");
    let mut s = s;
    s.stop().await;
}
