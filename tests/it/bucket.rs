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

/// Make a bucket on the S3 server at `url`.
async fn create_bucket(http: &reqwest::Client, url: &str, name: &str) {
    let r = http.put(format!("{url}/{name}")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

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
    let admin = crash::admin_token(&data);
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

/// The command line with the bucket's (test) credentials in its environment.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
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
    create_bucket(&http, &moto.url, BUCKET).await;

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

/// `count` predictions appended as the admin, 32 at a time.
async fn append_predictions(s: &crate::common::TestServer, from: u64, count: u64) {
    let mut at = from;
    while at < from + count {
        let wave: Vec<_> = (at..(at + 32).min(from + count))
            .map(|i| {
                let ev = json!({
                    "action": "predict", "actor": {"type": "user", "id": "admin"},
                    "timestamp": "2025-05-05T14:03:00Z",
                    "subject": {"type": "prediction", "id": format!("p-{i}")},
                    "related": [{"type": "deployment", "id": "fraud-prod"}],
                    "metadata": {"score": 0.5}
                });
                async move { crate::common::post_as(s, &s.token, &ev).await }
            })
            .collect();
        for (status, body) in futures_util::future::join_all(wave).await {
            assert!(status == 200 || status == 201, "{status} {body}");
        }
        at = (at + 32).min(from + count);
    }
}

/// `modeltrail mirror --once` against the test's bucket; its exit code and
/// output.
fn mirror_args<'a>(base: &'a str, vkey: &'a str, endpoint: &'a str) -> Vec<&'a str> {
    vec![
        "mirror",
        "--once",
        "--server",
        base,
        "--vkey",
        vkey,
        "--bucket",
        MIRROR_BUCKET,
        "--prefix",
        "log",
        "--endpoint",
        endpoint,
        "--region",
        "us-east-1",
        "--allow-http",
    ]
}

const MIRROR_BUCKET: &str = "modeltrail-mirror";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_mirrored_to_a_bucket_and_audited_from_its_url_alone() {
    let http = reqwest::Client::new();
    let moto = start_moto(&http).await;
    create_bucket(&http, &moto.url, MIRROR_BUCKET).await;
    // Anyone may read the bucket's objects, as for a public mirror (moto
    // checks the policy; it takes any signature as valid).
    let signed = "AWS4-HMAC-SHA256 Credential=test/20261202/us-east-1/s3/aws4_request, \
                  SignedHeaders=host, Signature=00";
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{MIRROR_BUCKET}/*")}]});
    assert!(http
        .put(format!("{}/{MIRROR_BUCKET}?policy", moto.url))
        .header("authorization", signed)
        .header("content-type", "application/json")
        .body(policy.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    // The mirror's public URL: the bucket's objects under the prefix, read
    // with plain GETs as any auditor or CDN would.
    let public = format!("{}/{MIRROR_BUCKET}/log", moto.url);
    let s = crate::common::start().await;
    let vkey = s.vkey.to_string();
    append_predictions(&s, 0, 6000).await;
    let size_1: u64 = 6000;

    // A sync killed in the middle: objects were written, the checkpoint
    // was not, so the bucket still names no tree.
    let args = mirror_args(&s.base, &vkey, &moto.url);
    let mut verbose = args.clone();
    verbose.push("--verbose");
    let (killed_after, mut child) = {
        let verbose: Vec<String> = verbose.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut child = Command::new(BIN)
                .args(&verbose)
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = Vec::new();
            while seen.len() < 3 {
                seen.push(lines.next().unwrap().unwrap());
            }
            child.kill().unwrap();
            (seen, child)
        })
        .await
        .unwrap()
    };
    child.wait().unwrap();
    assert!(
        killed_after.iter().all(|l| l.starts_with("tile/")),
        "{killed_after:?}"
    );
    let cp = http
        .get(format!("{public}/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(cp.status(), 404, "the checkpoint came before the tiles");
    let first = &killed_after[0];
    assert_eq!(
        http.get(format!("{public}/{first}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Run again: it resumes and publishes the tree.
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("OK: tree size {size_1} published (from 0)")),
        "{out}"
    );
    // Every tile and bundle is there, the checkpoint is the log's.
    let cp = http
        .get(format!("{public}/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(cp.status(), 200);
    assert_eq!(
        cp.headers()["cache-control"].to_str().unwrap(),
        modeltrail::mirror::CHANGING
    );
    let cp_text = cp.text().await.unwrap();
    assert!(cp_text.contains(&format!("\n{size_1}\n")), "{cp_text}");
    let full = http
        .get(format!("{public}/tile/0/000"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        full.headers()["cache-control"].to_str().unwrap(),
        modeltrail::mirror::IMMUTABLE
    );
    let served = http
        .get(format!("{}/tile/0/000", s.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(full.bytes().await.unwrap(), served);
    let partial = format!("tile/0/023.p/{}", size_1 % 256);
    assert_eq!(
        http.get(format!("{public}/{partial}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // `verify log` and the monitor work against the bucket's URL alone.
    let (code, out, err) = run(&["verify", "log", "--server", &public, "--vkey", &vkey]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("{size_1}")), "{out}");
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("monitor.state");
    let monitor = |state: &std::path::Path| {
        run(&[
            "monitor",
            "--once",
            "--server",
            &public,
            "--vkey",
            &vkey,
            "--state",
            state.to_str().unwrap(),
        ])
    };
    let (code, out, err) = monitor(&state_file);
    assert_eq!(code, Some(0), "{out}{err}");

    // The log grows past the partial tile; the next sync is incremental,
    // replaces the partial tile by the full one, and the monitor proves
    // consistency from the bucket's tiles.
    append_predictions(&s, size_1, 300).await;
    let size_2 = size_1 + 300;
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("OK: tree size {size_2} published (from {size_1})")),
        "{out}"
    );
    assert!(out.contains("2 partial tiles deleted"), "{out}");
    assert_eq!(
        http.get(format!("{public}/{partial}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The proof from the bucket's tiles is the log's own.
    let from_tiles = modeltrail::auditor::consistency_from_tiles(
        &modeltrail::client::Client::new(&public, None).unwrap(),
        size_1,
        size_2,
    )
    .await
    .unwrap();
    let served: Value = http
        .get(format!(
            "{}/v1/proof/consistency?old_size={size_1}&new_size={size_2}",
            s.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(from_tiles, crate::common::hex_list(&served["proof"]));
    let (code, out, err) = monitor(&state_file);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("tree size {size_2} is consistent with {size_1}")),
        "{out}"
    );
    let (code, out, err) = run(&["verify", "log", "--server", &public, "--vkey", &vkey]);
    assert_eq!(code, Some(0), "{out}{err}");
    // Nothing new: nothing written.
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("the bucket holds tree size {size_2}")),
        "{out}"
    );

    // A tampered bucket is caught: one flipped hash in a full tile fails
    // `verify log`.
    let key = format!("{public}/tile/0/001");
    let mut tile = http
        .get(&key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    tile[5] ^= 1;
    assert!(http
        .put(&key)
        .header("authorization", signed)
        .body(tile)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let (code, out, _) = run(&["verify", "log", "--server", &public, "--vkey", &vkey]);
    assert_eq!(code, Some(1), "{out}");
    // The log's other key: the mirror publishes nothing.
    let other = modeltrail::note::SignerKey::from_seed(
        modeltrail::note::KeyName::new(crate::common::ORIGIN).unwrap(),
        [9u8; 32],
    )
    .verifier()
    .to_string();
    let mut wrong = args.clone();
    wrong[5] = &other;
    let (code, out, _) = run(&wrong);
    assert_eq!(code, Some(1), "{out}");
}
