//! The explorer (`GET /`) in a real browser: Debian's Chromium driven by
//! Playwright for Python (tests/browser), against a real server holding
//! the example scenario, and through a proxy that tampers with proofs in
//! transit. Chromium, Playwright and `cryptography` come from what the
//! README's test command installs; missing, the test fails loudly.

use crate::common::*;
use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn chromium() -> PathBuf {
    let path = std::env::var("MODELTRAIL_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).is_file(),
        "Chromium is not installed at {path}, so the explorer cannot be tested in a browser: \
         apt-get install -y chromium (the README's test command does this), or set \
         MODELTRAIL_CHROMIUM"
    );
    path.into()
}

/// Flip one hex digit of the first hash of a proof.
fn spoil(proof: &mut Value) {
    if let Some(Value::String(h)) = proof.get_mut(0) {
        let first = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, first);
    }
}

/// A proxy in front of the server that passes everything on, but spoils
/// every inclusion proof (of `/v1/proof/inclusion` and of trace bundles).
async fn tampering_proxy(upstream: String) -> String {
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let path = uri.path().to_string();
            let url = format!("{upstream}{uri}");
            let Ok(r) = http.get(url).send().await else {
                return StatusCode::BAD_GATEWAY.into_response();
            };
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            let content_type = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_string();
            let body: Bytes = r.bytes().await.unwrap_or_default();
            let body = match serde_json::from_slice::<Value>(&body) {
                Ok(mut v) if status.is_success() && path == "/v1/proof/inclusion" => {
                    spoil(&mut v["proof"]);
                    Bytes::from(v.to_string())
                }
                Ok(mut v) if status.is_success() && path.starts_with("/v1/trace/") => {
                    if let Some(entries) = v["entries"].as_array_mut() {
                        for e in entries {
                            spoil(&mut e["inclusion_proof"]);
                        }
                    }
                    Bytes::from(v.to_string())
                }
                _ => body,
            };
            (status, [("content-type", content_type)], body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_verifies_what_it_shows_in_a_real_browser() {
    let mut s = start_with(crate::scenario::with_example_gates()).await;
    let prediction = crate::scenario::run_example(&s).await;
    let proxy = tampering_proxy(s.base.clone()).await;

    let python = venv_tool(
        "playwright",
        "MODELTRAIL_PLAYWRIGHT",
        "playwright cryptography pytest",
        "the explorer in a browser",
    )
    .with_file_name("python");
    let env = [
        ("MODELTRAIL_URL", s.base.clone().into()),
        ("MODELTRAIL_TAMPERED_URL", proxy.into()),
        ("MODELTRAIL_VKEY", s.vkey.to_string().into()),
        ("MODELTRAIL_PREDICTION", prediction.into()),
        ("MODELTRAIL_CHROMIUM", chromium().into()),
    ];
    // Off the async workers, which serve the server and the proxy.
    let text = tokio::task::spawn_blocking(move || run_pytest(&python, "tests/browser", &env))
        .await
        .unwrap();
    assert!(text.contains("5 passed"), "{text}");
    s.stop().await;
}
