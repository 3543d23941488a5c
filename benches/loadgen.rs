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

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

// The generator shares the machine's cores with the server: keep it lean.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
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

/// One HTTP/1.1 keep-alive connection per simulated client, on raw hyper:
/// the lightest client we can build, since it shares the cores.
async fn connect(addr: &str) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Without `rate`, a closed loop: each connection sends its next append when
/// the last is acknowledged. With it, requests are sent on a fixed schedule
/// and latency counts from the scheduled time.
async fn run(base: &str, token: &str, conns: usize, secs: u64, rate: Option<u64>) -> RunResult {
    let addr = base.trim_start_matches("http://").to_string();
    let auth = format!("Bearer {token}");
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
        let (hist, ok, errors, bytes) = (hist.clone(), ok.clone(), errors.clone(), bytes.clone());
        let (addr, auth) = (addr.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&addr).await;
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
                let req = hyper::Request::post("/v1/events")
                    .header("host", &addr)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(b)))
                    .unwrap();
                let created = match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        // Read the whole receipt, as a client would.
                        resp.into_body().collect().await.is_ok() && status == 201
                    }
                    Err(_) => false,
                };
                if created {
                    local
                        .record(scheduled.elapsed().as_micros().max(1) as u64)
                        .unwrap();
                    ok.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(len, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if sender.ready().await.is_err() {
                        sender = connect(&addr).await;
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
    let batches = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            (
                metric(&base, "modeltrail_batches_total").await,
                metric(&base, "modeltrail_appends_total").await,
            )
        })
    };
    let mut plan: Vec<(String, usize, Option<u64>)> = a
        .connections
        .iter()
        .map(|&c| (c.to_string(), c, None))
        .collect();
    if let Some(rate) = a.rate {
        plan.push((format!("64 @ {rate}/s fixed rate"), 64, Some(rate)));
    }
    for (label, conns, rate) in plan {
        let (b0, a0) = batches(&rt);
        let r = rt.block_on(run(&base, &token, conns, a.seconds, rate));
        let (b1, a1) = batches(&rt);
        let mean_batch = ((a1 - a0) / (b1 - b0).max(1.0)).max(1.0);
        report(&r, &label, mean_batch);
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
