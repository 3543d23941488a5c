//! Storage faults fail closed: a write that cannot be made durable is
//! never acknowledged, the server says it is unhealthy while writes
//! cannot succeed, it never reuses an index a failed batch may have taken,
//! and it recovers once the fault is gone, with a log that verifies end to
//! end.

use crate::common::*;
use modeltrail::store::fault::Fault;
use serde_json::{json, Value};
use std::time::Duration;

async fn health(s: &TestServer) -> u16 {
    s.get("/healthz").await.status().as_u16()
}

/// Audit the whole log as an outside verifier would.
async fn audit(s: &TestServer) -> u64 {
    let client = modeltrail::client::Client::new(&s.base, None).unwrap();
    let policy = modeltrail::verify::Policy::log_only(s.vkey.clone());
    let a = modeltrail::auditor::audit_log(&client, &policy, &|_, _| {})
        .await
        .unwrap();
    a.entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_are_never_acknowledged_and_the_server_recovers() {
    let (mut s, store) = start_faulty(|_| {}).await;
    for n in 0..5 {
        assert_eq!(s.post(&event(n)).await.0, 201);
    }
    assert_eq!(health(&s).await, 200);

    // Commits that write nothing: 503, nothing acknowledged, unhealthy.
    store.set(Fault::FailCommit);
    let lost = json!({"event_id": "0190c0de-0000-7000-8000-00000000f001",
        "action": "predict", "actor": {"type": "user", "id": "admin"},
        "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "prediction", "id": "p1"}});
    let (status, body) = s.post(&lost).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(health(&s).await, 503);
    let (_, info) = s.get_json("/v1/log").await;
    assert_eq!(info["tree_size"], 5);
    // Back to normal: the server notices by itself, and the event can be
    // sent again with the same id.
    store.set(Fault::None);
    eventually("recovery", Duration::from_secs(10), async || {
        health(&s).await == 200
    })
    .await;
    let (status, r) = s.post(&lost).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["index"], 5);

    // A commit that reaches the store but reports failure: the client is
    // told 503, and the sequencer reloads rather than reuse the index.
    store.set(Fault::FailCommitAfterPersist);
    let persisted = json!({"event_id": "0190c0de-0000-7000-8000-00000000f002",
        "action": "predict", "actor": {"type": "user", "id": "admin"},
        "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "prediction", "id": "p2"}});
    assert_eq!(s.post(&persisted).await.0, 503);
    store.set(Fault::None);
    eventually("recovery", Duration::from_secs(10), async || {
        health(&s).await == 200
    })
    .await;
    let (status, r) = s.post(&event(100)).await;
    assert_eq!(status, 201);
    assert_eq!(
        r["index"], 7,
        "index 6 holds the batch that reported failure"
    );
    // Resubmitting the one that was told 503 finds it where it landed.
    let (status, r) = s.post(&persisted).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["index"], 6);

    // A registry event whose commit reported failure is folded in anyway:
    // the registry catches up from the log before its next decision.
    let (ci, _) = grant(&s, "service", "ci", &["submitter"]).await;
    let (alice, _) = grant(&s, "user", "alice", &["approver"]).await;
    let register = json!({"event_id": "0190c0de-0000-7000-8000-00000000f003",
        "action": "register", "actor": {"type": "service", "id": "ci"},
        "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "model_version", "id": "m:v1"}});
    store.set(Fault::FailCommitAfterPersist);
    assert_eq!(post_as(&s, &ci, &register).await.0, 503);
    store.set(Fault::None);
    eventually("recovery", Duration::from_secs(10), async || {
        health(&s).await == 200
    })
    .await;
    let approve = json!({"action": "approve", "actor": {"type": "user", "id": "alice"},
        "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "model_version", "id": "m:v1"}});
    let (status, r) = post_as(&s, &alice, &approve).await;
    assert_eq!(
        status, 201,
        "the registry missed a registration that is in the log: {r}"
    );
    let (_, v) = s.get_json("/v1/models/m/versions/v1").await;
    assert_eq!(v["approvers"], json!(["user:alice"]));

    let size = s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap();
    assert_eq!(audit(&s).await, size);
    s.stop().await;
}

/// A real disk that fills up: a small tmpfs made by the test.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &std::path::Path, mib: u64) -> Option<Mount> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fill the file system holding `dir` with a file, leaving almost nothing.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("filler");
    std::fs::File::create(&p).unwrap();
    top_up(&p);
    p
}

/// Take whatever space the disk has again (RocksDB frees some when it
/// deletes obsolete files).
fn top_up(p: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let small = vec![0u8; 4096];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_the_log_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("data");
    let Some(_mount) = Mount::tmpfs(&mnt, 96) else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk test did not run"
        );
        return;
    };
    let mut s = start_in(dir, |c| c.block_cache_bytes = 16 << 20).await;
    for n in 0..20 {
        assert_eq!(s.post(&event(n)).await.0, 201);
    }
    let filler = fill(&mnt);
    // Appends fail, each with 503; none is acknowledged.
    let mut refused = 0;
    let mut acked: Vec<Value> = Vec::new();
    for n in 100..2000 {
        let mut e = event(n);
        e["metadata"] = json!({"blob": "x".repeat(60_000)});
        let (status, r) = s.post(&e).await;
        match status {
            201 => {
                acked.push(r);
                top_up(&filler);
            }
            503 => refused += 1,
            other => panic!("{other}: {r}"),
        }
        if refused >= 5 {
            break;
        }
    }
    assert!(refused >= 5, "the disk never filled: {} acked", acked.len());
    assert_eq!(health(&s).await, 503);
    // Space returns: the server recovers without a restart.
    std::fs::remove_file(&filler).unwrap();
    eventually(
        "recovery after the disk was freed",
        Duration::from_secs(30),
        async || health(&s).await == 200,
    )
    .await;
    let (status, r) = s.post(&event(9_999_999)).await;
    assert_eq!(status, 201, "{r}");
    // Everything acknowledged is there, and the whole log verifies.
    for a in &acked {
        let i = a["index"].as_u64().unwrap();
        let (_, e) = s.get_json(&format!("/v1/entries/{i}")).await;
        assert_eq!(e["event"], a["event"]);
    }
    let size = s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap();
    assert_eq!(audit(&s).await, size);
    s.stop().await;
}

/// An upload that runs out of disk halfway: 507 (or the connection cut),
/// nothing left behind, and the store takes the next upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_fills_the_disk_leaves_nothing_behind() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("data/artifacts");
    let Some(_mount) = Mount::tmpfs(&blobs, 4) else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk upload test did not run"
        );
        return;
    };
    let mut s = start_in(dir, |c| c.block_cache_bytes = 16 << 20).await;
    let big: Vec<u8> = (0..(6u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let d = hex::encode(Sha256::digest(&big));
    let url = s.url(&format!("/v1/artifacts/sha256/{d}"));
    match s
        .http
        .put(&url)
        .bearer_auth(&s.token)
        .body(big)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 507, "{body}");
            assert_eq!(body["error"]["code"], "no_space");
        }
        // The server may close the connection before the client has sent
        // everything; what matters is what it kept.
        Err(e) => eprintln!("upload cut off by the server: {e}"),
    }
    eventually(
        "the temporary file removed",
        Duration::from_secs(10),
        async || std::fs::read_dir(blobs.join("tmp")).unwrap().count() == 0,
    )
    .await;
    let head = s
        .http
        .head(&url)
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    let small = b"fits".to_vec();
    let sd = hex::encode(Sha256::digest(&small));
    let r = s
        .http
        .put(s.url(&format!("/v1/artifacts/sha256/{sd}")))
        .bearer_auth(&s.token)
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The log is untouched by the artifact store's troubles.
    assert_eq!(s.post(&event(1)).await.0, 201);
    s.stop().await;
}
