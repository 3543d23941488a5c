//! Privacy that survives an append-only log, against the real server and
//! the real command line: refused fields, sensitive values replaced by
//! salted commitments before they reach a leaf (the registry still counts
//! people), reveals that are logged and check offline, and erasure (on
//! request, after a crash, for retention) that leaves every proof valid.

use crate::common::*;
use modeltrail::privacy::{FieldPath, PrivateStore};
use modeltrail::server::ServerConfig;
use serde_json::{json, Value};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_modeltrail");
const EMAIL: &str = "eve.customer@example.com";

fn private(c: &mut ServerConfig) {
    c.privacy.commit = vec![
        (FieldPath::ActorId, "user".into()),
        (
            FieldPath::parse("metadata.customer_email").unwrap(),
            "email".into(),
        ),
    ];
    c.privacy.refuse = vec![FieldPath::parse("metadata.ssn").unwrap()];
}

fn ev(action: &str, who: (&str, &str), subject: (&str, &str), metadata: Value) -> Value {
    json!({
        "action": action,
        "actor": {"type": who.0, "id": who.1},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": subject.0, "id": subject.1},
        "metadata": metadata,
    })
}

async fn ok(s: &TestServer, token: &str, e: &Value) -> Value {
    let (status, r) = post_as(s, token, e).await;
    assert_eq!(status, 201, "{e} → {r}");
    r
}

/// An event by the `ci` service, appended; its receipt.
async fn by_ci(
    s: &TestServer,
    ci: &str,
    action: &str,
    subject: (&str, &str),
    metadata: Value,
) -> Value {
    ok(s, ci, &ev(action, ("service", "ci"), subject, metadata)).await
}

/// What the stored event holds for the customer's email.
fn email_in(receipt: &Value) -> String {
    receipt["event"]["metadata"]["customer_email"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn size(s: &TestServer) -> u64 {
    s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap()
}

/// Every file under `dir` except the private store, concatenated.
fn bytes_outside_private(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "private") {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "db") {
                // The database as the engine reads it, so that compressed
                // blocks cannot hide a value.
                out.extend(crate::common::db_contents(&p));
            } else if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify_reveal(vkey: &str, file: &std::path::Path) -> (Option<i32>, String, String) {
    run(&["verify", "reveal", "--vkey", vkey, file.to_str().unwrap()])
}

/// `modeltrail erase` with the admin token.
fn erase(s: &TestServer, subject: &str) -> (Option<i32>, String, String) {
    run(&[
        "erase",
        "--server",
        &s.base,
        "--token",
        &s.token,
        "--subject",
        subject,
    ])
}

async fn restart(s: &mut TestServer, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    s.stop().await;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    start_in(dir, tweak).await
}

async fn reveal(s: &TestServer, token: Option<String>, q: String) -> (u16, Value) {
    let mut req = s.http.get(s.url(&format!("/v1/reveal?{q}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (
        r.status().as_u16(),
        r.json::<Value>().await.unwrap_or(Value::Null),
    )
}

async fn all_entries(s: &TestServer) -> Vec<Value> {
    events_at(s, "/v1/entries?start=0&limit=1000").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_values_never_reach_a_leaf_and_the_registry_still_counts_people() {
    let mut s = start_with(private).await;
    let ci = grant(&s, "service", "ci", &["submitter"]).await.0;
    let (alice, granted) = grant(&s, "user", "alice", &["approver"]).await;
    let bob = grant(&s, "user", "bob", &["approver"]).await.0;
    let ops = grant(&s, "user", "ops", &["deployer"]).await.0;
    // The token stands for alice's commitment, not her name.
    let alice_c = granted["principal"]["id"].as_str().unwrap().to_string();
    assert!(alice_c.starts_with("commit:"), "{granted}");

    for model in ["fraud:v1", "churn:v1"] {
        by_ci(
            &s,
            &ci,
            "register",
            ("model_version", model),
            json!({"customer_email": EMAIL}),
        )
        .await;
        // alice approves, then tries again: the registry knows her by her
        // commitment and refuses the second approval, naming no one.
        let approve = ev(
            "approve",
            ("user", "alice"),
            ("model_version", model),
            json!({}),
        );
        let r = ok(&s, &alice, &approve).await;
        assert_eq!(r["event"]["actor"]["id"], alice_c.as_str());
        let (status, r) = post_as(&s, &alice, &approve).await;
        assert_eq!(status, 422, "{r}");
        let reason = r["error"]["message"].as_str().unwrap();
        assert!(
            reason.contains("already approved") && reason.contains(&alice_c),
            "{r}"
        );
        assert!(!r.to_string().contains("alice"), "{r}");
        let promote = ev(
            "promote",
            ("user", "ops"),
            ("model_version", model),
            json!({"to_stage": "Production"}),
        );
        let (status, r) = post_as(&s, &ops, &promote).await;
        assert_eq!(status, 422, "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("approval"),
            "{r}"
        );
        ok(
            &s,
            &bob,
            &ev(
                "approve",
                ("user", "bob"),
                ("model_version", model),
                json!({}),
            ),
        )
        .await;
        ok(&s, &ops, &promote).await;
    }
    // Two models, each in production: per-model slots with people hidden.
    for name in ["fraud", "churn"] {
        let (_, m) = s.get_json(&format!("/v1/models/{name}")).await;
        assert_eq!(m["versions"][0]["stage"], "production", "{m}");
    }
    // Search by a person's name finds their events by commitment.
    let (_, found) = s
        .get_json("/v1/search?actor=user:alice&action=approve")
        .await;
    assert_eq!(found["entries"].as_array().unwrap().len(), 2, "{found}");
    let (_, none) = s.get_json("/v1/search?actor=user:mallory").await;
    assert!(none["entries"].as_array().unwrap().is_empty());

    // A refused field: 400 and nothing written, under either rule set.
    let before = size(&s).await;
    let (status, r) = post_as(
        &s,
        &ci,
        &ev(
            "train",
            ("service", "ci"),
            ("run", "r1"),
            json!({"ssn": "000-00-0000"}),
        ),
    )
    .await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (400, Some("pii_field"))
    );
    // A committed field that is not a string, or in a signed event: 400.
    for bad in [
        json!({"customer_email": 42}),
        json!({"customer_email": {"x": 1}}),
    ] {
        let (status, r) =
            post_as(&s, &ci, &ev("train", ("service", "ci"), ("run", "r2"), bad)).await;
        assert_eq!(status, 400, "{r}");
        assert_eq!(r["error"]["code"], "invalid_event");
    }
    let mut signed = ev(
        "train",
        ("service", "ci"),
        ("run", "r3"),
        json!({"customer_email": EMAIL}),
    );
    signed["integrity"] = json!({"event_sha256": "00".repeat(32)});
    let (status, r) = post_as(&s, &ci, &signed).await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (400, Some("invalid_event")),
        "{r}"
    );
    assert_eq!(size(&s).await, before);

    // No leaf, tile or database file holds a name or the address.
    let entries = all_entries(&s).await;
    let text = serde_json::to_string(&entries).unwrap();
    for secret in ["alice", "\"bob\"", "\"ops\"", EMAIL] {
        assert!(!text.contains(secret), "{secret} is in a leaf");
    }
    assert!(text.contains("commit:"));
    let data = s.dir.path().join("data");
    s.stop().await;
    let stored = bytes_outside_private(&data);
    // Control: the scan sees what the log holds.
    assert!(contains(&stored, &alice_c));
    for secret in ["alice", EMAIL] {
        assert!(
            !contains(&stored, secret),
            "{secret} is stored outside the private store"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveals_are_logged_and_check_offline_and_erasure_keeps_every_proof() {
    let mut s = start_with(private).await;
    let ci = grant(&s, "service", "ci", &["submitter"]).await.0;
    let auditor = grant(&s, "user", "carol", &["auditor"]).await.0;
    let r = by_ci(
        &s,
        &ci,
        "register",
        ("model_version", "fraud:v1"),
        json!({"customer_email": EMAIL, "n": 1}),
    )
    .await;
    let index = r["index"].as_u64().unwrap();
    let committed = email_in(&r);
    let dir = tempfile::tempdir().unwrap();
    let (event_file, receipt_file) = (dir.path().join("event.json"), dir.path().join("receipt"));
    std::fs::write(&event_file, r["event"].to_string()).unwrap();
    std::fs::write(&receipt_file, r["tlog_proof"].as_str().unwrap()).unwrap();
    let vkey = s.vkey.to_string();

    // Who may reveal, and what.
    let q = format!("index={index}&field=metadata.customer_email");
    assert_eq!(reveal(&s, None, q.clone()).await.0, 401);
    assert_eq!(reveal(&s, Some(ci.clone()), q.clone()).await.0, 403);
    for (bad, status) in [
        (format!("index={index}&field=metadata.n"), 404),
        (format!("index={index}&field=subject.id"), 400),
        (format!("index={index}"), 400),
        ("index=999&field=metadata.customer_email".to_string(), 404),
        (
            format!("index={index}&field=metadata.customer_email&x=1"),
            400,
        ),
    ] {
        let (got, body) = reveal(&s, Some(auditor.clone()), bad.clone()).await;
        assert_eq!(got, status, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let accesses_before = s.get_json("/v1/search?action=access").await.1["entries"]
        .as_array()
        .unwrap()
        .len();
    // The command line: an auditor's reveal, saved, checked offline.
    let (revealed, tampered) = (dir.path().join("reveal.json"), dir.path().join("bad.json"));
    let (code, _, err) = run(&[
        "reveal",
        "--server",
        &s.base,
        "--token",
        &auditor,
        "--index",
        &index.to_string(),
        "--field",
        "metadata.customer_email",
        "-o",
        revealed.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&revealed).unwrap()).unwrap();
    assert_eq!(saved["value"], EMAIL);
    assert_eq!(saved["subject"], format!("email:{EMAIL}"));
    assert_eq!(saved["commitment"], committed.as_str());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&revealed).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "a revealed value is written owner-only");
    let (code, out, _) = verify_reveal(&vkey, &revealed);
    assert_eq!(code, Some(0), "{out}");
    for (key, value) in [
        ("value", json!("eve@example.org")),
        ("salt", json!("00".repeat(32))),
    ] {
        let mut t = saved.clone();
        t[key] = value;
        std::fs::write(&tampered, t.to_string()).unwrap();
        let (code, out, _) = verify_reveal(&vkey, &tampered);
        assert_eq!(code, Some(1), "{key}: {out}");
    }
    // The reveal is logged: who, which entry, which commitment; no value.
    let (_, acc) = s.get_json("/v1/search?action=access").await;
    let acc = acc["entries"].as_array().unwrap();
    assert_eq!(acc.len(), accesses_before + 1);
    let logged = &acc.last().unwrap()["event"];
    assert_eq!(logged["subject"]["id"], committed.as_str());
    assert_eq!(logged["metadata"]["entry"], index);
    assert!(!logged.to_string().contains(EMAIL));

    // Erasure: admins only; unknown subjects are a 404; the CLI erases.
    let (status, r) = {
        let r = s
            .http
            .post(s.url("/v1/admin/erase"))
            .bearer_auth(&auditor)
            .json(&json!({"subject": format!("email:{EMAIL}")}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 403, "{r}");
    let (code, _, err) = erase(&s, "email:nobody@example.com");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no private value is kept"), "{err}");
    let (code, _, err) = erase(&s, "no-kind");
    assert_eq!(code, Some(2), "{err}");
    let cp_before: String = s.get("/checkpoint").await.text().await.unwrap();
    let old_size = size(&s).await;
    let (code, out, err) = erase(&s, &format!("email:{EMAIL}"));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&committed), "{out}");
    let (code, _, err) = erase(&s, &format!("email:{EMAIL}"));
    assert_eq!(code, Some(2), "erasing twice: {err}");

    // After it: the reveal is a clear 404, the log holds only the commitment.
    let (status, body) = reveal(&s, Some(auditor.clone()), q.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("erased")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("erased"),
        "{body}"
    );
    let (_, erased) = s.get_json("/v1/search?action=erase").await;
    let erased = erased["entries"].as_array().unwrap();
    assert_eq!(erased.len(), 1);
    assert_eq!(erased[0]["event"]["subject"]["id"], committed.as_str());
    assert_eq!(erased[0]["event"]["metadata"]["reason"], "request");
    // Every proof is as valid as before: the whole log, the old receipt,
    // consistency with the checkpoint taken before, and the saved reveal
    // (what someone already saw, erasure cannot take back).
    let (code, out, _) = run(&["verify", "log", "--server", &s.base, "--vkey", &vkey]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = run(&[
        "verify",
        "receipt",
        "--vkey",
        &vkey,
        "--event",
        event_file.to_str().unwrap(),
        receipt_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let old_cp = dir.path().join("old.checkpoint");
    std::fs::write(&old_cp, &cp_before).unwrap();
    let (code, out, _) = run(&[
        "verify",
        "consistency",
        "--server",
        &s.base,
        "--vkey",
        &vkey,
        "--old",
        old_cp.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(size(&s).await > old_size);
    let (code, out, _) = verify_reveal(&vkey, &revealed);
    assert_eq!(code, Some(0), "{out}");
    // The same address later: a new salt, so a new, unlinkable commitment.
    let r2 = by_ci(
        &s,
        &ci,
        "train",
        ("run", "r9"),
        json!({"customer_email": EMAIL}),
    )
    .await;
    let again = email_in(&r2);
    assert_ne!(again, committed);

    // An erasure a crash cut short (deleted, not yet logged) is logged at
    // the next start, once.
    let data = s.dir.path().join("data");
    s.stop().await;
    PrivateStore::open(&data.join("private"))
        .unwrap()
        .erase(&format!("email:{EMAIL}"), "request")
        .unwrap();
    let mut s = restart(&mut s, private).await;
    let (_, erased) = s.get_json("/v1/search?action=erase").await;
    assert_eq!(erased["entries"].as_array().unwrap().len(), 2, "{erased}");
    let mut s = restart(&mut s, private).await;
    let (_, erased) = s.get_json("/v1/search?action=erase").await;
    assert_eq!(erased["entries"].as_array().unwrap().len(), 2, "{erased}");
    let (status, body) = reveal(&s, Some(auditor.clone()), q).await;
    assert_eq!(status, 404, "{body}");
    // Nothing the server keeps holds the address any more.
    let data = s.dir.path().join("data");
    s.stop().await;
    let mut everything = bytes_outside_private(&data);
    for sub in ["subjects", "commitments"] {
        for e in std::fs::read_dir(data.join("private").join(sub)).unwrap() {
            everything.extend(std::fs::read(e.unwrap().path()).unwrap());
        }
    }
    assert!(
        contains(&everything, &committed),
        "control: the scan sees the commitment"
    );
    assert!(!contains(&everything, EMAIL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_what_was_not_used_in_time() {
    let tweak = |c: &mut ServerConfig| {
        private(c);
        c.privacy.retention = Some(Duration::from_secs(30 * 86_400));
        c.privacy.sweep_every = Duration::from_millis(100);
    };
    let mut s = start_with(tweak).await;
    let ci = grant(&s, "service", "ci", &["submitter"]).await.0;
    let mut committed = Vec::new();
    for email in ["old@example.com", "new@example.com", "edge@example.com"] {
        let r = by_ci(
            &s,
            &ci,
            "train",
            ("run", email),
            json!({"customer_email": email}),
        )
        .await;
        committed.push(email_in(&r));
    }
    // Age one value past the window, as if unused for 31 days.
    let subjects = s.dir.path().join("data/private/subjects");
    s.stop().await;
    for e in std::fs::read_dir(&subjects).unwrap() {
        let p = e.unwrap().path();
        let mut o: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        // Unused for 31 days: past the window. Recorded as unused for 30
        // days and half an hour: the record may be up to an hour older than
        // the real last use, so it is kept.
        let age = match o["value"].as_str() {
            Some("old@example.com") => 31 * 86_400,
            Some("edge@example.com") => 30 * 86_400 + 1_800,
            _ => 0,
        };
        if age > 0 {
            o["last_used"] = json!(o["last_used"].as_u64().unwrap() - age);
            std::fs::write(&p, o.to_string()).unwrap();
        }
    }
    let s = restart(&mut s, tweak).await;
    eventually(
        "the aged value erased",
        Duration::from_secs(10),
        async || {
            s.get_json("/v1/search?action=erase").await.1["entries"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        },
    )
    .await;
    let (_, erased) = s.get_json("/v1/search?action=erase").await;
    let e = &erased["entries"][0]["event"];
    assert_eq!(e["subject"]["id"], committed[0].as_str());
    assert_eq!(e["metadata"]["reason"], "retention");
    assert_eq!(e["metadata"]["kind"], "email");
    let auditor = grant(&s, "user", "carol", &["auditor"]).await.0;
    for (c, want) in [
        (&committed[0], 404),
        (&committed[1], 200),
        (&committed[2], 200),
    ] {
        let (_, page) = s.get_json("/v1/entries?start=0&limit=100").await;
        let i = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"]["metadata"]["customer_email"] == c.as_str())
            .unwrap()["index"]
            .as_u64()
            .unwrap();
        let r = s
            .http
            .get(s.url(&format!(
                "/v1/reveal?index={i}&field=metadata.customer_email"
            )))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
    }
    // One sweep after another erases nothing more.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, erased) = s.get_json("/v1/search?action=erase").await;
    assert_eq!(erased["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_personal_fields_are_never_logged() {
    let s = start_with(|c| {
        c.privacy.refuse = vec![
            FieldPath::parse("metadata.customer_email").unwrap(),
            FieldPath::parse("metadata.customer.ssn").unwrap(),
        ]
    })
    .await;
    let before = s.get_json("/v1/log").await.1["tree_size"].clone();
    for meta in [
        json!({"customer_email": "a@example.com"}),
        json!({"customer": {"ssn": "000-00-0000"}, "n": 1}),
        json!({"customer_email": null}),
    ] {
        let mut e = event(7);
        e["metadata"] = meta.clone();
        let (status, r) = s.post(&e).await;
        assert_eq!(status, 400, "{meta}: {r}");
        assert_eq!(r["error"]["code"], "pii_field");
    }
    assert_eq!(s.get_json("/v1/log").await.1["tree_size"], before);
    // Other fields, and the same names elsewhere, pass.
    let mut e = event(8);
    e["metadata"] = json!({"customer": {"region": "eu"}, "note": "customer_email"});
    assert_eq!(s.post(&e).await.0, 201);
    // Configuration mistakes are refused at start, each with its reason.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for (toml, says) in [
        ("[privacy]\nrefuse = [\"actor.id\"]\n", "privacy.refuse"),
        (
            "[privacy.commit]\n\"subject.id\" = \"x\"\n",
            "privacy.commit",
        ),
        (
            "[privacy.commit]\n\"actor.id\" = \"email\"\n",
            "must be \"user\"",
        ),
        (
            "[privacy.commit]\n\"metadata.e\" = \"Bad Kind\"\n",
            "lowercase identifier",
        ),
        ("[privacy]\nretention_days = 0\n", "at least 1"),
        (
            "[privacy]\nrefuse = [\"metadata.e\"]\n[privacy.commit]\n\"metadata.e\" = \"email\"\n",
            "both refused and committed",
        ),
    ] {
        std::fs::write(&path, toml).unwrap();
        let err = modeltrail::server::ServerConfig::resolve(modeltrail::server::Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains(says), "{toml}: {err}");
    }
}
