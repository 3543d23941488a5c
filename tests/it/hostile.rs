//! Hostile clients cannot hold the server: half-open and silent
//! connections are cut off, a connection cap holds, appends keep working,
//! and a stop does not wait on them.

use crate::common::crash;
use crate::common::*;
use modeltrail::serve::ConnLimits;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Open a connection and send half a request line.
async fn half_open(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    s
}

/// Whether the server closed the connection within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An error answer (408 and the like) before the close is fine.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_and_silent_connections_are_cut_off_and_capped() {
    let mut s = start_with(|c| {
        c.connections = ConnLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(2),
        }
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // Under the cap: appends go through while 40 clients hold half a line.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(half_open(&addr).await);
    }
    let t = Instant::now();
    assert_eq!(s.post(&event(1)).await.0, 201);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // Past the cap: more are accepted only as slots free up; an append
    // waits for the header time-out to free one, then goes through.
    for _ in 0..100 {
        held.push(half_open(&addr).await);
    }
    let t = Instant::now();
    let fresh = reqwest::Client::new();
    let r = fresh
        .post(s.url("/v1/events"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(event(2).to_string())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Every half-open connection is closed by the server.
    for (i, c) in held.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(10)).await,
            "half-open connection {i} was not closed"
        );
    }
    // A client that sends its headers and then part of a body and goes
    // silent is cut off by the idle limit.
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"act",
            s.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(10)).await);
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // An idle keep-alive connection is closed too.
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(10)).await);
    assert_eq!(s.get_json("/v1/log").await.1["tree_size"], 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_despite_held_connections() {
    let bin = env!("CARGO_BIN_EXE_modeltrail");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    // A long header time-out, so only the shutdown bound can end them.
    std::fs::write(
        &config,
        "[limits]\nheader_timeout_secs = 120\nidle_timeout_secs = 120\nshutdown_grace_secs = 2\nmax_connections = 512\n",
    )
    .unwrap();
    let mut server = crash::spawn_with(
        bin,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(half_open(&addr).await);
    }
    // A request that is in the middle of its body.
    let mut mid = TcpStream::connect(&addr).await.unwrap();
    mid.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let t = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = t.elapsed();
    eprintln!("exited {took:?} after SIGTERM with 301 connections held");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// An event of about `kib` KiB.
fn big_event(n: u64, kib: usize) -> serde_json::Value {
    let mut e = event(n);
    e["metadata"] = serde_json::json!({"blob": "x".repeat(kib * 1024)});
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_proofs_and_expensive_reads_are_bounded() {
    let (mut s, store) = start_faulty(|c| {
        c.max_heavy_reads = 1;
        c.max_appends = 4;
    })
    .await;
    // 80 events of 60 KiB: 4.7 MiB, more than a page may hold.
    for chunk in (0..80u64).collect::<Vec<_>>().chunks(4) {
        let evs: Vec<_> = chunk.iter().map(|n| big_event(*n, 60)).collect();
        let futs: Vec<_> = evs.iter().map(|e| s.post(e)).collect();
        for f in futs {
            assert_eq!(f.await.0, 201);
        }
    }
    let (status, page) = s.get_json("/v1/entries?limit=1000").await;
    assert_eq!(status, 200);
    let got = page["entries"].as_array().unwrap();
    let bytes: usize = got.iter().map(|e| e["event"].to_string().len()).sum();
    assert!(!got.is_empty() && got.len() < 80, "{}", got.len());
    assert!(bytes <= modeltrail::api::MAX_PAGE_BYTES, "{bytes}");
    let (_, rest) = s
        .get_json(&format!("/v1/entries?start={}&limit=1000", got.len()))
        .await;
    assert_eq!(got.len() + rest["entries"].as_array().unwrap().len(), 80);
    // Search pages are cut the same way, and say where to go on.
    let (_, hits) = s
        .get_json("/v1/search?type=dataset&id=ds:2025-05-01&limit=1000")
        .await;
    let n = hits["entries"].as_array().unwrap().len();
    assert!(n > 0 && n < 80, "{n}");
    assert_eq!(
        hits["next_start"],
        hits["entries"][n - 1]["index"].as_u64().unwrap() + 1
    );

    // One expensive read at a time here: a second one waits, then gets 503.
    store.set_delay_ms(3000);
    let slow = {
        let (http, url) = (s.http.clone(), s.url("/v1/entries?limit=1"));
        tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s.get("/tile/entries/000.p/3").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(slow.await.unwrap(), 200);

    // Appends in flight are bounded: with four waiting on a slow disk, a
    // fifth is refused at once, and nothing of it is written.
    let before = s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap();
    let waiting: Vec<_> = (0..4)
        .map(|i| {
            let (http, url, token) = (s.http.clone(), s.url("/v1/events"), s.token.clone());
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(event(1000 + i).to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = s.post(&event(2000)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    for w in waiting {
        assert_eq!(w.await.unwrap(), 201);
    }
    store.set_delay_ms(0);
    assert_eq!(
        s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap(),
        before + 4
    );

    // A version with many events: its proofs come in pages.
    for _ in 0..260 {
        let approve = serde_json::json!({"action": "approve", "actor": {"type": "user", "id": "admin"},
            "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "model_version", "id": "m:v9"}});
        assert_eq!(s.post(&approve).await.0, 422);
    }
    let (status, v) = s
        .get_json("/v1/models/m/versions/v9?proofs=true&limit=256")
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["proofs"].as_array().unwrap().len(), 256);
    assert_eq!(v["proofs_next"], 256);
    let (_, v2) = s
        .get_json("/v1/models/m/versions/v9?proofs=true&start=256&limit=256")
        .await;
    assert_eq!(v2["proofs"].as_array().unwrap().len(), 4);
    assert!(v2.get("proofs_next").is_none());
    assert_eq!(
        s.get_json("/v1/models/m/versions/v9?proofs=true&limit=257")
            .await
            .0,
        400
    );
    s.stop().await;
}

/// The server's resident memory (MiB) from /proc.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The documented memory budget of a server with the default limits
/// (docs/SECURITY.md): RocksDB's 128 MiB, connections, appends in flight,
/// expensive reads and the rest.
const BUDGET_MIB: f64 = 512.0;

/// A hostile mix against the real binary with its default limits: many
/// large appends, full entry bundles and large pages, traces, and
/// half-open connections, all at once. The server's RSS stays inside the
/// documented budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_mix_stays_inside_the_memory_budget() {
    let bin = env!("CARGO_BIN_EXE_modeltrail");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = crash::spawn(bin, &data);
    let pid = server.child.id();
    let token = crash::admin_token(&data);
    let base = server.base.clone();
    let addr = base.trim_start_matches("http://").to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let post = {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        move |n: u64| {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            async move {
                http.post(format!("{base}/v1/events"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(big_event(n, 63).to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        }
    };
    // Enough 63 KiB entries for full (16 MiB) entry bundles.
    for chunk in (0..520u64).collect::<Vec<_>>().chunks(32) {
        let futs: Vec<_> = chunk.iter().map(|n| post(*n)).collect();
        for f in futs {
            assert_eq!(f.await, 201);
        }
    }
    let idle_rss = rss_mib(pid);
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(half_open(&addr).await);
    }
    let stop = Instant::now() + Duration::from_secs(8);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..96u64 {
        let post = post.clone();
        tasks.spawn(async move {
            let mut n = 10_000 + c * 100_000;
            while Instant::now() < stop {
                n += 1;
                post(n).await;
            }
        });
    }
    let reads = [
        "/tile/entries/000",
        "/tile/entries/001",
        "/v1/entries?limit=1000",
        "/v1/entries?start=200&limit=1000",
        "/v1/search?type=dataset&id=ds:2025-05-01&limit=1000",
        "/v1/trace/model_version/fraud:v3",
    ];
    for c in 0..24usize {
        let (http, base) = (http.clone(), base.clone());
        let path = reads[c % reads.len()];
        tasks.spawn(async move {
            while Instant::now() < stop {
                let _ = http
                    .get(format!("{base}{path}"))
                    .header("accept-encoding", "gzip")
                    .send()
                    .await
                    .map(|r| async { r.bytes().await });
            }
        });
    }
    let mut peak: f64 = 0.0;
    while Instant::now() < stop {
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while tasks.join_next().await.is_some() {}
    peak = peak.max(rss_mib(pid));
    eprintln!("server RSS: {idle_rss:.0} MiB after the fill, peak {peak:.0} MiB under the mix");
    assert!(peak > 0.0);
    assert!(peak < BUDGET_MIB, "peak RSS {peak:.0} MiB");
    // And it still answers.
    assert_eq!(post(999_999_999).await, 201);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// A hostile log: a server that answers `/checkpoint` with a gzip bomb
/// (a few MiB that inflate to 1 GiB). The monitor stops reading at the
/// size a checkpoint may have and never holds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_bound_what_a_hostile_log_sends() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![b'a'; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = std::sync::Arc::new(gz.finish().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn({
        let bomb = bomb.clone();
        async move {
            loop {
                let Ok((mut c, _)) = listener.accept().await else {
                    return;
                };
                let bomb = bomb.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        bomb.len()
                    );
                    let _ = c.write_all(head.as_bytes()).await;
                    let _ = c.write_all(&bomb).await;
                });
            }
        }
    });
    // In process: the client refuses once past the limit.
    let client = modeltrail::client::Client::new(&format!("http://{addr}"), None).unwrap();
    let err = client.get_bytes("/checkpoint").await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    // The real command: it gives up (exit 3), and its memory stays small.
    let key = modeltrail::note::SignerKey::generate(
        modeltrail::note::KeyName::new("bomb.example/log").unwrap(),
    )
    .unwrap()
    .verifier()
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_modeltrail"))
        .args([
            "monitor",
            "--once",
            "--server",
            &format!("http://{addr}"),
            "--vkey",
            &key,
        ])
        .arg("--state")
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(v) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(3));
    assert!(
        peak_kib > 0 && peak_kib < 100 * 1024,
        "monitor peak RSS {peak_kib} KiB"
    );
    served.abort();
}
