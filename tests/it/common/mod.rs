//! A real server on an ephemeral loopback port with a real RocksDB in a
//! temporary directory, and a real HTTP client.
#![allow(dead_code)]

pub mod crash;

use modeltrail::note::VerifierKey;
use modeltrail::server::{self, Overrides, Running, ServerConfig};
use serde_json::{json, Value};

pub const ORIGIN: &str = "test.example/log";

pub struct TestServer {
    pub base: String,
    pub token: String,
    pub vkey: VerifierKey,
    pub http: reqwest::Client,
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start_in(tempfile::tempdir().unwrap(), tweak).await
}

/// A server whose data directory is `dir/data` (the test may have
/// prepared it, e.g. mounted a small disk inside).
pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut cfg = ServerConfig::resolve(Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().join("data")),
        origin: Some(ORIGIN.into()),
        ..Default::default()
    })
    .unwrap();
    tweak(&mut cfg);
    let data = server::prepare_data_dir(&cfg).unwrap();
    let running = server::start(&cfg, &data).await.unwrap();
    TestServer {
        base: format!("http://{}", running.addr),
        token: data.admin_token.clone(),
        vkey: data.signer.verifier(),
        http: reqwest::Client::new(),
        running: Some(running),
        dir,
    }
}

/// A server on a store whose faults the test controls.
pub async fn start_faulty(
    tweak: impl FnOnce(&mut ServerConfig),
) -> (
    TestServer,
    std::sync::Arc<modeltrail::store::fault::FaultyStore>,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::resolve(Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().join("data")),
        origin: Some(ORIGIN.into()),
        ..Default::default()
    })
    .unwrap();
    tweak(&mut cfg);
    let data = server::prepare_data_dir(&cfg).unwrap();
    let store = std::sync::Arc::new(modeltrail::store::fault::FaultyStore::new(
        server::open_store(&cfg).unwrap(),
    ));
    let running = server::start_on(&cfg, &data, store.clone()).await.unwrap();
    let s = TestServer {
        base: format!("http://{}", running.addr),
        token: data.admin_token.clone(),
        vkey: data.signer.verifier(),
        http: reqwest::Client::new(),
        running: Some(running),
        dir,
    };
    (s, store)
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/v1/events"))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, event: &Value) -> (u16, Value) {
        self.post_raw(event.to_string(), "application/json").await
    }

    /// `post`, taking the event (for futures that outlive a borrow of it).
    pub async fn post_owned(&self, event: Value) -> (u16, Value) {
        self.post(&event).await
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }
}

pub fn event(n: u64) -> Value {
    json!({
        "action": "register",
        // The admin token's principal: an event's actor must be its caller.
        "actor": {"type": "user", "id": "admin"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": format!("fraud:v{n}")},
        "related": [{"type": "run", "id": format!("run-{n}")}, {"type": "dataset", "id": "ds:2025-05-01"}],
        "metadata": {"metrics": {"auc": 0.9}, "n": n}
    })
}

pub fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

pub fn hex_list(v: &Value) -> Vec<[u8; 32]> {
    v.as_array().unwrap().iter().map(hex32).collect()
}

/// Append `ev` with another caller's token.
pub async fn post_as(s: &TestServer, token: &str, ev: &Value) -> (u16, Value) {
    let r = s
        .http
        .post(s.url("/v1/events"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(ev.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Make a token with the admin token: its secret and the whole answer.
pub async fn grant(s: &TestServer, kind: &str, id: &str, roles: &[&str]) -> (String, Value) {
    let r = s
        .http
        .post(s.url("/v1/admin/tokens"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(json!({"principal": {"type": kind, "id": id}, "roles": roles}).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{v}");
    (v["token"].as_str().unwrap().to_string(), v)
}

/// Revoke a token as the admin; the answer must be 200.
pub async fn revoke(s: &TestServer, token_id: &str) {
    let r = s
        .http
        .delete(s.url(&format!("/v1/admin/tokens/{token_id}")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Poll until `f` holds (bounded).
pub async fn eventually(what: &str, limit: std::time::Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen in {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The events of a page read from `path` (entries or search results).
pub async fn events_at(s: &TestServer, path: &str) -> Vec<Value> {
    let (status, r) = s.get_json(path).await;
    assert_eq!(status, 200, "{path}: {r}");
    r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

/// A tool from the test venv: `$env_var` if set, else `name` in a PATH
/// directory that also holds `python` (a venv's `bin`). Missing is a loud
/// failure naming what cannot be tested and how to install it.
pub fn venv_tool(name: &str, env_var: &str, pip: &str, purpose: &str) -> std::path::PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return p.into();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file() && p.with_file_name("python").is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed, so {purpose} cannot be tested: \
                 python3 -m venv ~/.cache/modeltrail-venv && \
                 ~/.cache/modeltrail-venv/bin/pip install {pip}, then put \
                 ~/.cache/modeltrail-venv/bin on PATH (the README's test command does this)"
            )
        })
}

/// Run a pytest suite (`dir`, from the repository's root) with `python`,
/// bounded in time; panic with its report unless every test passed and
/// none was skipped. Its report.
pub fn run_pytest(
    python: &std::path::Path,
    dir: &str,
    env: &[(&str, std::ffi::OsString)],
) -> String {
    let out = std::process::Command::new("timeout")
        .arg("600")
        .arg(python)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", dir])
        .output()
        .expect("run pytest");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the tests in {dir} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" passed"), "{text}");
    assert!(!text.contains("skipped"), "{text}");
    text
}

/// Everything a RocksDB directory holds, as the engine reads it: every key
/// and value of every column family (decompressed), then the raw bytes of
/// its files (the write-ahead log, the manifest). A scan for a secret
/// searches this, so that compression cannot hide one.
pub fn db_contents(db: &std::path::Path) -> Vec<u8> {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, db).unwrap();
    let mut out = Vec::new();
    {
        let rdb = rocksdb::DB::open_cf_for_read_only(&opts, db, &cfs, false).unwrap();
        for name in &cfs {
            let cf = rdb.cf_handle(name).unwrap();
            for item in rdb.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (k, v) = item.unwrap();
                out.extend_from_slice(&k);
                out.push(0);
                out.extend_from_slice(&v);
                out.push(0);
            }
        }
    }
    for e in std::fs::read_dir(db).unwrap() {
        out.extend(std::fs::read(e.unwrap().path()).unwrap_or_default());
    }
    out
}
