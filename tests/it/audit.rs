//! The auditor's side, end to end with the real binary: offline receipt
//! verification, online inclusion, consistency and full-log audits, and a
//! monitor that catches a forked log and keeps evidence that verifies.

use crate::common::*;
use modeltrail::note::Checkpoint;
use modeltrail::server::{self, Overrides, ServerConfig};
use std::path::Path;
use std::process::Output;

const BIN: &str = env!("CARGO_BIN_EXE_modeltrail");

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_offline_with_exit_codes() {
    let mut s = start().await;
    let dir = s.dir.path().to_path_buf();
    for n in 0..10 {
        s.post(&event(n)).await;
    }
    let (status, r) = s.post(&event(77)).await;
    assert_eq!(status, 201);
    let vkey = s.vkey.to_string();
    s.stop().await; // offline from here on

    let receipt = dir.join("r.tlog-proof");
    let ev = dir.join("event.json");
    std::fs::write(&receipt, r["tlog_proof"].as_str().unwrap()).unwrap();
    // Pretty-printed, as an auditor might keep it: canonicalization makes it the same leaf.
    std::fs::write(&ev, serde_json::to_string_pretty(&r["event"]).unwrap()).unwrap();
    let p = |e: &Path, rc: &Path, key: &str| {
        args(&[
            "verify",
            "receipt",
            "--vkey",
            key,
            "--event",
            e.to_str().unwrap(),
            rc.to_str().unwrap(),
        ])
    };

    let o = run(p(&ev, &receipt, &vkey)).await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).starts_with("OK: event is entry 10 of test.example/log"));
    // The key as a file works too.
    let kf = dir.join("log.vkey");
    std::fs::write(&kf, format!("{vkey}\n")).unwrap();
    assert_eq!(code(&run(p(&ev, &receipt, kf.to_str().unwrap())).await), 0);

    // Fails verification (1): another event, another key with the same name.
    let mut other = r["event"].clone();
    other["action"] = "approve".into();
    let other_ev = dir.join("other.json");
    std::fs::write(&other_ev, other.to_string()).unwrap();
    let o = run(p(&other_ev, &receipt, &vkey)).await;
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).starts_with("FAIL: verification failed"));
    let (_, impostor) = {
        let k =
            modeltrail::note::SignerKey::generate(modeltrail::note::KeyName::new(ORIGIN).unwrap())
                .unwrap();
        (k.clone(), k.verifier().to_string())
    };
    assert_eq!(code(&run(p(&ev, &receipt, &impostor)).await), 1);
    let text = r["tlog_proof"].as_str().unwrap();
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.remove(2); // drop one proof hash
    let short = dir.join("short.tlog-proof");
    std::fs::write(&short, lines.join("\n")).unwrap();
    assert_eq!(code(&run(p(&ev, &short, &vkey)).await), 1);

    // Malformed (2): truncated, CRs, blank lines, garbage key, missing file.
    for (name, body) in [
        ("trunc", text[..text.len() / 2].to_string()),
        ("crlf", text.replace('\n', "\r\n")),
        ("blank", text.replacen("\n\n", "\n\n\n", 1)),
        ("index", text.replacen("index 10", "index 010", 1)),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, body).unwrap();
        let o = run(p(&ev, &f, &vkey)).await;
        assert_eq!(code(&o), 2, "{name}: {}", stdout(&o));
        assert_eq!(stdout(&o).lines().count(), 1, "one-line reason");
    }
    assert_eq!(code(&run(p(&ev, &receipt, "not-a-key")).await), 2);
    assert_eq!(code(&run(p(&ev, &dir.join("missing"), &vkey)).await), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_inclusion_consistency_and_full_audit() {
    let mut s = start().await;
    let dir = s.dir.path().to_path_buf();
    for n in 0..300 {
        s.post(&event(n)).await;
    }
    let old = s.get("/checkpoint").await.text().await.unwrap();
    let old_file = dir.join("old.checkpoint");
    std::fs::write(&old_file, &old).unwrap();
    let (_, r) = s.post(&event(1000)).await;
    for n in 0..260 {
        s.post(&event(2000 + n)).await;
    }
    let vkey = s.vkey.to_string();
    let base = s.base.clone();

    let o = run(args(&[
        "verify",
        "inclusion",
        "--server",
        &base,
        "--vkey",
        &vkey,
        "--index",
        "17",
    ]))
    .await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let ev = dir.join("e.json");
    std::fs::write(&ev, r["event"].to_string()).unwrap();
    let o = run(args(&[
        "verify",
        "inclusion",
        "--server",
        &base,
        "--vkey",
        &vkey,
        "--event",
        ev.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("entry 300 "));
    let o = run(args(&[
        "verify",
        "inclusion",
        "--server",
        &base,
        "--vkey",
        &vkey,
        "--index",
        "999999",
    ]))
    .await;
    assert_ne!(code(&o), 0);

    let o = run(args(&[
        "verify",
        "consistency",
        "--server",
        &base,
        "--vkey",
        &vkey,
        "--old",
        old_file.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("size 561 extends the one of size 300"));

    let o = run(args(&["verify", "log", "--server", &base, "--vkey", &vkey])).await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("all 561 entries and 4 tiles"),
        "{}",
        stdout(&o)
    );

    // The wrong key fails; an unreachable server is exit 3.
    let other =
        modeltrail::note::SignerKey::generate(modeltrail::note::KeyName::new(ORIGIN).unwrap())
            .unwrap();
    let o = run(args(&[
        "verify",
        "log",
        "--server",
        &base,
        "--vkey",
        &other.verifier().to_string(),
    ]))
    .await;
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    s.stop().await;
    let o = run(args(&["verify", "log", "--server", &base, "--vkey", &vkey])).await;
    assert_eq!(code(&o), 3, "{}", stdout(&o));
}

/// Two servers with the same key and diverging histories.
async fn twin_servers() -> (TestServer, TestServer) {
    let a = start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    modeltrail::fsutil::write_secret(
        &data.join(server::KEY_FILE),
        &std::fs::read_to_string(a.dir.path().join("data").join(server::KEY_FILE)).unwrap(),
    )
    .unwrap();
    let cfg = ServerConfig::resolve(Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(data),
        origin: Some(ORIGIN.into()),
        ..Default::default()
    })
    .unwrap();
    let d = server::prepare_data_dir(&cfg).unwrap();
    assert_eq!(d.signer.verifier(), a.vkey);
    let running = server::start(&cfg, &d).await.unwrap();
    let b = TestServer {
        base: format!("http://{}", running.addr),
        token: d.admin_token.clone(),
        vkey: d.signer.verifier(),
        http: reqwest::Client::new(),
        running: Some(running),
        dir,
    };
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_catches_a_fork_and_keeps_evidence() {
    let (mut a, mut b) = twin_servers().await;
    for n in 0..5 {
        a.post(&event(n)).await;
    }
    for n in 100..108 {
        b.post(&event(n)).await;
    }
    let vkey = a.vkey.to_string();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("monitor.state");
    let mon = |server: &str| {
        args(&[
            "monitor",
            "--once",
            "--server",
            server,
            "--vkey",
            &vkey,
            "--state",
            state.to_str().unwrap(),
        ])
    };

    let o = run(mon(&a.base)).await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("first checkpoint, tree size 5"));
    for n in 5..9 {
        a.post(&event(n)).await;
    }
    let o = run(mon(&a.base)).await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("tree size 9 is consistent with 5"));
    let saved = std::fs::read_to_string(&state).unwrap();

    // Pointed at the twin: its tree of 8 is smaller; grow it to 12 and it is
    // inconsistent. Both are alarms with evidence, and the state is kept.
    let o = run(mon(&b.base)).await;
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).contains("shrank"), "{}", stdout(&o));
    for n in 108..112 {
        b.post(&event(n)).await;
    }
    let o = run(mon(&b.base)).await;
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).starts_with("ALARM:"));
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        saved,
        "an alarm must not move the state"
    );

    // The evidence: two checkpoints, both signed by the log's key, that no
    // consistency proof can join. That is the proof of misbehaviour.
    let evidence_path = stdout(&o).trim().rsplit(' ').next().unwrap().to_string();
    let ev: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&evidence_path).unwrap()).unwrap();
    let (old, _) = Checkpoint::open(
        ev["old_checkpoint"].as_str().unwrap().as_bytes(),
        ORIGIN,
        &a.vkey,
    )
    .unwrap();
    let (new, _) = Checkpoint::open(
        ev["new_checkpoint"].as_str().unwrap().as_bytes(),
        ORIGIN,
        &a.vkey,
    )
    .unwrap();
    assert_eq!((old.size, new.size), (9, 12));
    let proof = modeltrail::verify::parse_hex_hashes(
        &ev["consistency_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(modeltrail::verify::consistency(&old, &new, &proof).is_err());

    // Same size, different root: a fork in its plainest form.
    for n in 9..12 {
        a.post(&event(n)).await;
    }
    let work2 = tempfile::tempdir().unwrap();
    let state2 = work2.path().join("s");
    let mon2 = |server: &str| {
        args(&[
            "monitor",
            "--once",
            "--server",
            server,
            "--vkey",
            &vkey,
            "--state",
            state2.to_str().unwrap(),
        ])
    };
    assert_eq!(code(&run(mon2(&a.base)).await), 0);
    let o = run(mon2(&b.base)).await;
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("forked"), "{}", stdout(&o));

    // A server that is down is not an alarm.
    a.stop().await;
    let o = run(mon2(&a.base)).await;
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    assert!(stdout(&o).starts_with("UNREACHABLE"));
    b.stop().await;
}

/// A command whose stdout is closed, or whose reader has gone away
/// (`| head`), loses its output but neither panics nor changes its exit
/// code.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let bin = BIN;
    for script in [
        // stdout closed outright
        format!("exec 1>&-; '{bin}' keygen --origin t.example/x"),
        // a pipe whose reader exited before anything was written
        format!("{{ sleep 0.3; '{bin}' keygen --origin t.example/x; }} | true"),
    ] {
        let out = std::process::Command::new("bash")
            .args(["-o", "pipefail", "-c", &script])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{script}: {stderr}");
        assert!(out.status.success(), "{script}: {:?} {stderr}", out.status);
    }
}
