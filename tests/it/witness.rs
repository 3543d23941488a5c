//! Witnessing end to end: the witness's add-checkpoint protocol with every
//! status code the spec defines, its durable and atomic state, and a log
//! that collects cosignatures, serves the cosigned checkpoint, hands out
//! receipts that carry them, and keeps appending while a witness is down.

use crate::common::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use modeltrail::note::{Checkpoint, KeyName, SignerKey, VerifierKey};
use modeltrail::server::{self, ServerConfig};
use modeltrail::verify::{self, Failure, Policy};
use modeltrail::witness::collector::{CollectorConfig, WitnessSpec};
use modeltrail::witness::service::{self, RunningWitness, WitnessOptions};
use modeltrail::witness::AddCheckpoint;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, Instant};

const WITNESS: &str = "witness.test/w1";

async fn start_witness(dir: &Path, listen: &str, logs: Vec<VerifierKey>) -> RunningWitness {
    service::start(&WitnessOptions {
        listen: listen.parse().unwrap(),
        data_dir: dir.to_path_buf(),
        name: Some(WITNESS.into()),
        logs,
    })
    .await
    .unwrap()
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn add(base: &str, body: Vec<u8>) -> Answer {
    let r = reqwest::Client::new()
        .post(format!("{base}/add-checkpoint"))
        .body(body)
        .send()
        .await
        .unwrap();
    Answer {
        status: r.status().as_u16(),
        content_type: r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

fn request(old: u64, proof: Vec<[u8; 32]>, checkpoint: &str) -> Vec<u8> {
    AddCheckpoint {
        old_size: old,
        proof,
        checkpoint: checkpoint.as_bytes().to_vec(),
    }
    .encode()
}

/// The log's signed checkpoint at each size 1..=n, appending one by one.
async fn checkpoints(s: &TestServer, n: u64) -> Vec<String> {
    let mut out = vec![String::new()];
    for i in 0..n {
        let (status, r) = s.post(&event(i)).await;
        assert_eq!(status, 201);
        assert_eq!(r["tree_size"], i + 1);
        out.push(r["checkpoint"].as_str().unwrap().to_string());
    }
    out
}

async fn consistency(s: &TestServer, old: u64, new: u64) -> Vec<[u8; 32]> {
    let (status, p) = s
        .get_json(&format!(
            "/v1/proof/consistency?old_size={old}&new_size={new}"
        ))
        .await;
    assert_eq!(status, 200);
    hex_list(&p["proof"])
}

fn log_signer(s: &TestServer) -> SignerKey {
    let text = std::fs::read_to_string(s.dir.path().join("data").join(server::KEY_FILE)).unwrap();
    SignerKey::parse(text.trim()).unwrap()
}

/// Check the 200 answer: exactly one cosignature line by the witness key,
/// valid over this checkpoint, for our verifier.
fn check_cosigned(checkpoint: &str, body: &[u8], log: &VerifierKey, witness: &VerifierKey) {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.starts_with("\u{2014} "), "{text}");
    assert!(text.ends_with('\n'));
    assert_eq!(text.lines().count(), 1);
    let joined = format!("{checkpoint}{text}");
    let policy = Policy {
        log_key: log.clone(),
        witnesses: vec![witness.clone()],
        min_witnesses: 1,
        max_cosignature_age: None,
    };
    let v = policy.open_checkpoint(joined.as_bytes()).unwrap();
    assert_eq!(v.witnesses, vec![WITNESS.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_checkpoint_answers_as_the_spec_says() {
    let mut s = start().await;
    let cps = checkpoints(&s, 9).await;
    let wdir = tempfile::tempdir().unwrap();
    let w = start_witness(wdir.path(), "127.0.0.1:0", vec![s.vkey.clone()]).await;
    let base = format!("http://{}", w.addr);
    let wkey = w.witness.verifier();

    // Unknown origin: 404.
    let other = SignerKey::generate(KeyName::new("other.example/log").unwrap()).unwrap();
    let stranger = Checkpoint::new("other.example/log", 1, [0u8; 32])
        .sign(&other)
        .unwrap();
    assert_eq!(add(&base, request(0, vec![], &stranger)).await.status, 404);

    // Right origin, wrong key of the same name: 403; nothing is stored.
    let impostor = SignerKey::generate(KeyName::new(ORIGIN).unwrap()).unwrap();
    let forged = Checkpoint::parse_text(&cps[3][..cps[3].find("\n\n").unwrap() + 1])
        .unwrap()
        .sign(&impostor)
        .unwrap();
    assert_eq!(add(&base, request(0, vec![], &forged)).await.status, 403);

    // Old size beyond the checkpoint: 400.
    assert_eq!(add(&base, request(4, vec![], &cps[3])).await.status, 400);
    // Malformed bodies: 400; a proof from size 0 must be empty: 422.
    for bad in [
        b"old 1".to_vec(),
        b"old 01\n\nx".to_vec(),
        b"old 0\n\nnot a note".to_vec(),
    ] {
        let a = add(&base, bad).await;
        assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    }
    assert_eq!(
        add(&base, request(0, vec![[7u8; 32]], &cps[3]))
            .await
            .status,
        422
    );
    // Too large: 413.
    assert_eq!(add(&base, vec![b'x'; 200_000]).await.status, 413);
    assert_eq!(w.witness.cosigned_size(ORIGIN), None);

    // First sight (old 0): cosigned.
    let a = add(&base, request(0, vec![], &cps[3])).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.content_type.starts_with("text/plain"));
    check_cosigned(&cps[3], &a.body, &s.vkey, &wkey);
    assert_eq!(w.witness.cosigned_size(ORIGIN), Some(3));

    // A stale old size: 409 with the witness's size in text/x.tlog.size.
    let a = add(&base, request(0, vec![], &cps[5])).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.content_type, "text/x.tlog.size");
    assert_eq!(a.body, b"3\n");

    // A proof that does not verify: 422, not cosigned, and not kept: anyone
    // with public checkpoints can send these, so they prove nothing and
    // must not fill the witness's disk.
    let mut bad = consistency(&s, 3, 5).await;
    bad[0][0] ^= 1;
    for _ in 0..50 {
        assert_eq!(
            add(&base, request(3, bad.clone(), &cps[5])).await.status,
            422
        );
    }
    assert_eq!(w.witness.cosigned_size(ORIGIN), Some(3));
    let evidence = || {
        std::fs::read_dir(wdir.path().join("evidence"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(evidence(), 0);
    // Too few or too many proof hashes: 422.
    let good = consistency(&s, 3, 5).await;
    assert_eq!(
        add(&base, request(3, good[1..].to_vec(), &cps[5]))
            .await
            .status,
        422
    );
    let mut long = good.clone();
    long.push([0u8; 32]);
    assert_eq!(add(&base, request(3, long, &cps[5])).await.status, 422);

    // A good proof: cosigned, and the state moves to 5.
    let a = add(&base, request(3, good, &cps[5])).await;
    assert_eq!(a.status, 200);
    check_cosigned(&cps[5], &a.body, &s.vkey, &wkey);

    // Same size, same root: cosigned again; same size, another root (signed
    // by the real log key: a fork): 409 and evidence.
    assert_eq!(add(&base, request(5, vec![], &cps[5])).await.status, 200);
    let fork = Checkpoint::new(ORIGIN, 5, [9u8; 32])
        .sign(&log_signer(&s))
        .unwrap();
    let a = add(&base, request(5, vec![], &fork)).await;
    assert_eq!(a.status, 409);
    assert!(a.content_type.starts_with("application/json"));
    assert_eq!(w.witness.cosigned_size(ORIGIN), Some(5));
    // The fork is kept once, with both signed checkpoints.
    assert_eq!(add(&base, request(5, vec![], &fork)).await.status, 409);
    assert_eq!(evidence(), 1);
    let kept = std::fs::read_dir(wdir.path().join("evidence"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let kept = std::fs::read_to_string(kept).unwrap();
    assert!(kept.contains(&cps[5]) && kept.contains(&fork), "{kept}");

    // The state is durable: a restarted witness answers from it.
    w.stop().await.unwrap();
    let w = start_witness(wdir.path(), "127.0.0.1:0", vec![s.vkey.clone()]).await;
    let base = format!("http://{}", w.addr);
    assert_eq!(w.witness.cosigned_size(ORIGIN), Some(5));
    let a = add(&base, request(3, consistency(&s, 3, 9).await, &cps[9])).await;
    assert_eq!((a.status, a.body.as_slice()), (409, &b"5\n"[..]));
    let a = add(&base, request(5, consistency(&s, 5, 9).await, &cps[9])).await;
    assert_eq!(a.status, 200);
    // And its file is the checkpoint as the log signed it.
    let file = wdir.path().join("logs").join(format!(
        "{}.checkpoint",
        hex::encode(Sha256::digest(ORIGIN))
    ));
    assert_eq!(std::fs::read_to_string(file).unwrap(), cps[9]);
    w.stop().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_cannot_roll_the_witness_back() {
    let mut s = start().await;
    let cps = checkpoints(&s, 12).await;
    let wdir = tempfile::tempdir().unwrap();
    let w = start_witness(wdir.path(), "127.0.0.1:0", vec![s.vkey.clone()]).await;
    let base = format!("http://{}", w.addr);
    assert_eq!(add(&base, request(0, vec![], &cps[4])).await.status, 200);
    // Eight requests race from size 4 to sizes 5..=12: exactly one may win;
    // the others must see that the witness moved on.
    let mut tasks = Vec::new();
    for size in 5..=12u64 {
        let body = request(4, consistency(&s, 4, size).await, &cps[size as usize]);
        let base = base.clone();
        tasks.push(tokio::spawn(async move { (size, add(&base, body).await) }));
    }
    let mut winners = Vec::new();
    let mut answers = Vec::new();
    for t in tasks {
        let (size, a) = t.await.unwrap();
        match a.status {
            200 => winners.push(size),
            409 => answers.push(String::from_utf8(a.body).unwrap()),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let won = winners[0];
    assert_eq!(w.witness.cosigned_size(ORIGIN), Some(won));
    assert!(
        answers.iter().all(|a| *a == format!("{won}\n")),
        "{answers:?}"
    );
    w.stop().await.unwrap();
    s.stop().await;
}

/// Independent check of a cosignature (tlog-cosignature v1.0.1 §"Signed
/// message"), written from the spec for this test, through Cloudflare's
/// note parser.
struct SpecCosigVerifier {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl SpecCosigVerifier {
    fn new(vkey: &str) -> Self {
        let mut parts = vkey.splitn(3, '+');
        let name = parts.next().unwrap().to_string();
        let id = u32::from_str_radix(parts.next().unwrap(), 16).unwrap();
        let raw = B64.decode(parts.next().unwrap()).unwrap();
        assert_eq!(raw[0], 0x04);
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update(b"\n");
        h.update(&raw);
        let digest = h.finalize();
        assert_eq!(u32::from_be_bytes(digest[..4].try_into().unwrap()), id);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw[1..].try_into().unwrap()).unwrap();
        SpecCosigVerifier { name, id, key }
    }
}

impl signed_note::Verifier for SpecCosigVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 72 {
            return false;
        }
        let ts = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let mut m = format!("cosignature/v1\ntime {ts}\n").into_bytes();
        m.extend_from_slice(msg);
        let s = ed25519_dalek::Signature::from_slice(&sig[8..]).unwrap();
        self.key.verify_strict(&m, &s).is_ok()
    }
}

async fn wait_until(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_serves_cosigned_checkpoints_and_survives_a_down_witness() {
    // The log's key first: the witness must know it before the log starts.
    let wdir = tempfile::tempdir().unwrap();
    let (w_signer, _) = service::load_or_create_key(wdir.path(), Some(WITNESS)).unwrap();
    let wkey = w_signer.verifier();
    let waddr = free_port();
    let dead = free_port(); // nothing listens there: a witness that is down
    let dead_key = SignerKey::generate_cosigner(KeyName::new("witness.test/down").unwrap())
        .unwrap()
        .verifier();
    let witnessing = CollectorConfig {
        witnesses: vec![
            WitnessSpec {
                url: format!("http://{waddr}"),
                key: wkey.clone(),
            },
            WitnessSpec {
                url: format!("http://{dead}"),
                key: dead_key.clone(),
            },
        ],
        threshold: 1,
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        tls_roots: None,
    };
    let tweak = |c: &mut ServerConfig| {
        c.witnessing = Some(witnessing.clone());
        c.witness_wait = Duration::from_secs(5);
    };
    let mut s = start_with(tweak).await;
    let w = start_witness(wdir.path(), &waddr, vec![s.vkey.clone()]).await;
    let one = Policy {
        log_key: s.vkey.clone(),
        witnesses: vec![wkey.clone()],
        min_witnesses: 1,
        max_cosignature_age: None,
    };
    let both = Policy {
        log_key: s.vkey.clone(),
        witnesses: vec![wkey.clone(), dead_key.clone()],
        min_witnesses: 2,
        max_cosignature_age: None,
    };

    // An append that waits for the witnesses gets a receipt they cosigned.
    for n in 0..5 {
        s.post(&event(n)).await;
    }
    let r = witnessed_append(&s, 5).await;
    assert_eq!(r["witnessed"], true);
    let proof = r["tlog_proof"].as_str().unwrap();
    let ev = r["event"].to_string();
    let checked = verify::receipt(&one, ev.as_bytes(), proof.as_bytes()).unwrap();
    assert_eq!(checked.checkpoint.witnesses, vec![WITNESS.to_string()]);
    assert_eq!(checked.index, 5);
    // The down witness did not cosign: a policy that needs it fails.
    assert!(matches!(
        verify::receipt(&both, ev.as_bytes(), proof.as_bytes()),
        Err(Failure::Invalid(_))
    ));
    // The cosigned checkpoint verifies with Cloudflare's note code and a
    // cosignature verifier written from the spec.
    let cp = &checked.checkpoint.signed;
    let note = signed_note::Note::from_bytes(cp.as_bytes()).unwrap();
    let list = signed_note::VerifierList::new(vec![
        Box::new(signed_note::StandardVerifier::new(&s.vkey.to_string()).unwrap()),
        Box::new(SpecCosigVerifier::new(&wkey.to_string())),
    ]);
    let (verified, _) = note.verify(&list).unwrap();
    assert_eq!(verified.len(), 2);

    // /checkpoint serves the cosigned checkpoint once it covers the tree.
    let size = 6;
    wait_until(
        "a cosigned /checkpoint",
        Duration::from_secs(10),
        async || {
            let body = s.get("/checkpoint").await.text().await.unwrap();
            one.open_checkpoint(body.as_bytes())
                .is_ok_and(|v| v.checkpoint.size == size)
        },
    )
    .await;
    // And /v1/receipt hands out receipts against it.
    let (status, r0) = s.get_json("/v1/receipt?index=0").await;
    assert_eq!(status, 200);
    let v = verify::receipt(
        &one,
        r0["event"].to_string().as_bytes(),
        r0["tlog_proof"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!((v.index, v.checkpoint.checkpoint.size), (0, size));
    let (status, _) = s.get_json("/v1/receipt?index=6").await;
    assert_eq!(status, 404);
    let (status, _) = s.get_json("/v1/receipt?index=0&event_id=x").await;
    assert_eq!(status, 400);
    let (status, _) = s.get_json("/v1/receipt").await;
    assert_eq!(status, 400);

    // The witness goes down: appends go on, /checkpoint stays where the
    // witnesses left it (never backwards, never uncosigned), and a waiting
    // append answers in time with the log-signed receipt.
    w.stop().await.unwrap();
    for n in 10..20 {
        let t0 = Instant::now();
        let (status, _) = s.post(&event(n)).await;
        assert_eq!(status, 201);
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
    let (_, info) = s.get_json("/v1/log").await;
    assert_eq!(info["tree_size"], 16);
    assert_eq!(info["witnessed"]["tree_size"], size);
    let body = s.get("/checkpoint").await.text().await.unwrap();
    assert_eq!(
        one.open_checkpoint(body.as_bytes())
            .unwrap()
            .checkpoint
            .size,
        size
    );
    let (status, _) = s.get_json("/v1/receipt?index=10").await;
    assert_eq!(status, 404);

    // The witness comes back on the same address: it catches up.
    let w = start_witness(wdir.path(), &waddr, vec![s.vkey.clone()]).await;
    wait_until(
        "the witness to catch up",
        Duration::from_secs(20),
        async || {
            let body = s.get("/checkpoint").await.text().await.unwrap();
            one.open_checkpoint(body.as_bytes())
                .is_ok_and(|v| v.checkpoint.size == 16)
        },
    )
    .await;
    assert_eq!(w.witness.cosigned_size(ORIGIN), Some(16));

    // The cosigned checkpoint survives a restart of the log.
    let data_dir = s.dir.path().join("data");
    s.stop().await;
    let w_stopped = w.stop().await;
    assert!(w_stopped.is_ok());
    let mut cfg = ServerConfig::resolve(modeltrail::server::Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(data_dir),
        origin: Some(ORIGIN.into()),
        ..Default::default()
    })
    .unwrap();
    tweak(&mut cfg);
    let d = server::prepare_data_dir(&cfg).unwrap();
    let running = server::start(&cfg, &d).await.unwrap();
    let body = reqwest::get(format!("http://{}/checkpoint", running.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        one.open_checkpoint(body.as_bytes())
            .unwrap()
            .checkpoint
            .size,
        16
    );
    running.stop().await.unwrap();

    // Witnessing off: /checkpoint is the log's head, and the log grows.
    let mut off = cfg.clone();
    off.witnessing = None;
    let running = server::start(&off, &d).await.unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    for n in 30..34 {
        let r = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(&d.admin_token)
            .header("content-type", "application/json")
            .body(event(n).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let log_only = Policy::log_only(s.vkey.clone());
    let served = |base: String| {
        let log_only = log_only.clone();
        async move {
            let body = reqwest::get(format!("{base}/checkpoint"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            log_only.open_checkpoint(body.as_bytes()).unwrap()
        }
    };
    assert_eq!(served(base.clone()).await.checkpoint.size, 20);
    running.stop().await.unwrap();
    // Witnessing on again, the witness still down: /checkpoint must not go
    // back to the older cosigned checkpoint of size 16.
    let running = server::start(&cfg, &d).await.unwrap();
    let base = format!("http://{}", running.addr);
    let v = served(base.clone()).await;
    assert_eq!(v.checkpoint.size, 20, "/checkpoint moved backwards");
    // The witness returns: the cosigned checkpoint catches up, at 20.
    let w = start_witness(wdir.path(), &waddr, vec![s.vkey.clone()]).await;
    wait_until("a cosigned 20", Duration::from_secs(20), async || {
        let body = reqwest::get(format!("{base}/checkpoint"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        one.open_checkpoint(body.as_bytes())
            .is_ok_and(|v| v.checkpoint.size == 20)
    })
    .await;
    w.stop().await.unwrap();
    running.stop().await.unwrap();
}

#[test]
fn the_log_refuses_a_bad_witness_configuration() {
    let w = SignerKey::generate_cosigner(KeyName::new(WITNESS).unwrap())
        .unwrap()
        .verifier()
        .to_string();
    let log_key = SignerKey::generate(KeyName::new(ORIGIN).unwrap())
        .unwrap()
        .verifier()
        .to_string();
    let resolve = |witnesses: Vec<String>, threshold: Option<usize>| {
        ServerConfig::resolve(modeltrail::server::Overrides {
            witnesses,
            witness_threshold: threshold,
            ..Default::default()
        })
    };
    assert!(resolve(vec![format!("http://127.0.0.1:1,{w}")], None).is_ok());
    assert!(resolve(vec![format!("http://127.0.0.1:1,{w}")], Some(2)).is_err());
    assert!(resolve(vec![format!("http://127.0.0.1:1,{w}")], Some(0)).is_err());
    assert!(resolve(vec![format!("http://127.0.0.1:1,{log_key}")], None).is_err());
    assert!(resolve(vec![format!("127.0.0.1:1,{w}")], None).is_err());
    assert!(resolve(vec![format!("https://127.0.0.1:1,{w}")], None).is_ok());
    assert!(resolve(vec![format!("ftp://127.0.0.1:1,{w}")], None).is_err());
    assert!(resolve(vec![w.clone()], None).is_err());
}

/// A TLS front for a plain TCP service, with a certificate for 127.0.0.1
/// made here (self-signed): what an `https://` witness looks like. Its
/// address and the certificate's PEM.
async fn tls_front(backend: String) -> (String, String) {
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                // A handshake the client refuses ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (addr, pem)
}

/// A log with an `https://` witness whose certificate it trusts through
/// `tls_roots`, and one with the same witness but only the system's roots.
async fn log_with_tls_witness(
    witness: &str,
    key: &VerifierKey,
    roots: Option<Vec<u8>>,
) -> TestServer {
    let witnessing = CollectorConfig {
        witnesses: vec![WitnessSpec {
            url: format!("https://{witness}"),
            key: key.clone(),
        }],
        threshold: 1,
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(1000),
        tls_roots: roots,
    };
    start_with(move |c: &mut ServerConfig| {
        c.witnessing = Some(witnessing);
        c.witness_wait = Duration::from_secs(3);
    })
    .await
}

async fn witnessed_append(s: &TestServer, n: u64) -> serde_json::Value {
    let r = s
        .http
        .post(s.url("/v1/events?wait=witnessed"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(event(n).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_over_https_are_verified_like_any_tls_server() {
    let wdir = tempfile::tempdir().unwrap();
    let (w_signer, _) = service::load_or_create_key(wdir.path(), Some(WITNESS)).unwrap();
    let wkey = w_signer.verifier();
    let waddr = free_port();
    let (front, pem) = tls_front(waddr.clone()).await;

    // Trusting the witness's certificate: its cosignature comes over TLS.
    let mut trusting = log_with_tls_witness(&front, &wkey, Some(pem.into_bytes())).await;
    // The system's roots only: the self-signed certificate is refused, so
    // nothing is cosigned (and the log keeps appending).
    let mut strict = log_with_tls_witness(&front, &wkey, None).await;
    let w = start_witness(
        wdir.path(),
        &waddr,
        vec![trusting.vkey.clone(), strict.vkey.clone()],
    )
    .await;

    let r = witnessed_append(&trusting, 0).await;
    assert_eq!(r["witnessed"], true, "{r}");
    let policy = Policy {
        log_key: trusting.vkey.clone(),
        witnesses: vec![wkey.clone()],
        min_witnesses: 1,
        max_cosignature_age: None,
    };
    let checked = verify::receipt(
        &policy,
        r["event"].to_string().as_bytes(),
        r["tlog_proof"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(checked.checkpoint.witnesses, vec![WITNESS.to_string()]);

    let r = witnessed_append(&strict, 0).await;
    assert_eq!(r["witnessed"], false, "{r}");
    let (_, info) = strict.get_json("/v1/log").await;
    assert!(
        info.get("witnessed").is_none_or(|w| w["tree_size"] == 0),
        "{info}"
    );

    // A ca_file that holds no certificate is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[witnessing]\nca_file = {:?}\n[[witnessing.witness]]\nurl = \"https://{front}\"\nvkey = \"{wkey}\"\n",
            bad.to_string_lossy()
        ),
    )
    .unwrap();
    let err = ServerConfig::resolve(server::Overrides {
        config: Some(config),
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    })
    .expect_err("a ca_file without certificates is refused");
    assert!(err.to_string().contains("ca_file"), "{err}");

    trusting.stop().await;
    strict.stop().await;
    w.stop().await.unwrap();
}
