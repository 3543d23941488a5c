//! Artifacts in an S3-compatible bucket: the real binary against a real
//! S3 server on loopback (`moto_server`, from PyPI's `moto[server]`; the
//! README's test command and CI install it). Uploads stream into a
//! multipart upload that is completed only when the bytes hash to their
//! digest; downloads, ranges, the command line and reconciliation work as
//! with the local store, and what the bucket holds is checked directly.

use crate::common::{crash, venv_tool};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_modeltrail");
const BUCKET: &str = "modeltrail-test";

/// `moto_server` on a free loopback port; killed when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> String {
    venv_tool(
        "moto_server",
        "MODELTRAIL_MOTO_SERVER",
        "'moto[server]'",
        "the S3 bucket backend",
    )
    .to_string_lossy()
    .into_owned()
}

async fn start_moto(http: &reqwest::Client) -> Moto {
    let port = free_port();
    let child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{}/", moto.url)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    moto
}

/// The real server with its blobs in `bucket` at `endpoint` (`prefix` for
/// keys): the server, its data directory and its admin token.
fn serve_on_bucket(
    dir: &std::path::Path,
    endpoint: &str,
    prefix: &str,
) -> (crash::Server, std::path::PathBuf, String) {
    let config = dir.join("modeltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[artifacts.s3]\nbucket = \"{BUCKET}\"\nendpoint = \"{endpoint}\"\n\
             region = \"us-east-1\"\nprefix = \"{prefix}\"\nallow_http = true\n"
        ),
    )
    .unwrap();
    let data = dir.join("data");
    let server = crash::spawn_env(
        BIN,
        &data,
        &["--config", config.to_str().unwrap()],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    (server, data, admin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn noise(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut block = Sha256::digest(b"bucket").to_vec();
    while out.len() < n {
        block = Sha256::digest(&block).to_vec();
        out.extend_from_slice(&block);
    }
    out.truncate(n);
    out
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_live_in_an_s3_bucket() {
    let http = reqwest::Client::new();
    let moto = start_moto(&http).await;
    let object = |hex: &str| format!("{}/{BUCKET}/mt/sha256/{hex}", moto.url);
    assert!(http
        .put(format!("{}/{BUCKET}", moto.url))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());

    let dir = tempfile::tempdir().unwrap();
    let (mut server, data, admin) = serve_on_bucket(dir.path(), &moto.url, "mt/");
    let base = server.base.clone();
    let r: Value = http
        .post(format!("{base}/v1/admin/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"principal": {"type": "service", "id": "ci"}, "roles": ["submitter"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ci = r["token"].as_str().unwrap().to_string();

    // Upload through the command line: 11 MiB, three parts.
    let model = noise(11 << 20);
    let hex = hex::encode(Sha256::digest(&model));
    let file = dir.path().join("model.bin");
    std::fs::write(&file, &model).unwrap();
    let (code, out, err) = run(&[
        "artifact",
        "put",
        "--server",
        &base,
        "--token",
        &ci,
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("sha256:{hex}")) && out.contains("stored"),
        "{out}"
    );
    // It is in the bucket, byte for byte, and not in the data directory.
    let stored = http.get(object(&hex)).send().await.unwrap();
    assert_eq!(stored.status(), 200);
    assert_eq!(stored.bytes().await.unwrap().as_ref(), model.as_slice());
    assert!(!data.join("artifacts").exists());
    // The same bytes again: a no-op.
    let again = http
        .put(format!("{base}/v1/artifacts/sha256/{hex}"))
        .bearer_auth(&ci)
        .body(model.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    // Other bytes under a digest: refused, and the multipart upload is
    // aborted, so nothing is visible and nothing is left pending.
    let wrong = hex::encode(Sha256::digest(b"something else"));
    let r = http
        .put(format!("{base}/v1/artifacts/sha256/{wrong}"))
        .bearer_auth(&ci)
        .body(noise(6 << 20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(http.get(object(&wrong)).send().await.unwrap().status(), 404);
    let pending = http
        .get(format!("{}/{BUCKET}?uploads", moto.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pending.contains("ListMultipartUploadsResult"), "{pending}");
    assert!(
        !pending.contains("<Upload>"),
        "a multipart upload was left: {pending}"
    );

    // An empty blob is a blob too.
    let empty = hex::encode(Sha256::digest(b""));
    let r = http
        .put(format!("{base}/v1/artifacts/sha256/{empty}"))
        .bearer_auth(&ci)
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .get(format!("{base}/v1/artifacts/sha256/{empty}"))
        .bearer_auth(&ci)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());

    // Downloads: a range through the API, the whole through the CLI.
    let part = http
        .get(format!("{base}/v1/artifacts/sha256/{hex}"))
        .bearer_auth(&ci)
        .header("range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.bytes().await.unwrap().as_ref(),
        &model[5242870..5242890]
    );
    let head = http
        .head(format!("{base}/v1/artifacts/sha256/{wrong}"))
        .bearer_auth(&ci)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    let back = dir.path().join("back.bin");
    let (code, out, err) = run(&[
        "artifact",
        "get",
        "--server",
        &base,
        "--token",
        &ci,
        "-o",
        back.to_str().unwrap(),
        &hex,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(std::fs::read(&back).unwrap(), model);

    // Reconciliation re-hashes what the bucket holds.
    // `version` registered by ci, naming `digest` as its artifact.
    let register = |version: &str, digest: &str| {
        let e = json!({"action": "register", "actor": {"type": "service", "id": "ci"},
            "timestamp": "2025-05-05T14:03:00Z",
            "subject": {"type": "model_version", "id": version},
            "integrity": {"artifact_sha256": digest}});
        http.post(format!("{base}/v1/events"))
            .bearer_auth(&ci)
            .json(&e)
            .send()
    };
    let r = register("fraud:v1", &hex).await.unwrap();
    assert_eq!(r.status(), 201);
    let reconcile = || run(&["reconcile", "--server", &base, "--token", &admin]);
    let (code, out, err) = reconcile();
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["checked"], 1);
    let logged: Value = http
        .get(format!("{base}/v1/entries/{}", report["reconcile_index"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        logged["event"]["subject"]["id"],
        format!("s3://{BUCKET}/mt/")
    );
    // Someone rewrites the object behind the server's back, then deletes it.
    assert!(http
        .put(object(&hex))
        .body(b"rotten".to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let (code, out, _) = reconcile();
    assert_eq!(code, Some(1), "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["mismatched"][0]["digest"], format!("sha256:{hex}"));
    assert_eq!(
        report["mismatched"][0]["actual"],
        format!("sha256:{}", hex::encode(Sha256::digest(b"rotten")))
    );
    // A version whose artifact never reached the bucket: missing.
    let never = hex::encode(Sha256::digest(b"never uploaded"));
    let r = register("fraud:v2", &never).await.unwrap();
    assert_eq!(r.status(), 201);
    let (code, out, _) = reconcile();
    assert_eq!(code, Some(1), "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["checked"], 2);
    assert_eq!(report["missing"][0]["digest"], format!("sha256:{never}"));
    assert_eq!(report["mismatched"][0]["digest"], format!("sha256:{hex}"));

    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// A bucket that cannot be reached: uploads and downloads are a clear
/// error, not a hang or a panic, and the server keeps serving the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let (mut server, _, admin) = serve_on_bucket(dir.path(), &endpoint, "");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let hex = hex::encode(Sha256::digest(b"x"));
    let r = http
        .put(format!("{}/v1/artifacts/sha256/{hex}", server.base))
        .bearer_auth(&admin)
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("artifact bucket"),
        "{body}"
    );
    let r = http
        .get(format!("{}/v1/log", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
