//! Load generator: drives the real `modeltrail serve` binary over loopback
//! HTTP with unique events and reports durable appends/s and latency
//! percentiles, then measures in the same run the baseline of a raw RocksDB
//! synced `WriteBatch` holding the same bytes in batches of the size the
//! server formed.
//!
//! ```text
//! cargo bench --bench loadgen -- [--connections 1,16,64] [--seconds 10] [--rate 5000] [--server URL --token T]
//! ```
//! Without `--server`, it starts the server binary on 127.0.0.1 with a fresh
//! temporary data directory. `--rate R` adds a fixed-rate run (R appends/s
//! over 64 connections) whose latency is measured from each request's
//! scheduled send time, so a stall is not hidden by the client waiting.

use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    connections: Vec<usize>,
    seconds: u64,
    rate: Option<u64>,
    server: Option<String>,
    token: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        connections: vec![1, 16, 64],
        seconds: 10,
        rate: None,
        server: None,
        token: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--connections" => a.connections = v().split(',').map(|x| x.parse().unwrap()).collect(),
            "--seconds" => a.seconds = v().parse().unwrap(),
            "--rate" => a.rate = Some(v().parse().unwrap()),
            "--server" => a.server = Some(v()),
            "--token" => a.token = Some(v()),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn body(worker: usize, n: u64) -> String {
    serde_json::json!({
        "action": "predict",
        "actor": {"type": "service", "id": format!("scorer-{worker}")},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "prediction", "id": format!("p-{worker}-{n}")},
        "related": [{"type": "deployment", "id": "fraud-prod"}, {"type": "model_version", "id": "fraud:v3"}],
        "metadata": {"score": 0.913, "threshold": 0.5}
    })
    .to_string()
}

struct RunResult {
    ok: u64,
    errors: u64,
    secs: f64,
    hist: Histogram<u64>,
    bytes: u64,
}

/// Closed loop: each connection sends its next append when the last is acknowledged.
async fn closed_loop(base: &str, token: &str, conns: usize, secs: u64) -> RunResult {
    run(base, token, conns, secs, None).await
}

async fn run(base: &str, token: &str, conns: usize, secs: u64, rate: Option<u64>) -> RunResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .unwrap();
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..conns {
        let (client, hist, ok, errors, bytes) = (
            client.clone(),
            hist.clone(),
            ok.clone(),
            errors.clone(),
            bytes.clone(),
        );
        let url = format!("{base}/v1/events");
        let token = token.to_string();
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            // For a fixed rate: this connection's share, evenly spaced.
            let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r as f64));
            let mut n = 0u64;
            loop {
                let scheduled = match interval {
                    Some(iv) => start + iv.mul_f64(n as f64) + iv.mul_f64(w as f64 / conns as f64),
                    None => Instant::now(),
                };
                if scheduled >= end {
                    break;
                }
                if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let b = body(w, n);
                n += 1;
                let len = b.len() as u64;
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        let _ = r.bytes().await;
                        local
                            .record(scheduled.elapsed().as_micros().max(1) as u64)
                            .unwrap();
                        ok.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(len, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            hist.lock().unwrap().add(&local).unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let hist = hist.lock().unwrap().clone();
    RunResult {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        secs,
        hist,
        bytes: bytes.load(Ordering::Relaxed),
    }
}

/// Raw RocksDB: the same number of entries of the same size, written in
/// synced WriteBatches of `batch` entries (plus one index value per entry,
/// as the log's entries and event-id index are the bulk of its bytes).
fn raw_rocksdb(entries: u64, entry_bytes: usize, batch: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = rocksdb::DB::open_default(dir.path()).unwrap();
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    let value = vec![b'x'; entry_bytes];
    let start = Instant::now();
    let mut i = 0u64;
    while i < entries {
        let mut wb = rocksdb::WriteBatch::default();
        for _ in 0..batch.min(entries - i) {
            wb.put(i.to_be_bytes(), &value);
            i += 1;
        }
        db.write_opt(wb, &wo).unwrap();
    }
    entries as f64 / start.elapsed().as_secs_f64()
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (base, token, mut child) = match (&a.server, &a.token) {
        (Some(s), Some(t)) => (s.clone(), t.clone(), None),
        _ => {
            let data = dir.path().join("data");
            let mut child = Command::new(env!("CARGO_BIN_EXE_modeltrail"))
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--origin",
                    "loadgen.example/log",
                    "--data-dir",
                ])
                .arg(&data)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let base = loop {
                let l = lines.next().unwrap().unwrap();
                if let Some(b) = l.strip_prefix("listening on ") {
                    break b.to_string();
                }
            };
            let token = std::fs::read_to_string(data.join("admin.token"))
                .unwrap()
                .trim()
                .to_string();
            (base, token, Some(child))
        }
    };
    println!("server: {base}");
    println!("| connections | appends/s | p50 ms | p99 ms | p99.9 ms | errors | mean batch | raw RocksDB synced WriteBatch entries/s (same batch, same bytes) | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut runs: Vec<(String, RunResult)> = Vec::new();
    for &c in &a.connections {
        let (b0, a0) = rt.block_on(async {
            (
                metric(&base, "modeltrail_batches_total").await,
                metric(&base, "modeltrail_appends_total").await,
            )
        });
        let r = rt.block_on(closed_loop(&base, &token, c, a.seconds));
        let (b1, a1) = rt.block_on(async {
            (
                metric(&base, "modeltrail_batches_total").await,
                metric(&base, "modeltrail_appends_total").await,
            )
        });
        let mean_batch = ((a1 - a0) / (b1 - b0).max(1.0)).max(1.0);
        runs.push((format!("{c}"), r));
        let r = &runs.last().unwrap().1;
        report(r, &format!("{c}"), mean_batch);
    }
    if let Some(rate) = a.rate {
        let (b0, a0) = rt.block_on(async {
            (
                metric(&base, "modeltrail_batches_total").await,
                metric(&base, "modeltrail_appends_total").await,
            )
        });
        let r = rt.block_on(run(&base, &token, 64, a.seconds, Some(rate)));
        let (b1, a1) = rt.block_on(async {
            (
                metric(&base, "modeltrail_batches_total").await,
                metric(&base, "modeltrail_appends_total").await,
            )
        });
        let mean_batch = ((a1 - a0) / (b1 - b0).max(1.0)).max(1.0);
        report(&r, &format!("64 @ {rate}/s fixed rate"), mean_batch);
    }
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn report(r: &RunResult, label: &str, mean_batch: f64) {
    let rate = r.ok as f64 / r.secs;
    let entry_bytes = (r.bytes / r.ok.max(1)) as usize + 40; // the server adds an event_id
    let raw = raw_rocksdb(
        r.ok.clamp(1000, 200_000),
        entry_bytes,
        mean_batch.round() as u64,
    );
    let ms = |q: f64| r.hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {label} | {rate:.0} | {:.2} | {:.2} | {:.2} | {} | {mean_batch:.1} | {raw:.0} | {:.2} |",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        r.errors,
        rate / raw
    );
}
