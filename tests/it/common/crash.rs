//! Kill-and-restart harness shared by the durability test and the
//! `crash_cycles` bench: runs the real `modeltrail serve` binary on an
//! ephemeral loopback port, appends from many concurrent clients, SIGKILLs
//! it mid-load, restarts it, and checks that nothing acknowledged was lost
//! and that no checkpoint moved backwards or forked.

use modeltrail::note::{Checkpoint, VerifierKey};
use modeltrail::tree::{leaf_hash, verify_consistency, verify_inclusion};
use modeltrail::wire;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ORIGIN: &str = "crash.example/log";

pub struct Server {
    pub child: Child,
    pub base: String,
    pub vkey: VerifierKey,
}

/// Start the binary and read its address and verifier key from stdout.
/// (The tests use it; the `crash_cycles` bench, which shares this file,
/// starts the server through `run_cycles` only.)
#[allow(dead_code)]
pub fn spawn(bin: &str, data: &Path) -> Server {
    spawn_with(bin, data, &[])
}

/// The same, with more arguments for `serve`.
pub fn spawn_with(bin: &str, data: &Path, extra: &[&str]) -> Server {
    spawn_env(bin, data, extra, &[])
}

/// The same, with more environment variables.
pub fn spawn_env(bin: &str, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--origin",
            ORIGIN,
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start modeltrail");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut vkey) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while base.is_none() || vkey.is_none() {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines.next().expect("server exited").unwrap();
        if let Some(v) = line.strip_prefix("verifier key: ") {
            vkey = Some(VerifierKey::parse(v).unwrap());
        }
        if let Some(a) = line.strip_prefix("listening on ") {
            base = Some(a.to_string());
        }
    }
    Server {
        child,
        base: base.unwrap(),
        vkey: vkey.unwrap(),
    }
}

/// The admin token a server made in its data directory on first start.
pub fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// What a client was told: the receipt of an acknowledged append.
#[derive(Clone, Debug)]
pub struct Ack {
    pub event_id: String,
    pub index: u64,
    pub leaf: [u8; 32],
    pub checkpoint: String,
    pub proof: Vec<[u8; 32]>,
}

/// Append from `clients` concurrent clients until `kill_after`, then SIGKILL
/// the server while they are still sending. Returns every acknowledgement.
pub async fn load_then_kill(
    server: &mut Server,
    token: &str,
    clients: usize,
    kill_after: Duration,
    cycle: usize,
) -> Vec<Ack> {
    let acks = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let stop_at = Instant::now() + kill_after + Duration::from_millis(500);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, acks, base, token) = (
            http.clone(),
            acks.clone(),
            server.base.clone(),
            token.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            // Bounded: stops by time, and by count as a backstop.
            while Instant::now() < stop_at && n < 1_000_000 {
                n += 1;
                let id = uuid::Uuid::now_v7().to_string();
                let body = json!({
                    "event_id": id,
                    "action": "deploy",
                    "actor": {"type": "user", "id": "admin"},
                    "metadata": {"client": c},
                    "timestamp": "2025-05-05T14:03:00Z",
                    "subject": {"type": "deployment", "id": format!("c{cycle}-{c}-{n}")},
                });
                let r = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                let Ok(r) = r else { break };
                if r.status() != 201 {
                    continue;
                }
                let Ok(v) = r.json::<wire::Receipt>().await else {
                    break;
                };
                assert_eq!(v.event_id, id);
                acks.lock().unwrap().push(Ack {
                    event_id: id,
                    index: v.index,
                    leaf: v.leaf_hash.0,
                    checkpoint: v.checkpoint,
                    proof: wire::unhex(&v.inclusion_proof),
                });
            }
        }));
    }
    tokio::time::sleep(kill_after).await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(acks).unwrap().into_inner().unwrap()
}

/// What is kept of an acknowledgement once its receipt has been checked:
/// enough to find it again in the final read of the whole log.
#[derive(Clone, Debug)]
pub struct Acked {
    pub index: u64,
    pub event_id: String,
    pub leaf: [u8; 32],
}

/// GET a JSON answer.
async fn fetch<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> T {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The acknowledged event `id` with leaf `leaf` is at `index` among the
/// entries `stored`, read back from index `from` of a log of `size`.
fn found_at(
    stored: &[(String, [u8; 32])],
    from: u64,
    size: u64,
    index: u64,
    id: &str,
    leaf: &[u8; 32],
) {
    let (got, got_leaf) = stored
        .get((index - from) as usize)
        .unwrap_or_else(|| panic!("acknowledged index {index} lost: head is {size}"));
    assert_eq!(got, id, "entry {index} changed");
    assert_eq!(got_leaf, leaf);
}

/// Read entries `from..to` back in pages: each embedded event is its leaf's
/// exact bytes. Returns each entry's event id and leaf hash.
async fn read_entries(
    http: &reqwest::Client,
    base: &str,
    from: u64,
    to: u64,
) -> Vec<(String, [u8; 32])> {
    let mut stored: Vec<(String, [u8; 32])> = Vec::with_capacity((to - from) as usize);
    while from + (stored.len() as u64) < to {
        let at = from + stored.len() as u64;
        let page: wire::EntryPage =
            fetch(http, &format!("{base}/v1/entries?start={at}&limit=1000")).await;
        assert!(!page.entries.is_empty(), "no entries from {at} below {to}");
        for e in page.entries {
            if e.index >= to {
                break;
            }
            assert_eq!(e.index, from + stored.len() as u64);
            assert_eq!(leaf_hash(e.event.get().as_bytes()), e.leaf_hash.0);
            let ev: Value = serde_json::from_str(e.event.get()).unwrap();
            stored.push((ev["event_id"].as_str().unwrap().to_string(), e.leaf_hash.0));
        }
    }
    stored
}

/// After a restart, in work proportional to what is new since `prev` (the
/// last head verified): the new head is consistent with `prev` and with every
/// checkpoint in `new_seen` (those handed out since); every receipt in
/// `acks` (this cycle's) verifies against its checkpoint, and its event is at
/// its index among the entries read back from `prev` on. Entries below
/// `prev` were read and matched in an earlier cycle, and the consistency
/// proof from `prev` shows they are unchanged; consistency is transitive, so
/// checking only what is new still covers every checkpoint ever seen.
pub async fn check_after_restart(
    server: &Server,
    acks: &[Ack],
    prev: Option<&Checkpoint>,
    new_seen: &[Checkpoint],
) -> Checkpoint {
    let http = reqwest::Client::new();
    let text = http
        .get(format!("{}/checkpoint", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (head, _) = Checkpoint::open(text.as_bytes(), ORIGIN, &server.vkey).unwrap();
    let from = prev.map_or(0, |p| p.size);
    assert!(
        from <= head.size,
        "checkpoint moved backwards: {from} -> {}",
        head.size
    );
    let stored = read_entries(&http, &server.base, from, head.size).await;
    for a in acks {
        let (cp, _) = Checkpoint::open(a.checkpoint.as_bytes(), ORIGIN, &server.vkey).unwrap();
        verify_inclusion(a.index, cp.size, &a.leaf, &a.proof, &cp.root).expect("receipt verifies");
        assert!(
            a.index >= from,
            "acknowledged at {} although the head was already {from} before",
            a.index
        );
        found_at(&stored, from, head.size, a.index, &a.event_id, &a.leaf);
    }
    find_by_leaf_hash(
        &http,
        &server.base,
        &head,
        acks.iter().map(|a| (a.index, a.leaf)),
    )
    .await;
    for old in prev.into_iter().chain(new_seen) {
        assert!(
            old.size <= head.size,
            "checkpoint moved backwards: {} -> {}",
            old.size,
            head.size
        );
        if old.size == 0 {
            continue;
        }
        let p: wire::ConsistencyProof = fetch(
            &http,
            &format!(
                "{}/v1/proof/consistency?old_size={}&new_size={}",
                server.base, old.size, head.size
            ),
        )
        .await;
        let proof = wire::unhex(&p.proof);
        verify_consistency(old.size, head.size, &proof, &old.root, &head.root)
            .expect("checkpoint forked");
    }
    head
}

/// At the end, once: the whole log read back, every acknowledged event of
/// every cycle at its index, and found there by its leaf hash.
async fn check_whole_log(server: &Server, head: &Checkpoint, acked: &[Acked]) {
    let http = reqwest::Client::new();
    let stored = read_entries(&http, &server.base, 0, head.size).await;
    for a in acked {
        found_at(&stored, 0, head.size, a.index, &a.event_id, &a.leaf);
    }
    find_by_leaf_hash(
        &http,
        &server.base,
        head,
        acked.iter().map(|a| (a.index, a.leaf)),
    )
    .await;
}

/// Each leaf hash is found at its index by `GET /v1/proof/inclusion?leaf_hash=`
/// (the leaf-hash index, whose newest part a crash loses and the restart
/// rebuilds), with a proof to `head`.
async fn find_by_leaf_hash(
    http: &reqwest::Client,
    base: &str,
    head: &Checkpoint,
    leaves: impl Iterator<Item = (u64, [u8; 32])>,
) {
    for (index, leaf) in leaves {
        let url = format!(
            "{base}/v1/proof/inclusion?leaf_hash={}&tree_size={}",
            modeltrail::encoding::hex(&leaf),
            head.size
        );
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "leaf {index} not found by its hash");
        let p: wire::InclusionProof = r.json().await.unwrap();
        assert_eq!(p.index, index, "leaf hash of entry {index}");
        let proof = wire::unhex(&p.proof);
        verify_inclusion(index, head.size, &leaf, &proof, &head.root)
            .expect("proof by leaf hash verifies");
    }
}

/// Run `cycles` kill/restart cycles on one data directory, the server
/// writing its leaf-hash index every `leaf_index_batch` entries.
pub async fn run_cycles(
    bin: &str,
    cycles: usize,
    clients: usize,
    kill_after: Duration,
    leaf_index_batch: usize,
) -> (u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[limits]\nleaf_index_batch = {leaf_index_batch}\n"),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let spawn = |bin: &str, data: &Path| spawn_with(bin, data, &args);
    let mut all_acks: Vec<Acked> = Vec::new();
    let mut prev: Option<Checkpoint> = None;
    let mut server = spawn(bin, &data);
    let token = admin_token(&data);
    for cycle in 0..cycles {
        let acks = load_then_kill(&mut server, &token, clients, kill_after, cycle).await;
        // Every checkpoint handed out this cycle, once each: two with the
        // same size and different roots would fail the consistency check.
        let mut seen: Vec<Checkpoint> = acks
            .iter()
            .map(|a| {
                Checkpoint::open(a.checkpoint.as_bytes(), ORIGIN, &server.vkey)
                    .unwrap()
                    .0
            })
            .collect();
        seen.sort_by_key(|c| c.size);
        seen.dedup();
        server = spawn(bin, &data);
        prev = Some(check_after_restart(&server, &acks, prev.as_ref(), &seen).await);
        all_acks.extend(acks.into_iter().map(|a| Acked {
            index: a.index,
            event_id: a.event_id,
            leaf: a.leaf,
        }));
    }
    let head = check_after_restart(&server, &[], prev.as_ref(), &[]).await;
    check_whole_log(&server, &head, &all_acks).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    (head.size, all_acks.len())
}
