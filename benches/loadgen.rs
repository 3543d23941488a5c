//! Load generator: drives the real `modeltrail serve` binary over loopback
//! HTTP and reports throughput and latency percentiles, each next to a
//! baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench loadgen -- [--connections 1,16,64] [--seconds 10] [--rate 5000]
//!                                [--fill N] [--proofs] [--read-connections 1,64]
//!                                [--postgres] [--server URL --token T]
//!                                [--config FILE] [--data-dir DIR --origin O]
//!                                [--server-bin PATH]
//! ```
//!
//! - Appends: unique events, a closed loop per connection. Baseline: a raw
//!   RocksDB synced `WriteBatch` holding the same number of entries of the
//!   same size, in batches of the mean size the server formed.
//! - `--rate R`: R appends/s over 64 connections on a fixed schedule; latency
//!   counts from each request's scheduled send time, so a stall is not hidden
//!   by the client waiting for it. `--rate-runs N` repeats it N times. Each
//!   run also reports, from the server, its batches slower than 6.4 ms
//!   and 25.6 ms to write, fsync and sign (`modeltrail_commit_seconds`),
//!   and the RocksDB flushes and compactions that started during the run
//!   (its event log), and, right after it with the server idle, the disk's
//!   own fsync latency (1 KiB appends to a file beside the server's data,
//!   each followed by `fdatasync`, for as long as the run): the evidence
//!   for where a latency outlier comes from.
//! - `--fill N`: first append N events (64 connections), to measure reads on
//!   a large log.
//! - `--proofs`: inclusion proofs at random indexes of the whole tree, and
//!   consistency proofs from a random older size, and full level-0 hash
//!   tiles (`/tile/0/…`, 8 KiB each) at random indexes.
//!   Baseline: `GET /healthz` at the same concurrency, the cost of an HTTP
//!   round trip that does no work. `--read-connections` sets the
//!   concurrencies (64 unless given): one connection measures a read's
//!   latency on an otherwise idle server, 64 the server's throughput.
//! - `--postgres`: a second baseline for appends, PostgreSQL's single-row
//!   INSERT of an event-sized row per transaction (`pgbench`, the same
//!   client counts, `synchronous_commit = on`, a fresh cluster in a
//!   temporary directory, the PostgreSQL 15 of Debian's packages), run
//!   right after the server's own appends at each client count.
//! - CPU per append: the server process's user + system CPU time (from
//!   `/proc/<pid>/stat`) over each append run, divided by its appends.
//!
//! Without `--server`, it starts the server binary on 127.0.0.1 with a fresh
//! temporary data directory (and the configuration file `--config`, if
//! given), or on the existing data directory `--data-dir` with its origin
//! `--origin` (a log kept by the bulk bench, for reads at sizes no HTTP
//! fill reaches in reasonable time). `--connections none` skips the append
//! runs. `--server-bin PATH` starts that build of the server instead of
//! this one, to compare two commits in one sitting. Reads also report the
//! server's CPU per request, from `/proc`, so the ratio to `/healthz` can be
//! read without the client's share. Clients are raw hyper HTTP/1.1
//! keep-alive connections, one per simulated client: the lightest client we
//! can build, since it shares the machine's cores with the server.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    connections: Vec<usize>,
    seconds: u64,
    rate: Option<u64>,
    rate_runs: usize,
    fill: u64,
    proofs: bool,
    read_connections: Vec<usize>,
    postgres: bool,
    server: Option<String>,
    server_bin: Option<String>,
    token: Option<String>,
    config: Option<String>,
    data_dir: Option<String>,
    origin: String,
}

fn args() -> Args {
    let mut a = Args {
        connections: vec![1, 16, 64],
        seconds: 10,
        rate: None,
        rate_runs: 1,
        fill: 0,
        proofs: false,
        read_connections: vec![64],
        postgres: false,
        server: None,
        server_bin: None,
        token: None,
        config: None,
        data_dir: None,
        origin: "loadgen.example/log".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--connections" => {
                let v = v();
                a.connections = if v == "none" {
                    Vec::new()
                } else {
                    v.split(',').map(|x| x.parse().unwrap()).collect()
                }
            }
            "--seconds" => a.seconds = v().parse().unwrap(),
            "--rate" => a.rate = Some(v().parse().unwrap()),
            "--rate-runs" => a.rate_runs = v().parse().unwrap(),
            "--fill" => a.fill = v().parse().unwrap(),
            "--proofs" => a.proofs = true,
            "--read-connections" => {
                a.read_connections = v().split(',').map(|x| x.parse().unwrap()).collect()
            }
            "--postgres" => a.postgres = true,
            "--server" => a.server = Some(v()),
            "--token" => a.token = Some(v()),
            "--server-bin" => a.server_bin = Some(v()),
            "--config" => a.config = Some(v()),
            "--data-dir" => a.data_dir = Some(v()),
            "--origin" => a.origin = v(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// What every simulated client sends.
#[derive(Clone, Copy)]
enum Work {
    Append,
    Proof {
        tree_size: u64,
    },
    Consistency {
        tree_size: u64,
    },
    /// A full level-0 hash tile, below `tiles`.
    HashTile {
        tiles: u64,
    },
    Health,
}

/// When a run stops.
#[derive(Clone, Copy)]
enum Stop {
    After(Duration),
    Count(u64),
}

fn append_body(worker: usize, n: u64) -> String {
    serde_json::json!({
        "action": "predict",
        "actor": {"type": "user", "id": "admin"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "prediction", "id": format!("p-{worker}-{n}")},
        "related": [{"type": "deployment", "id": "fraud-prod"}, {"type": "model_version", "id": "fraud:v3"}],
        "metadata": {"score": 0.913, "threshold": 0.5}
    })
    .to_string()
}

/// xorshift: cheap, and every connection walks its own sequence.
fn xorshift(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// A request and the status that counts as success; `sent` is the body size.
fn request(
    work: Work,
    addr: &str,
    auth: &str,
    worker: usize,
    n: u64,
    rng: &mut u64,
) -> (hyper::Request<Full<Bytes>>, u16, u64) {
    let b = hyper::Request::builder().header("host", addr);
    match work {
        Work::Append => {
            let body = append_body(worker, n);
            let sent = body.len() as u64;
            let req = b
                .method("POST")
                .uri("/v1/events")
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            (req, 201, sent)
        }
        Work::Proof { tree_size } => {
            let index = xorshift(rng) % tree_size;
            let uri = format!("/v1/proof/inclusion?index={index}&tree_size={tree_size}");
            (b.uri(uri).body(Full::default()).unwrap(), 200, 0)
        }
        Work::Consistency { tree_size } => {
            let old = 1 + xorshift(rng) % tree_size;
            let uri = format!("/v1/proof/consistency?old_size={old}&new_size={tree_size}");
            (b.uri(uri).body(Full::default()).unwrap(), 200, 0)
        }
        Work::HashTile { tiles } => {
            let t = xorshift(rng) % tiles;
            let uri = format!("/tile/0/{}", modeltrail::tiles::encode_index(t));
            (b.uri(uri).body(Full::default()).unwrap(), 200, 0)
        }
        Work::Health => (b.uri("/healthz").body(Full::default()).unwrap(), 200, 0),
    }
}

async fn connect(addr: &str) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

struct RunResult {
    ok: u64,
    errors: u64,
    secs: f64,
    hist: Histogram<u64>,
    bytes: u64,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Closed loop (each connection sends its next request when the last is
/// answered), or a fixed schedule when `rate` is given.
async fn run(
    base: &str,
    token: &str,
    work: Work,
    conns: usize,
    stop: Stop,
    rate: Option<u64>,
) -> RunResult {
    let addr = base.trim_start_matches("http://").to_string();
    let auth = format!("Bearer {token}");
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let (ok, errors, bytes) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let tickets = Arc::new(AtomicU64::new(match stop {
        Stop::Count(n) => n,
        Stop::After(_) => u64::MAX,
    }));
    let start = Instant::now();
    // A backstop for count-limited runs, so the loop always ends by itself.
    let end = start
        + match stop {
            Stop::After(d) => d,
            Stop::Count(_) => Duration::from_secs(3600),
        };
    let mut tasks = Vec::new();
    for w in 0..conns {
        let (hist, ok, errors, bytes, tickets) = (
            hist.clone(),
            ok.clone(),
            errors.clone(),
            bytes.clone(),
            tickets.clone(),
        );
        let (addr, auth) = (addr.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&addr).await;
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r as f64));
            let mut rng =
                0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd);
            let mut n = 0u64;
            loop {
                let scheduled = match interval {
                    Some(iv) => start + iv.mul_f64(n as f64) + iv.mul_f64(w as f64 / conns as f64),
                    None => Instant::now(),
                };
                if scheduled >= end
                    || tickets
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1))
                        .is_err()
                {
                    break;
                }
                if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let (req, want, sent) = request(work, &addr, &auth, w, n, &mut rng);
                n += 1;
                let good = match sender.send_request(req).await {
                    // Read the whole answer, as a real client would.
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        resp.into_body().collect().await.is_ok() && status == want
                    }
                    Err(_) => false,
                };
                if good {
                    local
                        .record(scheduled.elapsed().as_micros().max(1) as u64)
                        .unwrap();
                    ok.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(sent, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if let Stop::Count(_) = stop {
                        tickets.fetch_add(1, Ordering::Relaxed); // retry it
                    }
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
/// synced WriteBatches of `batch` entries.
/// The disk's own fsync latency, the baseline of a fixed-rate run: 1 KiB
/// appends to a file beside the server's data, each followed by
/// `fdatasync`, for `secs` seconds, while the server is idle. Returns the
/// latencies (µs).
fn raw_fsync(dir: &std::path::Path, secs: u64) -> Histogram<u64> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut lat = Histogram::<u64>::new(3).unwrap();
    let block = [b'x'; 1024];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
        lat.record(t.elapsed().as_micros() as u64).unwrap();
    }
    drop(f);
    std::fs::remove_file(&path).unwrap();
    lat
}

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

async fn get_text(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut sender = connect(addr).await;
    let req = hyper::Request::get(path)
        .header("host", addr)
        .body(Full::default())
        .unwrap();
    let body = sender
        .send_request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    String::from_utf8(body.to_bytes().to_vec()).unwrap()
}

/// Batches that took longer than `le` seconds to commit, so far.
fn slow_commits(metrics: &str, le: &str) -> f64 {
    let read = |prefix: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(prefix)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    read("modeltrail_commit_seconds_count")
        - read(&format!("modeltrail_commit_seconds_bucket{{le=\"{le}\"}}"))
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// RocksDB flushes and compactions that started in `[from, to]` (µs since
/// the epoch), from the event log in its LOG file.
fn rocks_events(db: &std::path::Path, from: u64, to: u64) -> (u64, u64) {
    let log = std::fs::read_to_string(db.join("LOG")).unwrap_or_default();
    let (mut flushes, mut compactions) = (0, 0);
    for line in log.lines() {
        let Some(json) = line.split_once("EVENT_LOG_v1 ").map(|x| x.1) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let t = v["time_micros"].as_u64().unwrap_or(0);
        if t < from || t > to {
            continue;
        }
        match v["event"].as_str() {
            Some("flush_started") => flushes += 1,
            Some("compaction_started") => compactions += 1,
            _ => {}
        }
    }
    (flushes, compactions)
}

/// (batches, appends) so far, from the server's metrics.
async fn counters(base: &str) -> (f64, f64) {
    let text = get_text(base, "/metrics").await;
    let read = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    (
        read("modeltrail_batches_total"),
        read("modeltrail_appends_total"),
    )
}

/// VmRSS and RssAnon of a process, in MiB.
fn proc_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// User + system CPU seconds a process has used, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A throwaway PostgreSQL cluster on a loopback port (run as the
/// `postgres` user when this runs as root); stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

fn as_postgres(cmd: &std::path::Path) -> Command {
    // PostgreSQL refuses to run as root.
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

impl Postgres {
    fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (apt-get install postgresql)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = dir.path().join("pg");
        let ok = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
             -c synchronous_commit=on -c fsync=on -c max_connections=200 \
             -c shared_buffers=128MB",
            dir.path().display()
        );
        let ok = as_postgres(&bin.join("pg_ctl"))
            .args(["-w", "-D"])
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.path().join("log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "pg_ctl start failed");
        let pg = Postgres { dir, port, bin };
        pg.psql("CREATE TABLE events (id bigserial PRIMARY KEY, body text NOT NULL)");
        pg
    }

    fn psql(&self, sql: &str) {
        let ok = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-q", "-c", sql])
            .status()
            .unwrap();
        assert!(ok.success(), "psql: {sql}");
    }

    /// Single-row INSERTs of `bytes`-byte bodies, one per transaction, from
    /// `clients` connections for `secs`: transactions per second.
    fn inserts(&self, clients: usize, secs: u64, bytes: usize) -> f64 {
        let script = self.dir.path().join("insert.sql");
        std::fs::write(
            &script,
            format!(
                "INSERT INTO events (body) VALUES (repeat('x', {bytes}) || :client_id || '-' || random());\n"
            ),
        )
        .unwrap();
        let out = Command::new(self.bin.join("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-n",
                "-c",
                &clients.to_string(),
                "-j",
                "2",
                "-T",
                &secs.to_string(),
                "-f",
            ])
            .arg(&script)
            .arg("postgres")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("tps = ")
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or_else(|| panic!("pgbench: {text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("pg"))
            .arg("stop")
            .stdout(Stdio::null())
            .status();
    }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (base, token, mut child) = match (&a.server, &a.token) {
        (Some(s), Some(t)) => (s.clone(), t.clone(), None),
        _ => {
            let data = match &a.data_dir {
                Some(d) => std::path::PathBuf::from(d),
                None => dir.path().join("data"),
            };
            let bin = a
                .server_bin
                .clone()
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_modeltrail").to_string());
            let mut child = Command::new(bin)
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--origin",
                    a.origin.as_str(),
                    "--data-dir",
                ])
                .arg(&data)
                .args(a.config.iter().flat_map(|c| ["--config", c.as_str()]))
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

    let server_pid = child.as_ref().map(|c| c.id());
    if a.fill > 0 {
        // In steps, reporting the server's memory as the log grows.
        println!("| filled to | appends/s in this step | server RSS MiB | server RssAnon MiB |");
        println!("|---|---|---|---|");
        let mut filled = 0u64;
        while filled < a.fill {
            let step = (a.fill - filled).min(500_000);
            let r = rt.block_on(run(
                &base,
                &token,
                Work::Append,
                64,
                Stop::Count(step),
                None,
            ));
            filled += r.ok;
            let (rss, anon) = server_pid.map(proc_mib).unwrap_or((0.0, 0.0));
            println!("| {filled} | {:.0} | {rss:.0} | {anon:.0} |", r.rate());
        }
        println!();
    }

    let pg = a.postgres.then(Postgres::start);
    println!("| appends: connections | appends/s | p50 ms | p99 ms | p99.9 ms | errors | mean batch | server CPU µs per append | raw RocksDB synced WriteBatch entries/s (same batches, same bytes) | ratio | PostgreSQL single-row INSERT/s (same clients) | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut plan: Vec<(String, usize, Option<u64>)> = a
        .connections
        .iter()
        .map(|&c| (c.to_string(), c, None))
        .collect();
    if let Some(rate) = a.rate {
        for run in 1..=a.rate_runs {
            let label = if a.rate_runs > 1 {
                format!("64 @ {rate}/s fixed rate, run {run}")
            } else {
                format!("64 @ {rate}/s fixed rate")
            };
            plan.push((label, 64, Some(rate)));
        }
    }
    let mut evidence = Vec::new();
    let secs = Stop::After(Duration::from_secs(a.seconds));
    for (label, conns, rate) in plan {
        let (b0, a0) = rt.block_on(counters(&base));
        let cpu0 = server_pid.map(cpu_seconds).unwrap_or(0.0);
        let m0 = rt.block_on(get_text(&base, "/metrics"));
        let t0 = now_micros();
        let r = rt.block_on(run(&base, &token, Work::Append, conns, secs, rate));
        let t1 = now_micros();
        let m1 = rt.block_on(get_text(&base, "/metrics"));
        let cpu1 = server_pid.map(cpu_seconds).unwrap_or(0.0);
        let (b1, a1) = rt.block_on(counters(&base));
        if rate.is_some() {
            let (flushes, compactions) = rocks_events(&dir.path().join("data/db"), t0, t1);
            let disk = raw_fsync(dir.path(), a.seconds);
            let over = |ms: f64| {
                disk.iter_recorded()
                    .filter(|v| v.value_iterated_to() as f64 > ms * 1000.0)
                    .map(|v| v.count_at_value())
                    .sum::<u64>()
            };
            evidence.push(format!(
                "| {label} | {:.2} | {:.2} | {:.2} | {} | {} | {flushes} | {compactions} | {:.2} | {:.2} | {} | {} |",
                r.ms(0.99),
                r.ms(0.999),
                r.hist.max() as f64 / 1000.0,
                slow_commits(&m1, "0.0064") - slow_commits(&m0, "0.0064"),
                slow_commits(&m1, "0.0256") - slow_commits(&m0, "0.0256"),
                disk.value_at_quantile(0.999) as f64 / 1000.0,
                disk.max() as f64 / 1000.0,
                over(6.4),
                over(25.6),
            ));
        }
        let cpu_us = (cpu1 - cpu0) * 1e6 / (a1 - a0).max(1.0);
        let mean_batch = ((a1 - a0) / (b1 - b0).max(1.0)).max(1.0);
        // The server adds a 50-byte event_id field to each body.
        let entry_bytes = (r.bytes / r.ok.max(1)) as usize + 50;
        let raw = raw_rocksdb(
            r.ok.clamp(1000, 200_000),
            entry_bytes,
            mean_batch.round() as u64,
        );
        let (pg_rate, pg_ratio) = match (&pg, rate) {
            (Some(pg), None) => {
                let t = pg.inserts(conns, a.seconds, entry_bytes);
                (format!("{t:.0}"), format!("{:.2}", r.rate() / t))
            }
            _ => ("—".to_string(), "—".to_string()),
        };
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {mean_batch:.1} | {cpu_us:.0} | {raw:.0} | {:.2} | {pg_rate} | {pg_ratio} |",
            r.rate(),
            r.ms(0.5),
            r.ms(0.99),
            r.ms(0.999),
            r.errors,
            r.rate() / raw
        );
    }

    if !evidence.is_empty() {
        println!("\n| fixed-rate run | p99 ms | p99.9 ms | max ms | batches committed in > 6.4 ms | > 25.6 ms | RocksDB flushes started | compactions started | the disk alone, right after (1 KiB + fdatasync, as long as the run): p99.9 ms | max ms | fsyncs > 6.4 ms | > 25.6 ms |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for e in &evidence {
            println!("{e}");
        }
    }

    if a.proofs {
        let log: serde_json::Value =
            serde_json::from_str(&rt.block_on(get_text(&base, "/v1/log"))).unwrap();
        let tree_size = log["tree_size"].as_u64().unwrap();
        // Each read run with the server's CPU over it, per request, and the
        // load generator's own: both share this machine's cores, so a
        // request that costs the client more lowers the rate too.
        let me = std::process::id();
        for &conns in &a.read_connections {
            let measured = |work: Work| {
                let cpu0 = server_pid.map(cpu_seconds);
                let own0 = cpu_seconds(me);
                let r = rt.block_on(run(&base, &token, work, conns, secs, None));
                let per = |s: f64| s * 1e6 / r.ok.max(1) as f64;
                let cpu = server_pid
                    .zip(cpu0)
                    .map(|(pid, c0)| per(cpu_seconds(pid) - c0));
                let own = per(cpu_seconds(me) - own0);
                (r, cpu, own)
            };
            let p = measured(Work::Proof { tree_size });
            let c = measured(Work::Consistency { tree_size });
            // Only complete tiles: a tree below 256 entries has none.
            let t = (tree_size >= 256).then(|| {
                measured(Work::HashTile {
                    tiles: tree_size / 256,
                })
            });
            let h = measured(Work::Health);
            println!("\n| reads at tree size {tree_size}, {conns} connections | req/s | p50 ms | p99 ms | errors | server CPU µs per request | load generator CPU µs per request | GET /healthz req/s (same run) | ratio | server CPU µs per `/healthz` | CPU ratio (`/healthz` ÷ this) |");
            println!("|---|---|---|---|---|---|---|---|---|---|---|");
            let us = |c: Option<f64>| c.map_or("—".to_string(), |c| format!("{c:.1}"));
            let mut rows = vec![
                ("inclusion proof, random index", &p),
                ("consistency proof, random old size", &c),
            ];
            rows.extend(
                t.as_ref()
                    .map(|t| ("full level-0 hash tile, random index", t)),
            );
            rows.push(("`GET /healthz`", &h));
            for (name, (r, cpu, own)) in rows {
                println!(
                    "| {name} | {:.0} | {:.3} | {:.3} | {} | {} | {own:.1} | {:.0} | {:.2} | {} | {} |",
                    r.rate(),
                    r.ms(0.5),
                    r.ms(0.99),
                    r.errors,
                    us(*cpu),
                    h.0.rate(),
                    r.rate() / h.0.rate(),
                    us(h.1),
                    cpu.zip(h.1)
                        .map_or("—".to_string(), |(c, hc)| format!("{:.2}", hc / c)),
                );
            }
        }
    }
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
