//! Content-addressed artifacts over the real API and the real command
//! line: immutable blobs checked on upload, on registration and
//! deployment, on promotion and by reconciliation; every download logged.

use crate::common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_modeltrail");

fn digest(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Bytes that do not compress, `n` of them.
fn noise(n: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut block = Sha256::digest([seed]).to_vec();
    while out.len() < n {
        block = Sha256::digest(&block).to_vec();
        out.extend_from_slice(&block);
    }
    out.truncate(n);
    out
}

async fn put(s: &TestServer, token: &str, hex: &str, body: Vec<u8>) -> (u16, Value) {
    let r = s
        .http
        .put(s.url(&format!("/v1/artifacts/sha256/{hex}")))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(
    s: &TestServer,
    token: Option<&str>,
    hex: &str,
    range: Option<&str>,
) -> reqwest::Response {
    let mut req = s.http.get(s.url(&format!("/v1/artifacts/sha256/{hex}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.unwrap()
}

fn tmp_files(s: &TestServer) -> usize {
    std::fs::read_dir(s.dir.path().join("data/artifacts/tmp"))
        .unwrap()
        .count()
}

async fn accesses(s: &TestServer) -> Vec<Value> {
    events_at(s, "/v1/search?action=access").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_immutable_checked_on_upload_and_every_download_is_logged() {
    let s = start().await;
    let ci = grant(&s, "service", "ci", &["submitter"]).await.0;
    let reader = grant(&s, "user", "reader", &["auditor"]).await.0;
    let model = noise(3 << 20, 1);
    let d = digest(&model);

    // Upload: the submitter role, the right bytes.
    let (status, r) = put(&s, &reader, &d, model.clone()).await;
    assert_eq!(status, 403, "{r}");
    // A refused upload still reaches its sender as an answer, not as a
    // connection reset halfway through the body, however often it happens.
    for round in 0..8 {
        for (token, hex, want) in [
            ("", d.as_str(), 401),
            (reader.as_str(), d.as_str(), 403),
            (ci.as_str(), "ABC", 400),
        ] {
            let (status, r) = put(&s, token, hex, model.clone()).await;
            assert_eq!(status, want, "round {round}: {r}");
            assert!(r["error"]["code"].is_string(), "round {round}: {r}");
        }
    }
    let (status, r) = put(&s, &ci, &d, model.clone()).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(
        r,
        json!({"digest": format!("sha256:{d}"), "size": 3 << 20, "created": true})
    );
    // The same bytes again: a no-op.
    let (status, r) = put(&s, &ci, &d, model.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["created"], false);
    // Other bytes under a digest: refused, nothing left behind.
    let other = digest(b"other");
    let (status, r) = put(&s, &ci, &other, b"not other".to_vec()).await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["error"]["code"], "digest_mismatch");
    assert_eq!(get(&s, Some(&ci), &other, None).await.status(), 404);
    assert_eq!(tmp_files(&s), 0);
    // Path tricks and malformed digests.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "ABC", &d.to_uppercase(), &d[..63]] {
        let (status, r) = put(&s, &ci, bad, b"x".to_vec()).await;
        assert_eq!(status, 400, "{bad}: {r}");
        assert_eq!(get(&s, Some(&ci), bad, None).await.status(), 400, "{bad}");
    }

    // Reads need a token; HEAD is not a download.
    assert_eq!(get(&s, None, &d, None).await.status(), 401);
    let head = s
        .http
        .head(s.url(&format!("/v1/artifacts/sha256/{d}")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        (3u64 << 20).to_string().as_str()
    );
    assert!(accesses(&s).await.is_empty());
    // The whole blob, then a range, each logged with who and what.
    let full = get(&s, Some(&reader), &d, None).await;
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap().as_ref(), model.as_slice());
    let part = get(&s, Some(&reader), &d, Some("bytes=1000-1999")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1000-1999/{}", 3 << 20).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &model[1000..2000]);
    let tail = get(&s, Some(&ci), &d, Some("bytes=-10")).await;
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &model[model.len() - 10..]
    );
    let logged = accesses(&s).await;
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert_eq!(
        logged[0]["actor"],
        json!({"type": "service", "id": "modeltrail"})
    );
    assert_eq!(
        logged[0]["subject"],
        json!({"type": "artifact", "id": format!("sha256:{d}")})
    );
    assert_eq!(
        logged[0]["metadata"]["viewer"],
        json!({"type": "user", "id": "reader"})
    );
    assert!(logged[0]["metadata"].get("range").is_none());
    assert_eq!(logged[1]["metadata"]["range"], "bytes=1000-1999");
    assert_eq!(
        logged[2]["metadata"]["viewer"],
        json!({"type": "service", "id": "ci"})
    );
    // Clients cannot write access events in anyone's name.
    let forged = json!({"action": "access", "actor": {"type": "service", "id": "ci"},
        "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "artifact", "id": "x"}});
    assert_eq!(post_as(&s, &ci, &forged).await.0, 403);
    // A range beyond the end: 416 with the size, nothing logged.
    for bad in ["bytes=99999999-", "bytes=5-2", "bytes=0-1,5-6"] {
        let r = get(&s, Some(&ci), &d, Some(bad)).await;
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{}", 3 << 20).as_str()
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "range_not_satisfiable");
    }
    assert_eq!(accesses(&s).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_and_concurrent_uploads() {
    let s = start().await;
    let ci = grant(&s, "service", "ci", &["submitter"]).await.0;
    let blob = noise(1 << 20, 2);
    let d = digest(&blob);
    // An upload cut off halfway: nothing visible, nothing left.
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /v1/artifacts/sha256/{d} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ci}\r\ncontent-length: {}\r\n\r\n",
        blob.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&blob[..300_000]).await.unwrap();
    c.shutdown().await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut sink)).await;
    drop(c);
    for _ in 0..50 {
        if tmp_files(&s) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tmp_files(&s), 0);
    assert_eq!(get(&s, Some(&ci), &d, None).await.status(), 404);
    // Eight uploads of the same bytes at once: all succeed, one blob.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url, ci, blob) = (
            s.http.clone(),
            s.url(&format!("/v1/artifacts/sha256/{d}")),
            ci.clone(),
            blob.clone(),
        );
        tasks.spawn(async move {
            http.put(url)
                .bearer_auth(ci)
                .body(blob)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut created = 0;
    while let Some(status) = tasks.join_next().await {
        let status = status.unwrap();
        assert!(status == 201 || status == 200, "{status}");
        created += (status == 201) as u32;
    }
    assert!(created >= 1);
    assert_eq!(tmp_files(&s), 0);
    let got = get(&s, Some(&ci), &d, None).await.bytes().await.unwrap();
    assert_eq!(got.as_ref(), blob.as_slice());
}

/// A loopback HTTP server that records the bodies posted to it.
async fn webhook() -> (String, tokio::sync::mpsc::Receiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = c.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ = tx.send(serde_json::from_str(body).unwrap()).await;
                            let _ = c
                                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_checked_on_use_and_reconciled() {
    let (hook, mut posted) = webhook().await;
    let policy: modeltrail::registry::Policy =
        toml::from_str("require_artifact_sha256 = [\"register\", \"deploy\"]\n").unwrap();
    let s = start_with(|c| {
        c.registry = policy;
        c.artifacts.webhook = Some(hook);
    })
    .await;
    let ci = grant(&s, "service", "ci", &["submitter"]).await.0;
    let alice = grant(&s, "user", "alice", &["approver"]).await.0;
    let bob = grant(&s, "user", "bob", &["approver"]).await.0;
    let ops = grant(&s, "user", "ops", &["deployer"]).await.0;
    let model = noise(2 << 20, 3);
    let d = digest(&model);
    let ev = |action: &str, who: (&str, &str), artifact: Option<&str>, meta: Value| {
        let mut e = json!({"action": action, "actor": {"type": who.0, "id": who.1},
            "timestamp": "2025-05-05T14:03:00Z",
            "subject": {"type": "model_version", "id": "fraud:v1"}, "metadata": meta});
        if let Some(a) = artifact {
            e["integrity"] = json!({"artifact_sha256": a});
        }
        e
    };
    let reasons = |r: &Value| r["error"]["reasons"].to_string();
    // Registering needs a digest.
    let (status, r) = post_as(&s, &ci, &ev("register", ("service", "ci"), None, json!({}))).await;
    assert_eq!(status, 422);
    assert!(
        reasons(&r).contains("needs integrity.artifact_sha256"),
        "{r}"
    );
    let (status, r) = post_as(
        &s,
        &ci,
        &ev("register", ("service", "ci"), Some(&d), json!({})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    for (t, who) in [(&alice, "alice"), (&bob, "bob")] {
        assert_eq!(
            post_as(&s, t, &ev("approve", ("user", who), None, json!({})))
                .await
                .0,
            201
        );
    }
    // The blob is not in the store yet: promotion refused.
    let promote = |to: &str| ev("promote", ("user", "ops"), None, json!({"to_stage": to}));
    let (status, r) = post_as(&s, &ops, &promote("staging")).await;
    assert_eq!(status, 422);
    assert!(reasons(&r).contains("not in the artifact store"), "{r}");
    // Uploaded with the CLI (the admin token file): promotion goes through.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.bin");
    std::fs::write(&file, &model).unwrap();
    let token_file = s.dir.path().join("data/admin.token");
    let conn = [
        "--server",
        &s.base,
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let mut args = vec!["artifact", "put"];
    args.extend_from_slice(&conn);
    args.push(file.to_str().unwrap());
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(&format!("sha256:{d} ")), "{out}");
    assert_eq!(post_as(&s, &ops, &promote("staging")).await.0, 201);
    // A deployment naming other bytes: refused with both digests, logged.
    let other = digest(b"other");
    let deploy = |a: Option<&str>| {
        let mut e = json!({"action": "deploy", "actor": {"type": "user", "id": "ops"},
            "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "deployment", "id": "stg"},
            "related": [{"type": "model_version", "id": "fraud:v1"}],
            "metadata": {"environment": "staging"}});
        if let Some(a) = a {
            e["integrity"] = json!({"artifact_sha256": a});
        }
        e
    };
    let (status, r) = post_as(&s, &ops, &deploy(Some(&other))).await;
    assert_eq!(status, 422);
    assert!(
        reasons(&r).contains(&other) && reasons(&r).contains(&d),
        "{r}"
    );
    assert_eq!(r["deny_receipt"]["event"]["action"], "deny");
    let (status, r) = post_as(&s, &ops, &deploy(None)).await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(post_as(&s, &ops, &deploy(Some(&d))).await.0, 201);

    // Downloaded with the CLI: verified, identical.
    let got = dir.path().join("got.bin");
    let mut args = vec!["artifact", "get"];
    args.extend_from_slice(&conn);
    let d_arg = format!("sha256:{d}");
    args.extend_from_slice(&["-o", got.to_str().unwrap(), &d_arg]);
    let (code, _, err) = run(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read(&got).unwrap(), model);

    // Reconciliation is clean, and logged.
    let mut rec = vec!["reconcile"];
    rec.extend_from_slice(&conn);
    let (code, out, err) = run(&rec);
    assert_eq!(code, Some(0), "{out} {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["checked"], 1);
    let (_, logged) = s
        .get_json(&format!("/v1/entries/{}", report["reconcile_index"]))
        .await;
    assert_eq!(logged["event"]["action"], "reconcile");
    assert_eq!(logged["event"]["metadata"]["mismatched"], 0);

    // The stored blob rots on disk: promotion refused, reconcile says so
    // (exit 1), the webhook gets the report, a download does not verify.
    let path = s
        .dir
        .path()
        .join(format!("data/artifacts/sha256/{}/{d}", &d[..2]));
    let mut rotten = model.clone();
    rotten[12345] ^= 1;
    std::fs::write(&path, &rotten).unwrap();
    let (status, r) = post_as(&s, &ops, &promote("production")).await;
    assert_eq!(status, 422);
    assert!(reasons(&r).contains("does not re-hash"), "{r}");
    let (code, out, _) = run(&rec);
    assert_eq!(code, Some(1), "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["mismatched"][0]["digest"], format!("sha256:{d}"));
    assert_eq!(
        report["mismatched"][0]["actual"],
        format!("sha256:{}", digest(&rotten))
    );
    let named = report["mismatched"][0]["events"].as_array().unwrap().len();
    assert_eq!(named, 2, "the registration and the deployment: {report}");
    let hooked = tokio::time::timeout(Duration::from_secs(10), posted.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hooked["mismatched"], report["mismatched"]);
    let bad = dir.path().join("bad.bin");
    let mut args = vec!["artifact", "get"];
    args.extend_from_slice(&conn);
    args.extend_from_slice(&["-o", bad.to_str().unwrap(), &d_arg]);
    let (code, _, err) = run(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(!bad.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no partial file left"
    );
    // A missing blob: reported as missing.
    std::fs::remove_file(&path).unwrap();
    let (code, out, _) = run(&rec);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["missing"][0]["digest"], format!("sha256:{d}"));
    // Unknown digest, and an unreachable server.
    let mut args = vec!["artifact", "get"];
    args.extend_from_slice(&conn);
    let unknown = format!("sha256:{other}");
    args.extend_from_slice(&["-o", bad.to_str().unwrap(), &unknown]);
    assert_eq!(run(&args).0, Some(2));
    let (code, _, _) = run(&[
        "reconcile",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "x",
    ]);
    assert_eq!(code, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_reads_need_a_token_but_checkpoints_and_tiles_stay_public() {
    let s = start_with(|c| c.private_reads = true).await;
    let (reader, g) = grant(&s, "user", "reader", &["auditor"]).await;
    assert_eq!(s.post(&event(1)).await.0, 201);
    for public in [
        "/checkpoint",
        "/healthz",
        "/tile/0/000.p/2",
        "/tile/entries/000.p/2",
    ] {
        let r = s.get(public).await;
        assert_eq!(r.status(), 200, "{public}");
    }
    for private in [
        "/v1/log",
        "/v1/entries/0",
        "/v1/search?action=grant_access",
        "/v1/models",
    ] {
        let r = s.get(private).await;
        assert_eq!(r.status(), 401, "{private}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let r = s
            .http
            .get(s.url(private))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{private}");
    }
    // A revoked token reads nothing private any more.
    let id = g["token_id"].as_str().unwrap();
    revoke(&s, id).await;
    let r = s
        .http
        .get(s.url("/v1/log"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
