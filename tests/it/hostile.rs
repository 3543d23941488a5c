//! Hostile clients cannot hold the server: half-open and silent
//! connections are cut off, a connection cap holds, appends keep working,
//! and a stop does not wait on them.

use crate::common::*;
use crate::common::crash;
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
    assert!(t.elapsed() >= Duration::from_millis(1500), "{:?}", t.elapsed());
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
    let health = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
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
