//! The HTTP API end to end: a real server, a real RocksDB, a real client.

use crate::common::*;
use modeltrail::note::{Checkpoint, TlogProof};
use modeltrail::tree::{leaf_hash, verify_consistency, verify_inclusion};
use serde_json::{json, Value};

async fn checkpoint(s: &TestServer) -> (String, Checkpoint) {
    let r = s.get("/checkpoint").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let text = r.text().await.unwrap();
    let (cp, _) = Checkpoint::open(text.as_bytes(), ORIGIN, &s.vkey).unwrap();
    (text, cp)
}

fn check_receipt(s: &TestServer, r: &Value) {
    // The answer is the shared wire type, and its event is the leaf's
    // exact bytes.
    let typed: modeltrail::wire::Receipt = serde_json::from_value(r.clone()).unwrap();
    assert_eq!(leaf_hash(typed.event.get().as_bytes()), typed.leaf_hash.0);
    let (cp, _) = Checkpoint::open(
        r["checkpoint"].as_str().unwrap().as_bytes(),
        ORIGIN,
        &s.vkey,
    )
    .unwrap();
    let index = r["index"].as_u64().unwrap();
    let event_bytes = serde_json::to_vec(&r["event"]).unwrap();
    let leaf = leaf_hash(&event_bytes);
    assert_eq!(leaf, hex32(&r["leaf_hash"]));
    assert_eq!(r["event"]["event_id"], r["event_id"]);
    verify_inclusion(
        index,
        cp.size,
        &leaf,
        &hex_list(&r["inclusion_proof"]),
        &cp.root,
    )
    .unwrap();
    let p = TlogProof::parse(r["tlog_proof"].as_str().unwrap()).unwrap();
    assert_eq!(p.index, index);
    assert_eq!(p.checkpoint, r["checkpoint"].as_str().unwrap());
    assert_eq!(p.proof, hex_list(&r["inclusion_proof"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_and_prove() {
    let mut s = start().await;
    let (_, cp0) = checkpoint(&s).await;
    assert_eq!(cp0.size, 0);

    let mut receipts = Vec::new();
    for n in 0..20 {
        let (status, r) = s.post(&event(n)).await;
        assert_eq!(status, 201, "{r}");
        check_receipt(&s, &r);
        assert_eq!(r["index"], n);
        receipts.push(r);
    }
    let (_, cp) = checkpoint(&s).await;
    assert_eq!(cp.size, 20);

    let (status, info) = s.get_json("/v1/log").await;
    assert_eq!(status, 200);
    assert_eq!(info["origin"], ORIGIN);
    assert_eq!(info["verifier_key"], s.vkey.to_string());
    assert_eq!(info["tree_size"], 20);
    assert_eq!(hex32(&info["root_hash"]), cp.root);

    // Entries by index, by page and by event id return the exact leaf bytes.
    for r in &receipts {
        let i = r["index"].as_u64().unwrap();
        let (status, e) = s.get_json(&format!("/v1/entries/{i}")).await;
        assert_eq!(status, 200);
        assert_eq!(e["event"], r["event"]);
        assert_eq!(e["leaf_hash"], r["leaf_hash"]);
        let (status, e) = s
            .get_json(&format!("/v1/events/{}", r["event_id"].as_str().unwrap()))
            .await;
        assert_eq!(status, 200);
        assert_eq!(e["index"], i);
    }
    let (status, page) = s.get_json("/v1/entries?start=5&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(page["entries"].as_array().unwrap().len(), 10);
    assert_eq!(page["entries"][0]["index"], 5);
    let (_, page) = s.get_json("/v1/entries?start=15").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 5);

    // Inclusion by index and by leaf hash, at the head and at older sizes.
    for r in &receipts {
        let i = r["index"].as_u64().unwrap();
        for size in [i + 1, 20] {
            let (status, p) = s
                .get_json(&format!("/v1/proof/inclusion?index={i}&tree_size={size}"))
                .await;
            assert_eq!(status, 200, "{p}");
            let (status, q) = s
                .get_json(&format!(
                    "/v1/proof/inclusion?leaf_hash={}&tree_size={size}",
                    r["leaf_hash"].as_str().unwrap()
                ))
                .await;
            assert_eq!(status, 200, "{q}");
            assert_eq!(p, q);
            if size == 20 {
                verify_inclusion(
                    i,
                    20,
                    &hex32(&p["leaf_hash"]),
                    &hex_list(&p["proof"]),
                    &cp.root,
                )
                .unwrap();
            }
        }
    }
    // Consistency from every checkpoint handed out to the head.
    for r in &receipts {
        let (old, _) = Checkpoint::open(
            r["checkpoint"].as_str().unwrap().as_bytes(),
            ORIGIN,
            &s.vkey,
        )
        .unwrap();
        let (status, p) = s
            .get_json(&format!(
                "/v1/proof/consistency?old_size={}&new_size=20",
                old.size
            ))
            .await;
        assert_eq!(status, 200);
        verify_consistency(old.size, 20, &hex_list(&p["proof"]), &old.root, &cp.root).unwrap();
    }

    let r = s.get("/metrics").await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("modeltrail_appends_total 20"), "{text}");
    let (status, h) = s.get_json("/healthz").await;
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_and_conflict() {
    let mut s = start().await;
    let mut e = event(1);
    e["event_id"] = json!("018f4c1e-1111-7000-8000-000000000001");
    let (status, first) = s.post(&e).await;
    assert_eq!(status, 201);
    s.post(&event(2)).await;
    let (status, again) = s.post(&e).await;
    assert_eq!(status, 200);
    assert_eq!(again["index"], first["index"]);
    assert_eq!(again["leaf_hash"], first["leaf_hash"]);
    check_receipt(&s, &again);
    let mut other = e.clone();
    other["action"] = json!("approve");
    let (status, err) = s.post(&other).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "conflict");
    let (_, cp) = checkpoint(&s).await;
    assert_eq!(cp.size, 2);
    // Without an event_id the same body is a new leaf each time.
    let (a, b) = (s.post(&event(3)).await.1, s.post(&event(3)).await.1);
    assert_ne!(a["index"], b["index"]);
    assert_ne!(a["event_id"], b["event_id"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token() {
    let mut s = start().await;
    let url = s.url("/v1/events");
    let body = event(1).to_string();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic abc"),
        Some("Bearer "),
    ] {
        let mut req = s
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    let (_, cp) = checkpoint(&s).await;
    assert_eq!(cp.size, 0);
    s.stop().await;
}

/// Every kind of bad input answers a 4xx JSON error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let mut s = start().await;
    for n in 0..300 {
        assert_eq!(s.post(&event(n)).await.0, 201);
    }
    let (before, _) = checkpoint(&s).await;

    let mut bad_bodies: Vec<(Vec<u8>, &str, u16)> = vec![
        (b"{".to_vec(), "application/json", 400),
        (b"[1]".to_vec(), "application/json", 400),
        (b"\"x\"".to_vec(), "application/json", 400),
        (b"".to_vec(), "application/json", 400),
        (
            b"{\"action\":\"a\",\"action\":\"b\"}".to_vec(),
            "application/json",
            400,
        ),
        (b"{\"a\":\"\xff\"}".to_vec(), "application/json", 400),
        (event(1).to_string().into_bytes(), "text/plain", 415),
        (event(1).to_string().into_bytes(), "", 415),
        (vec![b' '; 70 * 1024], "application/json", 413),
        // Canonical form 10000000000000000: an integer no strict verifier
        // reads, so it must not be stored.
        (
            event(1)
                .to_string()
                .replace("\"n\":1", "\"n\":1e16")
                .into_bytes(),
            "application/json",
            400,
        ),
    ];
    let mut mutations: Vec<Value> = Vec::new();
    for (k, v) in [
        ("unknown", json!(1)),
        ("action", json!(7)),
        ("actor", json!({"type": "robot", "id": "x"})),
        ("timestamp", json!("not a time")),
        ("subject", json!({"type": "model_version"})),
        ("related", json!("run-1")),
        ("event_id", json!("ABC")),
        ("metadata", json!({"big": 9007199254740993u64})),
    ] {
        let mut e = event(1);
        e[k] = v;
        mutations.push(e);
    }
    for k in ["action", "actor", "timestamp", "subject"] {
        let mut e = event(1);
        e.as_object_mut().unwrap().remove(k);
        mutations.push(e);
    }
    // Over the body limit, and under it but over 65,535 bytes once the
    // server adds the event_id.
    let mut huge = event(1);
    huge["metadata"] = json!({"blob": "é".repeat(33_000)});
    bad_bodies.push((huge.to_string().into_bytes(), "application/json", 413));
    let mut edge = event(1);
    edge["metadata"] = json!({"blob": ""});
    let pad = 65_500 - edge.to_string().len();
    edge["metadata"] = json!({"blob": "x".repeat(pad)});
    assert_eq!(edge.to_string().len(), 65_500);
    bad_bodies.push((edge.to_string().into_bytes(), "application/json", 413));
    for m in mutations {
        bad_bodies.push((m.to_string().into_bytes(), "application/json", 400));
    }
    for (body, ct, want) in bad_bodies {
        let mut req = s
            .http
            .post(s.url("/v1/events"))
            .bearer_auth(&s.token)
            .body(body.clone());
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).to_string();
        assert_eq!(
            status,
            want,
            "{shown} -> {}",
            &v.to_string()[..v.to_string().len().min(200)]
        );
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{v}"
        );
    }

    let leaf = "ab".repeat(32);
    let bad_gets: Vec<(String, u16)> = vec![
        ("/v1/entries/300".into(), 404),
        ("/v1/entries/01".into(), 400),
        ("/v1/entries/-1".into(), 400),
        ("/v1/entries/1e3".into(), 400),
        ("/v1/entries/18446744073709551616".into(), 400),
        ("/v1/entries?start=301".into(), 400),
        ("/v1/entries?start=0&limit=0".into(), 400),
        ("/v1/entries?start=0&limit=1001".into(), 400),
        ("/v1/entries?start=00".into(), 400),
        ("/v1/entries?start=1&start=2".into(), 400),
        ("/v1/entries?begin=1".into(), 400),
        ("/v1/events/not-a-uuid".into(), 400),
        (
            "/v1/events/018F4C1E-1111-7000-8000-000000000001".into(),
            400,
        ),
        (
            "/v1/events/018f4c1e-1111-7000-8000-000000000009".into(),
            404,
        ),
        ("/v1/proof/inclusion?index=300&tree_size=300".into(), 400),
        ("/v1/proof/inclusion?index=5&tree_size=5".into(), 400),
        ("/v1/proof/inclusion?index=0&tree_size=301".into(), 400),
        ("/v1/proof/inclusion?index=0&tree_size=0".into(), 400),
        ("/v1/proof/inclusion?index=+1&tree_size=3".into(), 400),
        ("/v1/proof/inclusion?index=1&tree_size=03".into(), 400),
        ("/v1/proof/inclusion?tree_size=3".into(), 400),
        (format!("/v1/proof/inclusion?index=1&leaf_hash={leaf}"), 400),
        (format!("/v1/proof/inclusion?leaf_hash={leaf}"), 404),
        (
            format!("/v1/proof/inclusion?leaf_hash={}", leaf.to_uppercase()),
            400,
        ),
        ("/v1/proof/inclusion?leaf_hash=abc".into(), 400),
        ("/v1/proof/inclusion?leaf_hash=zz".into(), 400),
        ("/v1/proof/consistency?old_size=0&new_size=5".into(), 400),
        ("/v1/proof/consistency?old_size=6&new_size=5".into(), 400),
        ("/v1/proof/consistency?old_size=5&new_size=301".into(), 400),
        ("/v1/proof/consistency?new_size=5".into(), 400),
        ("/v1/proof/consistency?old_size=5&new_size=x".into(), 400),
        (
            "/v1/proof/consistency?old_size=5&new_size=5&x=1".into(),
            400,
        ),
        ("/tile/0/001".into(), 404),
        ("/tile/0/001.p/45".into(), 404),
        ("/tile/1/000".into(), 404),
        ("/tile/1/000.p/2".into(), 404),
        ("/tile/0/x000/000".into(), 400),
        ("/tile/0/0".into(), 400),
        ("/tile/00/000".into(), 400),
        ("/tile/64/000".into(), 400),
        ("/tile/0/000.p/0".into(), 400),
        ("/tile/0/000.p/256".into(), 400),
        ("/tile/0/000.p/01".into(), 400),
        ("/tile/0/x001".into(), 400),
        ("/tile/entries/001".into(), 404),
        ("/tile/entries/001.p/45".into(), 404),
        ("/tile/entries/1".into(), 400),
        ("/tile/entries/000.p/300".into(), 400),
        ("/tile/9/000".into(), 404),
        ("/tile/7/x999/x999/000".into(), 404),
        // Once a size computation that wrapped to 0 and then overflowed.
        ("/tile/7/x018/x446/x744/x073/x709/x551/615".into(), 404),
        ("/tile/1/x018/x446/x744/x073/x709/x551/615".into(), 404),
        (
            "/tile/entries/x018/x446/x744/x073/x709/x551/615".into(),
            404,
        ),
        ("/tile/0/x018/x446/x744/x073/x709/x551/616".into(), 400),
        ("/nope".into(), 404),
    ];
    for (path, want) in bad_gets {
        let (status, v) = s.get_json(&path).await;
        assert_eq!(status, want, "{path} -> {v}");
        assert!(v["error"]["code"].is_string(), "{path} -> {v}");
    }

    let (after, _) = checkpoint(&s).await;
    assert_eq!(before, after, "bad input changed the log");
    let (_, info) = s.get_json("/v1/log").await;
    assert_eq!(info["tree_size"], 300);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_and_bundles() {
    let mut s = start().await;
    for n in 0..300 {
        s.post(&event(n)).await;
    }
    let r = s.get("/tile/0/000").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let full = r.bytes().await.unwrap();
    assert_eq!(full.len(), 256 * 32);
    let r = s.get("/tile/0/001.p/44").await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(r.bytes().await.unwrap().len(), 44 * 32);
    // A shorter prefix of a full tile is also served, and matches.
    let part = s.get("/tile/0/000.p/10").await.bytes().await.unwrap();
    assert_eq!(&part[..], &full[..320]);
    let r = s.get("/tile/1/000.p/1").await;
    assert_eq!(r.status(), 200);

    // Entry bundles are gzip-compressed for clients that accept it...
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = raw
        .get(s.url("/tile/entries/000"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    // ...and hold the exact leaf bytes, hashing to the level-0 tile.
    let r = s.get("/tile/entries/000").await;
    assert_eq!(r.status(), 200);
    let bundle = r.bytes().await.unwrap();
    let mut pos = 0;
    let mut i = 0;
    while pos < bundle.len() {
        let len = u16::from_be_bytes([bundle[pos], bundle[pos + 1]]) as usize;
        let entry = &bundle[pos + 2..pos + 2 + len];
        assert_eq!(leaf_hash(entry), full[i * 32..(i + 1) * 32]);
        pos += 2 + len;
        i += 1;
    }
    assert_eq!(i, 256);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_queue_answers_503_with_retry_after() {
    let mut s = start_with(|c| {
        c.queue_depth = 1;
        c.max_batch = 1;
    })
    .await;
    let mut tasks = Vec::new();
    for n in 0..64 {
        let http = s.http.clone();
        let url = s.url("/v1/events");
        let token = s.token.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(event(n).to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry)
        }));
    }
    let mut created = 0;
    let mut busy = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, _) => created += 1,
            (503, Some(r)) => {
                assert_eq!(r, "1");
                busy += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created + busy, 64);
    let (_, info) = s.get_json("/v1/log").await;
    assert_eq!(info["tree_size"], created);
    s.stop().await;
}

/// Every error answer, from the router's own (unknown path, wrong method)
/// to the handlers', is the JSON error body with a stable code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_is_the_json_error_body() {
    let mut s = start().await;
    type Case<'a> = (
        reqwest::Method,
        &'a str,
        Option<&'a str>,
        &'a str,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (reqwest::Method::GET, "/nope", None, "", 404, "not_found"),
        (
            reqwest::Method::GET,
            "/v1/entries/7",
            None,
            "",
            404,
            "not_found",
        ),
        (
            reqwest::Method::POST,
            "/v1/log",
            None,
            "",
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::DELETE,
            "/checkpoint",
            None,
            "",
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::PUT,
            "/v1/events",
            None,
            "",
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::GET,
            "/v1/entries/x",
            None,
            "",
            400,
            "bad_number",
        ),
        (
            reqwest::Method::GET,
            "/v1/entries?limit=0",
            None,
            "",
            400,
            "bad_limit",
        ),
        (
            reqwest::Method::GET,
            "/tile/0/00x",
            None,
            "",
            400,
            "bad_tile_path",
        ),
        (
            reqwest::Method::GET,
            "/tile/9/000",
            None,
            "",
            404,
            "not_found",
        ),
        (
            reqwest::Method::POST,
            "/v1/events",
            None,
            "{}",
            401,
            "unauthorized",
        ),
        (
            reqwest::Method::POST,
            "/v1/events",
            Some("x"),
            "{}",
            401,
            "unauthorized",
        ),
        (
            reqwest::Method::GET,
            "/v1/admin/tokens",
            None,
            "",
            401,
            "unauthorized",
        ),
    ];
    for (method, path, token, body, want, code) in cases {
        let mut req = s.http.request(method.clone(), s.url(path)).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{method} {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Too large and the wrong media type, with the admin token.
    let r = s
        .http
        .post(s.url("/v1/events"))
        .bearer_auth(&s.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unsupported_media_type"
    );
    s.stop().await;
}

/// Past the first 256 entries, proofs read row 0's tiles from the tile
/// file, and `/metrics` shows how far the file is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tile_file_follows_the_log_and_metrics_show_it() {
    let mut s = start().await;
    let numbers: Vec<u64> = (0..300).collect();
    for chunk in numbers.chunks(25) {
        let posts = chunk.iter().map(|&n| s.post_owned(event(n)));
        for (status, r) in futures_util::future::join_all(posts).await {
            assert_eq!(status, 201, "{r}");
        }
    }
    let (_, cp) = checkpoint(&s).await;
    let want = |name: &str, n: u64| format!("modeltrail_storage_tile_file_{name} {n}\n");
    let mut text = String::new();
    for _ in 0..500 {
        text = s.get("/metrics").await.text().await.unwrap();
        if text.contains(&want("behind", 0)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(text.contains(&want("records", cp.size / 256)), "{text}");
    assert!(text.contains(&want("behind", 0)), "{text}");
    assert!(text.contains(&want("failed_checks", 0)), "{text}");
    for index in [0, 1, 128, 255, 256, cp.size - 1] {
        let (status, p) = s
            .get_json(&format!(
                "/v1/proof/inclusion?index={index}&tree_size={}",
                cp.size
            ))
            .await;
        assert_eq!(status, 200, "{p}");
        let (_, entry) = s.get_json(&format!("/v1/entries/{index}")).await;
        let leaf = leaf_hash(&serde_json::to_vec(&entry["event"]).unwrap());
        assert_eq!(hex32(&p["leaf_hash"]), leaf);
        verify_inclusion(index, cp.size, &leaf, &hex_list(&p["proof"]), &cp.root).unwrap();
    }
    s.stop().await;
}
